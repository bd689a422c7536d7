"""Backlog benchmark (issue 13): do checkpoint bytes and the consumer's RSS stay flat while it
catches up on a large backlog?

On fresh topics of the configured broker (`scripts/kafka start` runs the local one),
`nudge simulate --events N` fills the impression and outcome topics; then `nudge consume
--until-idle` reads them as a process while this one samples, every `--sample-s` seconds, the
consumer's VmRSS and VmHWM (/proc/<pid>/status), the bytes of the checkpoint CURRENT points
to, and the consumer's last progress line (learned, pending impressions, waiting outcomes,
records held by the event-time guard, outcomes dead-lettered as `join_state_full`), which it
writes as often (`consumer.progress_every_s` set to `--sample-s`).

Prints a table at ten evenly spaced points of progress (by learned events), the verdict
numbers (RSS and checkpoint bytes at the first sample past 10% of the learned events and at the
last sample, and their maximum; their growth per 100k learned, a least-squares slope over the
second half; learned/s), the dead letters against what the simulator expects, and writes an
SVG plot (RSS and checkpoint MB over learned). `--compare-unaligned` reads the same topics
again with `join.max_read_ahead_s: null` (event-time alignment off: the behaviour before it),
where outcomes read ahead of their impressions pile up to `join.max_waiting_outcomes` and are
dead-lettered as `join_state_full`.

Not part of CI. Run as `scripts/backlog-bench` or `python -m benchmarks.backlog_bench`
(`--events 20000` for a quick run); `--json PATH` writes every number.
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path
from typing import IO, Any

import orjson
import yaml

from benchmarks.consumer_bench import (
    ROOT,
    BenchError,
    _current_checkpoint_bytes,
    _env,
    add_deployment_arguments,
    consume_busy_seconds,
    dead_letter_surprises,
    machine,
    simulate,
    write_config,
)

PROGRESS_POINTS = 10  # rows of the progress table: 10%, 20%, ... 100% of the learned events
PER_LEARNED = 100_000  # growth is reported per this many learned events
ALIGNED = "aligned"
UNALIGNED = "unaligned"


# ---- what the consumer says and what /proc says (pure) --------------------------------------


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress line of `nudge consume` (`StreamLearner._report`): cumulative counts and
    the join's live state."""

    consumed: int
    learned: int
    dead_lettered: int
    pending: int  # impressions waiting for their outcome
    waiting: int  # outcomes waiting for their impression
    lag: int
    checkpoints: int
    hwm_mb: float  # the consumer's own `rss=`: its peak (VmHWM)
    held: int  # records the event-time guard holds back
    state_full: int  # outcomes dead-lettered as join_state_full
    paused: tuple[str, ...]


_PROGRESS = re.compile(
    r"consumed=(\d+) .*? learned=(\d+) .*? dead_lettered=(\d+) pending=(\d+) waiting=(\d+) "
    r"lag=(\d+) checkpoints=(\d+) .*? rss=([\d.]+)MB held=(\d+) .*? state_full=(\d+) "
    r".*? paused=(.*)$"
)


def parse_progress(line: str) -> Progress | None:
    """The progress line's numbers, or None for any other log line."""
    m = _PROGRESS.search(line.rstrip("\n"))
    if m is None:
        return None
    n = [0, *(int(m.group(i)) for i in (1, 2, 3, 4, 5, 6, 7))]  # n[i]: group i
    paused = m.group(11).strip()
    return Progress(
        consumed=n[1], learned=n[2], dead_lettered=n[3], pending=n[4], waiting=n[5], lag=n[6],
        checkpoints=n[7], hwm_mb=float(m.group(8)), held=int(m.group(9)),
        state_full=int(m.group(10)),
        paused=() if paused == "-" else tuple(re.findall(r"'([^']*)'", paused)),
    )  # fmt: skip


def proc_memory_mb(status_text: str) -> tuple[float | None, float | None]:
    """(VmRSS, VmHWM) in MB from the text of /proc/<pid>/status (None when absent)."""
    found: dict[str, float] = {}
    for line in status_text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(rest.split()[0]) / 1024.0
    return found.get("VmRSS"), found.get("VmHWM")


