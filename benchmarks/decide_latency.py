"""Decide-latency benchmark: how long `bandit.decisions.Decider.decide()` takes in process.

Builds a realistic snapshot (an `OnlineLearner` trained on synthetic examples of the benchmark's
feature shape, published with `SnapshotStore` into a temporary directory), loads it with
`Decider`, and times single `decide()` calls with `time.perf_counter_ns` after a warm-up, for:

  bandit      the VW policy's epsilon-greedy pmf alone (forced_share 0, versions all)
  mixture     the mixture: 10% forced share over the messages, versions best (a learner
              past cold_start_outcomes 1, the default)
  send_rule   the outcome-model send rule (learner.outcome_model: true), forced share,
              versions best
  cold_start  a learner below cold_start_outcomes: uniform over the messages, no VW call

and, in the same run, the baselines each decision is compared with:

  vw_predict       `VowpalPolicy.predict` on prebuilt lines of the same example (the floor)
  outcome_predict  `OutcomeModel.predict` on prebuilt outcome lines (the send rule's floor)
  example_lines    building the VW text lines alone (`vw_text.example_lines`)
  outcome_lines    building the outcome model's lines alone (`vw_text.outcome_line` per action)

Each row gives p50, p90, p99, p99.9, mean and max in microseconds (the rows are timed in
interleaved rounds, so background load hits them alike); ratios divide a decide row by its
baselines at p50 and p99. A configuration whose decide() raises is reported as ERROR (and
fails the goal) instead of being measured.

Every example has 5 candidate actions and 40 features: 25 shared context features in four
namespaces plus 3 features on each action (VW also sees one `id=` feature per action).
It then measures throughput (decisions/s) of one shared `Decider` called from 1 thread and
from 2 threads. Goal: decide() p99 <= 250 µs on a 2-core machine; the verdict is printed
and the exit status is 0 either way unless `--strict`.

Run as `python benchmarks/decide_latency.py` or `python -m benchmarks.decide_latency`.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import platform
import pstats
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bandit.config import Config, DecisionRuleConfig, DecisionsConfig, RewardConfig
from bandit.decisions import Decider
from bandit.errors import NudgeError
from bandit.events import Impression, OutcomeLabel
from bandit.join import JoinedEvent
from bandit.learning import OnlineLearner
from bandit.policies import OutcomeModel, VowpalPolicy
from bandit.snapshots import SnapshotStore
from bandit.vw_text import example_lines, outcome_line

GOAL_P99_US = 250.0
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))

NONE_ACTION = "none"
CANDIDATES = ("hint", "review_notes.v1", "review_notes.v2", "peer_norm", NONE_ACTION)
ACTION_FEATURES: dict[str, dict[str, float | str]] = {
    "hint": {"kind": "hint", "tone": "instructive", "words": 18.0},
    "review_notes.v1": {"kind": "review_notes", "tone": "instructive", "words": 42.0},
    "review_notes.v2": {"kind": "review_notes", "tone": "friendly", "words": 35.0},
    "peer_norm": {"kind": "peer_norm", "tone": "social", "words": 25.0},
    NONE_ACTION: {"kind": "none", "tone": "none", "words": 0.0},
}
TRIGGERS = (
    "A/lecture-9/lecture-completed",
    "A/quiz-3/quiz-failed",
    "B/quiz-3/quiz-failed",
    "B/week-2/inactive-7d",
)
GENDERS = ("f", "m", "x")
AGE_BANDS = ("18-24", "25-34", "35-49", "50+")
COUNTRIES = ("US", "IN", "BR", "PE", "DE", "NG")
EMPLOYMENT = ("student", "employed", "unemployed")
EDUCATION = ("secondary", "bachelor", "graduate")
DEVICES = ("ios", "android", "web")
LOCALES = ("en", "es", "pt", "hi", "de")
DOMAINS = ("math", "cs", "business", "language")
STATES = ("lecture-completed", "quiz-failed", "inactive-7d", "final-passed")
ITEM_KINDS = ("lecture", "quiz", "assignment", "final")


# ---- the synthetic example shape ---------------------------------------------------------


def make_context(rng: random.Random) -> dict[str, dict[str, float | str]]:
    """One decision context: 25 features in the four default namespaces."""
    return {
        "learner": {  # 12
            "gender": rng.choice(GENDERS),
            "age_band": rng.choice(AGE_BANDS),
            "country": rng.choice(COUNTRIES),
            "employment": rng.choice(EMPLOYMENT),
            "education": rng.choice(EDUCATION),
            "device": rng.choice(DEVICES),
            "locale": rng.choice(LOCALES),
            "paid": float(rng.random() < 0.3),
            "completed_courses": float(rng.randrange(8)),
            "prior_ctr": round(rng.betavariate(2.0, 6.0), 4),
            "weekly_activity": round(rng.lognormvariate(1.0, 0.8), 3),
            "tenure_days": float(rng.randrange(1, 1500)),
        },
        "course": {  # 6
            "domain": rng.choice(DOMAINS),
            "difficulty": float(rng.randint(1, 3)),
            "rating": round(rng.uniform(3.0, 5.0), 1),
            "length_weeks": float(rng.randint(4, 12)),
            "enrolled_days": float(rng.randrange(120)),
            "progress": round(rng.random(), 3),
        },
        "trigger": {  # 3
            "state": rng.choice(STATES),
            "item_kind": rng.choice(ITEM_KINDS),
            "position": float(rng.randint(1, 20)),
        },
        "activity": {  # 4
            "sessions_7d": float(rng.randrange(15)),
            "minutes_7d": round(rng.expovariate(1 / 90), 1),
            "quiz_score": round(rng.random(), 3),
            "streak_days": float(rng.randrange(30)),
        },
    }


def feature_count(context: dict[str, dict[str, Any]], feats: Sequence[dict[str, Any]]) -> dict:
    shared = {ns: len(f) for ns, f in context.items()}
    per_action = [len(f) for f in feats]
    return {
        "actions": len(feats),
        "shared": sum(shared.values()),
        "shared_by_namespace": shared,
        "per_action": per_action,
        "action_total": sum(per_action),
        "total": sum(shared.values()) + sum(per_action),
        "implicit_id_features": len(feats),
    }


def _true_label(rng: random.Random, context: dict, action: str) -> OutcomeLabel:
    """A made-up truth, so the models learn something non-trivial."""
    learner, activity = context["learner"], context["activity"]
    novice = learner["completed_courses"] < 2
    helpful = {
        "hint": 0.35 if novice else 0.1,
        "review_notes.v1": 0.2,
        "peer_norm": 0.15,
        "review_notes.v2": 0.3 if learner["paid"] else 0.15,
    }.get(action, 0.0)
    helpful += 0.1 * (activity["sessions_7d"] > 7)
    u = rng.random()
    if u < helpful:
        return OutcomeLabel.HELPFUL
    if u < helpful + 0.25:
        return OutcomeLabel.NOT_HELPFUL
    return OutcomeLabel.IGNORED


def build_snapshot(directory: Path, examples: int, epsilon: float, seed: int) -> dict[str, Any]:
    """Train an OnlineLearner (policy + outcome model) and publish one snapshot."""
    rng = random.Random(seed)
    config = Config.model_validate(
        {
            "learner": {
                "exploration": {"algorithm": "epsilon", "epsilon": epsilon},
                "outcome_model": True,
            },
            # The consumer counts reactions up to the deepest cold start any decider uses.
            "decisions": {"default": {"cold_start_outcomes": 5}},
        }
    )
    rewards: RewardConfig = config.rewards
    learner = OnlineLearner(config.learner, none_action=rewards.none_action, reaction_cap=5)
    feats = tuple(ACTION_FEATURES[a] for a in CANDIDATES)
    started = time.perf_counter()
    for i in range(examples):
        context = make_context(rng)
        chosen = rng.randrange(len(CANDIDATES))
        label = _true_label(rng, context, CANDIDATES[chosen])
        impression = Impression(
            event_id=uuid.UUID(int=rng.getrandbits(128)).hex,
            ts=1_767_600_000.0 + i,
            trigger=rng.choice(TRIGGERS),
            learner_id=f"u{rng.randrange(2000)}",
            context=context,
            action_ids=CANDIDATES,
            action_features=feats,
            chosen_index=chosen,
            probability=1.0 / len(CANDIDATES),
            policy_version="benchmark-logging",
        )
        reward = rewards.of(label, None, CANDIDATES[chosen])
        learner.learn(JoinedEvent(impression, label, None, reward, defaulted=False))
    trained_s = time.perf_counter() - started
    try:
        state = learner.state()
        name = SnapshotStore(directory).publish(config, state, {"benchmark/0": examples}, examples)
    finally:
        learner.close()
    return {
        "name": name,
        "examples": examples,
        "train_s": trained_s,
        "vw_arguments": config.learner.vw_arguments(),
        "learners_with_reactions": sorted(k for k, v in state.reactions.items() if v > 0),
    }


# ---- measuring ------------------------------------------------------------------------------


def summarize(samples_ns: Sequence[int]) -> dict[str, float]:
    us = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    out = {name: float(np.percentile(us, q)) for name, q in PERCENTILES}
    out["mean"] = float(us.mean())
    out["max"] = float(us.max())
    out["calls"] = len(us)
    return out


def time_calls(
    fn: Callable[[Any], object], pool: Sequence[Any], calls: int, warmup: int, start: int = 0
) -> list[int]:
    """Nanoseconds of each of `calls` calls `fn(item)`, items cycled from `pool[start:]`,
    after `warmup` untimed calls."""
    n = len(pool)
    for i in range(warmup):
        fn(pool[i % n])
    clock = time.perf_counter_ns
    samples = [0] * calls
    for i in range(calls):
        item = pool[(start + i) % n]
        t0 = clock()
        fn(item)
        samples[i] = clock() - t0
    return samples


def timer_overhead_ns(rounds: int = 20000) -> float:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(rounds):
        t0 = clock()
        samples.append(clock() - t0)
    return float(np.median(samples))


def throughput(fn: Callable[[Any], object], pool: Sequence[Any], calls: int, threads: int) -> dict:
    """Decisions/s of `threads` threads sharing `fn`, `calls` calls in all; per-call latency too."""
    per_thread = calls // threads
    barrier = threading.Barrier(threads + 1)
    samples: list[list[int]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        clock = time.perf_counter_ns
        mine = samples[k]
        n = len(pool)
        barrier.wait()
        try:
            for i in range(per_thread):
                item = pool[(i * threads + k) % n]
                t0 = clock()
                fn(item)
                mine.append(clock() - t0)
        except BaseException as exc:  # surfaced after join
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    done = per_thread * threads
    latency = summarize([s for part in samples for s in part])
    return {
        "threads": threads,
        "calls": done,
        "wall_s": wall,
        "per_s": done / wall,
        "latency_us": latency,
    }


# ---- the benchmark ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecideConfig:
    name: str
    description: str
    rule: DecisionRuleConfig
    floor: str  # the raw-VW baseline it is compared with
    lines: str  # the line-building baseline it is compared with


DECIDE_CONFIGS = (
    DecideConfig(
        "bandit",
        "VW epsilon-greedy pmf only (forced_share 0, versions all)",
        DecisionRuleConfig(
            policy="bandit", forced_share=0.0, versions="all", cold_start_outcomes=0
        ),
        "vw_predict",
        "example_lines",
    ),
    DecideConfig(
        "mixture",
        "bandit + forced_share 0.1 + versions best, learner past cold start (>= 1 reaction)",
        DecisionRuleConfig(
            policy="bandit", forced_share=0.1, versions="best", cold_start_outcomes=1
        ),
        "vw_predict",
        "example_lines",
    ),
    DecideConfig(
        "send_rule",
        "outcome-model send rule, forced_share 0.1, versions best",
        DecisionRuleConfig(
            policy="send_rule",
            forced_share=0.1,
            versions="best",
            cold_start_outcomes=1,
            send_margin=0.0,
            send_rule_epsilon=0.05,
        ),
        "outcome_predict",
        "outcome_lines",
    ),
    DecideConfig(
        "cold_start",
        "learner below cold_start_outcomes: uniform, no VW call",
        DecisionRuleConfig(
            policy="bandit", forced_share=0.1, versions="best", cold_start_outcomes=3
        ),
        "vw_predict",
        "example_lines",
    ),
)
GOAL_CONFIGS = ("bandit", "mixture", "send_rule")  # the paths the goal is about


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "goal_p99_us": GOAL_P99_US,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "numpy": np.__version__,
            "vowpalwabbit": _version("vowpalwabbit"),
            "load_average_before": _load_average(),
        },
        "settings": {
            "calls": args.calls,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "pool": args.pool,
            "seed": args.seed,
            "gc": not args.no_gc,
            "throughput_calls": args.throughput_calls,
        },
    }
    with tempfile.TemporaryDirectory(prefix="nudge-bench-") as tmp:
        snap = build_snapshot(Path(tmp), args.train_examples, args.epsilon, args.seed)
        warm = snap.pop("learners_with_reactions")
        snap["learners_with_reactions"] = len(warm)
        results["snapshot"] = snap
        # (trigger, a learner the snapshot counts reactions for, a never-seen learner, context)
        rng = random.Random(args.seed + 1)
        requests = [
            (rng.choice(TRIGGERS), rng.choice(warm), f"new-{i}", make_context(rng))
            for i in range(args.pool)
        ]
        deciders = {
            c.name: Decider(tmp, seed=args.seed, rules=DecisionsConfig(default=c.rule))
            for c in DECIDE_CONFIGS
        }
        try:
            results["errors"] = _check_deciders(deciders, requests)
            results.update(_measure(args, deciders, requests))
        finally:
            for d in deciders.values():
                d.close()
    results["machine"]["load_average_after"] = _load_average()
    return results


def _load_average() -> list[float] | None:
    """1/5/15-minute load: other work on a 2-core machine moves the tail a lot."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _check_deciders(deciders: dict[str, Decider], requests: Sequence[tuple]) -> dict[str, str]:
    """Try each config on a few requests: drop (and return) those whose decide() raises, and
    make sure the others take the path they are meant to measure (cold start or not)."""
    errors: dict[str, str] = {}
    for name, decider in list(deciders.items()):
        cold = name == "cold_start"
        try:
            whys = {
                decider.decide(r[0], r[2] if cold else r[1], r[3], CANDIDATES).why
                for r in requests[:200]
            }
        except NudgeError as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
            deciders.pop(name).close()
            continue
        if cold != ("cold_start" in whys) or (cold and whys - {"cold_start", "forced"}):
            raise SystemExit(f"benchmark setup: decide {name} gave reasons {sorted(whys)}")
    return errors


