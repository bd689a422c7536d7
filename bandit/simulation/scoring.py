"""Scores a learned policy against the simulator's truth on fresh decisions (no estimation).

For each sampled (learner, trigger) the exact expected reward of every candidate is known, so
the value of the greedy policy, its exploration pmf, uniform random, send-to-all, never-send,
the best single message per trigger and the oracle are all computed exactly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bandit.config import Config
from bandit.decisions import Decider
from bandit.learning import OnlineLearner
from bandit.simulation.world import MESSAGE_FEATURES, NONE_ACTION, Trigger, World


@dataclass(frozen=True, slots=True)
class PolicyScores:
    """Mean true expected reward per decision of each policy, over the same sampled decisions."""

    decisions: int
    greedy: float
    exploration: float
    uniform: float
    send_to_all: float
    never_send: float
    best_per_trigger: float
    oracle: float
    none_chosen_where_best: float  # share of decisions where `none` is best and greedy picks it
    none_best_share: float
    none_mass_where_best: float  # mean pmf of `none` where it is truly best
    none_mass_elsewhere: float  # ...and where a message is truly better
    greedy_actions: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "decisions": self.decisions,
            "greedy": round(float(self.greedy), 5),
            "exploration": round(float(self.exploration), 5),
            "uniform": round(float(self.uniform), 5),
            "send_to_all": round(float(self.send_to_all), 5),
            "never_send": round(float(self.never_send), 5),
            "best_per_trigger": round(float(self.best_per_trigger), 5),
            "oracle": round(float(self.oracle), 5),
            "greedy_minus_uniform": round(float(self.greedy - self.uniform), 5),
            "none_best_share": round(self.none_best_share, 4),
            "none_mass_where_best": round(self.none_mass_where_best, 4),
            "none_mass_elsewhere": round(self.none_mass_elsewhere, 4),
            "none_chosen_where_best": round(self.none_chosen_where_best, 4),
            "greedy_actions": dict(self.greedy_actions.most_common()),
        }


PmfOf = Callable[[int, Trigger], np.ndarray]


def score_learner(
    world: World, learner: OnlineLearner, config: Config, decisions: int, seed: int
) -> PolicyScores:
    """Exact expected reward of `learner`'s greedy and exploration choices vs the baselines."""

    def pmf_of(who: int, trig: Trigger) -> np.ndarray:
        return learner.predict(
            trig.trigger_id,
            world.context(who, trig),
            trig.candidates,
            tuple(MESSAGE_FEATURES[a] for a in trig.candidates),
        )

    return score_policy(world, pmf_of, config, decisions, seed)


def score_policy(
    world: World, pmf_of: PmfOf, config: Config, decisions: int, seed: int
) -> PolicyScores:
    """Exact expected reward of a policy, given as its pmf at (learner, trigger), vs baselines.

    `exploration` is the value of the whole pmf (what deploying it earns), `greedy` the value
    of always taking its most likely action.
    """
    rng = np.random.default_rng([seed, 3])
    greedy = explore = uniform = send_all = never = oracle = 0.0
    by_trigger: dict[str, list[np.ndarray]] = {}
    none_best = none_hit = 0
    mass_best = mass_else = 0.0
    actions: Counter[str] = Counter()
    for _ in range(decisions):
        who = int(rng.integers(world.n_learners))
        trig = world.triggers[int(rng.integers(len(world.triggers)))]
        truth = world.expected_rewards(
            who, trig, config.rewards, config.join, config.simulator.median_delay_s
        )
        pmf = pmf_of(who, trig)
        pick = int(np.argmax(pmf))
        none_index = trig.candidates.index(NONE_ACTION)
        greedy += truth[pick]
        explore += float(pmf @ truth)
        uniform += float(truth.mean())
        send_all += float(np.delete(truth, none_index).mean())
        never += truth[none_index]
        oracle += float(truth.max())
        by_trigger.setdefault(trig.trigger_id, []).append(truth)
        actions[trig.candidates[pick]] += 1
        if int(np.argmax(truth)) == none_index:
            none_best += 1
            none_hit += pick == none_index
            mass_best += float(pmf[none_index])
        else:
            mass_else += float(pmf[none_index])
    best_single = sum(
        float(np.stack(rows).mean(axis=0).max()) * len(rows) for rows in by_trigger.values()
    )
    n = float(decisions)
    return PolicyScores(
        decisions=decisions,
        greedy=greedy / n,
        exploration=explore / n,
        uniform=uniform / n,
        send_to_all=send_all / n,
        never_send=never / n,
        best_per_trigger=best_single / n,
        oracle=oracle / n,
        none_chosen_where_best=none_hit / none_best if none_best else 0.0,
        none_best_share=none_best / n,
        none_mass_where_best=mass_best / none_best if none_best else 0.0,
        none_mass_elsewhere=mass_else / (decisions - none_best) if decisions > none_best else 0.0,
        greedy_actions=actions,
    )


def score_decider(
    world: World, decider: Decider, config: Config, decisions: int, seed: int
) -> PolicyScores:
    """Exact value of what a decision service would do: its whole mixture pmf per decision
    (forced share, cold start from the snapshot's reaction counts, versions, exploration)."""

    def pmf_of(who: int, trig: Trigger) -> np.ndarray:
        decision = decider.decide(
            trig.trigger_id,
            f"u{who:06d}",
            world.context(who, trig),
            trig.candidates,
            action_features=MESSAGE_FEATURES,
        )
        return np.asarray(decision.pmf)

    return score_policy(world, pmf_of, config, decisions, seed)
