"""Shared helpers of the decision-library tests: policies trained on simulated logged traffic.

The simulated platform logs uniformly random decisions with exact propensities, the reward
join turns them into joined events (pure code, no Kafka) and an `OnlineLearner` learns them,
exactly as the consumer would; a `SnapshotStore` then publishes what it learned.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bandit.config import Config, parse_config
from bandit.decisions import Decider
from bandit.decoding import decode_message
from bandit.envelopes import Envelope, Source
from bandit.join import JoinedEvent, join_events
from bandit.learning import OnlineLearner
from bandit.simulation.traffic import simulate_traffic
from bandit.simulation.world import World
from bandit.snapshots import SnapshotStore

WORLD_SEED = 7
TRAFFIC_SEED = 7
N_EVENTS = 3000

# quiz-failed offers two versions of one message (review_notes.v1, review_notes.v2) and none.
QUIZ_FAILED = "A/quiz-3/quiz-failed"
LECTURE_COMPLETED = "A/lecture-9/lecture-completed"
FINAL_PASSED = "B/final/final-passed"

Context = dict[str, dict[str, float | str]]


@functools.cache
def world() -> World:
    return World(WORLD_SEED, 5000, 4)


def trigger(trigger_id: str) -> Any:
    return next(t for t in world().triggers if t.trigger_id == trigger_id)


def context(learner: int, trigger_id: str) -> Context:
    return world().context(learner, trigger(trigger_id))


@functools.cache
def joined_events(n: int = N_EVENTS, seed: int = TRAFFIC_SEED) -> tuple[JoinedEvent, ...]:
    """`n` uniform-logged impressions of the simulated world, joined with their outcomes."""
    config = parse_config({})
    run = simulate_traffic(world(), config.simulator, config.join, n, seed)
    envelopes = []
    for i, message in enumerate(run.messages):
        decoded = decode_message(message.value, Source(message.kind, 0, i), config.event_rules())
        if not isinstance(decoded, Envelope):
            raise AssertionError(f"the simulator logged an invalid message: {decoded}")
        envelopes.append(decoded)
    joined, _rejected = join_events(envelopes, config.join, config.rewards)
    if len(joined) != run.impressions:
        raise AssertionError(f"joined {len(joined)} of {run.impressions} impressions")
    return tuple(joined)


def make_config(
    exploration: Mapping[str, Any] | None = None,
    *,
    scope: str = "global",
    outcome_model: bool = False,
    rule: Mapping[str, Any] | None = None,
    triggers: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """A config with this exploration, learner scope and default decision rule."""
    learner: dict[str, Any] = {"scope": scope, "outcome_model": outcome_model}
    if exploration is not None:
        learner["exploration"] = dict(exploration)
    decisions: dict[str, Any] = {"default": dict(rule or {})}
    if triggers:
        decisions["triggers"] = {k: dict(v) for k, v in triggers.items()}
    return parse_config({"learner": learner, "decisions": decisions})


def train(config: Config, events: Sequence[JoinedEvent], reaction_cap: int = 1) -> OnlineLearner:
    """An online learner that has learned `events` in order (close it when done)."""
    learner = OnlineLearner(
        config.learner, none_action=config.rewards.none_action, reaction_cap=reaction_cap
    )
    for event in events:
        learner.learn(event)
    return learner


def publish(config: Config, learner: OnlineLearner, directory: Path, keep: int = 3) -> str:
    """Publish the learner's state as a snapshot in `directory`; returns the snapshot name."""
    events = learner.examples_learned
    return SnapshotStore(directory, keep=keep).publish(
        config, learner.state(), {"nudge.impressions/0": events}, events
    )


def candidates(learner: OnlineLearner, trigger_id: str) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """The action ids the learner saw at `trigger_id` and their catalogue features."""
    ids = tuple(learner.catalogue.triggers[trigger_id])
    return ids, tuple(learner.catalogue.actions[a] for a in ids)


# ---- the propensity test's draws (run in worker processes, so module-level and picklable) -------

WHYS = ("exploit", "explore", "forced", "cold_start")
WARM = 1_000_000  # reactions far above any cold_start_outcomes: the learner is not cold
LEARNER_ID = "u000011"
T0 = 1_767_600_000.0  # 2026-01-05T08:00:00Z


@dataclass(frozen=True)
class Rule:
    """One decision rule of the propensity test: the policy's exploration and its use."""

    name: str
    exploration: dict[str, Any]
    rule: dict[str, Any]
    trigger: str
    reactions: int = WARM
    outcome_model: bool = False
    learner: int = 11  # the simulated learner whose context every decision uses
    seed: int = 2024


@dataclass(frozen=True)
class Draws:
    """What `n` decisions of one rule reported, and the trained models' own predictions."""

    rule: Rule
    actions: tuple[str, ...]
    counts: np.ndarray  # (actions, WHYS): decisions by chosen action and reason
    pmfs: frozenset[tuple[float, ...]]  # every distinct pmf the decisions reported
    mismatched_probabilities: int  # decisions whose probability is not pmf[chosen]
    policy_pmf: np.ndarray  # the trained learner's own exploration pmf for this decision
    outcomes: np.ndarray | None  # the snapshot's outcome probabilities (send rule only)


def draw_decisions(rule: Rule, directory: str, n: int) -> Draws:
    """Train and publish the rule's policy, then make `n` decisions from a `Decider` on it."""
    config = make_config(rule.exploration, outcome_model=rule.outcome_model, rule=rule.rule)
    ctx = context(rule.learner, rule.trigger)
    learner = train(config, joined_events())
    try:
        publish(config, learner, Path(directory))
        ids, feats = candidates(learner, rule.trigger)
        policy_pmf = learner.predict(rule.trigger, ctx, ids, feats)
    finally:
        learner.close()
    with Decider(directory, seed=rule.seed) as decider:
        outcomes = None
        if rule.outcome_model:
            outcomes = np.asarray(decider.policy.outcome_probabilities(ctx, ids, feats))
        seen: Counter[tuple[int, str]] = Counter()
        pmfs: set[tuple[float, ...]] = set()
        mismatched = 0
        actions: tuple[str, ...] = ()
        for _ in range(n):
            d = decider.decide(
                rule.trigger, LEARNER_ID, ctx, reactions=rule.reactions, event_id="e", timestamp=T0
            )
            seen[d.index, d.why] += 1
            pmfs.add(d.pmf)
            mismatched += d.probability != d.pmf[d.index]
            actions = d.actions
    counts = np.zeros((len(actions), len(WHYS)), dtype=np.int64)
    for (index, why), count in seen.items():
        counts[index, WHYS.index(why)] = count
    return Draws(rule, actions, counts, frozenset(pmfs), mismatched, policy_pmf, outcomes)