# ---- the samples and what they show (pure) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """The consumer at one moment: its memory, the current checkpoint's bytes and the last
    progress line it wrote (None before the first)."""

    t_s: float  # since the consumer started
    rss_mb: float | None
    hwm_mb: float | None
    checkpoint_bytes: int | None
    progress: Progress | None

    @property
    def learned(self) -> int:
        return self.progress.learned if self.progress else 0

    @property
    def checkpoint_mb(self) -> float | None:
        return None if self.checkpoint_bytes is None else self.checkpoint_bytes / 1e6


def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """The least-squares slope of ys over xs; None with fewer than two distinct xs."""
    n = len(xs)
    if n != len(ys):
        raise ValueError(f"slope: {n} xs but {len(ys)} ys")
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def progress_points(samples: Sequence[Sample], n: int = PROGRESS_POINTS) -> list[Sample]:
    """For k = 1..n, the first sample that learned at least k/n of the most any sample did; a
    sample that is the first for several k (sampled more coarsely than that) comes once."""
    top = max((s.learned for s in samples), default=0)
    points: list[Sample] = []
    for k in range(1, n + 1) if top else ():
        point = next(s for s in samples if s.learned >= top * k / n)
        if not points or points[-1] is not point:
            points.append(point)
    return points


@dataclass(frozen=True, slots=True)
class Trend:
    """One measure (RSS or checkpoint MB) over a run: its value at 10% and 100% of the learned
    events, its maximum, and its growth over the second half."""

    at_10: float | None
    at_100: float | None
    max: float | None
    per_100k: float | None  # least-squares growth per PER_LEARNED learned, second half
    drift: float | None  # that growth over the second half, as a share of its mean level

    def shape(self, tolerance: float) -> str | None:
        """`flat` when the second half's drift is within `tolerance` either way, else `grows` or
        `shrinks` (None: too few samples)."""
        if self.drift is None:
            return None
        if abs(self.drift) <= tolerance:
            return "flat"
        return "grows" if self.drift > 0 else "shrinks"


def trend(samples: Sequence[Sample], measure: str) -> Trend:
    """The `Trend` of `measure` ("rss_mb" or "checkpoint_mb") over the samples with a value."""
    have = [(s.learned, v) for s in samples if (v := getattr(s, measure)) is not None]
    top = max((s.learned for s in samples), default=0)
    at_10 = next((v for x, v in have if x >= top * 0.1), None) if top else None
    half = [(x, v) for x, v in have if x >= top / 2] if top else []
    growth = slope([x for x, _ in half], [v for _, v in half])
    drift = None
    if growth is not None and half:
        level = sum(v for _, v in half) / len(half)
        span = half[-1][0] - half[0][0]
        drift = growth * span / level if level else None
    return Trend(
        at_10=at_10, at_100=have[-1][1] if have else None,
        max=max((v for _, v in have), default=None),
        per_100k=None if growth is None else growth * PER_LEARNED, drift=drift,
    )  # fmt: skip


@dataclass
class RunResult:
    """One consumer's catch-up: its samples, its final stats and timing."""

    name: str
    max_read_ahead_s: float | None
    samples: list[Sample]
    stats: dict[str, Any]  # the consumer's --stats-json
    busy_s: float  # its loop up to the last message, plus finishing (consume_busy_seconds)
    wall_s: float  # process start to exit
    final_checkpoint_bytes: int | None  # after it exited
    expected_dead_letters: dict[str, int] = field(default_factory=dict)

    @property
    def rss(self) -> Trend:
        return trend(self.samples, "rss_mb")

    @property
    def checkpoint(self) -> Trend:
        return trend(self.samples, "checkpoint_mb")

    @property
    def eps(self) -> float:
        return self.stats["learned"] / self.busy_s if self.busy_s else 0.0

    def peak(self, name: str) -> int:
        return max((getattr(s.progress, name) for s in self.samples if s.progress), default=0)

    def dead_letters(self) -> dict[str, int]:
        return {k: v for k, v in self.stats.get("dead_letters_by_reason", {}).items() if v}

    def to_json(self, tolerance: float) -> dict[str, Any]:
        rss, ckpt = self.rss, self.checkpoint
        return {
            "name": self.name,
            "max_read_ahead_s": self.max_read_ahead_s,
            "rss_mb": {**asdict(rss), "shape": rss.shape(tolerance)},
            "checkpoint_mb": {**asdict(ckpt), "shape": ckpt.shape(tolerance)},
            "final_checkpoint_bytes": self.final_checkpoint_bytes,
            "learned": self.stats["learned"],
            "learned_per_s": round(self.eps, 1),
            "busy_s": round(self.busy_s, 2),
            "wall_s": round(self.wall_s, 2),
            "peak_waiting": self.peak("waiting"),
            "peak_pending": self.peak("pending"),
            "peak_held": self.peak("held"),
            "dead_letters_by_reason": self.dead_letters(),
            "expected_dead_letters_by_reason": self.expected_dead_letters,
            "dead_letter_surprises": dead_letter_surprises(
                self.dead_letters(), self.expected_dead_letters
            ),
            "points": [asdict(p) for p in progress_points(self.samples)],
            "samples": [asdict(s) for s in self.samples],
            "stats": self.stats,
        }