def _measure(
    args: argparse.Namespace, deciders: dict[str, Decider], requests: list[tuple]
) -> dict[str, Any]:
    loaded = next(iter(deciders.values())).policy
    snapshot = loaded.snapshot
    letters = loaded.letters
    ids = CANDIDATES
    feats = tuple(loaded.actions[a] for a in ids)  # what decide() reads from the catalogue
    out: dict[str, Any] = {"example": feature_count(requests[0][3], feats)}
    out["timer_overhead_ns"] = timer_overhead_ns()

    def decide_fn(decider: Decider, cold: bool) -> Callable[[tuple], object]:
        decide = decider.decide

        def call(req: tuple) -> object:
            return decide(req[0], req[2] if cold else req[1], req[3], ids)

        return call

    configs = [c for c in DECIDE_CONFIGS if c.name in deciders]
    policy = VowpalPolicy(snapshot.manifest.vw_arguments, snapshot.state.models["global"])
    outcomes = OutcomeModel("", snapshot.state.outcome_model)  # as LoadedPolicy restores it
    try:
        vw_lines = [example_lines(r[3], ids, feats, letters) for r in requests]
        oc_lines = [
            [outcome_line(r[3], a, f, letters) for a, f in zip(ids, feats, strict=True)]
            for r in requests
        ]
        baselines: dict[str, Callable[[Any], object]] = {
            "vw_predict": policy.predict,
            "outcome_predict": outcomes.predict,
            "example_lines": lambda r: example_lines(r[3], ids, feats, letters),
            "outcome_lines": lambda r: [
                outcome_line(r[3], a, f, letters) for a, f in zip(ids, feats, strict=True)
            ],
        }
        if "send_rule" not in deciders:  # its model does not predict probabilities either
            del baselines["outcome_predict"]
        pools = {"vw_predict": vw_lines, "outcome_predict": oc_lines}
        rows: dict[str, tuple[Callable[[Any], object], Sequence[Any]]] = {
            c.name: (decide_fn(deciders[c.name], c.name == "cold_start"), requests) for c in configs
        }
        rows.update({name: (fn, pools.get(name, requests)) for name, fn in baselines.items()})
        latency = {name: summarize(s) for name, s in _interleaved(args, rows).items()}
    finally:
        policy.finish()
        outcomes.finish()
    out["latency_us"] = latency

    ratios = {}
    for c in configs:
        mine = latency[c.name]
        ratios[c.name] = {
            f"vs_{base}": {q: mine[q] / latency[base][q] for q in ("p50", "p99")}
            for base in dict.fromkeys((c.floor, c.lines, "cold_start"))
            if base != c.name and base in latency
        }
        ratios[c.name]["overhead_over_floor_p50_us"] = mine["p50"] - latency[c.floor]["p50"]
    out["ratios"] = ratios

    out["verdicts"] = {
        n: "ERROR" if n not in latency else "PASS" if latency[n]["p99"] <= GOAL_P99_US else "FAIL"
        for n in GOAL_CONFIGS
    }
    out["verdict"] = "PASS" if all(v == "PASS" for v in out["verdicts"].values()) else "FAIL"

    if args.throughput_calls > 0:
        tp: dict[str, Any] = {}
        for c in configs:
            fn = decide_fn(deciders[c.name], cold=c.name == "cold_start")
            one = throughput(fn, requests, args.throughput_calls, 1)
            two = throughput(fn, requests, args.throughput_calls, args.threads)
            tp[c.name] = {"1": one, str(args.threads): two, "speedup": two["per_s"] / one["per_s"]}
        out["throughput"] = tp

    if args.profile in deciders:
        c = next(c for c in DECIDE_CONFIGS if c.name == args.profile)
        out["profile"] = profile_text(
            decide_fn(deciders[c.name], c.name == "cold_start"),
            requests,
            args.calls,
            args.profile_lines,
        )
    return out


