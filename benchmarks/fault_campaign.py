"""Issue 11's fault campaign: real `nudge simulate` / `nudge consume` processes against a real
broker of the campaign's own, through the faults and poisoned inputs of the issue; one table.

Each scenario gets fresh topics, a fresh consumer group and fresh checkpoint and snapshot
directories under the work directory (environment overrides `NUDGE_KAFKA__*`,
`NUDGE_CHECKPOINT__DIRECTORY`, ... on top of the repository's `config.yaml`). Traffic comes
from `nudge simulate` in chunks (chunk k starts 600 s of event time after chunk k-1 ends; its
ids and expected dead letters come from `simulate_traffic` run in this process with the same
seed, checked against the summary `nudge simulate` prints); poisoned messages are produced
in between by this process.

How "learned twice" and "lost" are counted: the stats JSON of the last `nudge consume` has a
ledger (count and sum mod 2^64 of 64-bit hashes of the learned event ids). Equal to the
ledger of the expected ids: twice = lost = 0. Otherwise the latest checkpoint's learned ids
(`join.learned_ids`, hashes by event-time bucket) say which: when they reach back past the
first expected event and none were evicted they are exact, and lost = expected ids not
recorded, twice = ledger count - recorded ids; otherwise the row shows "?" and fails.

Run as `scripts/fault-campaign` or `python -m benchmarks.fault_campaign` (not part of CI).
It starts its broker (`scripts/kafka` with `KAFKA_PORT`, `KAFKA_DATA_DIR`), kills it in one
scenario, and stops it at the end unless `--keep-broker`; it refuses ports 9092-9095, the
shared broker's. The disk-full scenario mounts a tmpfs (root only; skipped otherwise).
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from bandit.config import Config, JoinConfig, load_config
from bandit.events import timestamp_text
from bandit.learned_ids import MEMORY_BYTES_PER_ID, event_hash
from streams.stats import Ledger

if TYPE_CHECKING:
    from bandit.simulation.traffic import SimulationRun

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config.yaml"
PYTHON = sys.executable
DEFAULT_PORT = 19292
DEFAULT_DATA_DIR = Path(tempfile.gettempdir()) / "nudge-campaign-kafka"
SHARED_PORTS = frozenset(range(9092, 9096))  # the shared broker and its extra listeners
CHUNK_GAP_S = 600.0  # event time between two chunks of traffic: every window of the first closes
_MASK = (1 << 64) - 1
_CONSUMED = re.compile(r"nudge\.consume: consumed=(\d+) ")
_CONSUME_LINE = re.compile(r"^(\S+ \S+) INFO nudge\.consume: ", re.M)


class CampaignError(Exception):
    """The campaign itself could not do a step (not a finding about the consumer)."""


# ---- pure helpers: counting, tables -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tally:
    """What the consumer learned against what it had to learn.

    `twice`, `lost`, `unexpected` are None when they cannot be known exactly (the ledger differs
    and there is no exact record of the learned ids); `how` says where the numbers come from.
    """

    expected: int
    learned: int
    twice: int | None
    lost: int | None
    unexpected: int | None
    how: str
    lost_ids: tuple[str, ...] = ()
    twice_ids: tuple[str, ...] = ()

    @property
    def exact(self) -> bool:
        return self.twice == 0 and self.lost == 0 and self.unexpected == 0

    def describe(self) -> str:
        if self.how == "ledger":
            return f"ledger equals the expected one ({self.expected:,} ids)"
        if self.twice is None:
            return (
                f"ledger count {self.learned:,} vs {self.expected:,} expected and the digest "
                f"differs; {self.how}"
            )
        parts = [f"{self.how}: twice {self.twice}, lost {self.lost}, unexpected {self.unexpected}"]
        if self.lost_ids:
            parts.append(f"lost e.g. {', '.join(self.lost_ids[:5])}")
        if self.twice_ids:
            parts.append(f"twice: {', '.join(self.twice_ids)}")
        return "; ".join(parts)


def tally(
    expected_ids: Iterable[str],
    ledger_count: int,
    ledger_digest: int,
    recorded: frozenset[int] | None,
) -> Tally:
    """Compare a consumer's ledger (and, when it differs, its exact record of learned id
    hashes) with the ids it had to learn once each."""
    ids = list(dict.fromkeys(expected_ids))
    want = Ledger.of(ids)
    if (ledger_count, ledger_digest) == (want.count, want.digest):
        return Tally(len(ids), ledger_count, 0, 0, 0, "ledger")
    if recorded is None:
        return Tally(len(ids), ledger_count, None, None, None, "no exact record of learned ids")
    by_hash = {event_hash(i): i for i in ids}
    lost_ids = tuple(i for h, i in by_hash.items() if h not in recorded)
    unexpected = len(recorded - by_hash.keys())
    twice = ledger_count - len(recorded)
    extra = (ledger_digest - sum(recorded)) & _MASK  # hashes of the repeated learns, summed
    if twice < 0 or (twice == 0 and extra != 0):
        return Tally(
            len(ids), ledger_count, None, None, None,
            "the checkpoint's learned ids disagree with its ledger",
        )  # fmt: skip
    twice_ids: tuple[str, ...] = ()
    if twice == 1:  # the digest difference is then the hash of the one id learned twice
        twice_ids = (by_hash.get(extra, f"an unexpected id (hash {extra:016x})"),)
    return Tally(
        len(ids), ledger_count, twice, len(lost_ids), unexpected,
        "from the checkpoint's learned ids", lost_ids[:20], twice_ids,
    )  # fmt: skip


def recorded_hashes(join_state: Mapping[str, Any], earliest_ts: float) -> frozenset[int] | None:
    """The hashes of every learned event id a checkpoint's join state records, or None when the
    record is not exact for events from `earliest_ts` on (ids forgotten by age or evicted)."""
    import base64

    learned = join_state.get("join", {}).get("learned_ids")
    if learned is None:
        return frozenset()  # nothing learned yet
    floor = learned.get("floor")
    if (floor is not None and float(floor) > earliest_ts) or int(learned.get("evicted", 0)):
        return None
    hashes: set[int] = set()
    for _, text in learned.get("buckets", []):
        chunk = base64.b64decode(text)
        hashes.update(int.from_bytes(chunk[i : i + 8], "big") for i in range(0, len(chunk), 8))
    return frozenset(hashes)


def counter_diff(want: Mapping[str, int], got: Mapping[str, int]) -> str:
    """`+1 implausible_event_time, -3 late_outcome` (got minus want), or `none`."""
    keys = sorted(set(want) | set(got))
    parts = [
        f"{got.get(k, 0) - want.get(k, 0):+d} {k}" for k in keys if got.get(k, 0) != want.get(k, 0)
    ]
    return ", ".join(parts) or "none"


def linear_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope dy/dx of (x, y) points; None with fewer than 3 distinct x."""
    if len({x for x, _ in points}) < 3:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx


def caps_reached_at(first_messages: int, join: JoinConfig) -> int:
    """Messages consumed by when a push of never-answered impressions after `first_messages`
    has filled both bounded structures: the pending impressions after `max_pending_impressions`
    of them, then the closed windows, one closed early per further impression."""
    return first_messages + join.max_pending_impressions + join.max_closed_windows


def growth_per_100k(
    samples: Sequence[tuple[float, int, float]], start: int, end: int, bytes_per_message: float
) -> tuple[float, float] | None:
    """RSS slope in MB per 100,000 messages over the (seconds, consumed, VmRSS MB) samples
    consumed in [start, end]: as measured, and net of `bytes_per_message` of state each message
    adds by design (None with too few samples)."""
    slope = linear_slope([(float(n), rss) for _, n, rss in samples if start <= n <= end])
    if slope is None:
        return None
    measured = slope * 100_000
    return measured, measured - bytes_per_message * 100_000 / 2**20


@dataclass(frozen=True, slots=True)
class Check:
    """One pass/fail condition of a scenario, with what was seen."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class Row:
    """One scenario's line of the table, its checks and what else was seen."""

    scenario: str
    produced: int = 0
    expected: int = 0
    learned: int = 0
    twice: int | None = None
    lost: int | None = None
    dead_lettered: int = 0
    recovery_s: float | None = None
    skipped: str | None = None
    seconds: float = 0.0
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, bool(ok), detail))
        return bool(ok)

    @property
    def status(self) -> str:
        if self.skipped is not None:
            return "skip"
        return "pass" if self.checks and all(c.ok for c in self.checks) else "FAIL"

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "produced": self.produced,
            "expected": self.expected,
            "learned": self.learned,
            "learned_twice": self.twice,
            "lost": self.lost,
            "dead_lettered": self.dead_lettered,
            "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 2),
            "result": self.status,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 1),
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "notes": self.notes,
            "details": self.details,
        }


_COLUMNS = (
    ("scenario", "<"), ("produced", ">"), ("expected", ">"), ("learned", ">"),
    ("twice", ">"), ("lost", ">"), ("dead-lettered", ">"), ("recovery s", ">"), ("result", "<"),
)  # fmt: skip


def _cells(row: Row) -> list[str]:
    def n(value: int | None) -> str:
        return "?" if value is None else f"{value:,}"

    recovery = "-" if row.recovery_s is None else f"{row.recovery_s:.1f}"
    return [
        row.scenario, n(row.produced), n(row.expected), n(row.learned), n(row.twice),
        n(row.lost), n(row.dead_lettered), recovery, row.status,
    ]  # fmt: skip


def format_table(rows: Sequence[Row]) -> str:
    """The campaign's one table, then why each failed row failed and each row's notes."""
    body = [_cells(r) for r in rows]
    widths = [max(len(title), *(len(c[i]) for c in body)) for i, (title, _) in enumerate(_COLUMNS)]

    def line(cells: Sequence[str]) -> str:
        out = [f"{c:{align}{w}}" for c, (_, align), w in zip(cells, _COLUMNS, widths, strict=True)]
        return "  ".join(out).rstrip()

    lines = [line([title for title, _ in _COLUMNS]), line(["-" * w for w in widths])]
    lines += [line(c) for c in body]
    passed = sum(r.status == "pass" for r in rows)
    skipped = sum(r.status == "skip" for r in rows)
    lines.append(f"{passed} of {len(rows)} passed" + (f", {skipped} skipped" if skipped else ""))
    for r in rows:
        failed = [c for c in r.checks if not c.ok]
        if r.skipped:
            lines.append(f"  {r.scenario}: skipped: {r.skipped}")
        for c in failed:
            lines.append(f"  {r.scenario}: FAILED {c.name}: {c.detail}")
        for note in r.notes:
            lines.append(f"  {r.scenario}: {note}")
    return "\n".join(lines)


# ---- progress ---------------------------------------------------------------------------------