# ---- the report (pure) ----------------------------------------------------------------------


def _num(v: float | None, fmt: str = ",.1f") -> str:
    return "?" if v is None else format(v, fmt)


def progress_table(runs: Sequence[RunResult]) -> str:
    """A markdown row per run and tenth of its learned events (progress: the row's learned
    events as a share of the most any sample of the run saw)."""
    lines = [
        "| run | progress | learned | t s | RSS MB | checkpoint MB | waiting | pending | held "
        "| state_full |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        top = max((s.learned for s in run.samples), default=0)
        for s in progress_points(run.samples):
            p = s.progress
            if p is None:  # progress_points only picks samples that learned: never
                continue
            lines.append(
                f"| {run.name} | {p.learned / top:.0%} | {p.learned:,} | {s.t_s:.0f} | "
                f"{_num(s.rss_mb)} | {_num(s.checkpoint_mb, ',.2f')} | {p.waiting:,} | "
                f"{p.pending:,} | {p.held:,} | {p.state_full:,} |"
            )
    return "\n".join(lines)


def _trend_cells(t: Trend, unit: str, fmt: str) -> tuple[str, str]:
    levels = f"{_num(t.at_10, fmt)} / {_num(t.at_100, fmt)} / {_num(t.max, fmt)} {unit}"
    growth = "?" if t.per_100k is None else f"{t.per_100k:+{fmt}} {unit}"
    drift = "" if t.drift is None else f" ({t.drift:+.1%} over the 2nd half)"
    return levels, growth + drift


def _shape_cell(t: Trend, tolerance: float) -> str:
    shape = t.shape(tolerance)
    return "?" if shape is None else ("GROWS" if shape == "grows" else shape)


def verdict_table(runs: Sequence[RunResult], tolerance: float) -> str:
    """A markdown row per verdict number, a column per run."""
    rows: list[tuple[str, list[str]]] = []
    rss = [_trend_cells(r.rss, "MB", ",.1f") for r in runs]
    ckpt = [_trend_cells(r.checkpoint, "MB", ",.3f") for r in runs]
    rows.append(("RSS at 10% / 100% / max", [c[0] for c in rss]))
    rows.append((f"RSS growth per {PER_LEARNED:,} learned (2nd half)", [c[1] for c in rss]))
    rows.append(("checkpoint at 10% / 100% / max", [c[0] for c in ckpt]))
    rows.append((f"checkpoint growth per {PER_LEARNED:,} learned (2nd half)", [c[1] for c in ckpt]))
    rows.append(
        (
            f"shape (flat: 2nd-half drift within ±{tolerance:.0%}): RSS, checkpoint",
            [
                f"{_shape_cell(r.rss, tolerance)}, {_shape_cell(r.checkpoint, tolerance)}"
                for r in runs
            ],
        )
    )
    rows.append(
        ("final checkpoint (after exit)", [_mb_bytes(r.final_checkpoint_bytes) for r in runs])
    )
    rows.append(
        ("peak VmHWM (stats max_rss_mb)", [f"{_num(r.stats.get('max_rss_mb'))} MB" for r in runs])
    )
    rows.append(
        (
            "most waiting / pending / held",
            [f"{r.peak('waiting'):,} / {r.peak('pending'):,} / {r.peak('held'):,}" for r in runs],
        )
    )
    rows.append(
        (
            "learned (busy s, learned/s)",
            [f"{r.stats['learned']:,} ({r.busy_s:.1f} s, {r.eps:,.0f}/s)" for r in runs],
        )
    )
    rows.append(("dead letters by reason", [_reasons(r.dead_letters()) for r in runs]))
    rows.append(("  the simulator expects", [_reasons(r.expected_dead_letters) for r in runs]))
    lines = [
        "| measure | " + " | ".join(_run_label(r) for r in runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    return "\n".join(lines)


def _run_label(run: RunResult) -> str:
    ahead = "null" if run.max_read_ahead_s is None else f"{run.max_read_ahead_s:g} s"
    return f"{run.name} (max_read_ahead_s {ahead})"


def _mb_bytes(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:,.3f} MB"


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "none"


_COLOURS = {ALIGNED: "#1f77b4", UNALIGNED: "#d62728"}


def backlog_svg(runs: Sequence[RunResult]) -> str:
    """Two panels over learned events (RSS MB, checkpoint MB), linear from 0, a line per run."""
    w, h, pad, top, gap = 760, 400, 64, 84, 56  # top: the title and the legend above the panels
    panel_w = (w - 2 * pad - gap) / 2
    x_max = _nice_ceiling(max((s.learned for r in runs for s in r.samples), default=0))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{w / 2}" y="22" text-anchor="middle" font-size="15">'
        "nudge consume catching up: RSS and checkpoint size over learned events</text>",
    ]
    for k, (measure, label) in enumerate(
        (("rss_mb", "RSS MB"), ("checkpoint_mb", "checkpoint MB"))
    ):
        left = pad + k * (panel_w + gap)
        values = [v for r in runs for s in r.samples if (v := getattr(s, measure)) is not None]
        y_max = _nice_ceiling(max(values, default=1.0))

        def x_of(x: float, left: float = left) -> float:
            return left + panel_w * x / x_max

        def y_of(y: float, y_max: float = y_max) -> float:
            return h - pad - (h - pad - top) * y / y_max

        parts.append(
            f'<line x1="{left}" y1="{h - pad}" x2="{left + panel_w}" y2="{h - pad}" stroke="black"/>'
        )
        parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - pad}" stroke="black"/>')
        for i in range(5):
            y = y_max * i / 4
            parts.append(
                f'<line x1="{left}" y1="{y_of(y):.1f}" x2="{left + panel_w}" y2="{y_of(y):.1f}" stroke="#eee"/>'
            )
            parts.append(
                f'<text x="{left - 5}" y="{y_of(y) + 4:.1f}" text-anchor="end" font-size="10">{y:,.3g}</text>'
            )
            x = x_max * i / 4
            parts.append(
                f'<text x="{x_of(x):.1f}" y="{h - pad + 15}" text-anchor="middle" font-size="10">{x:,.0f}</text>'
            )
        parts.append(
            f'<text x="{left + panel_w / 2}" y="{h - pad + 34}" text-anchor="middle" '
            f'font-size="12">learned events</text>'
        )
        parts.append(
            f'<text x="{left + panel_w / 2}" y="{top - 10}" text-anchor="middle" '
            f'font-size="12">{escape(label)}</text>'
        )
        for j, run in enumerate(runs):
            colour = _COLOURS.get(run.name, "#7f7f7f")
            coords = " ".join(
                f"{x_of(s.learned):.1f},{y_of(v):.1f}"
                for s in run.samples
                if (v := getattr(s, measure)) is not None
            )
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>'
            )
            if k == 0:  # the legend, a row under the title
                lx = pad + 300 * j
                parts.append(
                    f'<line x1="{lx}" y1="38" x2="{lx + 20}" y2="38" stroke="{colour}" '
                    'stroke-width="2"/>'
                )
                parts.append(
                    f'<text x="{lx + 26}" y="42" font-size="12">{escape(_run_label(run))}</text>'
                )
    parts.append("</svg>")
    return "\n".join(parts)


