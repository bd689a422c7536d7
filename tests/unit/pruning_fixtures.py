"""Shared helpers of the pruning tests: simulated traffic with its truth, and a closed loop.

`simulated_joined_events` logs uniform-random traffic of the simulated world and joins it
(pure code, as replay does); `population_lifts` is the exact target the IPS estimates aim at.
`run_closed_loop` is a tiny deployment in one process: the real `Decider` decides from the
newest snapshot, outcomes are drawn from known probabilities, the real `OnlineLearner` learns
the logged impression (decoded from its wire form) and a snapshot is published every so often.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bandit.config import Config
from bandit.decisions import Decider
from bandit.decoding import decode_message
from bandit.envelopes import Envelope, Source
from bandit.events import Impression, OutcomeLabel, decode_event
from bandit.join import JoinedEvent, join_events
from bandit.learning import OnlineLearner
from bandit.pruning import PruningChange, Status
from bandit.simulation.traffic import simulate_traffic
from bandit.simulation.world import World
from bandit.snapshots import SnapshotStore

T0 = 1_767_600_000.0  # 2026-01-05T08:00:00Z
LABELS = (OutcomeLabel.HELPFUL, OutcomeLabel.NOT_HELPFUL, OutcomeLabel.IGNORED)

Pair = tuple[str, str]  # (trigger, message)


# ---- the simulated world: logged traffic and the truth behind it -------------------------------


def simulated_joined_events(
    world: World, config: Config, n_impressions: int, seed: int
) -> list[JoinedEvent]:
    """`n_impressions` uniform-random logged decisions of `world`, joined with their outcomes."""
    run = simulate_traffic(world, config.simulator, config.join, n_impressions, seed)
    envelopes = []
    for i, message in enumerate(run.messages):
        decoded = decode_message(message.value, Source(message.kind, 0, i), config.event_rules())
        if not isinstance(decoded, Envelope):
            raise AssertionError(f"the simulator logged an invalid message: {decoded}")
        envelopes.append(decoded)
    joined, _duplicates = join_events(envelopes, config.join, config.rewards)
    if len(joined) != run.impressions:
        raise AssertionError(f"joined {len(joined)} of {run.impressions} impressions")
    return joined


def population_values(world: World, config: Config) -> dict[Pair, float]:
    """Exact expected reward of always showing each candidate at each trigger, averaged over
    every learner (the traffic draws learners uniformly, so this is what IPS estimates)."""
    values: dict[Pair, float] = {}
    for trigger in world.triggers:
        total = np.zeros(len(trigger.candidates))
        for learner in range(world.n_learners):
            total += world.expected_rewards(
                learner, trigger, config.rewards, config.join, config.simulator.median_delay_s
            )
        for action, value in zip(trigger.candidates, total / world.n_learners, strict=True):
            values[trigger.trigger_id, action] = float(value)
    return values


def population_lifts(values: Mapping[Pair, float], none_action: str) -> dict[Pair, float]:
    """Each message's true value minus sending nothing's, at the same trigger."""
    return {
        (trigger, action): value - values[trigger, none_action]
        for (trigger, action), value in values.items()
        if action != none_action
    }


# ---- a closed loop of decider and learner on a tiny world with known outcome probabilities ------


@dataclass(frozen=True)
class Phase:
    """A stretch of decisions and each action's (P(helpful), P(not helpful), P(ignored))."""

    decisions: int
    outcome_probabilities: Mapping[str, tuple[float, float, float]]


@dataclass(frozen=True)
class LoopDecision:
    """One decision of the loop, with what the decider held back when it made it."""

    step: int
    phase: int
    action: str
    why: str
    probability: float
    pmf: tuple[float, ...]
    pruned: frozenset[str]  # what the decider's snapshot held back for re-tests at the time
    held: frozenset[str]


@dataclass(frozen=True)
class LoopRun:
    """Everything the loop did and what the learner ended up with."""

    actions: tuple[str, ...]
    decisions: list[LoopDecision]
    changes: list[PruningChange]
    final_statuses: dict[str, Status]


def expected_reward(config: Config, probabilities: tuple[float, float, float]) -> float:
    """Mean reward of a message shown with these outcome probabilities, under the reward map."""
    return sum(
        p * config.rewards.of(label, None) for p, label in zip(probabilities, LABELS, strict=True)
    )


def run_closed_loop(
    config: Config,
    directory: Path,
    trigger: str,
    actions: Sequence[str],
    context: Mapping[str, Mapping[str, float | str]],
    phases: Sequence[Phase],
    publish_every: int,
    seed: int,
) -> LoopRun:
    """Decide, draw the outcome, learn the logged impression; publish and reload regularly.

    Event time advances one second per decision from `T0`, so decision `i` happens at `T0 + i`.
    """
    none = config.rewards.none_action
    features = {a: {"kind": a} for a in actions}
    rules = config.event_rules()
    outcomes = random.Random(seed)
    store = SnapshotStore(directory, keep=2)
    learner = OnlineLearner(config.learner, none_action=none, pruning=config.pruning)
    decisions: list[LoopDecision] = []
    try:
        store.publish(config, learner.state(), {}, 0)
        with Decider(directory, seed=seed) as decider:
            step = 0
            for number, phase in enumerate(phases, start=1):
                for _ in range(phase.decisions):
                    pruned, held = decider.policy.holds_for(trigger)
                    d = decider.decide(
                        trigger, f"u{step % 100:03d}", context, tuple(actions),
                        action_features=features, event_id=f"e{step:07d}",
                        timestamp=T0 + step,
                    )  # fmt: skip
                    decisions.append(
                        LoopDecision(
                            step, number, d.action, d.why, d.probability, d.pmf, pruned, held
                        )
                    )
                    impression = decode_event(d.impression_json(), rules)
                    if not isinstance(impression, Impression):
                        raise AssertionError(f"the decider logged {impression!r}")
                    if d.action == none:
                        label = OutcomeLabel.IGNORED  # nothing shown, nothing to react to
                    else:
                        p = phase.outcome_probabilities[d.action]
                        label = outcomes.choices(LABELS, weights=p)[0]
                    reward = config.rewards.of(label, None, d.action)
                    defaulted = label == OutcomeLabel.IGNORED  # an ignored nudge sends no outcome
                    learner.learn(JoinedEvent(impression, label, None, reward, defaulted))
                    step += 1
                    if step % publish_every == 0:
                        store.publish(config, learner.state(), {}, step)
                        decider.reload()
        statuses = {a: s.status for a, s in learner.pruning.statuses.get(trigger, {}).items()}
        return LoopRun(tuple(actions), decisions, list(learner.pruning.changes), statuses)
    finally:
        learner.close()
