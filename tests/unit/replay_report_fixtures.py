"""Replay results shaped like a real run (the simulator's 16 triggers, 7 actions, the default
policies and 5 estimators), with made-up but varied numbers, for the report's tests."""

from __future__ import annotations

from typing import Literal

from replay.results import ALL_TRIGGERS, Contrast, EstimateRow, PolicyDiagnostics, ReplayResult

DEFAULT_POLICIES = (
    "logging",
    "uniform",
    "random-message",
    "never-send",
    "best-uniform",
    "best-per-trigger",
    "personalized",
    "always-send(personalized)",
)
# More policies than fit one table row, some with long names (renamed on the command line).
MANY_POLICIES = (
    *DEFAULT_POLICIES,
    "best-message",
    "progressive-vw:pmf",
    "crossfit-vw:pmf",
    "always-send(progressive-vw:pmf)",
    "snapshot-2026-01-05T08-00-00Z-deployed-mixture",
    "vendor-recommendations-from-the-data-science-team",
)
STEPS = ("final/final-passed", "lecture-9/lecture-completed", "quiz-3/quiz-failed")
TRIGGERS = tuple(f"{cohort}/{step}" for cohort in "ABCD" for step in (*STEPS, "week-2/inactive-7d"))
ACTIONS = (
    "next_item",
    "encourage",
    "none",
    "peer_norm",
    "hint",
    "review_notes.v1",
    "review_notes.v2",
)
ESTIMATORS = ("IPS", "SNIPS", "DM", "DR", "DRos")
WARNING = (
    "DM's tabular reward model sees only the trigger: for this policy, which varies within "
    "triggers, DM is biased (it misses what personalization earns); trust DR"
)


def _value(p: int, e: int, t: int) -> float:
    """Varied, repeatable numbers: policies spread out, estimators close, triggers wobbling."""
    return round(-0.12 + 0.04 * p + 0.002 * e + 0.03 * ((7 * t + 3 * p) % 5 - 2), 4)


def _contrast(
    kind: Literal["gain", "effect"],
    name: str,
    first: str,
    second: str,
    trigger: str,
    estimator: str,
    value: float,
) -> Contrast:
    half = 0.015 if trigger == ALL_TRIGGERS else 0.06
    return Contrast(
        kind, name, first, second, trigger, estimator,
        value, value - half, value + half, half / 2, 1250, "normal",
    )  # fmt: skip


def replay_result(
    *,
    policies: tuple[str, ...] = DEFAULT_POLICIES,
    triggers: tuple[str, ...] = TRIGGERS,
    estimators: tuple[str, ...] = ESTIMATORS,
) -> ReplayResult:
    """Estimates for every policy, estimator and trigger; the personalization and targeting
    gains and each message's effect (missing where (trigger + message) % 3 == 0: not a
    candidate there); warnings on the policies that vary within triggers; timings."""
    slices = (ALL_TRIGGERS, *triggers)
    estimates = []
    for pi, p in enumerate(policies):
        for ei, e in enumerate(estimators):
            for ti, t in enumerate(slices):
                v = _value(pi, ei, ti)
                n = 20_000 if t == ALL_TRIGGERS else 1250
                estimates.append(EstimateRow(p, e, t, v, v - 0.02, v + 0.02, 0.01, n, "normal"))
    contrasts = []
    for ei, e in enumerate(estimators):
        for ti, t in enumerate(slices):
            contrasts.append(
                _contrast("gain", "personalization", "personalized", "best-uniform", t, e,
                          0.13 + 0.001 * ei - 0.02 * (ti % 4))
            )  # fmt: skip
            contrasts.append(
                _contrast("gain", "targeting", "personalized", "always-send(personalized)", t, e,
                          0.09 - 0.03 * (ti % 5))
            )  # fmt: skip
            for mi, message in enumerate(a for a in ACTIONS if a != "none"):
                if t != ALL_TRIGGERS and (ti + mi) % 3 == 0:
                    continue
                value = round(0.2 - 0.07 * mi + 0.01 * (ti % 3), 4)
                contrasts.append(_contrast("effect", message, message, "none", t, e, value))
    varies = {"best-per-trigger", "personalized", "always-send(personalized)"}
    diagnostics = tuple(
        PolicyDiagnostics(
            p, 20_000, 20_000.0 / (1 + i), 0.0, 1.0 + i, 0.1 * (i % 8),
            (WARNING,) if p in varies else (),
        )
        for i, p in enumerate(policies)
    )  # fmt: skip
    timings = {f"{step} {p}": 0.01 * (i + 1) for i, p in enumerate(policies)
               for step in ("policy", "estimate")}  # fmt: skip
    return ReplayResult(
        source="logs.jsonl",
        n_events=20_000,
        skipped={"duplicate_impression": 127, "late_outcome": 92},
        actions=ACTIONS,
        triggers=triggers,
        policies=policies,
        estimators=estimators,
        confidence=0.95,
        estimates=tuple(estimates),
        diagnostics=diagnostics,
        contrasts=tuple(contrasts),
        notes=("some policies rest on very few effective events; see their warnings",),
        timings_s={**timings, "effects": 0.23},
    )