def _interleaved(
    args: argparse.Namespace, rows: dict[str, tuple[Callable[[Any], object], Sequence[Any]]]
) -> dict[str, list[int]]:
    """Every row's samples, taken in `--rounds` interleaved rounds so that background load
    on the machine falls on all rows alike rather than on whichever ran at the time."""
    samples: dict[str, list[int]] = {name: [] for name in rows}
    rounds = args.rounds
    per_round = [args.calls // rounds + (r < args.calls % rounds) for r in range(rounds)]
    done = 0
    for r, calls in enumerate(per_round):
        for name, (fn, pool) in rows.items():
            warmup = args.warmup if r == 0 else min(args.warmup, 200)
            gc.collect()
            if args.no_gc:
                gc.disable()
            try:
                samples[name] += time_calls(fn, pool, calls, warmup, start=done)
            finally:
                gc.enable()
        done += calls
    return samples


def profile_text(fn: Callable[[Any], object], pool: Sequence[Any], calls: int, lines: int) -> str:
    """cProfile of `calls` calls (inflates small Python functions; use it for the shape)."""
    profiler = cProfile.Profile()
    n = len(pool)
    profiler.enable()
    for i in range(calls):
        fn(pool[i % n])
    profiler.disable()
    buf = io.StringIO()
    pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(lines)
    return buf.getvalue()


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


# ---- reporting ------------------------------------------------------------------------------


def report(r: dict[str, Any]) -> str:
    m, s, ex, snap = r["machine"], r["settings"], r["example"], r["snapshot"]
    lat = r["latency_us"]
    by_ns = ", ".join(f"{ns} {n}" for ns, n in ex["shared_by_namespace"].items())
    out = [
        "decide latency: bandit.decisions.Decider.decide(), in process",
        f"machine: {m['cpus']} CPUs, Python {m['python']}, vowpalwabbit {m['vowpalwabbit']}, "
        f"numpy {m['numpy']}; load average {_fmt_load(m['load_average_before'])} before, "
        f"{_fmt_load(m['load_average_after'])} after (other processes inflate the tail)",
        f"snapshot: {snap['examples']} synthetic examples learned in {snap['train_s']:.1f} s; "
        f"policy `{snap['vw_arguments']}` + outcome model",
        f"example: {ex['actions']} candidate actions, {ex['total']} features = "
        f"{ex['shared']} shared context ({by_ns}) + {ex['action_total']} per-action "
        f"({' + '.join(map(str, ex['per_action']))}); VW also sees {ex['implicit_id_features']} "
        "implicit id= features",
        f"timing: {s['calls']} timed calls per row in {s['rounds']} interleaved rounds after "
        f"{s['warmup']} warm-up calls, "
        f"{s['pool']} distinct contexts cycled, perf_counter_ns per call "
        f"(timer overhead ~{r['timer_overhead_ns']:.0f} ns), GC {'on' if s['gc'] else 'off'}",
        "",
        f"{'latency (µs)':<26}{'p50':>8}{'p90':>8}{'p99':>8}{'p99.9':>9}{'mean':>8}{'max':>9}",
    ]

    def row(label: str, name: str) -> str:
        x = lat[name]
        return (
            f"{label:<26}{x['p50']:>8.1f}{x['p90']:>8.1f}{x['p99']:>8.1f}"
            f"{x['p99.9']:>9.1f}{x['mean']:>8.1f}{x['max']:>9.1f}"
        )

    for c in DECIDE_CONFIGS:
        out.append(
            row(f"decide {c.name}", c.name)
            if c.name in lat
            else f"{'decide ' + c.name:<26}{'ERROR':>8}"
        )
    out.append("baselines")
    for name in ("vw_predict", "outcome_predict", "example_lines", "outcome_lines"):
        if name in lat:
            out.append(row(f"  {name}", name))
    out += ["", "ratios (decide / baseline, p50 | p99)"]
    for c in DECIDE_CONFIGS:
        if c.name not in r["ratios"]:
            continue
        parts = [
            f"{k[3:]} {v['p50']:.2f}x | {v['p99']:.2f}x"
            for k, v in r["ratios"][c.name].items()
            if k.startswith("vs_")
        ]
        extra = r["ratios"][c.name]["overhead_over_floor_p50_us"]
        out.append(f"  {c.name:<11} " + "; ".join(parts) + f"; {extra:+.1f} µs p50 over floor")
    out += ["", f"goal: decide p99 <= {GOAL_P99_US:.0f} µs"]
    for name, verdict in r["verdicts"].items():
        p99 = f"p99 {lat[name]['p99']:7.1f} µs" if name in lat else "not measured  "
        out.append(f"  {name:<11} {p99}  {verdict}")
    out.append(f"  overall     {r['verdict']}")
    for name, error in r["errors"].items():
        out.append(f"  ERROR: decide {name} raised, so it was not measured: {error}")
    if "throughput" in r:
        out += ["", "throughput: one shared Decider, calls split over threads"]
        for name, t in r["throughput"].items():
            keys = [k for k in t if k != "speedup"]
            cells = [
                f"{k} thread{'s' if k != '1' else ''} {t[k]['per_s']:>8.0f}/s "
                f"(p50 {t[k]['latency_us']['p50']:.0f}, p99 {t[k]['latency_us']['p99']:.0f} µs)"
                for k in keys
            ]
            out.append(f"  {name:<11} " + "  ".join(cells) + f"  speedup {t['speedup']:.2f}x")
    if "profile" in r:
        out += ["", f"cProfile of decide {s.get('profile')}:", r["profile"]]
    return "\n".join(out)


def _fmt_load(load: list[float] | None) -> str:
    return "/".join(f"{x:.2f}" for x in load) if load else "unknown"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/decide_latency.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--calls", type=int, default=20000, help="timed calls per latency row (default 20000)"
    )
    parser.add_argument(
        "--warmup", type=int, default=2000, help="untimed calls before each row (default 2000)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="interleave the rows in this many rounds of --calls/rounds calls (default 4)",
    )
    parser.add_argument(
        "--pool", type=int, default=512, help="distinct contexts cycled through (default 512)"
    )
    parser.add_argument(
        "--train-examples",
        type=int,
        default=3000,
        help="synthetic examples the snapshot is trained on (default 3000)",
    )
    parser.add_argument(
        "--epsilon",
        type=float,
        default=0.1,
        help="VW epsilon-greedy exploration of the policy (default 0.1)",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of data and decisions")
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="threads of the throughput comparison against 1 (default 2)",
    )
    parser.add_argument(
        "--throughput-calls",
        type=int,
        default=None,
        help="calls per throughput run, split over the threads "
        "(default: --calls; 0 skips throughput)",
    )
    parser.add_argument(
        "--no-gc",
        action="store_true",
        help="disable the garbage collector while timing (diagnostic)",
    )
    parser.add_argument(
        "--profile",
        choices=[c.name for c in DECIDE_CONFIGS],
        help="also print a cProfile of --calls decide() calls of this config",
    )
    parser.add_argument("--profile-lines", type=int, default=25, help=argparse.SUPPRESS)
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the results as one JSON object instead of the table",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help=f"exit 1 if a decide p99 misses the {GOAL_P99_US:.0f} µs goal "
        "(or a configuration's decide() raised)",
    )
    args = parser.parse_args(argv)
    if args.throughput_calls is None:
        args.throughput_calls = args.calls
    for name in ("calls", "warmup", "rounds", "pool", "train_examples", "threads"):
        minimum = 0 if name == "warmup" else 1
        if getattr(args, name) < minimum:
            parser.error(f"--{name.replace('_', '-')} must be >= {minimum}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    results["settings"]["profile"] = args.profile
    if args.json:
        sys.stdout.write(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(report(results))
    return 1 if args.strict and results["verdict"] != "PASS" else 0


if __name__ == "__main__":
    sys.exit(main())
