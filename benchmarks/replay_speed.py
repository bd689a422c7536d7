"""Replay speed benchmark: how fast `replay.estimators` evaluate a policy on a large log.

Builds synthetic logged feedback with numpy (seeded): `--events` decisions over `--actions`
actions in 4 triggers, a logging policy with every probability >= 2% / K, Bernoulli rewards
by (trigger, action), and a target policy that mostly picks the action of a noisy score. It
then times, as `nudge replay` runs them (mask given, tabular reward model by trigger):

  construction   `LoggedFeedback(...)`: copying and validating the arrays
  IPS ... DRos   `.estimate()` with the analytic normal interval
  IPS bootstrap  `IPS().bootstrap_interval(n_boot=200)` (events/s counts each event once)
  evaluate       with `--with-evaluate`: `replay.evaluation.evaluate` on the same log
                 (logging and target policies, 5 estimators, per trigger, effects)

and, in the same run, the baseline: a plain-Python per-event loop computing IPS and its
standard error on the first 100,000 events. Each row is the median of `--repeats` runs,
reported as seconds and events per second, with its per-event speed over the loop. The goal
line adds construction, the five analytic estimates and the IPS bootstrap: the work of one
policy's replay; the goal is a few seconds for 1M events. No pass/fail exit status.

Run as `python benchmarks/replay_speed.py` or `python -m benchmarks.replay_speed`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import orjson

from replay.estimators import DM, DR, IPS, SNIPS, DRos, LoggedFeedback

N_TRIGGERS = 4
LOOP_EVENTS = 100_000
N_BOOT = 200
MIN_LOGGING_SHARE = 0.12  # of uniform mixed into the logging policy: every p >= 0.12 / K
ESTIMATORS = (IPS, SNIPS, DM, DR, DRos)


@dataclass(frozen=True)
class Log:
    """Synthetic logged feedback as plain arrays (n events, K actions)."""

    reward: np.ndarray  # (n,)
    pscore: np.ndarray  # (n,)
    chosen: np.ndarray  # (n,) int64
    logging: np.ndarray  # (n, K) the logging pmf
    target: np.ndarray  # (n, K)
    mask: np.ndarray  # (n, K) bool, all True
    cells: np.ndarray  # (n,) trigger index

    def feedback(self) -> LoggedFeedback:
        """Validated feedback as replay builds it: mask and cells, no given q_hat."""
        return LoggedFeedback(
            self.reward, self.pscore, self.chosen, self.target, mask=self.mask, cells=self.cells
        )


def make_log(n: int, k: int, seed: int) -> Log:
    """n logged decisions over k actions in `N_TRIGGERS` triggers (see the module docstring)."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, N_TRIGGERS, size=n)
    logging = (1 - MIN_LOGGING_SHARE) * rng.dirichlet(np.full(k, 2.0), size=n)
    logging += MIN_LOGGING_SHARE / k
    u = rng.random(n)[:, None]
    chosen = np.minimum((u > logging.cumsum(axis=1)).sum(axis=1), k - 1).astype(np.int64)
    p_reward = rng.uniform(0.02, 0.3, size=(N_TRIGGERS, k))
    reward = (rng.random(n) < p_reward[cells, chosen]).astype(np.float64)
    score = p_reward[cells] + rng.normal(0.0, 0.1, size=(n, k))
    target = 0.1 / k + 0.9 * np.eye(k)[score.argmax(axis=1)]
    pscore = logging[np.arange(n), chosen]
    return Log(reward, pscore, chosen, logging, target, np.ones((n, k), dtype=bool), cells)


def ips_loop(
    reward: list[float], pscore: list[float], chosen: list[int], target: list[list[float]]
) -> tuple[float, float]:
    """IPS value and standard error with a per-event Python loop: the baseline."""
    total = 0.0
    squares = 0.0
    for r, p, a, row in zip(reward, pscore, chosen, target, strict=True):
        term = row[a] / p * r
        total += term
        squares += term * term
    n = len(reward)
    mean = total / n
    variance = (squares - n * mean * mean) / (n - 1)
    return mean, (max(variance, 0.0) / n) ** 0.5


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, list[float], object]:
    """Median wall time of ``repeats`` calls, every time, and the last call's result."""
    times = []
    result: object = None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times, result


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every row's timings, the baseline and the goal total, as one JSON-ready dict."""
    started = time.perf_counter()
    log = make_log(args.events, args.actions, args.seed)
    out: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "load_average_before": _load_average(),
        },
        "settings": {
            "events": args.events,
            "actions": args.actions,
            "triggers": N_TRIGGERS,
            "repeats": args.repeats,
            "seed": args.seed,
            "n_boot": N_BOOT,
        },
        "generate_s": time.perf_counter() - started,
    }
    rows: dict[str, dict[str, Any]] = {}

    def record(name: str, fn: Callable[[], object], events: int) -> object:
        median, times, result = median_time(fn, args.repeats)
        rate = events / median if median > 0 else float("inf")
        rows[name] = {"median_s": median, "times_s": times, "events": events, "events_per_s": rate}
        return result

    feedback = cast(LoggedFeedback, record("construction", log.feedback, args.events))
    for cls in ESTIMATORS:
        estimator = cls()
        record(f"{cls.name} estimate", lambda e=estimator: e.estimate(feedback), args.events)
    record(
        f"IPS bootstrap {N_BOOT}",
        lambda: IPS().bootstrap_interval(feedback, seed=args.seed, n_boot=N_BOOT),
        args.events,
    )

    m = min(LOOP_EVENTS, args.events)
    columns = (
        log.reward[:m].tolist(),
        log.pscore[:m].tolist(),
        log.chosen[:m].tolist(),
        log.target[:m].tolist(),
    )
    loop_value, _ = cast(tuple[float, float], record("loop", lambda: ips_loop(*columns), m))
    head = LoggedFeedback(log.reward[:m], log.pscore[:m], log.chosen[:m], log.target[:m])
    out["loop_check_abs_diff"] = abs(loop_value - IPS().estimate(head).value)

    if args.with_evaluate:
        record("evaluate", lambda: _evaluate(log), args.events)

    loop_rate = rows["loop"]["events_per_s"]
    for row in rows.values():
        row["vs_loop"] = row["events_per_s"] / loop_rate
    out["rows"] = rows
    family = (
        "construction",
        *(f"{c.name} estimate" for c in ESTIMATORS),
        f"IPS bootstrap {N_BOOT}",
    )
    out["ips_family_s"] = sum(rows[name]["median_s"] for name in family)
    out["machine"]["load_average_after"] = _load_average()
    return out


