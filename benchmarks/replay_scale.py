"""Replay at scale: `nudge replay --table` on millions of logged events, time and peak memory.

For each size in `--events` the benchmark writes a synthetic Parquet log (row group by row
group, never holding it: `--triggers` triggers, each offering 4 of 5 messages and sending
nothing; a logging policy that favours one message per trigger, with its whole pmf logged;
rewards +1 / -1 / 0 by (trigger, message)), then runs the streaming evaluation that `nudge
replay --table FILE` runs by default (`replay.table_stream.evaluate_table`: default
trigger-level policies, 5 estimators with analytic intervals, per trigger, effects of every
message) in a fresh process, sampling that process's resident memory every 0.2 s. It prints a
table (seconds, events/s, peak RSS) and the extrapolation to 100M events from a straight-line
fit of time and of peak RSS against events; `--json` prints everything as one object.

Run as `python -m benchmarks.replay_scale --events 1000000,2000000,5000000,10000000`
(several minutes for 10M). No pass/fail exit status.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

MESSAGES = ("hint", "peer_norm", "review_notes", "next_item", "encourage")
NONE = "none"
EXTRAPOLATE_TO = 100_000_000
SAMPLE_EVERY_S = 0.2


def _candidates(trigger: int) -> tuple[str, ...]:
    """The trigger's candidates: four of the five messages, then sending nothing."""
    dropped = trigger % len(MESSAGES)
    return (*(m for i, m in enumerate(MESSAGES) if i != dropped), NONE)


def _logging_pmf(trigger: int) -> np.ndarray:
    """The logging policy at a trigger: 40% on one favourite, the rest uniform."""
    k = len(_candidates(trigger))
    pmf = np.full(k, 0.6 / k)
    pmf[trigger % k] += 0.4
    return pmf


def write_log(path: Path, events: int, *, triggers: int, rows_per_group: int, seed: int) -> None:
    """The synthetic log (see the module docstring), one row group at a time."""
    rng = np.random.default_rng([seed, 0])
    helpful = rng.uniform(0.02, 0.25, size=(triggers, len(MESSAGES) + 1))
    unhelpful = rng.uniform(0.01, 0.15, size=(triggers, len(MESSAGES) + 1))
    helpful[:, -1] = unhelpful[:, -1] = 0.0  # sending nothing earns 0
    lists = [_candidates(t) for t in range(triggers)]
    pmfs = [_logging_pmf(t) for t in range(triggers)]
    schema = pa.schema(
        [
            ("event_id", pa.string()),
            ("trigger", pa.string()),
            ("actions", pa.list_(pa.string())),
            ("chosen", pa.string()),
            ("probability", pa.float64()),
            ("reward", pa.float64()),
            ("pmf", pa.list_(pa.float64())),
            ("learner_id", pa.string()),
            ("timestamp", pa.float64()),
        ]
    )
    names = np.array([f"t{t:02d}" for t in range(triggers)], dtype=object)
    with pq.ParquetWriter(path, schema) as writer:
        for group, start in enumerate(range(0, events, rows_per_group)):
            n = min(rows_per_group, events - start)
            g = np.random.default_rng([seed, 1, group])
            trigger = g.integers(0, triggers, n)
            k = len(lists[0])
            cdf = np.cumsum(np.stack(pmfs), axis=1)[trigger]
            position = np.minimum((g.random(n)[:, None] > cdf).sum(axis=1), k - 1)
            chosen_name = np.array(
                [lists[t][p] for t, p in zip(trigger, position, strict=True)], dtype=object
            )
            column = np.array([(*MESSAGES, NONE).index(a) for a in chosen_name])
            u = g.random(n)
            p_help, p_bad = helpful[trigger, column], unhelpful[trigger, column]
            reward = np.where(u < p_help, 1.0, np.where(u < p_help + p_bad, -1.0, 0.0))
            offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
            flat_actions = pa.array(
                np.array([a for t in trigger for a in lists[t]], dtype=object), pa.string()
            )
            flat_pmf = pa.array(np.stack(pmfs)[trigger].reshape(-1))
            batch = pa.record_batch(
                [
                    pa.array([f"e{start + i:010d}" for i in range(n)], pa.string()),
                    pa.array(names[trigger], pa.string()),
                    pa.ListArray.from_arrays(offsets, flat_actions),
                    pa.array(chosen_name, pa.string()),
                    pa.array(np.stack(pmfs)[trigger, position]),
                    pa.array(reward),
                    pa.ListArray.from_arrays(offsets, flat_pmf),
                    pa.array([f"u{x:06d}" for x in g.integers(0, 100_000, n)], pa.string()),
                    pa.array(1.77e9 + start + np.arange(n, dtype=np.float64)),
                ],
                schema=schema,
            )
            writer.write_batch(batch)


def _child(path: str) -> None:
    """In the measured process: the default `nudge replay --table` evaluation, then one JSON
    line with its wall time, the evaluation's timings and the kernel's peak RSS."""
    started = time.perf_counter()
    from replay.table_stream import evaluate_table

    result = evaluate_table(path, [], none_action=NONE)
    elapsed = time.perf_counter() - started
    best = max(
        (r for r in result.estimates if r.estimator == "DR" and r.trigger == "*"),
        key=lambda r: r.value,
    )
    print(
        orjson.dumps(
            {
                "seconds": elapsed,
                "events": result.n_events,
                "timings_s": result.timings_s,
                "rows": len(result.estimates) + len(result.contrasts),
                "best_dr": [best.policy, best.value],
                "vm_hwm_mb": _status_mb(os.getpid(), "VmHWM"),
            }
        ).decode()
    )


