"""Consumer benchmark: `nudge consume` against Vowpal Wabbit's own driver on the same examples.

One run, on a deployment of its own (fresh topics, group and directories on the configured
broker; `scripts/kafka start` runs the local one):

  e2e_eps        `nudge simulate --events N` fills the topics, then `nudge consume --until-idle`
                 (a process, the config's checkpoints and snapshots) learns them; learned events
                 over the consumer's own busy time: its loop from start to the last message
                 (the `idle for X s after Y s` line: Y - X) plus closing the windows and the final
                 checkpoint (log timestamps). Y - X stops at the last poll that returned records,
                 so one batch's processing (<= `kafka.max_poll_records` messages) is not timed.
                 `--e2e-repeats` runs per consumer (client library, baseline) on the same topics,
                 round-robin (a slow spell of the shared machine hits every consumer alike), each
                 with a group and directories of its own; the best counts, the median is shown.
  baseline_eps   `--baseline REF`: `nudge consume` of that commit (its tree from `git archive`,
                 run with its packages first on PYTHONPATH and its own config.yaml, the same
                 venv) in the same rounds; speedup = e2e_eps / baseline_eps (best over best, and
                 median over median): a speed-up measured in one run, not against an old number.
  stages         the same topics read again by `StreamLearner` in this process with a timer
                 around each stage (fetch, decode, join, render, learn, checkpoint, snapshot,
                 dead letters, start/stop): `StageClock`, exclusive time, so nested stages count
                 once and the stages plus `other` add up to the busy wall time; polls that return
                 nothing are idle, not work. Also peak join state and checkpoint bytes.
  native_vw_eps  the events that run learned, rendered as the learner renders them (VW text,
                 `bandit.vw_text.example_lines`) into a data file, learned by VW's own driver
                 (`Workspace("<the learner's VW args> -d FILE")`: C++ parsing and learning) minus
                 the setup of an empty workspace; best of `--repeats` (median reported). Also
                 VW's extension on the same text in one thread (`pylibvw` parse + learn_multi).
  learner_eps    `bandit.learning.OnlineLearner` fed the same joined events in this process.
  growth         the learner alone (and VW's driver) on synthetic events: 2, 5, 20, 50 actions
                 at 10 context features; 10, 50, 200 context features at 5 actions (each action
                 has 2 features, as the simulator's); a table and an SVG plot.

`--no-native-crc` hides the `crc32c` package from kafka-python in both consumers (records are
then checked in pure Python, as before it was a dependency: the baseline of issue 13).

Prints a table; `--json PATH` writes every number. Not part of CI. Run as `nudge bench`,
`scripts/bench` or `python -m benchmarks.consumer_bench` (`--events 5000` for a quick run).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

from bandit.config import Config, load_config
from bandit.events import Impression, OutcomeLabel
from bandit.join import JoinedEvent
from bandit.vw_text import NamespaceLetters, example_lines

ROOT = Path(__file__).resolve().parents[1]
IDLE = "idle"
BENCH = "bench"  # the benchmark's own notes during the timed run
NOT_WORK = (IDLE, BENCH)  # left out of the busy time
OTHER = "other"
# The order of the stage table; `other` is the time outside every timed stage.
STAGES = (
    "fetch", "decode", "join", "render", "learn", "checkpoint", "snapshot", "dead_letter",
    "start/stop",
)  # fmt: skip
GROWTH_ACTIONS = (2, 5, 20, 50)
GROWTH_FEATURES = (10, 50, 200)
FIXED_FEATURES = 10  # context features while the actions vary
FIXED_ACTIONS = 5  # actions while the context features vary
ACTION_FEATURES = 2  # per action, as the simulator's (kind, tone)


class BenchError(Exception):
    """A step of the benchmark failed; the message says which and why."""


# ---- stage accounting (pure) ------------------------------------------------------------------


class StageClock:
    """Exclusive time per stage: while a stage nested in another runs, only it is charged, so
    the stages and the time outside all of them (`other`) add up to the wall time exactly."""

    def __init__(self, clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self._clock = clock
        self.ns: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[str] = []
        self._mark = 0
        self._started: int | None = None
        self._stopped: int | None = None

    def start(self) -> None:
        self._started = self._mark = self._clock()

    def stop(self) -> None:
        self._stopped = self._clock()

    def enter(self, stage: str) -> None:
        now = self._clock()
        if self._stack:
            self._charge(self._stack[-1], now - self._mark)
        self._stack.append(stage)
        self.calls[stage] = self.calls.get(stage, 0) + 1
        self._mark = now

    def leave(self, charge_to: str | None = None) -> None:
        """End the innermost stage; `charge_to` books its time under another name (an empty
        poll is `idle`, not `fetch`)."""
        now = self._clock()
        stage = self._stack.pop()
        self._charge(charge_to or stage, now - self._mark)
        self._mark = now

    def _charge(self, stage: str, ns: int) -> None:
        self.ns[stage] = self.ns.get(stage, 0) + ns

    @property
    def wall_ns(self) -> int:
        if self._started is None or self._stopped is None:
            raise BenchError("the stage clock was not started and stopped")
        return self._stopped - self._started

    def timed(
        self, stage: str, fn: Callable[..., Any], idle_when_empty: bool = False
    ) -> Callable[..., Any]:
        """`fn` with its time charged to `stage` (to `idle` when it returns nothing and
        `idle_when_empty`)."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.enter(stage)
            result: Any = None
            try:
                result = fn(*args, **kwargs)
                return result
            finally:
                self.leave(IDLE if idle_when_empty and not result else None)

        return wrapper


@dataclass(frozen=True, slots=True)
class StageRow:
    """One stage's share of the busy time: seconds, µs per learned event, share of the total."""

    stage: str
    seconds: float
    us_per_event: float
    share: float
    calls: int


def stage_rows(
    ns: Mapping[str, int], calls: Mapping[str, int], wall_ns: int, learned: int
) -> list[StageRow]:
    """The stage table: `STAGES` in order (then any other stage), `other` (busy wall minus the
    stages) and `total` (the busy wall: the wall minus `idle` and `bench`). The rows above
    `total` add up to it by construction."""
    busy = wall_ns - sum(ns.get(s, 0) for s in NOT_WORK)
    names = [s for s in STAGES if s in ns] + sorted(set(ns) - set(STAGES) - set(NOT_WORK))
    timed = {name: ns[name] for name in names}
    timed[OTHER] = busy - sum(timed.values())
    per = max(learned, 1)
    rows = [
        StageRow(name, t / 1e9, t / 1e3 / per, t / busy if busy else 0.0, calls.get(name, 0))
        for name, t in timed.items()
    ]
    rows.append(StageRow("total", busy / 1e9, busy / 1e3 / per, 1.0 if busy else 0.0, 0))
    return rows


# ---- `nudge consume`'s own timing (pure) ----------------------------------------------------

_STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ "
_IDLE_LINE = re.compile(_STAMP + r"nudge\.consume: idle for ([\d.]+)s after ([\d.]+)s: finishing")
_DONE_LINE = re.compile(_STAMP + r"nudge\.consume: done: learned=(\d+)")


