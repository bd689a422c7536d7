"""Soak: millions of simulated events through one `nudge consume`; its memory against events.

The simulator's traffic (no invalid messages; its 0.5% duplicates) is produced to the fault
campaign's broker in chunks of `--chunk` events, each chunk starting 600 s of event time after
the previous one ends, so the producer holds one chunk at a time; it stays at most `--ahead`
messages ahead of the consumer. One `nudge consume --until-idle` reads it all. Every
`--sample-s` seconds the consumer's resident memory (VmRSS, /proc/<pid>/status) is sampled
with the messages consumed and impressions learned its last progress line shows.

Prints the RSS curve (text chart and a table of events against RSS), the throughput, and
the slope of RSS over the second half of the run in MB per million events ("flat after
warm-up" is the goal: `--max-slope`), and checks the consumer's ledger against the expected
one (every impression learned exactly once). Writes the samples as JSON and the curve as SVG.

Run as `scripts/soak` or `python -m benchmarks.soak` (not part of CI).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.fault_campaign import (
    ROOT,
    Broker,
    CampaignError,
    ConsumerRun,
    Deployment,
    Progress,
    Site,
    add_broker_arguments,
    linear_slope,
    proc_memory_mb,
)
from streams.stats import Ledger

_PROGRESS = re.compile(r"nudge\.consume: consumed=(\d+) .*? learned=(\d+) ")


@dataclass(frozen=True, slots=True)
class Sample:
    """The consumer at one moment: seconds since it started, messages consumed and impressions
    learned (its last progress line), resident memory in MB."""

    seconds: float
    consumed: int
    learned: int
    rss_mb: float


def last_progress(log_text: str) -> tuple[int, int]:
    """(consumed, learned) of the last progress line, (0, 0) before the first."""
    found = _PROGRESS.findall(log_text[-4000:]) or _PROGRESS.findall(log_text)
    return (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)


def evenly(samples: Sequence[Sample], n: int) -> list[Sample]:
    """At most `n` samples spread evenly over the run by messages consumed (first and last kept)."""
    if len(samples) <= n:
        return list(samples)
    top = samples[-1].consumed
    picked: list[Sample] = []
    for k in range(n):
        target = top * k / (n - 1)
        best = min(samples, key=lambda s: (abs(s.consumed - target), s.seconds))
        if not picked or best is not picked[-1]:
            picked.append(best)
    return picked


def until_done(samples: Sequence[Sample]) -> list[Sample]:
    """The samples from the first progress line to the first that shows everything consumed
    (neither the start-up nor the idle tail)."""
    top = max((s.consumed for s in samples), default=0)
    out: list[Sample] = []
    for s in samples:
        if s.consumed > 0:
            out.append(s)
        if top and s.consumed >= top:
            break
    return out


def second_half_slope(samples: Sequence[Sample]) -> float | None:
    """RSS slope in MB per million impressions learned over the second half of the run (by
    messages consumed), up to the moment everything was consumed."""
    run = until_done(samples)
    top = run[-1].consumed if run else 0
    return linear_slope([(s.learned / 1e6, s.rss_mb) for s in run if s.consumed >= top / 2])


class Sampler(threading.Thread):
    """Samples a consumer every `every_s` seconds until it exits."""

    def __init__(self, run: ConsumerRun, every_s: float, progress: Progress) -> None:
        super().__init__(daemon=True)
        self.run_ = run
        self.every_s = every_s
        self.progress = progress
        self.samples: list[Sample] = []
        self.peak_mb = 0.0  # VmHWM
        self.produced = 0  # set by the producer loop, for the progress line

    def run(self) -> None:
        while self.run_.alive():
            memory = proc_memory_mb(self.run_.pid)
            if memory is not None:
                self.peak_mb = max(self.peak_mb, memory[1])
                consumed, learned = last_progress(self.run_.stderr())
                sample = Sample(time.monotonic() - self.run_.started, consumed, learned, memory[0])
                self.samples.append(sample)
                self.progress.say(
                    "soak",
                    f"produced {self.produced:,}  consumed {consumed:,}  learned {learned:,}  "
                    f"RSS {memory[0]:.0f} MB",
                )
            time.sleep(self.every_s)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="soak",
        description=(
            "Soak: simulated events through one `nudge consume` on a broker of its own; the "
            "consumer's RSS against events consumed, the throughput, and the RSS slope over "
            "the second half (MB per million events)."
        ),
    )
    p.add_argument(
        "--events", type=int, default=2_000_000, help="impressions (default: %(default)s)"
    )
    p.add_argument(
        "--chunk",
        type=int,
        default=20_000,
        help="impressions per produced chunk (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=7, help="traffic seed (default: %(default)s)")
    p.add_argument(
        "--sample-s", type=float, default=5.0, help="RSS sampling interval (default: %(default)s)"
    )
    p.add_argument("--ahead", type=int, default=300_000,
                   help="most messages the producer runs ahead of the consumer (default: %(default)s)")  # fmt: skip
    p.add_argument("--idle-s", type=float, default=30.0,
                   help="the consumer's --until-idle once everything is produced (default: %(default)s)")  # fmt: skip
    p.add_argument("--max-slope", type=float, default=5.0,
                   help="flat: RSS slope over the second half at most this many MB per million "
                   "events (default: %(default)s)")  # fmt: skip
    add_broker_arguments(p)
    p.add_argument("--workdir", type=Path, help="default: .nudge/soak-<time>")
    p.add_argument(
        "--json", type=Path, metavar="PATH", help="also write the samples and results here"
    )
    p.add_argument(
        "--svg", type=Path, metavar="PATH", help="the RSS chart (default: <workdir>/rss.svg)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from nudge.charts import ascii_chart, write_svg_chart

    args = build_parser().parse_args(argv)
    try:
        broker = Broker(args.port, args.data_dir)
    except CampaignError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    workdir = (args.workdir or ROOT / ".nudge" / f"soak-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    progress = Progress()
    was_running = broker.running()
    progress.say(
        "broker",
        f"{'reusing' if was_running else 'starting'} {broker.bootstrap} ({broker.data_dir})",
    )
    broker.start()
    try:
        result = soak(args, Site(broker=broker, workdir=workdir, progress=progress, seed=args.seed))
    finally:
        if not args.keep_broker and not was_running:
            progress.say("broker", "stopping")
            broker.stop()
    samples: list[Sample] = result["samples"]
    shown = evenly(until_done(samples), 20)
    slope = result["slope_mb_per_million"]
    print(
        f"soak: {args.events:,} events ({result['produced']:,} messages) through one nudge consume; "
        f"chunks of {args.chunk:,}; broker {broker.bootstrap}; {result['seconds'] / 60:.1f} min; logs in {workdir}"
    )
    print(
        f"consumer RSS (MB) at {len(shown)} of {len(samples)} samples, evenly by messages consumed:"
    )
    print(
        ascii_chart({"RSS MB": [s.rss_mb for s in shown]}).replace(
            "(round)", "(sample, see the table)"
        )
    )
    print(
        f"{'sample':>6}  {'elapsed s':>9}  {'messages consumed':>17}  {'events learned':>14}  {'RSS MB':>7}"
    )
    for i, s in enumerate(shown, 1):
        print(f"{i:>6}  {s.seconds:>9.0f}  {s.consumed:>17,}  {s.learned:>14,}  {s.rss_mb:>7.1f}")
    print(
        f"throughput: {result['messages_per_s']:,.0f} messages/s, {result['events_per_s']:,.0f} "
        f"events (impressions)/s over {result['consume_s']:.0f} s of consuming"
    )
    flat = slope is not None and slope <= args.max_slope
    verdict = "?" if slope is None else ("flat" if flat else "GROWING")
    slope_text = "?" if slope is None else f"{slope:+.1f}"
    print(
        f"RSS slope over the second half: {slope_text} MB per million events ({verdict}; goal <= {args.max_slope})"
    )
    print(
        f"peak RSS (VmHWM) {result['peak_rss_mb']:.0f} MB; exactly once: {result['exactly_once']}"
    )
    svg = args.svg or workdir / "rss.svg"
    every = shown[-1].consumed // max(1, len(shown) - 1) if shown else 0
    write_svg_chart(
        {"consumer RSS (MB)": [s.rss_mb for s in shown]},
        svg,
        f"nudge consume RSS (MB), {args.events:,} events; x: sample k, about every {every:,} messages",
    )
    print(f"chart: {svg}")
    report = {k: v for k, v in result.items() if k != "samples"}
    report.update(
        samples=[_sample_json(s) for s in samples],
        events=args.events,
        chunk=args.chunk,
        seed=args.seed,
        flat=flat,
        max_slope=args.max_slope,
    )
    text = json.dumps(report, indent=2, default=str)
    (workdir / "soak.json").write_text(text)
    if args.json:
        args.json.write_text(text)
    return 0 if flat and result["exactly_once"] else 1


def _sample_json(s: Sample) -> dict[str, Any]:
    return {
        "seconds": round(s.seconds, 1),
        "consumed": s.consumed,
        "learned": s.learned,
        "rss_mb": round(s.rss_mb, 1),
    }


def soak(args: argparse.Namespace, site: Site) -> dict[str, Any]:
    """Produce, consume, sample; the numbers of the run."""
    dep = Deployment(site, "soak", {"NUDGE_CONSUMER__PROGRESS_EVERY_S": "1"})
    expected = Ledger()
    started = time.monotonic()

    def produce_chunk(events: int) -> None:
        chunk = dep.publish_chunk(events, keep=False)
        for event_id in chunk.truth.valid_event_ids:
            expected.add(event_id)

    chunks = [args.chunk] * (args.events // args.chunk) + (
        [args.events % args.chunk] if args.events % args.chunk else []
    )
    produce_chunk(chunks[0])  # the topics must exist before the consumer starts
    stats_path = dep.dir / "stats.json"
    run = dep.start_consumer("--until-idle", str(args.idle_s), "--stats-json", str(stats_path))
    sampler = Sampler(run, args.sample_s, site.progress)
    sampler.produced = dep.produced
    sampler.start()
    try:
        for events in chunks[1:]:
            while dep.produced - last_progress(run.stderr())[0] > args.ahead and run.alive():
                time.sleep(1.0)
            if not run.alive():
                break
            produce_chunk(events)
            sampler.produced = dep.produced
        while run.alive():
            time.sleep(1.0)
    except BaseException:
        run.kill9()
        raise
    sampler.join()
    seconds = time.monotonic() - started
    rc = run.proc.returncode
    stats = json.loads(stats_path.read_text()) if stats_path.exists() and rc == 0 else {}
    ledger = stats.get("ledger", {})
    exactly_once = (
        rc == 0
        and int(ledger.get("count", -1)) == expected.count
        and int(ledger.get("digest", "0"), 16) == expected.digest
    )
    samples = sampler.samples
    top = max((s.consumed for s in samples), default=0)
    done = next((s for s in samples if s.consumed >= top), None)
    first = next((s for s in samples if s.consumed > 0), None)
    consume_s = (done.seconds - first.seconds) if done and first and done is not first else 0.0
    learned_span = (done.learned - first.learned) if done and first else 0
    consumed_span = (done.consumed - first.consumed) if done and first else 0
    return {
        "samples": samples,
        "produced": dep.produced,
        "seconds": seconds,
        "consume_s": consume_s,
        "messages_per_s": consumed_span / consume_s if consume_s else 0.0,
        "events_per_s": learned_span / consume_s if consume_s else 0.0,
        "slope_mb_per_million": second_half_slope(samples),
        "peak_rss_mb": sampler.peak_mb,
        "exit": rc,
        "exactly_once": exactly_once,
        "expected_learned": expected.count,
        "stats": {k: stats.get(k) for k in ("consumed", "learned", "dead_lettered", "dead_letters_by_reason",
                                             "learned_ids", "ledger", "checkpoints", "snapshots")},
    }  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