@dataclass(frozen=True)
class _Fixed:
    """A candidate policy whose probabilities are given (what `evaluate` calls)."""

    name: str
    probs: np.ndarray

    def probabilities(self, data: object) -> np.ndarray:
        return self.probs


def _evaluate(log: Log) -> object:
    """`evaluate` on the synthetic log: logging and target policies, defaults otherwise."""
    from replay.evaluation import evaluate  # only with --with-evaluate
    from replay.logged import LoggedData

    n, k = log.target.shape
    actions = (*(f"a{j}" for j in range(k - 1)), "none")
    data = LoggedData(
        event_ids=np.array([f"e{i}" for i in range(n)], dtype=object),
        triggers=np.array([f"t{c}" for c in range(N_TRIGGERS)], dtype=object)[log.cells],
        learners=np.full(n, "", dtype=object),
        timestamps=np.full(n, np.nan),
        actions=actions,
        mask=log.mask,
        chosen=log.chosen,
        pscore=log.pscore,
        logging_pmf=log.logging,
        reward=log.reward,
        labels=np.full(n, "", dtype=object),
        none_action="none",
        source="synthetic",
    )
    return evaluate(data, [_Fixed("logging", log.logging), _Fixed("target", log.target)])


def _load_average() -> list[float] | None:
    """1/5/15-minute load: other work on the machine slows every row."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# ---- reporting ------------------------------------------------------------------------------


def report(r: dict[str, Any]) -> str:
    """The results as a table of seconds, events/s and speed over the Python loop."""
    m, s, rows = r["machine"], r["settings"], r["rows"]
    load = "/".join(f"{x:.2f}" for x in m["load_average_before"] or []) or "unknown"
    out = [
        "replay speed: replay.estimators on synthetic logged feedback, in process",
        f"machine: {m['cpus']} CPUs, Python {m['python']}, numpy {m['numpy']}; "
        f"load average {load} before",
        f"data: {s['events']:,} events, {s['actions']} actions, {s['triggers']} triggers "
        f"(seed {s['seed']}, generated in {r['generate_s']:.1f} s)",
        "timing: mask given, tabular reward model by trigger (as replay runs them); median of "
        f"{s['repeats']} repeat{'s' if s['repeats'] != 1 else ''}",
        "",
        f"{'step':<40}{'median s':>10}{'events/s':>14}{'vs loop':>10}",
    ]
    labels = {
        "construction": "LoggedFeedback construction",
        "loop": f"baseline: Python loop IPS ({rows['loop']['events']:,} ev)",
        "evaluate": "evaluate (2 policies, all, by trigger)",
    }
    for name, row in rows.items():
        label = labels.get(name, name.replace(" estimate", ".estimate()"))
        if name.startswith("IPS bootstrap"):
            label = f"IPS.bootstrap_interval(n_boot={s['n_boot']})"
        out.append(
            f"{label:<40}{row['median_s']:>10.3f}{row['events_per_s']:>14,.0f}"
            f"{_times(row['vs_loop']):>10}"
        )
    out += [
        "",
        "loop check: |loop IPS - IPS.estimate| on the same events = "
        f"{r['loop_check_abs_diff']:.1e}",
        f"IPS-family over {_short(s['events'])} events: {r['ips_family_s']:.2f} s "
        "(goal: a few seconds)",
        f"  = construction + 5 analytic estimates + IPS bootstrap (n_boot={s['n_boot']})",
    ]
    return "\n".join(out)


def _times(ratio: float) -> str:
    """A speed ratio with two significant digits below 10 (12x, 3.4x, 0.53x)."""
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:#.2g}x"


def _short(n: int) -> str:
    """1,000,000 as 1M, 20,000 as 20k; other counts with separators."""
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return f"{n:,}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/replay_speed.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="logged decisions (default 1000000)"
    )
    parser.add_argument("--actions", type=int, default=6, help="actions K (default 6)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row (default 3)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic data")
    parser.add_argument(
        "--with-evaluate",
        action="store_true",
        help="also time replay.evaluation.evaluate on the same log",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the results as one JSON object instead of the table",
    )
    args = parser.parse_args(argv)
    for name, minimum in (("events", 2), ("actions", 2), ("repeats", 1)):
        if getattr(args, name) < minimum:
            parser.error(f"--{name} must be >= {minimum}")
    if args.with_evaluate and importlib.util.find_spec("replay.evaluation") is None:
        parser.error("--with-evaluate needs replay.evaluation, which this checkout does not have")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    if args.json:
        sys.stdout.write(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
