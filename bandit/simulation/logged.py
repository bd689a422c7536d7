"""Logged decisions drawn straight from the simulated world, with the truth beside them.

Replay's ground truth: each row carries the exact expected reward of every candidate
(``q``), so the true value of any policy on these decisions is known, and the population
table (``truth_table``) gives the value of any policy over the whole traffic distribution
(learner and trigger uniform, as `simulate_traffic` draws them). Rewards are sampled exactly
as the join would score the reactions (window, default outcome, downstream value), but
without going through events, so coverage studies can afford many seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from bandit.config import Config
from bandit.events import OutcomeLabel
from bandit.simulation.world import NONE_ACTION, World, delay_within

LoggingKind = Literal["uniform", "skewed"]
SKEWED_FAVOURITE_SHARE = 0.6  # "skewed" logging: this share on one favourite per (trigger, novice)


@dataclass(frozen=True)
class SimulatedLog:
    """n logged decisions over the world's action vocabulary, with the truth of each row."""

    actions: tuple[str, ...]  # vocabulary: every message and the none action
    learners: np.ndarray  # (n,) learner index
    triggers: np.ndarray  # (n,) trigger index into world.triggers
    trigger_ids: tuple[str, ...]  # world trigger ids (index -> id)
    mask: np.ndarray  # (n, K) candidates of the row's trigger
    chosen: np.ndarray  # (n,) index into actions
    pscore: np.ndarray  # (n,) logging probability of the chosen action
    logging_pmf: np.ndarray  # (n, K)
    reward: np.ndarray  # (n,) sampled reward
    q: np.ndarray  # (n, K) exact expected reward of each candidate (0 where unavailable)


def vocabulary(world: World) -> tuple[str, ...]:
    """Every action of the world, messages in first-seen order, the none action last."""
    seen: dict[str, None] = {}
    for trig in world.triggers:
        for action in trig.candidates:
            if action != NONE_ACTION:
                seen.setdefault(action, None)
    return (*seen, NONE_ACTION)


def truth_table(world: World, config: Config) -> np.ndarray:
    """(learners, triggers, K) exact expected reward of each vocabulary action (0 where the
    trigger does not offer it)."""
    actions = vocabulary(world)
    column = {a: k for k, a in enumerate(actions)}
    table = np.zeros((world.n_learners, len(world.triggers), len(actions)))
    for t, trig in enumerate(world.triggers):
        cols = [column[a] for a in trig.candidates]
        for learner in range(world.n_learners):
            table[learner, t, cols] = world.expected_rewards(
                learner, trig, config.rewards, config.join, config.simulator.median_delay_s
            )
    return table


def trigger_masks(world: World) -> np.ndarray:
    """(triggers, K) True where the trigger offers the action."""
    actions = vocabulary(world)
    masks = np.zeros((len(world.triggers), len(actions)), dtype=bool)
    for t, trig in enumerate(world.triggers):
        masks[t, [actions.index(a) for a in trig.candidates]] = True
    return masks


def logging_pmfs(world: World, kind: LoggingKind) -> np.ndarray:
    """(learners, triggers, K) logging distribution: uniform over the trigger's candidates, or
    "skewed": ``SKEWED_FAVOURITE_SHARE`` on one favourite that depends on the trigger and on
    whether the learner is a novice (so propensities vary with the context), the rest uniform."""
    masks = trigger_masks(world)
    counts = masks.sum(axis=1, keepdims=True)
    uniform = np.where(masks, 1.0 / counts, 0.0)
    pmfs = np.broadcast_to(uniform, (world.n_learners, *uniform.shape)).copy()
    if kind == "uniform":
        return pmfs
    novice = world.learners.completed_courses < 2
    for t in range(len(world.triggers)):
        cols = np.flatnonzero(masks[t])
        rest = (1.0 - SKEWED_FAVOURITE_SHARE) / len(cols)
        for is_novice in (False, True):
            favourite = cols[(t + 3 * int(is_novice)) % len(cols)]
            row = np.where(masks[t], rest, 0.0)
            row[favourite] += SKEWED_FAVOURITE_SHARE
            pmfs[novice == is_novice, t] = row
    return pmfs


def simulate_logged(
    world: World,
    config: Config,
    n: int,
    seed: int,
    *,
    logging: LoggingKind = "uniform",
    table: np.ndarray | None = None,
) -> SimulatedLog:
    """Draw n decisions (learner and trigger uniform), log them under `logging`, sample rewards."""
    rng = np.random.default_rng([seed, 11])
    table = truth_table(world, config) if table is None else table
    pmfs = logging_pmfs(world, logging)
    masks = trigger_masks(world)
    actions = vocabulary(world)
    learners = rng.integers(0, world.n_learners, n)
    triggers = rng.integers(0, len(world.triggers), n)
    pmf = pmfs[learners, triggers]
    chosen = (rng.random(n)[:, None] > np.cumsum(pmf, axis=1)).sum(axis=1)
    chosen = np.minimum(chosen, len(actions) - 1)
    rows = np.arange(n)
    reward = _sample_rewards(world, config, actions, learners, triggers, chosen, rng)
    return SimulatedLog(
        actions=actions,
        learners=learners,
        triggers=triggers,
        trigger_ids=tuple(t.trigger_id for t in world.triggers),
        mask=masks[triggers],
        chosen=chosen,
        pscore=pmf[rows, chosen],
        logging_pmf=pmf,
        reward=reward,
        q=table[learners, triggers],
    )


def _sample_rewards(
    world: World,
    config: Config,
    actions: tuple[str, ...],
    learners: np.ndarray,
    triggers: np.ndarray,
    chosen: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Rewards as the join scores them: a reaction counts only inside the window."""
    rewards, join = config.rewards, config.join
    within = delay_within(join.window_s, config.simulator.median_delay_s)
    r_default = rewards.of(join.default_outcome, None)
    by_label = {
        0: rewards.of(OutcomeLabel.HELPFUL, None),
        1: rewards.of(OutcomeLabel.NOT_HELPFUL, None),
    }
    out = np.empty(len(chosen))
    for i, (learner, t, a) in enumerate(zip(learners, triggers, chosen, strict=True)):
        action = actions[a]
        if action == rewards.none_action:
            out[i] = rewards.send_nothing
            continue
        probs = world.outcome_probabilities(int(learner), world.triggers[int(t)], action)
        label = int(rng.choice(3, p=probs))
        if label == 2 or rng.random() >= within:
            out[i] = r_default
            continue
        value = float(rng.poisson(3.0 if label == 0 else 1.0))
        out[i] = by_label[label] + rewards.value_weight * value
    return out


def population_value(table: np.ndarray, policy: np.ndarray) -> float:
    """True value over the traffic distribution of a policy given as (learners, triggers, K)
    probabilities, or (triggers, K) for one that depends only on the trigger."""
    if policy.ndim == 2:
        return float((table.mean(axis=0) * policy).sum(axis=1).mean())
    return float((table * policy).sum(axis=2).mean())


def conditional_value(log: SimulatedLog, target: np.ndarray) -> float:
    """True value of a policy (n, K) on the logged decisions' own contexts."""
    return float((log.q * target).sum(axis=1).mean())