def _nice_ceiling(v: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above v (an axis top)."""
    if v <= 0:
        return 1.0
    decade = 10 ** math.floor(math.log10(v))
    return next(m * decade for m in (1, 2, 5, 10) if m * decade >= v)


# ---- the consumer, watched ------------------------------------------------------------------


class LogTail:
    """The progress lines appended to a log file since the last read (a partial last line
    waits for the next read)."""

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("r", encoding="utf-8", errors="replace")
        self._partial = ""
        self.last: Progress | None = None

    def read(self) -> Progress | None:
        """The newest progress line so far."""
        text = self._partial + self._file.read()
        *lines, self._partial = text.split("\n")
        for line in lines:
            progress = parse_progress(line)
            if progress is not None:
                self.last = progress
        return self.last

    def close(self) -> None:
        self._file.close()


def _memory(pid: int) -> tuple[float | None, float | None]:
    try:
        return proc_memory_mb(Path(f"/proc/{pid}/status").read_text())
    except OSError:  # exited between the poll and the read
        return None, None


def _checkpoint_bytes(directory: Path) -> int | None:
    try:
        return _current_checkpoint_bytes(directory)
    except OSError:  # an older checkpoint pruned while it was being measured
        return None


def _sample(pid: int, t_s: float, checkpoints: Path, tail: LogTail) -> Sample | None:
    """The consumer now; None once it has exited."""
    rss, hwm = _memory(pid)
    if rss is None:
        return None
    return Sample(round(t_s, 3), rss, hwm, _checkpoint_bytes(checkpoints), tail.read())


def watch_consume(
    config: Path, workdir: Path, name: str, idle_s: float, sample_s: float
) -> RunResult:
    """`nudge consume --until-idle` as a process, sampled every `sample_s` until it exits."""
    from bandit.config import load_config

    cfg = load_config(config, environ={})
    checkpoints = Path(cfg.checkpoint.directory)
    log = workdir / f"{name}-consume.log"
    stats_path = workdir / f"{name}-stats.json"
    command = [
        sys.executable, "-m", "nudge.cli", "consume", "--until-idle", str(idle_s),
        "--stats-json", str(stats_path), "--config", str(config),
    ]  # fmt: skip
    samples: list[Sample] = []
    with log.open("w") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, env=_env()
        )
        tail = LogTail(log)
        try:
            next_at = started
            while proc.poll() is None:
                sample = _sample(proc.pid, time.monotonic() - started, checkpoints, tail)
                if sample is not None:
                    samples.append(sample)
                next_at += sample_s
                time.sleep(max(0.0, next_at - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            tail.close()
        wall_s = time.monotonic() - started
    if proc.returncode != 0:
        raise BenchError(
            f"nudge consume ({name}) exited {proc.returncode} (log {log}): "
            f"{log.read_text()[-1500:].strip()}"
        )
    stats: dict[str, Any] = orjson.loads(stats_path.read_bytes())
    return RunResult(
        name=name, max_read_ahead_s=cfg.join.max_read_ahead_s, samples=samples, stats=stats,
        busy_s=consume_busy_seconds(log.read_text()), wall_s=wall_s,
        final_checkpoint_bytes=_checkpoint_bytes(checkpoints),
    )  # fmt: skip


def run_config(
    base: Path, workdir: Path, run: str, name: str, bootstrap: str | None,
    max_read_ahead_s: float | None, progress_s: float,
) -> Path:  # fmt: skip
    """`write_config`'s deployment with a progress line every `progress_s` and the given
    `join.max_read_ahead_s`."""
    path = write_config(base, workdir, run, name, bootstrap)
    data = yaml.safe_load(path.read_text())
    data.setdefault("consumer", {})["progress_every_s"] = progress_s
    data.setdefault("join", {})["max_read_ahead_s"] = max_read_ahead_s
    path.write_text(yaml.safe_dump(data))
    return path


# ---- main -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="backlog-bench",
        description="Issue 13: checkpoint bytes and the consumer's RSS while `nudge consume` "
        "catches up on a backlog, sampled as it runs; a table, the verdict numbers and an SVG "
        "plot. Needs the broker (`scripts/kafka start`); not part of CI.",
    )
    add_deployment_arguments(p, events=500_000, quick=20_000)
    p.add_argument("--sample-s", type=float, default=1.0,
                   help="seconds between samples and between the consumer's progress lines "
                   "(default: %(default)s)")  # fmt: skip
    p.add_argument("--flat-tolerance", type=float, default=0.10,
                   help="flat: the second half's least-squares trend changes it by at most this "
                   "share of its mean level, either way (default: %(default)s)")  # fmt: skip
    p.add_argument("--compare-unaligned", action="store_true",
                   help="also read the same topics with join.max_read_ahead_s: null")  # fmt: skip
    p.add_argument("--json", type=Path, metavar="PATH", help="write every number here")
    p.add_argument("--svg", type=Path, metavar="PATH",
                   help="the plot (default: <workdir>/backlog.svg)")  # fmt: skip
    p.add_argument("--workdir", type=Path, help="default: a new directory under .nudge/")
    p.add_argument("--keep", action="store_true",
                   help="keep the checkpoints and snapshots in the workdir")  # fmt: skip
    return p


def say(message: str) -> None:
    print(f"backlog-bench: {message}", file=sys.stderr, flush=True)


def bench(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Any], list[RunResult]]:
    """Fill fresh topics, then watch one consumer (two with --compare-unaligned) catch up."""
    from bandit.config import load_config

    aligned_s = load_config(args.config, environ={}).join.max_read_ahead_s
    if aligned_s is None:
        raise BenchError(f"{args.config} has join.max_read_ahead_s: null; the aligned run needs it")
    run = f"backlog-{uuid.uuid4().hex[:8]}"
    modes = [(ALIGNED, aligned_s)] + ([(UNALIGNED, None)] if args.compare_unaligned else [])
    configs = {
        name: run_config(args.config, workdir, run, name, args.bootstrap, ahead, args.sample_s)
        for name, ahead in modes
    }
    say(f"nudge simulate --events {args.events:,} into {run}.* ...")
    sim = simulate(configs[ALIGNED], workdir, args.events, args.seed)
    sim_s = float(sim.get("seconds") or 0.0)
    say(
        f"{sim['messages']:,} messages in {sim_s:.1f} s "
        f"({args.events / sim_s if sim_s else 0:,.0f} events/s)"
    )
    expected = {k: int(v) for k, v in sim["expected"]["dead_letters_by_reason"].items()}
    results = []
    for name, _ in modes:
        say(
            f"{name}: nudge consume --until-idle {args.idle_s}, sampled every {args.sample_s} s ..."
        )
        result = watch_consume(configs[name], workdir, name, args.idle_s, args.sample_s)
        result.expected_dead_letters = expected
        results.append(result)
        say(
            f"{name}: {result.stats['learned']:,} learned in {result.busy_s:.1f} s busy "
            f"({result.eps:,.0f}/s), {len(result.samples)} samples"
        )
        if result.stats["learned"] != int(sim["expected"]["learned"]):
            say(f"WARNING: {name} learned {result.stats['learned']:,}, the simulator expects "
                f"{int(sim['expected']['learned']):,}")  # fmt: skip
        for line in dead_letter_surprises(result.dead_letters(), expected):
            say(f"WARNING: {name} dead-lettered {line}")
    return sim, results


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    workdir = (
        args.workdir or ROOT / ".nudge" / f"backlog-bench-{time.strftime('%Y%m%d-%H%M%S')}"
    ).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        sim, runs = bench(args, workdir)
    except BenchError as exc:
        print(f"backlog-bench: {exc}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            for name in (ALIGNED, UNALIGNED):
                for sub in ("checkpoints", "snapshots", "spool"):
                    _rmtree(workdir / name / sub)
    m = machine()
    sim_s = float(sim.get("seconds") or 0.0)
    print(
        f"backlog-bench: {args.events:,} simulated events ({sim['messages']:,} messages; "
        f"nudge simulate {sim_s:.1f} s = {args.events / sim_s if sim_s else 0:,.0f} events/s); "
        f"sampled every {args.sample_s} s; {m['cpus']} cores, load {m['load_average'][0]}; "
        f"logs in {workdir}"
    )
    print()
    print(progress_table(runs))
    print()
    print(verdict_table(runs, args.flat_tolerance))
    report = {
        "events": args.events,
        "seed": args.seed,
        "sample_s": args.sample_s,
        "flat_tolerance": args.flat_tolerance,
        "simulate": sim,
        "runs": [r.to_json(args.flat_tolerance) for r in runs],
        "machine": m,
    }
    text = orjson.dumps(report, option=orjson.OPT_INDENT_2)
    (workdir / "backlog.json").write_bytes(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(text)
    svg = args.svg or workdir / "backlog.svg"
    svg.parent.mkdir(parents=True, exist_ok=True)
    svg.write_text(backlog_svg(runs), encoding="utf-8")
    print(f"\nplot: {svg}")
    return 0


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