def _stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def consume_busy_seconds(log_text: str) -> float:
    """The consumer's busy time from its log: its loop up to the last message (`after` minus
    `idle for`) plus the time from that line to `done` (closing the windows, the final
    checkpoint and snapshot)."""
    idle = _IDLE_LINE.search(log_text)
    done = _DONE_LINE.search(log_text)
    if idle is None or done is None:
        raise BenchError("the consumer's log has no `idle for ... after ...` and `done:` lines")
    loop_s = float(idle.group(3)) - float(idle.group(2))
    return loop_s + max(0.0, _stamp(done.group(1)) - _stamp(idle.group(1)))


# ---- VW data and synthetic events (pure) ------------------------------------------------------


def vw_example_text(event: JoinedEvent, letters: NamespaceLetters) -> str:
    """One learned event as a VW multi-line example, exactly as `OnlineLearner.learn` renders
    it (cost = -reward at the logged probability), with the blank line that ends it."""
    imp = event.impression
    lines = example_lines(
        imp.context, imp.action_ids, imp.action_features, letters,
        label=(imp.chosen_index, -event.reward, imp.probability),
    )  # fmt: skip
    return "\n".join(lines) + "\n\n"


def write_vw_data(events: Sequence[JoinedEvent], letters: NamespaceLetters, path: Path) -> int:
    """The events as a VW text data file; returns its size in bytes."""
    with path.open("w", encoding="utf-8") as out:
        for event in events:
            out.write(vw_example_text(event, letters))
    return path.stat().st_size


def synthetic_events(
    n: int, actions: int, features: int, namespaces: Sequence[str], none_action: str, seed: int
) -> list[JoinedEvent]:
    """`n` joined events of one trigger with `actions` candidates (the last is `none_action`),
    each with 2 features, and `features` context features spread over `namespaces` (every
    third categorical, the rest numeric); uniform choice, a reward of -1, 0 or 1."""
    rng = np.random.default_rng(seed)
    ids = (*(f"m{i}" for i in range(actions - 1)), none_action)
    action_features: tuple[dict[str, float | str], ...] = tuple(
        {"kind": f"k{i % 7}", "tone": ("neutral", "friendly", "urgent")[i % 3]}
        for i in range(actions)
    )
    labels = (OutcomeLabel("not_helpful"), OutcomeLabel("ignored"), OutcomeLabel("helpful"))
    out = []
    for k in range(n):
        context: dict[str, dict[str, float | str]] = {ns: {} for ns in namespaces}
        values = rng.random(features)
        for j in range(features):
            ns = namespaces[j % len(namespaces)]
            value = f"v{int(values[j] * 10)}" if j % 3 == 2 else round(float(values[j]), 4)
            context[ns][f"f{j}"] = value
        chosen = int(rng.integers(actions))
        outcome = int(rng.integers(3))
        imp = Impression(
            event_id=f"syn-{k}", ts=1.0e9 + k, trigger="T/bench/growth",
            learner_id=f"u{int(rng.integers(5000)):06d}", context=context, action_ids=ids,
            action_features=action_features, chosen_index=chosen, probability=1.0 / actions,
            policy_version="bench", pmf=(1.0 / actions,) * actions,
        )  # fmt: skip
        out.append(JoinedEvent(imp, labels[outcome], None, float(outcome - 1), False))
    return out


# ---- report (pure) ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GrowthPoint:
    """The learner alone and VW's driver on synthetic events of one shape."""

    actions: int
    features: int
    events: int
    learner_eps: float
    native_eps: float


@dataclass
class Result:
    """Every number of one run."""

    events: int
    messages: int
    expected_learned: int
    native_vw_eps: float
    learner_eps: float
    e2e_eps: float
    e2e: dict[str, Any]
    profiled: dict[str, Any]
    stages: list[StageRow]
    native: dict[str, Any]
    learner: dict[str, Any]
    growth: list[GrowthPoint] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    e2e_by_library: dict[str, dict[str, Any]] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)  # `best_of` + ref, commit, runs

    @property
    def ratio(self) -> float:
        return self.e2e_eps / self.native_vw_eps if self.native_vw_eps else 0.0

    @property
    def baseline_eps(self) -> float | None:
        """The baseline's best run (None without `--baseline`)."""
        return self.baseline["eps"] if self.baseline else None

    @property
    def speedup(self) -> float | None:
        """e2e_eps / baseline_eps, best run over best run (None without a baseline)."""
        base = self.baseline_eps
        return self.e2e_eps / base if base else None

    @property
    def speedup_median(self) -> float | None:
        """The same with each consumer's median run."""
        base = self.baseline.get("median_eps")
        return self.e2e.get("median_eps", self.e2e_eps) / base if base else None

    @property
    def fastest_library(self) -> str | None:
        """The client library whose `nudge consume` learned fastest (None with one run)."""
        if not self.e2e_by_library:
            return None
        return max(self.e2e_by_library, key=lambda lib: self.e2e_by_library[lib]["eps"])

    @property
    def ratio_fastest(self) -> float:
        """e2e_eps / native_vw_eps with the fastest client library measured."""
        fastest = self.fastest_library
        eps = self.e2e_by_library[fastest]["eps"] if fastest else self.e2e_eps
        return eps / self.native_vw_eps if self.native_vw_eps else 0.0

    def to_json(self) -> dict[str, Any]:
        """The JSON report: the headline numbers first, then each part's details."""
        return {
            "native_vw_eps": round(self.native_vw_eps, 1),
            "learner_eps": round(self.learner_eps, 1),
            "e2e_eps": round(self.e2e_eps, 1),
            "e2e_median_eps": _round(self.e2e.get("median_eps"), 1),
            "ratio": round(self.ratio, 4),
            "baseline_ref": self.baseline.get("ref"),
            "baseline_eps": _round(self.baseline_eps, 1),
            "baseline_median_eps": _round(self.baseline.get("median_eps"), 1),
            "speedup": _round(self.speedup, 4),
            "speedup_median": _round(self.speedup_median, 4),
            "fastest_library": self.fastest_library,
            "ratio_fastest": round(self.ratio_fastest, 4),
            "e2e_eps_by_library": {
                lib: round(e["eps"], 1) for lib, e in self.e2e_by_library.items()
            },
            "learner_ratio": round(self.learner_eps / self.native_vw_eps, 4)
            if self.native_vw_eps
            else 0.0,
            "peak_rss_mb": self.e2e.get("peak_rss_mb"),
            "checkpoint_bytes": self.profiled.get("checkpoint_bytes_max"),
            "stages_us_per_event": {r.stage: round(r.us_per_event, 2) for r in self.stages},
            "events": self.events,
            "messages": self.messages,
            "expected_learned": self.expected_learned,
            "e2e": self.e2e,
            "e2e_by_library": self.e2e_by_library,
            "baseline": self.baseline,
            "profiled": self.profiled,
            "stages": [asdict(r) for r in self.stages],
            "native": self.native,
            "learner": self.learner,
            "growth": [asdict(g) for g in self.growth],
            "machine": self.machine,
        }


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def e2e_schedule(consumers: Sequence[str], repeats: int) -> list[tuple[str, int]]:
    """The e2e runs in order, (consumer, repeat): round `i` runs every consumer once, in the
    order given (the baseline first), so a slow spell of the shared machine slows every
    consumer's runs alike instead of all runs of one."""
    return [(name, i) for i in range(repeats) for name in consumers]