class Progress:
    """Elapsed time, phase and counts on stderr."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def say(self, phase: str, message: str) -> None:
        print(
            f"[{time.monotonic() - self.t0:7.1f}s] {phase:<19} {message}",
            file=sys.stderr, flush=True,
        )  # fmt: skip


def wait_for(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()


def proc_memory_mb(pid: int) -> tuple[float, float] | None:
    """(VmRSS, VmHWM) of a live process in MB from /proc/<pid>/status; None once it is gone.

    VmHWM is the peak RSS of the process image since its exec; `ru_maxrss` is not (Linux keeps
    it across fork and exec, so a child reports its parent's peak if that was higher).
    """
    try:
        fields = dict(
            line.split(":", 1)
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if ":" in line
        )
        return int(fields["VmRSS"].split()[0]) / 1024.0, int(fields["VmHWM"].split()[0]) / 1024.0
    except (OSError, ValueError, KeyError, IndexError):
        return None


# ---- the campaign's broker --------------------------------------------------------------------


class Broker:
    """A broker of the campaign's own, through `scripts/kafka` (never the shared 9092)."""

    def __init__(self, port: int, data_dir: Path) -> None:
        if set(range(port, port + 4)) & SHARED_PORTS:
            raise CampaignError(
                f"--port {port}: its listeners ({port}-{port + 3}) overlap the shared broker's "
                "9092-9095; choose another port (default 19292)"
            )
        self.port = port
        self.data_dir = Path(data_dir)
        self.started_here = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        drop = {"KAFKA_CONTROLLER_PORT", "KAFKA_SASL_PORT", "KAFKA_SASL_SSL_PORT"}
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env.update(KAFKA_PORT=str(self.port), KAFKA_DATA_DIR=str(self.data_dir))
        return env

    def _script(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / "scripts" / "kafka"), command],
            env=self._env(), cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    def running(self) -> bool:
        return self._script("status").returncode == 0

    def start(self) -> float:
        """Start it (a no-op when running); the seconds it took."""
        t = time.monotonic()
        done = self._script("start")
        if done.returncode != 0:
            raise CampaignError(f"scripts/kafka start failed: {done.stderr.strip()[-500:]}")
        return time.monotonic() - t

    def stop(self) -> None:
        self._script("stop")

    def pid(self) -> int | None:
        """The broker's pid, only if that process is this data dir's Kafka broker."""
        try:
            pid = int((self.data_dir / "broker.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, ValueError):
            return None
        ours = b"kafka.Kafka" in cmdline and str(self.data_dir).encode() in cmdline
        return pid if ours else None

    def kill9(self) -> int:
        pid = self.pid()
        if pid is None:
            raise CampaignError(f"no broker of {self.data_dir} running to kill")
        os.kill(pid, signal.SIGKILL)
        if not wait_for(lambda: not Path(f"/proc/{pid}").exists(), 30):
            raise CampaignError(f"broker pid {pid} still alive 30 s after SIGKILL")
        return pid


# ---- one consumer process -----------------------------------------------------------------------


@dataclass
class ConsumerRun:
    """A `nudge consume` process this campaign started; stderr goes to `log`."""

    proc: subprocess.Popen[bytes]
    log: Path
    started: float
    peak_rss_mb: float = 0.0  # VmHWM at the last sample
    # (seconds since start, consumed as last logged, VmRSS MB), about one a second
    samples: list[tuple[float, int, float]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def sample_rss(self) -> None:
        memory = proc_memory_mb(self.proc.pid)
        if memory is None:
            return
        self.peak_rss_mb = max(self.peak_rss_mb, memory[1])
        now = time.monotonic() - self.started
        if not self.samples or now - self.samples[-1][0] >= 1.0:
            self.samples.append((now, self.logged_consumed(), memory[0]))

    def kill9(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout_s: float = 120) -> int:
        """SIGTERM (drain, checkpoint, exit); SIGKILL after `timeout_s`."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill9()
            return -9

    def stderr(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr().splitlines() if line.startswith("nudge: ")]

    def last_line(self) -> str:
        lines = self.stderr().strip().splitlines()
        return lines[-1][:400] if lines else "(no output)"

    def logged_consumed(self) -> int:
        """The highest `consumed=` count its progress lines have shown so far."""
        return max((int(m) for m in _CONSUMED.findall(self.stderr())), default=0)

    def longest_silence_s(self) -> float:
        """The longest time between two of its `nudge.consume` log lines."""
        stamps = [
            datetime.strptime(m, "%Y-%m-%d %H:%M:%S,%f")
            for m in _CONSUME_LINE.findall(self.stderr())
        ]
        return max(((b - a).total_seconds() for a, b in pairwise(stamps)), default=0.0)


@dataclass
class Finished:
    """How a consumer run ended: exit code (None: killed at the timeout), its stats JSON, and
    when its checkpoints first covered more than a given count (seconds after a given time)."""

    run: ConsumerRun
    rc: int | None
    stats: dict[str, Any] | None
    progress_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.stats is not None

    def failure(self) -> str:
        if self.rc is None:
            return f"timed out; last line: {self.run.last_line()}"
        return f"exit {self.rc}: {self.run.last_line()}"


# ---- a deployment: topics, directories, traffic ---------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """Traffic produced by one `nudge simulate`: its seed, event-time span and truth."""

    seed: int
    start_ts: float
    end_ts: float
    truth: SimulationRun

    @property
    def messages(self) -> int:
        return len(self.truth.messages)

    def first_valid_impression(self) -> bytes:
        first = self.truth.valid_event_ids[0].encode()
        return next(
            m.value for m in self.truth.messages if m.kind == "impression" and m.key == first
        )

    def valid_docs(self, kind: str, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` decoded valid messages of `kind`, in arrival order."""
        valid = set(self.truth.valid_event_ids)
        out: list[dict[str, Any]] = []
        for m in self.truth.messages:
            if m.kind == kind and m.key is not None and m.key.decode() in valid:
                try:
                    out.append(orjson.loads(m.value))
                except orjson.JSONDecodeError:
                    continue
                if len(out) >= limit:
                    break
        return out


def max_event_time(run: SimulationRun) -> float:
    """The latest event time among the run's messages (corrupt timestamps skipped)."""
    latest = float("-inf")
    for m in run.messages:
        try:
            ts = datetime.fromisoformat(orjson.loads(m.value)["timestamp"]).timestamp()
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        latest = max(latest, ts)
    return latest


class Deployment:
    """One scenario's topics, group and directories, as `NUDGE_*` overrides of config.yaml;
    what it produced and what a correct consumer must make of it."""

    def __init__(
        self, campaign: Site, name: str, overrides: Mapping[str, str] | None = None
    ) -> None:
        self.campaign = campaign
        self.name = name
        self.dir = campaign.workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        prefix = f"fc-{campaign.run_id}-{name}"
        self.overrides: dict[str, str] = {
            "NUDGE_KAFKA__BOOTSTRAP_SERVERS": campaign.broker.bootstrap,
            "NUDGE_KAFKA__IMPRESSIONS_TOPIC": f"{prefix}.impressions",
            "NUDGE_KAFKA__OUTCOMES_TOPIC": f"{prefix}.outcomes",
            "NUDGE_KAFKA__DEAD_LETTER_TOPIC": f"{prefix}.dead-letters",
            "NUDGE_KAFKA__GROUP_ID": prefix,
            "NUDGE_CHECKPOINT__DIRECTORY": str(self.dir / "checkpoints"),
            "NUDGE_SNAPSHOTS__DIRECTORY": str(self.dir / "snapshots"),
            "NUDGE_CONSUMER__PROGRESS_EVERY_S": "1",
            **(overrides or {}),
        }
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")}
        self.env.update(self.overrides)
        self.config: Config = load_config(CONFIG, environ=self.overrides)
        self.checkpoint_dir = Path(self.config.checkpoint.directory)
        self.first_ts = datetime.fromisoformat(self.config.simulator.start).timestamp()
        self.next_ts = self.first_ts
        self.chunks: list[Chunk] = []
        self.chunk_count = 0
        self.expected_ids: list[str] = []
        self.expected_dead: Counter[str] = Counter()
        self.produced = 0
        self._runs: list[ConsumerRun] = []

    def say(self, message: str) -> None:
        self.campaign.progress.say(self.name, message)

    # -- traffic --

    def truth(self, events: int, seed: int, invalid: float, start_ts: float) -> SimulationRun:
        from bandit.simulation.traffic import simulate_traffic
        from bandit.simulation.world import World

        cfg = load_config(
            CONFIG, environ={**self.overrides, "NUDGE_SIMULATOR__START": timestamp_text(start_ts)}
        )
        world = World(seed, cfg.simulator.learners, cfg.simulator.courses)
        return simulate_traffic(world, cfg.simulator, cfg.join, events, seed, invalid)

    def simulate(self, events: int, invalid: float = 0.02) -> Chunk:
        """Produce the next chunk with `nudge simulate` (its truth computed here too)."""
        seed = self.campaign.seed * 10_000 + self.chunk_count
        start = self.next_ts
        truth = self.truth(events, seed, invalid, start)
        env = {**self.env, "NUDGE_SIMULATOR__START": timestamp_text(start)}
        done = subprocess.run(
            [PYTHON, "-m", "nudge.cli", "simulate", "--config", str(CONFIG), "--events", str(events),
             "--seed", str(seed), "--invalid-fraction", str(invalid)],
            env=env, cwd=self.dir, capture_output=True, text=True, timeout=1800, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise CampaignError(f"nudge simulate exited {done.returncode}: {last}")
        summary = orjson.loads(done.stdout)
        mine = truth.summary()
        if summary["messages"] != mine["messages"] or summary["expected"] != mine["expected"]:
            raise CampaignError(
                f"nudge simulate's summary differs from the truth computed here: {summary}"
            )
        chunk = Chunk(seed, start, max_event_time(truth), truth)
        self._record(chunk)
        self.say(
            f"simulated chunk {len(self.chunks)}: {events:,} events, {chunk.messages:,} messages"
        )
        return chunk

    def publish_chunk(self, events: int, invalid: float = 0.0, *, keep: bool = True) -> Chunk:
        """The next chunk, produced by this process (as `nudge simulate` would); without
        `keep`, its truth and ids are not kept (the caller keeps what it needs)."""
        from bandit.simulation.publish import publish

        seed = self.campaign.seed * 10_000 + self.chunk_count
        truth = self.truth(events, seed, invalid, self.next_ts)
        chunk = Chunk(seed, self.next_ts, max_event_time(truth), truth)
        producer = self.producer()
        try:
            k = self.config.kafka
            publish(truth, producer, k.impressions_topic, k.outcomes_topic)
        finally:
            producer.close()
        self._record(chunk, keep=keep)
        return chunk

    def _record(self, chunk: Chunk, *, keep: bool = True) -> None:
        self.chunk_count += 1
        self.next_ts = chunk.end_ts + CHUNK_GAP_S
        self.expected_dead += chunk.truth.expected_dead_letters
        self.produced += chunk.messages
        if keep:
            self.chunks.append(chunk)
            self.expected_ids += chunk.truth.valid_event_ids

    def producer(self) -> Any:
        from streams.kafka_io import Producer, ensure_topics

        k = self.config.kafka
        ensure_topics(k, [k.impressions_topic, k.outcomes_topic, k.dead_letter_topic], 1)
        return Producer(k)

    def produce(self, items: Iterable[tuple[str, bytes]]) -> int:
        """Send (`"impressions"` or `"outcomes"`, bytes) in order; returns how many."""
        k = self.config.kafka
        topics = {"impressions": k.impressions_topic, "outcomes": k.outcomes_topic}
        producer = self.producer()
        n = 0
        try:
            for kind, value in items:
                producer.send(topics[kind], key=None, value=value)
                n += 1
            producer.flush()
        finally:
            producer.close()
        self.produced += n
        return n

    # -- consumers --

    def start_consumer(self, *args: str) -> ConsumerRun:
        log = self.dir / f"consume-{len(self._runs) + 1:02d}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [PYTHON, "-m", "nudge.cli", "consume", "--config", str(CONFIG), *args],
                env=self.env, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=fh,
            )  # fmt: skip
        run = ConsumerRun(proc, log, time.monotonic())
        self._runs.append(run)
        return run

    def watch(
        self,
        run: ConsumerRun,
        timeout_s: float,
        *,
        above: int | None = None,
        since: float | None = None,
    ) -> tuple[int | None, float | None]:
        """Wait for `run` to exit (killed after `timeout_s`: exit None), sampling its RSS; with
        `above`, also when its checkpoints first covered more messages than that (seconds
        after `since`)."""
        deadline = time.monotonic() + timeout_s
        since = run.started if since is None else since
        progress: float | None = None
        while run.alive():
            if time.monotonic() > deadline:
                run.kill9()
                return None, progress
            run.sample_rss()
            if above is not None and progress is None and self.consumed() > above:
                progress = time.monotonic() - since
            time.sleep(0.1)
        if above is not None and progress is None and self.consumed() > above:
            progress = time.monotonic() - since
        return run.proc.returncode, progress

    def consume(
        self,
        idle_s: float = 3,
        timeout_s: float = 1200,
        *,
        above: int | None = None,
        since: float | None = None,
    ) -> Finished:
        """`nudge consume --until-idle idle_s --stats-json ...` to the end."""
        stats_path = self.dir / f"stats-{len(self._runs) + 1:02d}.json"
        run = self.start_consumer("--until-idle", str(idle_s), "--stats-json", str(stats_path))
        rc, progress = self.watch(run, timeout_s, above=above, since=since)
        stats = orjson.loads(stats_path.read_bytes()) if rc == 0 and stats_path.exists() else None
        return Finished(run, rc, stats, progress)

    def stop_all(self) -> None:
        """SIGKILL every consumer this deployment started that is still running."""
        for run in self._runs:
            if run.alive():
                run.kill9()

    # -- checkpoints --

    def checkpoint_stats(self) -> dict[str, Any] | None:
        """The stats of the current checkpoint, read without verifying it (a light poll)."""
        for _ in range(5):
            try:
                name = (self.checkpoint_dir / "CURRENT").read_text().strip()
                if not name:
                    return None
                stats: dict[str, Any] = orjson.loads(
                    (self.checkpoint_dir / name / "state.json").read_bytes()
                )["stats"]
                return stats
            except FileNotFoundError:
                time.sleep(0.02)  # not there yet, or pruned between the two reads
            except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
                time.sleep(0.02)
        return None

    def consumed(self) -> int:
        stats = self.checkpoint_stats()
        return int(stats["consumed"]) if stats else 0

    def checkpoint_names(self) -> list[str]:
        names = [p.name for p in self.checkpoint_dir.glob("ckpt-*") if p.is_dir()]
        return sorted(names)

    def learned_hashes(self) -> frozenset[int] | None:
        from streams.checkpoints import CheckpointStore

        try:
            ckpt = CheckpointStore(self.checkpoint_dir).latest()
        except Exception as exc:  # any failure: no exact record
            self.say(f"cannot read the latest checkpoint's learned ids: {exc}")
            return None
        return recorded_hashes(ckpt.join_state, self.first_ts) if ckpt else frozenset()

    # -- accounting --

    def account(
        self,
        row: Row,
        stats: Mapping[str, Any],
        *,
        dead_letters_exact: bool,
        note_dead_letters: bool = True,
    ) -> Tally:
        """Fill the row's counts from the last stats JSON; check exactly-once (and the dead
        letters by reason, when this scenario can predict them)."""
        row.produced = self.produced
        row.expected = len(set(self.expected_ids))
        row.learned = int(stats["learned"])
        row.dead_lettered = int(stats["dead_lettered"])
        ledger = stats["ledger"]
        count, digest = int(ledger["count"]), int(ledger["digest"], 16)
        want = Ledger.of(list(dict.fromkeys(self.expected_ids)))
        recorded = None if (count, digest) == (want.count, want.digest) else self.learned_hashes()
        t = tally(self.expected_ids, count, digest, recorded)
        row.twice, row.lost = t.twice, t.lost
        row.check("learned exactly once", t.exact, t.describe())
        got = Counter(stats["dead_letters_by_reason"])
        if dead_letters_exact:
            row.check(
                "dead letters by reason as expected",
                got == self.expected_dead,
                f"got minus expected: {counter_diff(self.expected_dead, got)}",
            )
        elif note_dead_letters and got != self.expected_dead:
            row.notes.append(
                f"dead letters beyond the simulator's: {counter_diff(self.expected_dead, got)}"
            )
        keep = ("consumed", "learned", "defaulted", "closed_early", "dead_lettered", "starts",
                "checkpoint_fallbacks", "pending", "held", "learned_ids", "ledger",
                "dead_letters_by_reason")  # fmt: skip
        row.details["stats"] = {k: stats.get(k) for k in keep}
        row.details["tally"] = {"how": t.how, "lost_ids": list(t.lost_ids), "twice_ids": list(t.twice_ids),
                                "unexpected": t.unexpected}  # fmt: skip
        return t

    def dead_letter_keys(self) -> dict[str, dict[str, Any]]:
        """The dead-letter topic by key (source coordinates): the last body of each."""
        from streams.kafka_io import read_topic

        out: dict[str, dict[str, Any]] = {}
        for key, value, _ in read_topic(
            self.config.kafka, self.config.kafka.dead_letter_topic, 2000
        ):
            out[(key or b"").decode(errors="replace")] = orjson.loads(value)
        return out


# ---- the campaign -------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Site:
    """Where deployments live: the broker, the work directory, progress, the seed."""

    broker: Broker
    workdir: Path
    progress: Progress
    seed: int
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])


@dataclass(kw_only=True)
class Campaign(Site):
    """The campaign's sizes, with what the scenarios share."""

    events: int
    kills: int
    outage_s: float
    push: int
    fuzz: int
    tmpfs_mb: int
    rss_limit_mb: float
    fuzz_without: frozenset[str] = frozenset()

    @property
    def chunk(self) -> int:
        """Events per chunk in the poisoned-input scenarios."""
        return max(300, self.events // 10)


def _error_line_check(row: Row, run: ConsumerRun, must_contain: str, name: str) -> None:
    """Exactly one `nudge:` line, the last, containing `must_contain`; no traceback."""
    text = run.stderr()
    lines = run.error_lines()
    ok = (
        len(lines) == 1
        and text.rstrip().endswith(lines[0])
        and "Traceback" not in text
        and must_contain in lines[0]
    )
    row.check(
        name,
        ok,
        lines[0] if len(lines) == 1 else f"{len(lines)} error lines; last: {run.last_line()}",
    )


def _finish(dep: Deployment, row: Row, *, dead_letters_exact: bool = True, idle_s: float = 3,
            above: int | None = None, since: float | None = None) -> Finished | None:  # fmt: skip
    """A last `nudge consume --until-idle`, then the accounting; None when it failed."""
    dep.say("final consume --until-idle")
    done = dep.consume(idle_s, above=above, since=since)
    if not row.check("final consume exits 0", done.ok, "" if done.ok else done.failure()):
        return None
    assert done.stats is not None
    dep.account(row, done.stats, dead_letters_exact=dead_letters_exact)
    dep.say(f"learned {row.learned:,} of {row.expected:,}; dead-lettered {row.dead_lettered:,}")
    return done


# ---- scenarios: faults ------------------------------------------------------------------------------


def scenario_baseline(c: Campaign) -> Row:
    row = Row("baseline")
    dep = Deployment(c, row.scenario)
    dep.simulate(c.events)
    done = _finish(dep, row)
    if done and done.stats:
        row.notes.append(f"consumer peak RSS (VmHWM) {done.run.peak_rss_mb:.0f} MB")
        row.details["peak_rss_mb"] = round(done.run.peak_rss_mb, 1)
    return row


def scenario_kill_consumer(c: Campaign) -> Row:
    row = Row("kill-consumer")
    estimate = int(c.events * 1.42)  # messages per event: 1 impression, ~0.4 outcomes
    every = max(20, min(700, estimate // (c.kills * 3)))
    dep = Deployment(c, row.scenario, {
        "NUDGE_KAFKA__MAX_POLL_RECORDS": str(min(300, every)),
        "NUDGE_CHECKPOINT__EVERY_EVENTS": str(every),
        "NUDGE_CHECKPOINT__EVERY_S": "0.5",
        "NUDGE_CHECKPOINT__KEEP": "2",
    })  # fmt: skip
    dep.simulate(c.events)
    total = dep.produced
    rng = random.Random(c.seed)
    # A random point after the run's first new checkpoint: up to 0.4 s at 20,000 events (as the
    # crash test), less for smaller runs so that every kill still finds messages left.
    max_delay_s = 0.4 * min(1.0, c.events / 20_000)
    recoveries: list[float] = []
    at_kill: list[int] = []
    before, killed_at = 0, None
    run = dep.start_consumer()
    for i in range(c.kills):

        def progressed(floor: int = before) -> bool:
            return dep.consumed() > floor

        if not wait_for(progressed, 120):
            row.check("each restart checkpoints progress", False,
                      f"run {i + 1} checkpointed nothing beyond {before:,} in 120 s: {run.last_line()}")  # fmt: skip
            run.kill9()
            break
        if killed_at is not None:
            recoveries.append(time.monotonic() - killed_at)
        time.sleep(rng.uniform(0.0, max_delay_s))
        run.kill9()
        killed_at = time.monotonic()
        before = dep.consumed()
        at_kill.append(before)
        dep.say(f"kill -9 {i + 1}/{c.kills} at {before:,} of {total:,} messages checkpointed")
        if before >= total:
            dep.say("the stream is finished: no more kills (raise --events)")
            break
        if i + 1 < c.kills:
            run = dep.start_consumer()
    done = _finish(dep, row, above=before, since=killed_at)
    if done is None or done.stats is None:
        return row
    if done.progress_after_s is not None:
        recoveries.append(done.progress_after_s)
    mid_stream = sum(n < total for n in at_kill)
    row.check("every kill landed while messages were left", mid_stream == c.kills,
              f"{mid_stream} of {c.kills} (raise --events if fewer)")  # fmt: skip
    row.check("one start per run", done.stats["starts"] == len(at_kill) + 1,
              f"starts {done.stats['starts']}, runs {len(at_kill) + 1}")  # fmt: skip
    letters = dep.dead_letter_keys()
    distinct = Counter(body["reason"] for body in letters.values())
    row.check("dead-letter topic, deduped by key, as expected", distinct == dep.expected_dead,
              counter_diff(dep.expected_dead, distinct))  # fmt: skip
    if recoveries:
        row.recovery_s = max(recoveries)
        row.notes.append(
            f"recovery = kill -9 to the restarted consumer's first checkpoint with new progress: "
            f"median {statistics.median(recoveries):.1f} s, max {max(recoveries):.1f} s over "
            f"{len(recoveries)} restarts (checkpoint every {every} messages / 0.5 s)"
        )
    row.details["checkpointed_at_kill"] = at_kill
    row.details["recoveries_s"] = [round(r, 2) for r in recoveries]
    return row


def scenario_kill_broker(c: Campaign) -> Row:
    row = Row("kill-broker")
    dep = Deployment(c, row.scenario, {
        "NUDGE_CHECKPOINT__EVERY_EVENTS": "500", "NUDGE_CHECKPOINT__EVERY_S": "1",
    })  # fmt: skip
    dep.simulate(c.events // 2)
    first_total = dep.produced
    run = dep.start_consumer()
    if not wait_for(lambda: dep.consumed() > 0, 120):
        row.check("consumer makes progress before the fault", False, run.last_line())
        return row
    at_fault = dep.consumed()
    row.check("the broker died mid-stream", at_fault < first_total,
              f"{at_fault:,} of {first_total:,} messages checkpointed at the fault")  # fmt: skip
    pid = c.broker.kill9()
    t_fault = time.monotonic()
    dep.say(
        f"broker pid {pid} killed -9 at {at_fault:,} of {first_total:,} checkpointed; down {c.outage_s:.0f} s"
    )
    exits: list[str] = []
    exited: list[ConsumerRun] = []

    def note_exit(r: ConsumerRun, phase: str) -> None:
        exited.append(r)
        exits.append(f"exit {r.proc.returncode} {phase} ({time.monotonic() - t_fault:.1f} s after the "
                     f"kill): {r.last_line()}")  # fmt: skip
        dep.say(exits[-1])

    while time.monotonic() - t_fault < c.outage_s:
        if run.proc.poll() is not None and len(exits) == 0:
            note_exit(run, "during the outage")
        time.sleep(0.2)
    start_s = c.broker.start()
    t_back = time.monotonic()
    dep.say(f"broker back after {t_back - t_fault:.1f} s (start took {start_s:.1f} s)")
    through = run  # the process that was consuming when the broker died
    restarts = 0
    if not run.alive():
        if not exits:
            note_exit(run, "while the broker started")
        run = dep.start_consumer()
        restarts += 1
    base = max(dep.consumed(), through.logged_consumed())  # read before the fault
    dep.simulate(c.events - c.events // 2)
    total = dep.produced
    learning: float | None = None
    caught: float | None = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and caught is None:
        if learning is None and max(run.logged_consumed(), dep.consumed()) > base:
            learning = time.monotonic() - t_back
        if dep.consumed() >= total:
            caught = time.monotonic() - t_back
        if not run.alive():
            note_exit(run, "after the broker came back")
            if restarts >= 3:
                break
            run = dep.start_consumer()
            restarts += 1
        time.sleep(0.1)
    if run.alive():
        rc = run.terminate()
        row.check("SIGTERM after catching up exits 0", rc == 0, f"exit {rc}: {run.last_line()}")
    row.check("consumer catches up after the outage", caught is not None,
              f"{dep.consumed():,} of {total:,} checkpointed after 600 s")  # fmt: skip
    row.check("restarted at most once", restarts <= 1, "; ".join(exits))
    clean = all(
        r.proc.returncode == 3
        and r.last_line().startswith("nudge: ")
        and "is the broker up?" in r.last_line()
        for r in exited
    )
    row.check("an exit is 3, its last line the one `nudge:` line", clean, "; ".join(exits))
    noise = sum(
        " ERROR kafka." in line for r in [through, *exited] for line in r.stderr().splitlines()
    )
    if noise:
        row.notes.append(
            f"kafka-python logged {noise} ERROR lines (some with tracebacks) during the outage"
        )
    behaviour = ("kept running through the outage" if not exits
                 else f"{exits[0]}; restarted by the campaign once the broker was back")  # fmt: skip
    row.notes.append(f"consumer {behaviour}; longest gap between its log lines "
                     f"{through.longest_silence_s():.0f} s")  # fmt: skip
    row.recovery_s = learning
    if learning is not None and caught is not None:
        row.notes.append(
            f"recovery = broker back (ready) to the consumer reading messages it had not read "
            f"before the fault: {learning:.1f} s; all {total:,} messages checkpointed {caught:.1f} s after it"
        )
    row.details.update(exits=exits, restarts=restarts, checkpointed_at_fault=at_fault,
                       outage_s=c.outage_s, broker_start_s=round(start_s, 1),
                       caught_up_after_s=caught)  # fmt: skip
    _finish(dep, row)
    return row


def scenario_two_consumers(c: Campaign) -> Row:
    row = Row("two-consumers")
    dep = Deployment(c, row.scenario)
    dep.simulate(max(1000, c.events // 4))
    first = dep.start_consumer()
    lock = dep.checkpoint_dir / "LOCK"
    mine = b'{"pid":%d,' % first.pid
    if not wait_for(lambda: lock.exists() and lock.read_bytes().startswith(mine), 60):
        row.check("first consumer takes the lock", False, first.last_line())
        first.kill9()
        return row
    t = time.monotonic()
    second = dep.consume(2, timeout_s=120)
    refused_s = time.monotonic() - t
    dep.say(f"second consumer: exit {second.rc} after {refused_s:.1f} s")
    row.check("second consumer exits 2", second.rc == 2, second.failure())
    _error_line_check(row, second.run, f"is in use by pid {first.pid}",
                      "one line naming the holder's pid")  # fmt: skip
    row.check(
        "refused before reading", "consuming" not in second.run.stderr(), second.run.last_line()
    )
    rc = first.terminate()
    row.check(
        "first consumer unaffected (SIGTERM: exit 0)", rc == 0, f"exit {rc}: {first.last_line()}"
    )
    done = _finish(dep, row)
    if done and done.stats:
        row.check(
            "the refused one never started",
            done.stats["starts"] == 2,
            f"starts {done.stats['starts']}",
        )
    row.notes.append(f"second consumer refused in {refused_s:.1f} s: {second.run.last_line()}")
    return row


def _mount_tmpfs(path: Path, size_mb: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise CampaignError(f"mount -t tmpfs failed: {done.stderr.strip()}")


def _fill(path: Path) -> int:
    """Write `path` until the file system is full; the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as fh:
        for block in (1 << 20, 4096, 512):
            try:
                while True:
                    written += fh.write(b"\0" * block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return written


def scenario_disk_full(c: Campaign) -> Row:
    row = Row("disk-full")
    if os.geteuid() != 0:
        row.skipped = "mounting a tmpfs needs root"
        return row
    disk = c.workdir / "disk-full" / "disk"
    dep = Deployment(c, row.scenario, {
        "NUDGE_CHECKPOINT__DIRECTORY": str(disk / "checkpoints"),
        "NUDGE_CHECKPOINT__EVERY_EVENTS": "500", "NUDGE_CHECKPOINT__EVERY_S": "1",
    })  # fmt: skip
    _mount_tmpfs(disk, c.tmpfs_mb)
    try:
        return _disk_full(c, dep, row, disk)
    finally:
        dep.stop_all()
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _disk_full(c: Campaign, dep: Deployment, row: Row, disk: Path) -> Row:
    from streams.checkpoints import CheckpointStore

    dep.simulate(c.events // 2)
    run = dep.start_consumer()
    if not wait_for(lambda: dep.consumed() > 0, 120):
        row.check("consumer checkpoints before the disk fills", False, run.last_line())
        return row
    filler = disk / "filler"
    written = _fill(filler)
    dep.say(f"tmpfs of {c.tmpfs_mb} MB full ({written / 1e6:.1f} MB of filler); producing more")
    dep.simulate(c.events - c.events // 2)  # new messages: a checkpoint is due whatever happened
    rc, _ = dep.watch(run, 300)
    row.check(
        "consumer exits 2 when a checkpoint cannot be written",
        rc == 2,
        f"exit {rc}: {run.last_line()}",
    )
    _error_line_check(row, run, "No space left on device", "one-line error naming ENOSPC")
    try:
        previous = CheckpointStore(dep.checkpoint_dir).latest()
        row.check("previous checkpoint still current and whole", previous is not None,
                  f"checkpoint {previous.sequence if previous else None}")  # fmt: skip
    except Exception as exc:  # the finding is what went wrong
        row.check("previous checkpoint still current and whole", False, str(exc))
        previous = None
    leftovers = [p.name for p in dep.checkpoint_dir.iterdir() if p.name.startswith(".tmp-")]
    row.check("no temporary directory left behind", not leftovers, ", ".join(leftovers))
    at_fail = int(previous.stats["consumed"]) if previous else 0
    filler.unlink()
    freed = time.monotonic()
    dep.say(f"space freed; restarting from {at_fail:,} messages checkpointed")
    done = _finish(dep, row, above=at_fail, since=freed)
    if done is not None:
        row.recovery_s = done.progress_after_s
        row.notes.append(
            "recovery = space freed to the restarted consumer's first checkpoint with new progress"
        )
    row.notes.append(
        f"error line: {run.error_lines()[-1] if run.error_lines() else run.last_line()}"
    )
    return row


# ---- scenarios: poisoned inputs ----------------------------------------------------------------------


def _impression(event_id: str, timestamp: str, learner: str = "u000001") -> bytes:
    return orjson.dumps({
        "type": "impression", "event_id": event_id, "timestamp": timestamp,
        "trigger": "B/quiz-3/quiz-failed", "learner_id": learner,
        "context": {"learner": {"country": "PE", "prior_ctr": 0.12}},
        "actions": [{"id": "hint", "features": {"kind": "hint"}},
                    {"id": "none", "features": {"kind": "none"}}],
        "chosen": "hint", "probability": 0.5, "pmf": [0.5, 0.5], "policy_version": "uniform-random",
    })  # fmt: skip


def _outcome(event_id: str, timestamp: str) -> bytes:
    return orjson.dumps({
        "type": "outcome", "event_id": event_id, "timestamp": timestamp,
        "trigger": "B/quiz-3/quiz-failed", "outcome": "helpful",
    })  # fmt: skip


def _between_chunks(c: Campaign, name: str, poison: Callable[[Deployment, Chunk], Sequence[tuple[str, bytes]]],
                    dead: Mapping[str, int], learned: Sequence[str] = ()) -> tuple[Deployment, Row]:  # fmt: skip
    """Chunk, the poison, chunk; the poison's dead letters and learned ids are expected."""
    row = Row(name)
    dep = Deployment(c, name)
    first = dep.simulate(c.chunk)
    dep.produce(poison(dep, first))
    dep.expected_dead.update(dead)
    dep.expected_ids += learned
    dep.simulate(c.chunk)
    return dep, row


def scenario_outcome_2030(c: Campaign) -> Row:
    dep, row = _between_chunks(
        c, "outcome-2030",
        lambda d, _: [("outcomes", _outcome("ghost-2030", "2030-01-01T00:00:00.000+00:00"))],
        {"implausible_event_time": 1},
    )  # fmt: skip
    _finish(dep, row)
    return row


def scenario_impression_9999(c: Campaign) -> Row:
    row = Row("impression-9999")
    dep = Deployment(c, row.scenario)
    dep.simulate(c.chunk)
    dep.produce([("impressions", _impression("far-9999", "9999-12-31T23:00:00.000+00:00"))])
    total = dep.produced
    run = dep.start_consumer()
    if not wait_for(lambda: dep.consumed() >= total, 300):
        row.check("first run reads everything", False, run.last_line())
        run.kill9()
        return row
    rc = run.terminate()
    held = (dep.checkpoint_stats() or {}).get("consumed")
    row.check(
        "first run stops on SIGTERM (the 9999 record held in its checkpoint)", rc == 0, f"exit {rc}"
    )
    dep.say(f"stopped with {held} messages checkpointed; restart with more traffic")
    dep.expected_dead["implausible_event_time"] += 1
    dep.simulate(c.chunk)
    done = _finish(dep, row)
    if done and done.stats:
        row.check("nothing defaulted because of it", done.stats["defaulted"] < done.stats["learned"],
                  f"defaulted {done.stats['defaulted']} of {done.stats['learned']}")  # fmt: skip
    return row


def scenario_year_1(c: Campaign) -> Row:
    dep, row = _between_chunks(
        c, "year-1",
        lambda d, _: [("impressions", _impression("year-1", "0001-01-01T00:00:00.000+00:00"))],
        {"implausible_event_time": 1},
    )  # fmt: skip
    _finish(dep, row)
    return row


def scenario_message_400kb(c: Campaign) -> Row:
    big = b'{"type": "impression", "padding": "' + b"\t" * 400_000 + b'"}'
    dep, row = _between_chunks(
        c, "message-400kb", lambda d, _: [("impressions", big)], {"too_large": 1}
    )
    done = _finish(dep, row)
    if done is None:
        return row
    letters = [b for b in dep.dead_letter_keys().values() if b["reason"] == "too_large"]
    cap = dep.config.kafka.dead_letter_max_bytes
    sizes = [len(orjson.dumps(b)) for b in letters]
    row.check("its dead letter is bounded", len(letters) == 1 and max(sizes) <= cap,
              f"{len(letters)} letters, sizes {sizes}, cap {cap}")  # fmt: skip
    again = dep.consume(2)
    stats = again.stats or {}
    row.check("a restart does not meet it again (no crash loop)",
              again.ok and stats.get("dead_lettered") == row.dead_lettered and stats.get("starts") == 2,
              again.failure() if not again.ok else f"dead letters {stats.get('dead_lettered')}")  # fmt: skip
    return row


def scenario_resent_impression(c: Campaign) -> Row:
    dep, row = _between_chunks(
        c, "resent-impression",
        lambda d, first: [("impressions", first.first_valid_impression())],
        {"duplicate_impression": 1},
    )  # fmt: skip
    row.notes.append("the chunk's first impression, byte for byte, after the whole chunk "
                     f"({c.chunk:,} events, ~{2 * c.chunk:,} s of event time) had been sent")  # fmt: skip
    _finish(dep, row)
    return row


def scenario_duplicate_type_key(c: Campaign) -> Row:
    def poison(d: Deployment, first: Chunk) -> list[tuple[str, bytes]]:
        body = _impression("two-faced", timestamp_text(first.end_ts))
        return [("impressions", b'{"type":"outcome",' + body[1:])]

    dep, row = _between_chunks(c, "duplicate-type-key", poison, {"duplicate_key": 1})
    _finish(dep, row)
    return row


def scenario_push_100k(c: Campaign) -> Row:
    row = Row(f"push-{c.push // 1000}k" if c.push % 1000 == 0 else f"push-{c.push}")
    dep = Deployment(c, row.scenario)
    first = dep.simulate(c.chunk)
    template = first.valid_docs("impression", 1)[0]
    when = timestamp_text(dep.next_ts)
    ids = [f"push-{i:06d}" for i in range(c.push)]

    def pushes() -> Iterator[tuple[str, bytes]]:
        for i, event_id in enumerate(ids):
            yield "impressions", orjson.dumps({**template, "event_id": event_id, "timestamp": when,
                                               "learner_id": f"u{i % 5000:06d}"})  # fmt: skip

    dep.say(f"producing {c.push:,} impressions stamped {when}, never answered")
    dep.produce(pushes())
    dep.expected_ids += ids
    dep.next_ts += CHUNK_GAP_S
    dep.simulate(c.chunk)
    done = _finish(dep, row, dead_letters_exact=False)
    if done is None or done.stats is None:
        return row
    peak = done.run.peak_rss_mb
    # Once the pending impressions and the closed windows are at their caps the state stops
    # growing but for the learned ids (16 B each, a set bounded by join.max_learned_ids and
    # the event-time horizon): the slope of VmRSS against messages consumed from then to the
    # end of the push, net of them. Before the closed-window cap RSS rightly grows.
    cap_at = caps_reached_at(first.messages, dep.config.join)
    push_end = first.messages + c.push
    window = [(float(n), rss) for _, n, rss in done.run.samples if cap_at <= n <= push_end]
    growth = growth_per_100k(done.run.samples, cap_at, push_end, MEMORY_BYTES_PER_ID)
    per_100k = None if growth is None else growth[1]
    if growth is None:
        row.notes.append("too few RSS samples past the pending and closed-window caps to judge "
                         f"growth (raise --push above {cap_at - first.messages:,})")  # fmt: skip
    else:
        row.check("RSS flat once pending impressions and closed windows are capped (at most "
                  f"+10 MB per 100k net of the learned ids, {MEMORY_BYTES_PER_ID} B each)",
                  growth[1] <= 10.0,
                  f"{growth[1]:+.1f} MB per 100,000 impressions net ({growth[0]:+.1f} measured)")  # fmt: skip
    row.check(
        f"peak RSS within --rss-limit-mb {c.rss_limit_mb:.0f}",
        peak <= c.rss_limit_mb,
        f"{peak:.0f} MB",
    )
    first_rss = window[0][1] if window else 0.0
    last_rss = window[-1][1] if window else 0.0
    row.notes.append(
        f"peak RSS (VmHWM) {peak:.0f} MB; VmRSS {first_rss:.0f} MB when the pending and closed-window "
        f"caps ({dep.config.join.max_pending_impressions:,}, {dep.config.join.max_closed_windows:,}) "
        f"were reached, {last_rss:.0f} MB at the end of the push "
        f"({'?' if per_100k is None else f'{per_100k:+.1f}'} MB per 100k net); closed early "
        f"{done.stats['closed_early']:,}"
    )
    row.details["rss_samples"] = [(round(t, 1), n, round(r, 1)) for t, n, r in done.run.samples]
    row.details["peak_rss_mb"] = round(peak, 1)
    return row


def _reseal(ckpt: Path) -> None:
    """Recompute a checkpoint's manifest after an edit, as someone covering it up would."""
    manifest = orjson.loads((ckpt / "manifest.json").read_bytes())
    files = {
        rel: hashlib.sha256((ckpt / rel).read_bytes()).hexdigest() for rel in manifest["files"]
    }
    body = {"format": manifest["format"], "files": dict(sorted(files.items()))}
    seal = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    (ckpt / "manifest.json").write_bytes(
        orjson.dumps({**body, "sha256": seal}, option=orjson.OPT_INDENT_2)
    )


def _first_run(dep: Deployment, row: Row) -> bool:
    done = dep.consume(2)
    return row.check("first run exits 0", done.ok, done.failure())


def scenario_rewound_offsets(c: Campaign) -> Row:
    from streams.checkpoints import CheckpointStore

    row = Row("rewound-offsets")
    dep = Deployment(c, row.scenario)
    dep.simulate(c.chunk)
    if not _first_run(dep, row):
        return row
    newest = dep.checkpoint_dir / dep.checkpoint_names()[-1]
    state = orjson.loads((newest / "state.json").read_bytes())
    was = state["offsets"]
    state["offsets"] = {key: 0 for key in was}
    (newest / "state.json").write_bytes(orjson.dumps(state))
    _reseal(newest)
    try:
        loaded = CheckpointStore(dep.checkpoint_dir).latest()
        accepted = loaded is not None and set(loaded.offsets.values()) == {0}
    except Exception:
        accepted = False
    row.notes.append(f"{newest.name}: offsets {was} set to 0 and its manifest re-sealed "
                     f"({'accepted' if accepted else 'refused'} as a checkpoint)")  # fmt: skip
    dep.simulate(c.chunk)
    done = _finish(dep, row, dead_letters_exact=False)
    if done and done.stats:
        row.notes.append(
            f"consumed {done.stats['consumed']:,} messages for {dep.produced:,} produced"
        )
    return row


def _damaged_pointer(
    c: Campaign, name: str, damage: Callable[[Deployment], str], must_say: str
) -> Row:
    row = Row(name)
    dep = Deployment(c, name)
    dep.simulate(c.chunk)
    if not _first_run(dep, row):
        return row
    newest = dep.checkpoint_names()[-1]
    what = damage(dep)
    refused = dep.consume(2, timeout_s=120)
    row.check("restart refuses: exit 2", refused.rc == 2, refused.failure())
    _error_line_check(row, refused.run, must_say, "one line saying what is wrong")
    row.notes.append(f"{what}; restart said: {refused.run.last_line()}")
    (dep.checkpoint_dir / "CURRENT").write_text(newest + "\n")  # the repair the message suggests
    dep.simulate(c.chunk)
    _finish(dep, row)
    return row


def scenario_current_deleted(c: Campaign) -> Row:
    def damage(dep: Deployment) -> str:
        (dep.checkpoint_dir / "CURRENT").unlink()
        return "CURRENT deleted"

    return _damaged_pointer(c, "current-deleted", damage, "CURRENT is missing")


def scenario_current_outside(c: Campaign) -> Row:
    def damage(dep: Deployment) -> str:
        import shutil

        stolen = dep.dir / "stolen"  # a whole checkpoint, but outside the directory
        shutil.copytree(dep.checkpoint_dir / dep.checkpoint_names()[-1], stolen)
        (dep.checkpoint_dir / "CURRENT").write_text("../stolen\n")
        return "CURRENT set to ../stolen (a copy of a checkpoint outside the directory)"

    return _damaged_pointer(c, "current-outside", damage, "not a checkpoint of this directory")


def scenario_corrupt_newest(c: Campaign) -> Row:
    row = Row("corrupt-newest")
    dep = Deployment(
        c, row.scenario, {"NUDGE_CHECKPOINT__EVERY_EVENTS": str(max(100, c.chunk // 3))}
    )
    dep.simulate(c.chunk)
    if not _first_run(dep, row):
        return row
    names = dep.checkpoint_names()
    if not row.check("at least two checkpoints kept", len(names) >= 2, ", ".join(names)):
        return row
    state = dep.checkpoint_dir / names[-1] / "state.json"
    data = bytearray(state.read_bytes())
    middle = len(data) // 2
    data[middle] = ord("0") if data[middle] != ord("0") else ord("1")
    state.write_bytes(bytes(data))
    dep.simulate(c.chunk)
    done = _finish(dep, row)
    if done and done.stats:
        row.check("fell back to the previous checkpoint", done.stats.get("checkpoint_fallbacks") == 1,
                  f"checkpoint_fallbacks {done.stats.get('checkpoint_fallbacks')}")  # fmt: skip
        warned = [x for x in done.run.stderr().splitlines() if "WARNING" in x and "corrupt" in x]
        row.check(
            "a WARNING names the corrupt checkpoint",
            bool(warned),
            warned[0][:300] if warned else "none",
        )
    row.notes.append(f"one byte of {names[-1]}/state.json changed (of {', '.join(names)})")
    return row


# ---- scenario: fuzz ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pools:
    """Values drawn by hypothesis strategies, which the fuzz loop puts into messages."""

    json_values: list[Any]
    texts: list[str]
    numbers: list[int | float]
    blobs: list[bytes]
    keys: list[str]


def hypothesis_pools(seed: int, size: int) -> Pools:
    """`size` draws (seeded) of JSON-ish values, unicode text, numbers (huge ones too), random
    bytes and object keys, through hypothesis' own runner (no pytest)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as fixed_seed
    from hypothesis import strategies as st

    leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
    json_values = st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
        ),
        max_leaves=12,
    )
    numbers = (
        st.integers() | st.floats() | st.integers(min_value=-(10**40), max_value=10**40)
        | st.floats(min_value=-1e308, max_value=1e308)
    )  # fmt: skip
    bundle = st.tuples(
        json_values, st.text(max_size=80), numbers, st.binary(max_size=300), st.text(max_size=16)
    )
    drawn: list[tuple[Any, str, int | float, bytes, str]] = []

    @fixed_seed(seed)
    @settings(max_examples=size, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(bundle)
    def draw(values: tuple[Any, str, int | float, bytes, str]) -> None:
        drawn.append(values)

    draw()
    return Pools(
        [d[0] for d in drawn], [d[1] for d in drawn], [d[2] for d in drawn],
        [d[3] for d in drawn], [d[4] for d in drawn],
    )  # fmt: skip


_RAW = "\x01RAW\x01"  # a placeholder string, replaced by raw JSON text after dumping
_HUGE = ("1e308", "-1e308", "1e309", "-1e400", "5e-324", "1e-400", "-0.0", "NaN", "Infinity",
         "-Infinity", "123456789012345678901234567890", "-9223372036854775809",
         "18446744073709551616", "1" + "0" * 400, "0." + "0" * 300 + "1")  # fmt: skip
_UNICODE = ("\u202e", "e\u0301", "\U0001d518\U0001d52b", "\ufeff", "\u200b", "\U0001f600", "\u0000",
            "\ud800", "\udfff", "\uffff", "\U0010ffff", "\u00e9t\u00e9", "\u4e2d\u6587", "\u0627\u0644")  # fmt: skip
_TIMESTAMPS = ("2026-01-05T08:00:00Z", "2026-01-05T08:00:00", "2026-01-05 08:00:00+00:00",
               "2026-01-05T23:59:60+00:00", "2026-01-05T08:00:00+14:00", "2026-01-05T08:00:00-12:00",
               "2026-01-05T08:00:00.123456789+00:00", "1970-01-01T00:00:00+00:00", "0001-01-01T00:00:00+00:00",
               "9999-12-31T23:59:59+00:00", "2030-06-01T00:00:00+00:00", "20260105T080000Z", "", "now",
               "2026-02-30T00:00:00+00:00", "+002026-01-05T08:00:00+00:00")  # fmt: skip
_DEPTHS = (2, 16, 64, 256, 1000, 4096, 20_000)
FUZZ_KINDS: dict[str, float] = {
    "random_bytes": 8, "json_value": 8, "json_object": 4, "mutated_field": 16, "dropped_field": 5,
    "added_field": 5, "wrong_type": 10, "huge_number": 8, "unicode": 8, "nul": 5, "deep": 4,
    "duplicate_key": 6, "truncated_utf8": 5, "timestamp": 3, "type_swap": 2, "valid": 3,
    "too_large": 0.2,
}  # fmt: skip


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path (dict keys, list indices) below `node`."""
    items: Iterable[tuple[Any, Any]] = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


class Fuzzer:
    """Builds fuzzed messages from valid templates and hypothesis-drawn values (seeded)."""

    def __init__(
        self, pools: Pools, rng: random.Random, max_message_bytes: int, without: Iterable[str] = ()
    ) -> None:
        self.pools = pools
        self.rng = rng
        self.max_message_bytes = max_message_bytes
        self.kinds = [k for k in FUZZ_KINDS if k not in set(without)]
        self.weights = [FUZZ_KINDS[k] for k in self.kinds]

    def message(
        self, n: int, impression: Mapping[str, Any], outcome: Mapping[str, Any]
    ) -> tuple[str, str, bytes]:
        """(fuzz kind, "impressions" or "outcomes", bytes) of fuzzed message number `n`."""
        kind = self.rng.choices(self.kinds, self.weights)[0]
        doc = orjson.loads(orjson.dumps(impression if self.rng.random() < 0.7 else outcome))
        doc["event_id"] = f"fz{n}"
        topic = "impressions" if doc["type"] == "impression" else "outcomes"
        value: bytes = getattr(self, f"_{kind}")(doc)
        if self.rng.random() < 0.05:
            topic = "outcomes" if topic == "impressions" else "impressions"
        return kind, topic, value

    # -- helpers --

    def _dumps(self, doc: Any, raw: str | None = None) -> bytes:
        text = json.dumps(doc, ensure_ascii=self.rng.random() < 0.3, allow_nan=True)
        if raw is not None:
            text = text.replace(json.dumps(_RAW), raw, 1)
        return text.encode("utf-8", "surrogatepass")

    def _path(self, doc: Any, want: type | tuple[type, ...] | None = None) -> tuple[Any, ...]:
        paths = [p for p in _paths(doc) if want is None or isinstance(_parent(doc, p)[p[-1]], want)]
        return self.rng.choice(paths or list(_paths(doc)))

    def _set(self, doc: Any, path: tuple[Any, ...], value: Any) -> None:
        _parent(doc, path)[path[-1]] = value

    # -- the kinds --

    def _random_bytes(self, doc: dict[str, Any]) -> bytes:
        blob = self.rng.choice(self.pools.blobs)
        return (b"{" + blob) if self.rng.random() < 0.3 else blob

    def _json_value(self, doc: dict[str, Any]) -> bytes:
        return self._dumps(self.rng.choice(self.pools.json_values))

    def _json_object(self, doc: dict[str, Any]) -> bytes:
        obj = {
            self.rng.choice(self.pools.keys): self.rng.choice(self.pools.json_values)
            for _ in range(3)
        }
        if self.rng.random() < 0.5:
            obj["type"] = doc["type"]
        return self._dumps(obj)

    def _mutated_field(self, doc: dict[str, Any]) -> bytes:
        self._set(doc, self._path(doc), self.rng.choice(self.pools.json_values))
        return self._dumps(doc)

    def _dropped_field(self, doc: dict[str, Any]) -> bytes:
        path = self._path(doc)
        parent = _parent(doc, path)
        del parent[path[-1]]
        return self._dumps(doc)

    def _added_field(self, doc: dict[str, Any]) -> bytes:
        dicts = [()] + [p for p in _paths(doc) if isinstance(_parent(doc, p)[p[-1]], dict)]
        path = self.rng.choice(dicts)
        target = doc if not path else _parent(doc, path)[path[-1]]
        target[self.rng.choice(self.pools.keys) or "x"] = self.rng.choice(self.pools.json_values)
        return self._dumps(doc)

    def _wrong_type(self, doc: dict[str, Any]) -> bytes:
        path = self._path(doc)
        old = _parent(doc, path)[path[-1]]
        others = [
            v
            for v in (0, 1.5, "x", True, None, [], {}, [1, "a"], {"a": 1})
            if type(v) is not type(old)
        ]
        self._set(doc, path, self.rng.choice(others))
        return self._dumps(doc)

    def _huge_number(self, doc: dict[str, Any]) -> bytes:
        path = self._path(doc, (int, float))
        if self.rng.random() < 0.5:
            self._set(doc, path, _RAW)
            return self._dumps(doc, self.rng.choice(_HUGE))
        self._set(doc, path, self.rng.choice(self.pools.numbers))
        return self._dumps(doc)

    def _unicode(self, doc: dict[str, Any]) -> bytes:
        path = self._path(doc, str)
        text = (
            self.rng.choice(self.pools.texts)
            if self.rng.random() < 0.5
            else self.rng.choice(_UNICODE)
        )
        parent = _parent(doc, path)
        if isinstance(parent, dict) and self.rng.random() < 0.3:  # a key, not a value
            parent[f"{path[-1]}{text}"] = parent.pop(path[-1])
        else:
            parent[path[-1]] = str(parent[path[-1]]) + text
        return self._dumps(doc)

    def _nul(self, doc: dict[str, Any]) -> bytes:
        if self.rng.random() < 0.5:
            path = self._path(doc, str)
            value = str(_parent(doc, path)[path[-1]])
            at = self.rng.randrange(len(value) + 1)
            self._set(doc, path, value[:at] + "\x00" + value[at:])
            return self._dumps(doc)
        data = self._dumps(doc)
        at = self.rng.randrange(len(data) + 1)
        return data[:at] + b"\0" + data[at:]

    def _deep(self, doc: dict[str, Any]) -> bytes:
        depth = self.rng.choice(_DEPTHS)
        nested = (
            "[" * depth + "]" * depth
            if self.rng.random() < 0.5
            else '{"a":' * depth + "1" + "}" * depth
        )
        if self.rng.random() < 0.2:
            return nested.encode()
        self._set(doc, self._path(doc), _RAW)
        return self._dumps(doc, nested)

    def _duplicate_key(self, doc: dict[str, Any]) -> bytes:
        dicts = [()] + [
            p
            for p in _paths(doc)
            if isinstance(_parent(doc, p)[p[-1]], dict) and _parent(doc, p)[p[-1]]
        ]
        path = self.rng.choice(dicts)
        target = doc if not path else _parent(doc, path)[path[-1]]
        key = "type" if not path and self.rng.random() < 0.5 else self.rng.choice(list(target))
        value = target[key] if self.rng.random() < 0.5 else self.rng.choice(self.pools.json_values)
        inner = json.dumps(target, allow_nan=True)
        dup = "{" + json.dumps(key) + ": " + json.dumps(value, allow_nan=True) + ", " + inner[1:]
        if not path:
            return dup.encode("utf-8", "surrogatepass")
        self._set(doc, path, _RAW)
        return self._dumps(doc, dup)

    def _truncated_utf8(self, doc: dict[str, Any]) -> bytes:
        path = self._path(doc, str)
        self._set(doc, path, str(_parent(doc, path)[path[-1]]) + "\u00e9\u4e2d\U0001f600")
        data = orjson.dumps(doc)
        starts = [i for i, b in enumerate(data) if b >= 0xC0]
        choice = self.rng.random()
        if choice < 0.5 and starts:
            at = self.rng.choice(starts)
            return data[: at + 1] + data[at + 2 :] if self.rng.random() < 0.5 else data[: at + 1]
        if choice < 0.75:
            at = self.rng.randrange(len(data))
            return (
                data[:at]
                + bytes([self.rng.choice((0x80, 0xBF, 0xC0, 0xFE, 0xFF))])
                + data[at + 1 :]
            )
        return data[: self.rng.randrange(len(data))]

    def _timestamp(self, doc: dict[str, Any]) -> bytes:
        doc["timestamp"] = self.rng.choice(_TIMESTAMPS)
        return self._dumps(doc)

    def _type_swap(self, doc: dict[str, Any]) -> bytes:
        doc["type"] = self.rng.choice(
            ["outcome", "impression", "Impression", "", None, "reaction", 1, ["impression"]]
        )
        return self._dumps(doc)

    def _valid(self, doc: dict[str, Any]) -> bytes:
        return orjson.dumps(doc)

    def _too_large(self, doc: dict[str, Any]) -> bytes:
        size = self.rng.randrange(self.max_message_bytes + 1, 3 * self.max_message_bytes)
        doc["policy_version"] = "p" * size
        return orjson.dumps(doc)


def scenario_fuzz(c: Campaign) -> Row:
    row = Row("fuzz")
    try:
        import hypothesis  # noqa: F401
    except ImportError as exc:
        row.skipped = f"hypothesis is not installed ({exc})"
        return row
    dep = Deployment(c, row.scenario)
    t = time.monotonic()
    pools = hypothesis_pools(c.seed, max(200, min(3000, c.fuzz // 30)))
    dep.say(f"hypothesis drew {len(pools.texts):,} value bundles in {time.monotonic() - t:.1f} s")
    fuzzed = _produce_fuzz(c, dep, pools)
    t = time.monotonic()
    done = dep.consume(5, timeout_s=4 * 3600)
    consume_s = time.monotonic() - t
    starts = (done.stats or {}).get("starts")
    row.check("no crash: one run, exit 0", done.ok and starts == 1,
              done.failure() if not done.ok else f"starts {starts}")  # fmt: skip
    if not done.ok:
        again = dep.consume(5, timeout_s=4 * 3600)
        after = "exit 0" if again.ok else f"crashed again ({again.failure()})"
        row.notes.append(f"a restart after the crash: {after}")
        done = again if again.ok else done
    row.produced, row.expected = dep.produced, len(set(dep.expected_ids))
    _judge_fuzz(dep, row, done)
    ran = (
        f"consumed {dep.produced:,} messages in {consume_s:.0f} s"
        if done.ok
        else "consumer crashed"
    )
    by_kind = ", ".join(f"{k} {n}" for k, n in sorted(fuzzed.items()))
    row.notes.append(f"{ran}; fuzz by kind: {by_kind}")
    return row


def _produce_fuzz(c: Campaign, dep: Deployment, pools: Pools) -> Counter[str]:
    """Valid traffic (--events, 2% invalid) with `c.fuzz` fuzzed messages spread through it."""
    from bandit.errors import InvalidEvent
    from bandit.events import decode_event

    seed = c.seed * 10_000
    truth = dep.truth(c.events, seed, 0.02, dep.next_ts)
    dep._record(Chunk(seed, dep.next_ts, max_event_time(truth), truth))
    fuzzer = Fuzzer(
        pools, random.Random(c.seed), dep.config.limits.max_message_bytes, c.fuzz_without
    )
    rules = dep.config.event_rules()
    k = dep.config.kafka
    topics = {"impressions": k.impressions_topic, "outcomes": k.outcomes_topic}
    per_message = c.fuzz / max(1, len(truth.messages))
    owed, n = 0.0, 0
    templates: dict[str, dict[str, Any]] = {}
    kinds: Counter[str] = Counter()
    producer = dep.producer()
    t = time.monotonic()
    try:

        def send_fuzz() -> None:
            nonlocal n
            kind, topic, value = fuzzer.message(n, templates["impression"], templates["outcome"])
            producer.send(topics[topic], key=f"fuzz:{n}:{kind}".encode(), value=value)
            kinds[kind] += 1
            n += 1
            if n % 20_000 == 0:
                dep.say(f"produced {n:,} of {c.fuzz:,} fuzzed messages")

        for m in truth.messages:
            producer.send(topics[m.kind + "s"], key=m.key, value=m.value)
            try:
                decode_event(m.value, rules)
                templates[m.kind] = orjson.loads(m.value)
            except InvalidEvent:
                pass
            owed += per_message
            while owed >= 1 and n < c.fuzz and len(templates) == 2:
                send_fuzz()
                owed -= 1
        while n < c.fuzz:
            send_fuzz()
        producer.flush()
    finally:
        producer.close()
    dep.produced += n
    dep.say(
        f"produced {len(truth.messages):,} traffic + {n:,} fuzzed messages in {time.monotonic() - t:.0f} s"
    )
    return kinds


def _judge_fuzz(dep: Deployment, row: Row, done: Finished) -> None:
    """Read both topics back: the decoder's verdict on each fuzzed message against the
    dead-letter topic; valid fuzzed impressions join the ids that must be learned once."""
    from bandit.decoding import decode_message
    from bandit.envelopes import Rejected, Source
    from bandit.events import Impression
    from streams.kafka_io import read_topic

    letters = dep.dead_letter_keys()
    rules = dep.config.event_rules()
    k = dep.config.kafka
    invalid_by_reason: Counter[str] = Counter()
    valid_fates: Counter[str] = Counter()
    traffic_dead: Counter[str] = Counter()
    missing: list[str] = []
    wrong: list[str] = []
    bad_letters: list[str] = []
    controls_dead: list[str] = []
    raised: list[str] = []
    raised_kinds: Counter[str] = Counter()
    for topic in (k.impressions_topic, k.outcomes_topic):
        for offset, (key, value, _) in enumerate(read_topic(k, topic, 3000)):
            source = Source(topic, 0, offset)
            letter = letters.get(source.key)
            if letter is not None and (
                not letter.get("detail")
                or letter.get("original_sha256") != hashlib.sha256(value).hexdigest()
            ):
                bad_letters.append(source.key)
            if key is None or not key.startswith(b"fuzz:"):
                if letter is not None:
                    traffic_dead[letter["reason"]] += 1
                continue
            kind = key.split(b":")[2].decode()
            try:
                verdict = decode_message(value, source, rules)
            except Exception as exc:  # the decoder must never raise: a finding
                raised.append(f"{source.key} ({kind}): {type(exc).__name__}: {exc}")
                raised_kinds[kind] += 1
                continue
            if isinstance(verdict, Rejected):
                invalid_by_reason[verdict.reason] += 1
                if letter is None:
                    missing.append(f"{source.key} ({kind}, {verdict.reason})")
                elif letter["reason"] != verdict.reason:
                    wrong.append(f"{source.key} ({kind}): {letter['reason']} for {verdict.reason}")
                continue
            what = "impression" if isinstance(verdict.event, Impression) else "outcome"
            valid_fates[f"{what} {letter['reason'] if letter else 'not dead-lettered'}"] += 1
            if letter is None and isinstance(verdict.event, Impression):
                dep.expected_ids.append(verdict.event.event_id)
            if kind == "valid" and letter is not None and what == "impression":
                controls_dead.append(f"{source.key}: {letter['reason']}")
    invalid = sum(invalid_by_reason.values())
    by_kind = ", ".join(f"{k} {n}" for k, n in raised_kinds.most_common())
    first = raised[0] if raised else ""
    row.check("bandit.decoding.decode_message never raises", not raised,
              f"{len(raised)} fuzzed messages make it raise (kinds: {by_kind}); first: {first}")  # fmt: skip
    if not done.ok or done.stats is None:
        row.notes.append(
            "dead letters and the ledger not judged: the consumer never finished the input"
        )
    else:
        row.check("every invalid fuzzed message dead-lettered", not missing,
                  f"{len(missing)} of {invalid:,} not: {'; '.join(missing[:5])}")  # fmt: skip
        row.check("with the decoder's reason", not wrong, f"{len(wrong)}: {'; '.join(wrong[:5])}")
        row.check("every dead letter has a detail and the original's sha256", not bad_letters,
                  f"{len(bad_letters)}: {', '.join(bad_letters[:5])}")  # fmt: skip
        row.check(
            "valid control impressions learned", not controls_dead, "; ".join(controls_dead[:5])
        )
        row.check("traffic's dead letters as the simulator says", traffic_dead == dep.expected_dead,
                  counter_diff(dep.expected_dead, traffic_dead))  # fmt: skip
        dep.account(row, done.stats, dead_letters_exact=False, note_dead_letters=False)
    row.notes.append(f"decoder: {invalid:,} invalid ("
                     + ", ".join(f"{r} {n}" for r, n in invalid_by_reason.most_common()) + "); "
                     f"{sum(valid_fates.values()):,} valid: "
                     + ", ".join(f"{r} {n}" for r, n in valid_fates.most_common()))  # fmt: skip
    row.details.update(invalid_by_reason=dict(invalid_by_reason), valid_fates=dict(valid_fates),
                       missing=missing[:50], wrong_reason=wrong[:50], bad_letters=bad_letters[:50],
                       decoder_raised=raised[:50])  # fmt: skip


# ---- the command ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[[Campaign], Row]
    help: str


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "baseline",
        scenario_baseline,
        "--events events (2% invalid), one consume --until-idle: exact ledger and dead letters",
    ),
    Scenario(
        "kill-consumer",
        scenario_kill_consumer,
        "--kills kill -9 of the consumer, each at a random point after its first new "
        "checkpoint, restarted at once; then to the end. Recovery: kill to new progress (max)",
    ),
    Scenario(
        "kill-broker",
        scenario_kill_broker,
        "kill -9 of the broker for --outage-s during consumption; the consumer is left "
        "running (restarted only if it exited); more traffic once the broker is back. "
        "Recovery: broker ready to new progress",
    ),
    Scenario(
        "two-consumers",
        scenario_two_consumers,
        "a second consumer on the first's checkpoint directory must exit 2 naming the holder",
    ),
    Scenario(
        "disk-full",
        scenario_disk_full,
        "checkpoints on a --tmpfs-mb tmpfs filled up while consuming: exit 2 in one line, "
        "the previous checkpoint stays; space freed, a restart finishes exact (root only)",
    ),
    Scenario(
        "outcome-2030",
        scenario_outcome_2030,
        "an outcome stamped 2030 for a non-existent event between two chunks",
    ),
    Scenario(
        "impression-9999",
        scenario_impression_9999,
        "an impression stamped 9999-12-31, the consumer stopped (SIGTERM) while holding it, "
        "then restarted with more traffic",
    ),
    Scenario("year-1", scenario_year_1, "an impression stamped 0001-01-01 between two chunks"),
    Scenario(
        "message-400kb",
        scenario_message_400kb,
        "a 400 KB message: dead-lettered, the letter bounded, a restart does not meet it again",
    ),
    Scenario(
        "resent-impression",
        scenario_resent_impression,
        "an impression re-sent byte for byte after its window and allowed lateness",
    ),
    Scenario(
        "duplicate-type-key",
        scenario_duplicate_type_key,
        'a JSON object with "type" twice ({"type":"outcome", ...impression...})',
    ),
    Scenario(
        "push-100k",
        scenario_push_100k,
        "--push impressions with one timestamp that never get an outcome: learned once, "
        "max RSS within --rss-limit-mb",
    ),
    Scenario(
        "rewound-offsets",
        scenario_rewound_offsets,
        "the newest checkpoint's state.json offsets set to 0 and its manifest re-sealed: "
        "the replayed messages must not be learned twice",
    ),
    Scenario(
        "current-deleted",
        scenario_current_deleted,
        "CURRENT deleted: restart refuses (exit 2, one line); after the suggested repair, exact",
    ),
    Scenario(
        "current-outside",
        scenario_current_outside,
        "CURRENT pointing outside the directory: refused; after repair, exact",
    ),
    Scenario(
        "corrupt-newest",
        scenario_corrupt_newest,
        "one byte of the newest checkpoint changed: falls back to the previous one, exact",
    ),
    Scenario(
        "fuzz",
        scenario_fuzz,
        "--fuzz property-based fuzzed messages (hypothesis) among --events valid events: no "
        "crash, every invalid one dead-lettered with the decoder's reason, valid ones once",
    ),
)
POISON = ("outcome-2030", "impression-9999", "year-1", "message-400kb", "resent-impression",
          "duplicate-type-key", "push-100k", "rewound-offsets", "current-deleted",
          "current-outside", "corrupt-newest")  # fmt: skip


def _epilog() -> str:
    lines = ["scenarios (--only NAME ...; 'poison' selects the poisoned inputs):"]
    for s in SCENARIOS:
        lines.append(f"  {s.name:<19} {s.help}")
    lines += [
        "",
        "columns: produced = messages produced to the two topics; expected = distinct ids that "
        "must be learned once; learned = the consumer's count; twice / lost from the ledger "
        "(and the checkpoint's learned ids when the ledger differs); dead-lettered = the "
        "consumer's count; recovery s = see each scenario; result = every check passed.",
    ]
    return "\n".join(lines)



def add_broker_arguments(p: argparse.ArgumentParser) -> None:
    """--port, --data-dir, --keep-broker: the campaign's own broker (the soak's too)."""
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="the campaign broker's port (default: %(default)s)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="its data dir (default: %(default)s)",
    )
    p.add_argument("--keep-broker", action="store_true", help="leave the broker running at the end")

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fault-campaign",
        description="Issue 11's fault campaign against a broker of its own: prints one table.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--events", type=int, default=20_000, help="events of the main scenarios (default: %(default)s); "
                   "the poisoned-input chunks have max(300, events/10)")  # fmt: skip
    p.add_argument(
        "--seed",
        type=int,
        default=7,
        help="seed of traffic, kill points and fuzz (default: %(default)s)",
    )
    p.add_argument("--only", nargs="+", metavar="SCENARIO", help="run only these (see below)")
    p.add_argument(
        "--json", type=Path, metavar="PATH", help="also write the table and every check as JSON"
    )
    p.add_argument("--kills", type=int, default=20, help="kill -9 cycles (default: %(default)s)")
    p.add_argument(
        "--outage-s", type=float, default=30.0, help="broker down this long (default: %(default)s)"
    )
    p.add_argument(
        "--push",
        type=int,
        default=400_000,
        help="unanswered impressions, one timestamp (default: %(default)s: past both caps long "
        "enough that the memory slope is not the last checkpoint's transient)",
    )
    p.add_argument(
        "--fuzz", type=int, default=100_000, help="fuzzed messages (default: %(default)s)"
    )
    p.add_argument("--fuzz-without", nargs="+", default=[], metavar="KIND", choices=sorted(FUZZ_KINDS),
                   help="leave these fuzz kinds out (to see past a known crash): " + ", ".join(FUZZ_KINDS))  # fmt: skip
    p.add_argument(
        "--tmpfs-mb", type=int, default=8, help="size of the disk that fills (default: %(default)s)"
    )
    p.add_argument("--rss-limit-mb", type=float, default=400.0,
                   help="push scenario's bound on the consumer's RSS (default: %(default)s)")  # fmt: skip
    add_broker_arguments(p)
    p.add_argument("--workdir", type=Path, help="where scenarios keep their directories and logs "
                   "(default: .nudge/fault-campaign-<time>)")  # fmt: skip
    return p


def selected(only: Sequence[str] | None) -> list[Scenario]:
    if not only:
        return list(SCENARIOS)
    names = {s.name for s in SCENARIOS}
    wanted: set[str] = set()
    for name in only:
        if name == "poison":
            wanted.update(POISON)
        elif name in names:
            wanted.add(name)
        else:
            raise CampaignError(
                f"--only {name}: no such scenario; the scenarios: {', '.join(sorted(names))}, poison"
            )
    return [s for s in SCENARIOS if s.name in wanted]


def run_scenario(c: Campaign, scenario: Scenario) -> Row:
    t = time.monotonic()
    c.progress.say(scenario.name, "start")
    try:
        row = scenario.run(c)
    except Exception as exc:  # one scenario failing must not stop the campaign
        row = Row(scenario.name)
        row.check("scenario ran to the end", False, f"{type(exc).__name__}: {exc}")
        row.details["traceback"] = traceback.format_exc()
    row.seconds = time.monotonic() - t
    c.progress.say(scenario.name, f"{row.status} in {row.seconds:.0f} s")
    return row


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        scenarios = selected(args.only)
        broker = Broker(args.port, args.data_dir)
    except CampaignError as exc:
        print(f"fault-campaign: {exc}", file=sys.stderr)
        return 2
    workdir = args.workdir or ROOT / ".nudge" / f"fault-campaign-{time.strftime('%Y%m%d-%H%M%S')}"
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    progress = Progress()
    c = Campaign(
        broker=broker, workdir=workdir, progress=progress, seed=args.seed, events=args.events,
        kills=args.kills, outage_s=args.outage_s, push=args.push, fuzz=args.fuzz,
        tmpfs_mb=args.tmpfs_mb, rss_limit_mb=args.rss_limit_mb, fuzz_without=frozenset(args.fuzz_without),
    )  # fmt: skip
    was_running = broker.running()
    progress.say(
        "broker",
        f"{'reusing' if was_running else 'starting'} {broker.bootstrap} ({broker.data_dir})",
    )
    try:
        broker.start()
    except CampaignError as exc:
        print(f"fault-campaign: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    rows: list[Row] = []
    try:
        for scenario in scenarios:
            rows.append(run_scenario(c, scenario))
    except KeyboardInterrupt:
        progress.say("campaign", "interrupted")
    finally:
        if not args.keep_broker and not was_running:
            progress.say("broker", "stopping")
            broker.stop()
    seconds = time.monotonic() - started
    table = format_table(rows)
    print(
        f"fault campaign: --events {c.events:,} --seed {c.seed} --kills {c.kills} --outage-s "
        f"{c.outage_s:.0f} --push {c.push:,} --fuzz {c.fuzz:,}; broker {broker.bootstrap}; "
        f"{seconds / 60:.1f} min; logs in {workdir}"
    )
    print(table)
    report = {
        "campaign": {
            "events": c.events, "seed": c.seed, "kills": c.kills, "outage_s": c.outage_s,
            "push": c.push, "fuzz": c.fuzz, "chunk_events": c.chunk, "tmpfs_mb": c.tmpfs_mb,
            "rss_limit_mb": c.rss_limit_mb, "broker": broker.bootstrap, "workdir": str(workdir),
            "seconds": round(seconds, 1),
        },
        "table": table,
        "rows": [r.as_json() for r in rows],
    }  # fmt: skip
    text = json.dumps(report, indent=2, default=str)
    (workdir / "campaign.json").write_text(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    return (
        0 if rows and all(r.status != "FAIL" for r in rows) and len(rows) == len(scenarios) else 1
    )


if __name__ == "__main__":
    sys.exit(main())