def _status_mb(pid: int, field: str) -> float | None:
    """A memory line of /proc/PID/status in MB (None where there is no /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure(path: Path) -> dict[str, Any]:
    """Run the evaluation of ``path`` in a fresh process, sampling its RSS."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.replay_scale", "--child", str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    peak = [0.0]

    def sample() -> None:
        while proc.poll() is None:
            rss = _status_mb(proc.pid, "VmRSS")
            if rss is not None:
                peak[0] = max(peak[0], rss)
            time.sleep(SAMPLE_EVERY_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"the evaluation of {path} failed (exit {proc.returncode})")
    found = orjson.loads(out.strip().splitlines()[-1])
    found["sampled_peak_rss_mb"] = peak[0]
    found["peak_rss_mb"] = max(peak[0], found["vm_hwm_mb"] or 0.0)
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="replay-scale-"))
    directory.mkdir(parents=True, exist_ok=True)
    for events in args.events:
        path = directory / f"log-{events}.parquet"
        started = time.perf_counter()
        if not path.exists():
            write_log(
                path,
                events,
                triggers=args.triggers,
                rows_per_group=args.rows_per_group,
                seed=args.seed,
            )
        generate_s = time.perf_counter() - started
        found = measure(path)
        found.update(
            events=events, file_mb=path.stat().st_size / 2**20, generate_s=generate_s,
            events_per_s=events / found["seconds"],
        )  # fmt: skip
        rows.append(found)
        print(_row(found), file=sys.stderr, flush=True)
        if not args.keep:
            path.unlink()
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pyarrow": pa.__version__,
            "load_average": list(os.getloadavg()),
        },
        "settings": {
            "triggers": args.triggers,
            "actions": len(MESSAGES) + 1,
            "rows_per_group": args.rows_per_group,
            "seed": args.seed,
        },
        "rows": rows,
        "extrapolation": extrapolate(rows, EXTRAPOLATE_TO),
    }


def extrapolate(rows: Sequence[dict[str, Any]], events: int) -> dict[str, float]:
    """Straight-line fits of seconds and of peak RSS against events, evaluated at ``events``
    (with one size only: proportional time, the same RSS)."""
    x = np.array([r["events"] for r in rows], dtype=np.float64)
    seconds = np.array([r["seconds"] for r in rows])
    rss = np.array([r["peak_rss_mb"] for r in rows])
    if len(rows) < 2:
        return {
            "events": events,
            "seconds": float(seconds[0] / x[0] * events),
            "peak_rss_mb": float(rss[0]),
        }
    t_slope, t_cut = np.polyfit(x, seconds, 1)
    r_slope, r_cut = np.polyfit(x, rss, 1)
    return {
        "events": events,
        "seconds": float(t_cut + t_slope * events),
        "seconds_per_million": float(t_slope * 1e6),
        "peak_rss_mb": float(r_cut + r_slope * events),
        "rss_mb_per_million": float(r_slope * 1e6),
    }


def _row(r: dict[str, Any]) -> str:
    return (
        f"{r['events']:>12,} {r['file_mb']:>9.0f} {r['seconds']:>9.1f} {r['events_per_s']:>11,.0f}"
        f" {r['peak_rss_mb']:>12.0f}"
    )


def report(result: dict[str, Any]) -> str:
    m, s, e = result["machine"], result["settings"], result["extrapolation"]
    lines = [
        "replay at scale: nudge replay --table FILE.parquet (streaming, default policies)",
        f"machine: {m['cpus']} CPUs, Python {m['python']}, numpy {m['numpy']}, pyarrow "
        f"{m['pyarrow']}; load {'/'.join(f'{x:.2f}' for x in m['load_average'])} at the end",
        f"data: {s['triggers']} triggers, {s['actions']} actions, row groups of "
        f"{s['rows_per_group']:,} (seed {s['seed']})",
        "",
        f"{'events':>12} {'file MB':>9} {'seconds':>9} {'events/s':>11} {'peak RSS MB':>12}",
        *(_row(r) for r in result["rows"]),
        "",
        f"extrapolated to {e['events']:,} events: {e['seconds']:,.0f} s "
        f"({e['seconds'] / 60:.0f} min), peak RSS {e['peak_rss_mb']:,.0f} MB"
        + (
            f" (fits: {e['seconds_per_million']:.1f} s and {e['rss_mb_per_million']:+.1f} MB per "
            "million events)"
            if "seconds_per_million" in e
            else ""
        ),
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.replay_scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--events", default="1000000,2000000,5000000,10000000",
        help="comma-separated sizes (default %(default)s)",
    )  # fmt: skip
    parser.add_argument("--triggers", type=int, default=16, help="triggers (default 16)")
    parser.add_argument(
        "--rows-per-group", type=int, default=500_000, help="Parquet row group size"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic data")
    parser.add_argument("--dir", help="where to write the logs (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the logs (and reuse them)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return args
    try:
        args.events = [int(x) for x in args.events.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--events must be comma-separated integers, got {args.events!r}")
    if not args.events or min(args.events) < 10:
        parser.error("--events needs sizes of at least 10")
    if args.triggers < 1 or args.rows_per_group < 1:
        parser.error("--triggers and --rows-per-group must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        _child(args.child)
        return 0
    result = run(args)
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