def best_of(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One consumer's runs in one dict: the fastest run's numbers (its `eps` is the headline),
    every run's eps in run order (`runs_eps`) and their median (`median_eps`)."""
    if not runs:
        raise BenchError("no e2e run to report")
    best = max(runs, key=lambda r: r["eps"])
    eps = [r["eps"] for r in runs]
    return {**best, "runs_eps": eps, "median_eps": statistics.median(eps), "repeats": len(runs)}


def dead_letter_surprises(got: Mapping[str, int], expected: Mapping[str, int]) -> list[str]:
    """Each reason whose count differs from what the simulator says a correct consumer ends
    with (e.g. outcomes dropped as `join_state_full` while catching up), as `reason N (M)`."""
    return [
        f"{reason} {got.get(reason, 0):,} (expected {expected.get(reason, 0):,})"
        for reason in sorted(set(got) | set(expected))
        if got.get(reason, 0) != expected.get(reason, 0)
    ]


def _mb(n: float | None) -> str:
    return "?" if n is None else f"{n / 1e6:,.1f} MB"


def _runs(e2e: Mapping[str, Any], eps: float) -> str:
    """`best of N, median M` of a `best_of` dict whose best run learned `eps` (one run: M = it)."""
    return f"best of {e2e.get('repeats', 1)}, median {e2e.get('median_eps', eps):,.0f}"


def baseline_rows(r: Result) -> list[str]:
    """The baseline's rows (none without one): its best run, the speed-up, what it learned and
    dead-lettered (reported, not checked: an older consumer may rightly drop outcomes as
    `join_state_full` where this one keeps them)."""
    b = r.baseline
    if not b:
        return []
    crc = "native crc32c" if b.get("native_crc") else "crc32c hidden"
    letters = b.get("dead_letters_by_reason", {})
    reasons = ", ".join(f"{reason} {n:,}" for reason, n in sorted(letters.items()))
    return [
        f"| baseline_eps (`nudge consume` of {b['ref']} ({b.get('commit', '?')}), {crc}, "
        f"{b['learned']:,} learned in {b['seconds']:.1f} s; {_runs(b, b['eps'])}) | {b['eps']:,.0f} |",
        f"| speedup = e2e_eps / baseline_eps: best / best; median / median | "
        f"{r.speedup or 0:.2f}×; {r.speedup_median or 0:.2f}× |",
        f"| baseline's best run: learned (the simulator expects); dead letters | "
        f"{b['learned']:,} ({r.expected_learned:,}); {sum(letters.values()):,}"
        f"{f' ({reasons})' if reasons else ''} |",
    ]


def table(result: Result) -> str:
    """The markdown tables: headline numbers, stages per learned event, growth."""
    r = result
    e2e, prof = r.e2e, r.profiled
    got = e2e.get("dead_letters_by_reason", {})
    want = e2e.get("expected_dead_letters_by_reason", {})
    surprises = "".join(f"; {line}" for line in dead_letter_surprises(got, want))
    native = r.native_vw_eps or 1.0
    lines = [
        "| measure | value |",
        "|---|---:|",
        f"| native_vw_eps (VW's driver, {r.native['examples']:,} examples from a file; best of "
        f"{r.native.get('repeats', 1)}, median {r.native.get('median_eps', 0):,.0f}) | {r.native_vw_eps:,.0f} |",
        f"| VW's extension on the same text, one thread (`pylibvw` parse + `learn_multi`) | "
        f"{r.native.get('extension_eps', 0):,.0f} |",
        f"| learner_eps (`OnlineLearner.learn`, same events, {r.learner.get('how', 'in process')}) | "
        f"{r.learner_eps:,.0f} ({r.learner_eps / native:.2f}× native) |",
        *[
            f"| ... the learner {other['how']} | {other['eps']:,.0f} ({other['eps'] / native:.2f}× native) |"
            for other in r.learner.get("others", [])
        ],
        f"| e2e_eps (`nudge consume`, {e2e.get('library', 'kafka-python')}, {e2e['learned']:,} learned "
        f"in {e2e['seconds']:.1f} s; {_runs(e2e, r.e2e_eps)}) | {r.e2e_eps:,.0f} |",
        f"| ratio = e2e_eps / native_vw_eps | {r.ratio:.3f} |",
        *[
            f"| e2e_eps with {lib} ({e['learned']:,} learned in {e['seconds']:.1f} s; {_runs(e, e['eps'])}); "
            f"ratio | {e['eps']:,.0f}; {e['eps'] / native:.3f} |"
            for lib, e in r.e2e_by_library.items()
            if e is not e2e
        ],
        *baseline_rows(r),
        f"| peak RSS of `nudge consume` (VmHWM) | {e2e.get('peak_rss_mb') or 0:,.0f} MB |",
        f"| checkpoint bytes: largest / final (of {prof['checkpoints']} in the timed run) | "
        f"{_mb(prof.get('checkpoint_bytes_max'))} / {_mb(prof.get('checkpoint_bytes_last'))} |",
        f"| most outcomes waiting / impressions pending at a checkpoint | "
        f"{prof.get('peak_waiting', 0):,} / {prof.get('peak_pending', 0):,} |",
        f"| dead letters of `nudge consume` (the simulator expects) | "
        f"{sum(got.values()):,} ({sum(want.values()):,}){surprises} |",
        "",
        f"Stages of the timed in-process run ({prof['learned']:,} learned, {prof['consumed']:,} "
        f"messages, {prof['seconds']:.1f} s busy, {prof['eps']:,.0f} learned/s with the timers; "
        f"idle polls {prof['idle_s']:.1f} s left out):",
        "",
        "| stage | s | µs per learned event | share | timed calls |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in r.stages:
        calls = f"{row.calls:,}" if row.calls else ""
        lines.append(
            f"| {row.stage} | {row.seconds:.2f} | {row.us_per_event:,.1f} | {row.share:.1%} | {calls} |"
        )
    if r.growth:
        lines += [
            "",
            "Growth, the learner alone against VW's driver (synthetic events, 2 features per action):",
            "",
            "| actions | context features | events | learner eps | native VW eps | learner / native |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for g in r.growth:
            share = g.learner_eps / g.native_eps if g.native_eps else 0.0
            lines.append(
                f"| {g.actions} | {g.features} | {g.events:,} | {g.learner_eps:,.0f} | "
                f"{g.native_eps:,.0f} | {share:.2f} |"
            )
    return "\n".join(lines)


def growth_svg(points: Sequence[GrowthPoint]) -> str:
    """Two panels (events/s against actions, against context features), log y, a line each for
    the learner and VW's driver."""
    w, h, pad, gap = 760, 380, 64, 40
    panel_w = (w - 2 * pad - gap) / 2
    by_actions = [p for p in points if p.features == FIXED_FEATURES]
    by_features = [p for p in points if p.actions == FIXED_ACTIONS]
    values = [v for p in points for v in (p.learner_eps, p.native_eps) if v > 0]
    low = 10 ** math.floor(math.log10(min(values))) if values else 1.0
    high = 10 ** math.ceil(math.log10(max(values))) if values else 10.0
    high = max(high, low * 10)

    def y_of(v: float) -> float:
        frac = (math.log10(max(v, low)) - math.log10(low)) / (math.log10(high) - math.log10(low))
        return h - pad - (h - 2 * pad) * frac

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{w / 2}" y="22" text-anchor="middle" font-size="15">'
        "events/s: the learner alone and VW's driver, by actions and by context features</text>",
    ]
    panels = (
        (by_actions, lambda p: p.actions, f"actions ({FIXED_FEATURES} context features)"),
        (by_features, lambda p: p.features, f"context features ({FIXED_ACTIONS} actions)"),
    )  # fmt: skip
    for k, (pts, x_value, label) in enumerate(panels):
        left = pad + k * (panel_w + gap)
        parts.append(
            f'<line x1="{left}" y1="{h - pad}" x2="{left + panel_w}" y2="{h - pad}" stroke="black"/>'
        )
        parts.append(f'<line x1="{left}" y1="{pad}" x2="{left}" y2="{h - pad}" stroke="black"/>')
        decade = low
        while decade <= high * 1.0001:
            y = y_of(decade)
            parts.append(
                f'<line x1="{left}" y1="{y:.1f}" x2="{left + panel_w}" y2="{y:.1f}" stroke="#eee"/>'
            )
            parts.append(
                f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{decade:,.0f}</text>'
            )
            decade *= 10
        n = len(pts)

        def x_of(i: int, left: float = left, n: int = n) -> float:
            return left + panel_w * (i + 0.5) / max(n, 1)

        for i, p in enumerate(pts):
            parts.append(
                f'<text x="{x_of(i):.1f}" y="{h - pad + 15}" text-anchor="middle" font-size="11">{x_value(p)}</text>'
            )
        parts.append(
            f'<text x="{left + panel_w / 2}" y="{h - pad + 34}" text-anchor="middle" '
            f'font-size="12">{escape(label)}</text>'
        )
        for name, colour, get in (
            ("VW driver", "#7f7f7f", lambda p: p.native_eps),
            ("learner", "#1f77b4", lambda p: p.learner_eps),
        ):
            coords = " ".join(f"{x_of(i):.1f},{y_of(get(p)):.1f}" for i, p in enumerate(pts))
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>'
            )
            for i, p in enumerate(pts):
                parts.append(
                    f'<circle cx="{x_of(i):.1f}" cy="{y_of(get(p)):.1f}" r="3" fill="{colour}"/>'
                )
            if k == 1:
                ly = pad + (14 if name == "learner" else 0)
                parts.append(
                    f'<line x1="{w - pad - 110}" y1="{ly}" x2="{w - pad - 90}" y2="{ly}" '
                    f'stroke="{colour}" stroke-width="2"/>'
                )
                parts.append(
                    f'<text x="{w - pad - 84}" y="{ly + 4}" font-size="12">{escape(name)}</text>'
                )
    parts.append("</svg>")
    return "\n".join(parts)


# ---- the deployment -------------------------------------------------------------------------


def write_config(
    base: Path,
    workdir: Path,
    run: str,
    name: str,
    bootstrap: str | None,
    library: str | None = None,
) -> Path:
    """`base` with the run's topics, a group and directories of this consumer's own (and the
    record client library, when given)."""
    data = yaml.safe_load(base.read_text())
    if library is not None:
        data["kafka"]["client_library"] = library
    data["kafka"].update(
        impressions_topic=f"{run}.impressions", outcomes_topic=f"{run}.outcomes",
        dead_letter_topic=f"{run}.dead-letters", group_id=f"{run}-{name}",
    )  # fmt: skip
    if bootstrap:
        data["kafka"]["bootstrap_servers"] = bootstrap
    data["checkpoint"]["directory"] = str(workdir / name / "checkpoints")
    data["snapshots"]["directory"] = str(workdir / name / "snapshots")
    data.setdefault("serve", {})["spool_directory"] = str(workdir / name / "spool")
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")}


def _nudge(
    config: Path, log: Path, *args: str, env: Mapping[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    with log.open("w") as err:
        done = subprocess.run(
            [sys.executable, "-m", "nudge.cli", *args, "--config", str(config)],
            cwd=cwd, stdout=subprocess.PIPE, stderr=err, text=True, env={**_env(), **(env or {})},
            check=False,
        )  # fmt: skip
    if done.returncode != 0:
        tail = log.read_text()[-1500:].strip()
        raise BenchError(f"nudge {args[0]} exited {done.returncode} (log {log}): {tail}")
    return done


def simulate(config: Path, workdir: Path, events: int, seed: int) -> dict[str, Any]:
    """Fill the topics: `nudge simulate`; its summary (messages, the expected learned count)."""
    done = _nudge(
        config, workdir / "simulate.log", "simulate", "--events", str(events), "--seed", str(seed)
    )
    summary: dict[str, Any] = orjson.loads(done.stdout)
    return summary


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _current_checkpoint_bytes(directory: Path) -> int | None:
    current = directory / "CURRENT"
    if not current.exists() or not current.read_text().strip():
        return None
    return _dir_bytes(directory / current.read_text().strip())


def _pythonpath(hider: Path | None, source: Path | None) -> dict[str, str]:
    """The environment that puts the crc32c hider, then a source tree, first on the path."""
    paths = [str(p) for p in (hider, source) if p is not None]
    return {"PYTHONPATH": os.pathsep.join(paths)} if paths else {}


def run_e2e(
    config: Path, workdir: Path, idle_s: float, native_crc: bool, source: Path | None = None
) -> dict[str, Any]:
    """`nudge consume --until-idle` as a process: learned/s over its busy time, its peak RSS,
    the final checkpoint's bytes. `source`: the consumer of that tree (run from it, first on
    PYTHONPATH, so its packages shadow the installed ones); None: this repository's."""
    workdir.mkdir(parents=True, exist_ok=True)
    stats_path = workdir / "e2e-stats.json"
    log = workdir / "e2e-consume.log"
    env = _pythonpath(None if native_crc else _crc32c_hider(workdir), source)
    started = time.monotonic()
    _nudge(
        config, log, "consume", "--until-idle", str(idle_s), "--stats-json", str(stats_path),
        env=env, cwd=source or ROOT,
    )  # fmt: skip
    process_s = time.monotonic() - started
    stats = orjson.loads(stats_path.read_bytes())
    seconds = consume_busy_seconds(log.read_text())
    # read as YAML, not `load_config`: a baseline's config need not be valid for this code
    checkpoints = Path(yaml.safe_load(config.read_text())["checkpoint"]["directory"])
    return {
        "seconds": round(seconds, 3),
        "process_seconds": round(process_s, 2),
        "learned": stats["learned"],
        "consumed": stats["consumed"],
        "dead_lettered": stats["dead_lettered"],
        "dead_letters_by_reason": {k: v for k, v in stats["dead_letters_by_reason"].items() if v},
        "defaulted": stats["defaulted"],
        "checkpoints": stats["checkpoints"],
        "snapshots": stats["snapshots"],
        "peak_rss_mb": stats.get("max_rss_mb"),
        "checkpoint_bytes_final": _current_checkpoint_bytes(checkpoints),
        "eps": stats["learned"] / seconds if seconds else 0.0,
    }


BASELINE_SRC = "baseline-src"
BASELINE = "baseline"  # the baseline's name among the e2e consumers
_PROBE = "import bandit, nudge.cli, streams.consumer as m; print(m.__file__)"


def extract_baseline(ref: str, dest: Path) -> str:
    """The tree of commit `ref` in `dest` (`git archive | tar -x`: the repository's git state
    is untouched); returns the commit's short hash. Checks that a process run with `dest`
    first on PYTHONPATH imports the consumer from there, not the installed one."""
    git = ["git", "-C", str(ROOT)]
    found = subprocess.run(
        [*git, "rev-parse", "--verify", "--short", f"{ref}^{{commit}}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if found.returncode != 0:
        raise BenchError(f"--baseline {ref}: no such commit in {ROOT}")
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run([*git, "archive", ref], capture_output=True, check=False)
    if archive.returncode != 0:
        why = archive.stderr.decode(errors="replace").strip().splitlines()
        raise BenchError(f"--baseline {ref}: git archive failed: {why[0] if why else '?'}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=dest, env={**_env(), **_pythonpath(None, dest)},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    imported = Path(probe.stdout.strip() or "?").resolve()
    if probe.returncode != 0 or not imported.is_relative_to(dest.resolve()):
        raise BenchError(
            f"--baseline {ref}: its tree in {dest} does not shadow the installed packages "
            f"(streams.consumer from {imported}): {probe.stderr.strip()[-500:]}"
        )
    return found.stdout.strip()


@dataclass(frozen=True, slots=True)
class E2EConsumer:
    """One consumer of the e2e rounds: `nudge consume` of this repository with a record client
    library, or of the baseline's tree (`source`) with its own config template."""

    prefix: str  # its runs' group and directories: `<prefix>-<repeat>`
    base_config: Path
    library: str | None  # None: the config's own
    native_crc: bool
    source: Path | None = None  # None: this repository, as installed

    def run(
        self, workdir: Path, run: str, repeat: int, bootstrap: str | None, idle_s: float
    ) -> dict[str, Any]:
        """One run on a fresh group, checkpoints, snapshots and spool of its own."""
        name = f"{self.prefix}-{repeat}"
        config = write_config(self.base_config, workdir, run, name, bootstrap, self.library)
        return run_e2e(config, workdir / name, idle_s, self.native_crc, self.source)


def scratch_directories(workdir: Path) -> list[Path]:
    """What a run leaves that `--keep` keeps: every consumer's checkpoints, snapshots and
    spool (the timed run's, each e2e and baseline run's) and the baseline's source tree."""
    consumers = (p for pattern in ("e2e-*", f"{BASELINE}-*") for p in workdir.glob(pattern))
    runs = [
        workdir / "timed",
        *sorted(d for d in consumers if d.is_dir() and d.name != BASELINE_SRC),
    ]
    scratch = [d / sub for d in runs for sub in ("checkpoints", "snapshots", "spool")]
    return [*scratch, workdir / BASELINE_SRC]


def _crc32c_hider(workdir: Path) -> Path:
    """A directory whose `crc32c` module fails to import: first on PYTHONPATH, kafka-python
    then checks CRCs in pure Python, as it did before `crc32c` was a dependency."""
    hider = workdir / "no-native-crc"
    hider.mkdir(exist_ok=True)
    (hider / "crc32c.py").write_text('raise ImportError("hidden by nudge bench --no-native-crc")\n')
    return hider


def hide_native_crc() -> None:
    """In this process: `import crc32c` fails, so kafka-python checks CRCs in pure Python.
    Must come before kafka-python is imported."""
    if "kafka.record.util" in sys.modules:
        raise BenchError("--no-native-crc: kafka-python is already imported in this process")
    sys.modules["crc32c"] = None  # type: ignore[assignment]  # Python's "not importable" mark


def kafka_native_crc() -> bool:
    """Whether kafka-python, as imported here, checks record CRCs with the native `crc32c`."""
    from kafka.record import util  # the benchmark asks kafka-python itself

    return util.crc32c_c is not None


# ---- the timed in-process run -----------------------------------------------------------------


@dataclass
class Recorder:
    """What the timed run saw: the events it learned, checkpoint sizes, join state peaks."""

    learned: list[bytes] = field(default_factory=list)  # JSON: no objects for the GC to walk
    checkpoint_bytes: list[int] = field(default_factory=list)
    peak_waiting: int = 0
    peak_pending: int = 0


def _stage_map() -> list[tuple[Any, str, str]]:
    """(owner, attribute, stage) of every timed function; owners are classes or modules, so
    the consumer needs no change (a renamed one fails loudly: update this map)."""
    import streams.consumer as consumer_module
    from bandit.join import RewardJoin
    from bandit.learning import OnlineLearner
    from bandit.live_value import LiveValue
    from bandit.watermarks import EventTimeGuard, WatermarkTracker
    from streams.checkpoints import CheckpointStore
    from streams.consumer import StreamLearner
    from streams.kafka_io import MessageSource, Producer
    from streams.stats import ConsumerStats

    sources: list[Any] = [MessageSource]
    with contextlib.suppress(ImportError):  # the optional extra
        from streams.confluent_io import ConfluentSource

        sources.append(ConfluentSource)
    fetch = [
        (source, name, stage)
        for source in sources
        for name, stage in (("poll", "fetch"), ("lag_by_partition", "fetch"),
                            ("pause_only", "fetch"), ("assign", "start/stop"),
                            ("close", "start/stop"))
    ]  # fmt: skip
    return [
        *fetch,
        (consumer_module, "decode_message", "decode"),
        (StreamLearner, "_decode_saved", "decode"),  # the join's saved impressions, re-read
        (StreamLearner, "_admit", "join"),  # event-time guard, watermarks, join.add
        (StreamLearner, "_pass_on", "join"),
        (StreamLearner, "_settle", "join"),  # join.drain, then the learner (timed inside)
        (RewardJoin, "advance", "join"),
        (RewardJoin, "close_all", "join"),
        (EventTimeGuard, "close", "join"),
        (WatermarkTracker, "current", "join"),
        (OnlineLearner, "_render_event", "render"),  # its example and outcome-model line
        (OnlineLearner, "learn", "learn"),  # VW, catalogue, arms, pruning, reactions
        (ConsumerStats, "record_learned", "learn"),
        (LiveValue, "add", "learn"),
        (StreamLearner, "checkpoint", "checkpoint"),  # state, save, dead-letter flush, commit
        (CheckpointStore, "save", "checkpoint"),
        (StreamLearner, "_publish", "snapshot"),
        (StreamLearner, "_dead_letter", "dead_letter"),
        (Producer, "close", "start/stop"),
        (OnlineLearner, "close", "start/stop"),
        (CheckpointStore, "close", "start/stop"),
    ]


def _original(owner: Any, name: str) -> Any:
    if name not in vars(owner):
        raise BenchError(f"{getattr(owner, '__name__', owner)}.{name} is gone: update _stage_map")
    return vars(owner)[name]


def _patch(stack: contextlib.ExitStack, owner: Any, name: str, new: Any) -> None:
    original = _original(owner, name)
    setattr(owner, name, new)
    stack.callback(setattr, owner, name, original)


def joined_json(event: JoinedEvent) -> bytes:
    """A learned event as JSON bytes, to keep 100,000 of them without slowing the timed run."""
    return orjson.dumps(event)


def joined_from_json(raw: bytes) -> JoinedEvent:
    """The event `joined_json` wrote, equal to the original."""
    d = orjson.loads(raw)
    imp = d["impression"]
    pmf = imp["pmf"]
    impression = Impression(
        **{**imp, "action_ids": tuple(imp["action_ids"]),
           "action_features": tuple(imp["action_features"]),
           "pmf": None if pmf is None else tuple(pmf)},
    )  # fmt: skip
    return JoinedEvent(
        impression, OutcomeLabel(d["label"]), d["value"], d["reward"], d["defaulted"],
        d["closed_early"],
    )  # fmt: skip


def _recording(
    fn: Callable[..., Any], recorder: Recorder, what: str, clock: StageClock
) -> Callable[..., Any]:
    """`fn` that also notes what the timed run needs (learned events, checkpoint sizes, the
    join state at each checkpoint), on the `bench` clock, not the stage's."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        clock.enter(BENCH)
        try:
            if what == "learn":
                recorder.learned.append(joined_json(args[1]))
            elif what == "save":
                recorder.checkpoint_bytes.append(_dir_bytes(Path(result)))
            elif what == "checkpoint":
                stream = args[0]
                recorder.peak_waiting = max(recorder.peak_waiting, stream.join.waiting)
                recorder.peak_pending = max(recorder.peak_pending, stream.join.pending)
        finally:
            clock.leave()
        return result

    return wrapper


@contextlib.contextmanager
def instrumented(clock: StageClock, recorder: Recorder) -> Iterator[None]:
    """Every stage of `_stage_map` timed (class and module attributes, restored on exit)."""
    records = {("learn", "OnlineLearner"), ("save", "CheckpointStore"), ("checkpoint", "StreamLearner")}  # fmt: skip
    with contextlib.ExitStack() as stack:
        for owner, name, stage in _stage_map():
            fn = clock.timed(stage, _original(owner, name), idle_when_empty=name == "poll")
            if (name, getattr(owner, "__name__", "")) in records:
                fn = _recording(fn, recorder, name, clock)
            _patch(stack, owner, name, fn)
        yield


def timer_cost_ns(n: int = 20_000) -> float:
    """What one timed call adds (enter, leave, the wrapper), in ns: the timers' own share."""
    clock = StageClock()
    noop = clock.timed("x", lambda: None)
    clock.start()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        noop()
    with_timer = time.perf_counter_ns() - t0

    def bare() -> None:
        return None

    t0 = time.perf_counter_ns()
    for _ in range(n):
        bare()
    return max(0.0, (with_timer - (time.perf_counter_ns() - t0)) / n)


def run_profiled(config: Path, idle_s: float) -> tuple[dict[str, Any], list[StageRow], Recorder]:
    """`StreamLearner` in this process on the same topics, every stage timed."""
    from streams.allocator import pin_mmap_threshold
    from streams.consumer import RunOptions, StreamLearner
    from streams.kafka_io import SNAPSHOT_MESSAGE_BYTES, Producer
    from streams.sources import record_source_type

    cfg = load_config(config, environ={})
    pin_mmap_threshold()  # as `nudge consume`
    clock = StageClock()
    recorder = Recorder()
    k = cfg.kafka
    with instrumented(clock, recorder):
        sink = None
        if cfg.snapshots.kafka_topic is not None:
            sink = Producer(k, max_request_size=SNAPSHOT_MESSAGE_BYTES)
        stream = StreamLearner(
            cfg, record_source_type(k)(k, [k.impressions_topic, k.outcomes_topic]), Producer(k),
            snapshot_sink=sink,
        )  # fmt: skip
        from streams.collector import quiet_collector

        quiet_collector()  # as `nudge consume`
        clock.start()
        stream.run(RunOptions(until_idle_s=idle_s))
        clock.stop()
    summary = stream.summary()
    rows = stage_rows(clock.ns, clock.calls, clock.wall_ns, summary["learned"])
    busy_s = rows[-1].seconds
    cost = timer_cost_ns()
    timed_calls = sum(clock.calls.values())
    return (
        {
            "method": "StageClock: a timer around each stage function (class and module "
            "attributes patched in this process), exclusive time; empty polls are idle",
            "seconds": round(busy_s, 3),
            "idle_s": round(clock.ns.get(IDLE, 0) / 1e9, 3),
            "bench_s": round(clock.ns.get(BENCH, 0) / 1e9, 3),
            "learned": summary["learned"],
            "consumed": summary["consumed"],
            "eps": summary["learned"] / busy_s if busy_s else 0.0,
            "checkpoints": len(recorder.checkpoint_bytes),
            "checkpoint_bytes_max": max(recorder.checkpoint_bytes, default=None),
            "checkpoint_bytes_last": recorder.checkpoint_bytes[-1]
            if recorder.checkpoint_bytes
            else None,
            "peak_waiting": recorder.peak_waiting,
            "peak_pending": recorder.peak_pending,
            "timed_calls": timed_calls,
            "timer_cost_ns_per_call": round(cost, 1),
            "timer_overhead_s": round(timed_calls * cost / 1e9, 3),
        },
        rows,
        recorder,
    )


# ---- the learner and VW's driver -----------------------------------------------------------


def _policy_loss(learner: Any) -> float | None:
    """Average progressive loss of the learner's one policy (VW's own counter), to show it
    learned what VW's driver learned; None with several policies."""
    policies = list(learner._policies.values())  # the bench looks inside on purpose
    if len(policies) != 1:
        return None
    ws = policies[0]._workspace()
    weighted = ws.get_weighted_examples()
    return float(ws.get_sum_loss() / weighted) if weighted else None


def learner_speed(
    cfg: Config, events: Sequence[JoinedEvent], separate_process: bool = False
) -> dict[str, Any]:
    """A fresh `OnlineLearner` (the consumer's settings) learning `events`: VW in this process,
    or in its worker process (`separate_process`, started and ready before the clock starts).
    Timed up to the models being saved (`models()`): the worker has then learned everything."""
    from bandit.learning import OnlineLearner
    from streams.consumer import reaction_cap

    learner = OnlineLearner(
        cfg.learner, none_action=cfg.rewards.none_action, reaction_cap=reaction_cap(cfg),
        pruning=cfg.pruning, separate_process=separate_process,
    )  # fmt: skip
    try:
        if learner._worker is not None:  # the bench looks inside on purpose: the child is up
            learner._worker.ping()
        started = time.perf_counter()
        for event in events:
            learner.learn(event)
        list(learner.models())
        seconds = time.perf_counter() - started
        loss = None if separate_process else _policy_loss(learner)
    finally:
        learner.close()
    return {
        "how": "VW in a worker process" if separate_process else "VW in process",
        "seconds": round(seconds, 3),
        "events": len(events),
        "eps": len(events) / seconds if seconds else 0.0,
        "average_loss": loss,
    }


def native_speed(arguments: str, data: Path, examples: int, repeats: int) -> dict[str, Any]:
    """VW's driver on a data file: `Workspace(arguments -d FILE)` (C++ parsing and learning)
    then `finish()`, minus the same without data; the best of `repeats` (its time varies up to
    2x between repeats on 2 cores, its parse thread and learner competing with anything else
    running; the median is reported too)."""
    from vowpalwabbit import Workspace

    args = arguments.split()

    def once(with_data: bool) -> tuple[float, float | None]:
        started = time.perf_counter()
        ws = Workspace(arg_list=[*args, "-d", str(data)] if with_data else args)
        weighted = ws.get_weighted_examples()
        loss = float(ws.get_sum_loss() / weighted) if weighted else None
        ws.finish()
        return time.perf_counter() - started, loss

    setup = min(once(False)[0] for _ in range(repeats))
    runs = [once(True) for _ in range(repeats)]
    seconds = max(1e-9, statistics.median(t for t, _ in runs) - setup)
    best = max(1e-9, min(t for t, _ in runs) - setup)
    return {
        "seconds": round(best, 4),
        "median_seconds": round(seconds, 4),
        "setup_s": round(setup, 4),
        "examples": examples,
        "eps": examples / best,
        "median_eps": examples / seconds,
        "average_loss": runs[0][1],
        "repeats": repeats,
        "data_bytes": data.stat().st_size,
        "arguments": arguments,
    }


def extension_speed(arguments: str, data: Path) -> dict[str, Any]:
    """VW's Python extension on the same examples in one thread, their text already in memory:
    `pylibvw` parse, `learn_multi`, finish (what the decider uses to predict). VW's driver
    parses on a thread of its own (VW 9 has no `--onethread`); this is the one-thread floor."""
    import pylibvw
    from vowpalwabbit import Workspace

    texts = [t for t in data.read_text(encoding="utf-8").split("\n\n") if t.strip()]
    ws = Workspace(arguments)
    try:
        started = time.perf_counter()
        for text in texts:
            examples = pylibvw.vw._parse(ws, text)
            pylibvw.vw.learn_multi(ws, examples)
            pylibvw.vw._finish_example_multi_ex(ws, examples)
        seconds = time.perf_counter() - started
        weighted = ws.get_weighted_examples()
        loss = float(ws.get_sum_loss() / weighted) if weighted else None
    finally:
        ws.finish()
    return {"seconds": round(seconds, 4), "eps": len(texts) / seconds, "average_loss": loss}


def growth(cfg: Config, workdir: Path, n: int, repeats: int, seed: int) -> list[GrowthPoint]:
    """The learner and VW's driver on synthetic events of each shape."""
    from bandit.learning import OnlineLearner

    letters = OnlineLearner(cfg.learner).letters
    namespaces = list(cfg.learner.namespaces)
    shapes = [(a, FIXED_FEATURES) for a in GROWTH_ACTIONS]
    shapes += [(FIXED_ACTIONS, f) for f in GROWTH_FEATURES]  # (5, 10) is in both: run once
    points = []
    for actions, features in dict.fromkeys(shapes):
        events = synthetic_events(n, actions, features, namespaces, cfg.rewards.none_action, seed)
        learned = learner_speed(cfg, events)
        data = workdir / f"growth-{actions}x{features}.vw"
        write_vw_data(events, letters, data)
        native = native_speed(cfg.learner.vw_arguments(), data, n, repeats)
        data.unlink()
        points.append(GrowthPoint(actions, features, n, learned["eps"], native["eps"]))
        print(
            f"  growth {actions:>2} actions {features:>3} features: learner {learned['eps']:,.0f}/s,"
            f" VW driver {native['eps']:,.0f}/s",
            file=sys.stderr, flush=True,
        )  # fmt: skip
    return points


def machine() -> dict[str, Any]:
    """What the numbers depend on: cores, load, versions, whether kafka-python has a native CRC."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
        check=False,
    ).stdout.strip()  # fmt: skip
    return {
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "vowpalwabbit": ver("vowpalwabbit"),
        "kafka-python": ver("kafka-python"),
        "crc32c": ver("crc32c"),  # installed
        "crc32c_native": kafka_native_crc(),  # used by kafka-python in the consumers
        "git_head": head or None,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ---- main -------------------------------------------------------------------------------------


def add_deployment_arguments(p: argparse.ArgumentParser, events: int, quick: int) -> None:
    """The options of a benchmark deployment: traffic, config, broker, the consumer's idleness."""
    p.add_argument("--events", type=int, default=events,
                   help=f"simulated impressions (default: %(default)s; {quick} for a quick run)")  # fmt: skip
    p.add_argument("--seed", type=int, default=7, help="traffic seed (default: %(default)s)")
    p.add_argument("--config", type=Path, default=ROOT / "config.yaml",
                   help="the config the deployment starts from (default: the repository's)")  # fmt: skip
    p.add_argument("--bootstrap", help="broker (default: the config's kafka.bootstrap_servers)")
    p.add_argument("--idle-s", type=float, default=3.0,
                   help="the consumer's --until-idle (default: %(default)s)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nudge bench",
        description="The consumer against Vowpal Wabbit's own driver on the same examples: "
        "native_vw_eps, learner_eps, e2e_eps, their ratio, µs per learned event by stage, "
        "peak RSS, checkpoint bytes, and the learner's growth with actions and features. "
        "Needs the broker (`scripts/kafka start`); not part of CI.",
    )
    add_deployment_arguments(p, events=100_000, quick=5000)
    p.add_argument("--repeats", type=int, default=5,
                   help="runs of VW's driver per data file; the best counts (default: %(default)s)")  # fmt: skip
    p.add_argument("--growth-events", type=int, default=10_000,
                   help="synthetic events per growth point, at most --events; 0: no growth "
                   "(default: %(default)s)")  # fmt: skip
    p.add_argument("--no-native-crc", action="store_true",
                   help="the consumers check record CRCs in pure Python, as before `crc32c` was a "
                   "dependency (hides the `crc32c` module from kafka-python)")  # fmt: skip
    p.add_argument("--client-library", nargs="+", choices=LIBRARIES, default=installed_libraries(),
                   help="run `nudge consume` with each of these record clients; the first is the "
                   "headline e2e_eps, the timed run uses the last (default: every one installed: "
                   "%(default)s)")  # fmt: skip
    p.add_argument("--e2e-repeats", type=_positive, default=3, metavar="N",
                   help="runs of each `nudge consume` (each client library, the baseline) on the "
                   "same topics, interleaved round-robin, each with a fresh group and directories; "
                   "the best run is the headline, the median is shown too (default: %(default)s)")  # fmt: skip
    p.add_argument("--baseline", metavar="REF",
                   help="also run `nudge consume` of this git commit in every round (its tree from "
                   "`git archive` in <workdir>/baseline-src, its own config.yaml, this venv) and "
                   "report speedup = e2e_eps / baseline_eps, e.g. 9c4d1c6 for issue 13 "
                   "(default: none)")  # fmt: skip
    p.add_argument("--baseline-native-crc", action="store_true",
                   help="let the baseline use the native `crc32c` (default: hidden from it, as "
                   "9c4d1c6 was installed without it)")  # fmt: skip
    p.add_argument("--json", type=Path, metavar="PATH",
                   help="also write every number here (default: only <workdir>/bench.json)")  # fmt: skip
    p.add_argument("--svg", type=Path, metavar="PATH",
                   help="the growth plot (default: <workdir>/growth.svg)")  # fmt: skip
    p.add_argument("--workdir", type=Path, help="default: a new directory under .nudge/")
    p.add_argument("--keep", action="store_true",
                   help="keep the VW data file, checkpoints, snapshots, spools and the baseline's "
                   "tree in the workdir (default: removed; logs and configs are always kept)")  # fmt: skip
    return p


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


LIBRARIES = ("kafka-python", "confluent-kafka")


def installed_libraries() -> list[str]:
    """kafka-python, and confluent-kafka when its extra is installed."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return ["kafka-python"]
    return list(LIBRARIES)


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def bench(args: argparse.Namespace, workdir: Path) -> Result:
    """Fill the topics, consume them in processes (every consumer and the baseline, round-robin,
    `--e2e-repeats` times) and once timed in this one, then VW's driver and the learner on what
    was learned, then the growth."""
    run = f"bench-{uuid.uuid4().hex[:8]}"
    libraries = list(dict.fromkeys(args.client_library))
    consumers = {
        lib: E2EConsumer(f"e2e-{lib}", args.config, lib, native_crc=not args.no_native_crc)
        for lib in libraries
    }
    baseline: dict[str, Any] = {}
    if args.baseline:  # first: an unknown ref fails before anything runs
        source = workdir / BASELINE_SRC
        commit = extract_baseline(args.baseline, source)
        baseline = {"ref": args.baseline, "commit": commit, "native_crc": args.baseline_native_crc}
        say(f"baseline {args.baseline} ({commit}) extracted into {source}")
        consumers = {
            BASELINE: E2EConsumer(
                BASELINE, source / "config.yaml", None, args.baseline_native_crc, source
            ),
            **consumers,
        }  # fmt: skip
    timed_config = write_config(args.config, workdir, run, "timed", args.bootstrap, libraries[-1])
    cfg = load_config(timed_config, environ={})
    bootstrap = args.bootstrap or cfg.kafka.bootstrap_servers  # the baseline's config has its own
    say(f"simulating {args.events:,} events into {run}.* on {bootstrap}")
    sim = simulate(timed_config, workdir, args.events, args.seed)
    expected = int(sim["expected"]["learned"])
    say(
        f"{sim['messages']:,} messages; nudge consume --until-idle {args.idle_s}, "
        f"{args.e2e_repeats} round(s) of {', '.join(consumers)} ..."
    )
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in consumers}
    for name, i in e2e_schedule(list(consumers), args.e2e_repeats):
        one = consumers[name].run(workdir, run, i, bootstrap, args.idle_s)
        if name != BASELINE:
            one["library"] = name
        runs[name].append(one)
        say(
            f"e2e {name} {i + 1}/{args.e2e_repeats}: {one['learned']:,} learned in "
            f"{one['seconds']:.1f} s = {one['eps']:,.0f}/s"
        )
        if name != BASELINE and one["learned"] != expected:
            say(
                f"WARNING: nudge consume learned {one['learned']:,}, the simulator expects {expected:,}"
            )
    by_library = {lib: best_of(runs[lib]) for lib in libraries}
    e2e = by_library[libraries[0]]
    if baseline:
        baseline = {**baseline, **best_of(runs[BASELINE]), "runs": runs[BASELINE]}
    say("the same topics through StreamLearner in this process, every stage timed ...")
    profiled, rows, recorder = run_profiled(timed_config, args.idle_s)
    say(f"timed: {profiled['learned']:,} learned in {profiled['seconds']:.1f} s busy")
    if profiled["learned"] != expected:
        say(
            f"WARNING: the timed run learned {profiled['learned']:,}, the simulator expects {expected:,}"
        )
    want = e2e["expected_dead_letters_by_reason"] = sim["expected"]["dead_letters_by_reason"]
    for line in dead_letter_surprises(e2e["dead_letters_by_reason"], want):
        say(f"WARNING: nudge consume dead-lettered {line}")
    from bandit.learning import OnlineLearner

    letters = OnlineLearner(cfg.learner).letters
    data = workdir / "learned.vw"
    learned = [joined_from_json(raw) for raw in recorder.learned]
    recorder.learned.clear()
    write_vw_data(learned, letters, data)
    say(f"VW's driver on {len(learned):,} examples ({_mb(data.stat().st_size)}) ...")
    native = native_speed(cfg.learner.vw_arguments(), data, len(learned), args.repeats)
    extension = extension_speed(cfg.learner.vw_arguments(), data)
    native["extension_eps"] = extension["eps"]
    native["extension_average_loss"] = extension["average_loss"]
    say(f"native: {native['eps']:,.0f}/s; the learner on the same events ...")
    learner = learner_speed(cfg, learned, cfg.learner.separate_process)
    learner["others"] = [learner_speed(cfg, learned, not cfg.learner.separate_process)]
    if not args.keep:
        data.unlink()
    points: list[GrowthPoint] = []
    n_growth = min(args.growth_events, args.events)
    if n_growth > 0:
        say(f"growth: {n_growth:,} synthetic events per shape ...")
        points = growth(cfg, workdir, n_growth, args.repeats, args.seed)
    return Result(
        events=args.events, messages=int(sim["messages"]), expected_learned=expected,
        native_vw_eps=native["eps"], learner_eps=learner["eps"], e2e_eps=e2e["eps"],
        e2e=e2e, profiled=profiled, stages=rows, native=native, learner=learner,
        growth=points, machine=machine(), e2e_by_library=by_library if len(by_library) > 1 else {},
        baseline=baseline,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        logging.getLogger("kafka").setLevel(logging.ERROR)
    workdir = (
        args.workdir or ROOT / ".nudge" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    ).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if args.no_native_crc:
            hide_native_crc()
        result = bench(args, workdir)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            for scratch in scratch_directories(workdir):
                _rmtree(scratch)
    m = result.machine
    print(
        f"nudge bench: {result.events:,} simulated events ({result.messages:,} messages); "
        f"{m['cpus']} cores, load {m['load_average'][0]}, Python {m['python']}, "
        f"vowpalwabbit {m['vowpalwabbit']}, kafka-python {m['kafka-python']} "
        f"(native crc32c: {'yes' if m['crc32c_native'] else 'no'}); logs in {workdir}"
    )
    print()
    print(table(result))
    text = orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2)
    (workdir / "bench.json").write_bytes(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(text)
    if result.growth:
        svg = args.svg or workdir / "growth.svg"
        svg.parent.mkdir(parents=True, exist_ok=True)
        svg.write_text(growth_svg(result.growth), encoding="utf-8")
        print(f"\ngrowth plot: {svg}")
    return 0


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
