"""`evaluate`: rows per policy, estimator and trigger; gains and effects vs no message."""

from __future__ import annotations

import numpy as np
import pytest
from replay_truth import TablePolicy, as_logged_data, default_config, fixed_policies

from bandit.errors import InvalidFeedback
from bandit.simulation.logged import simulate_logged, trigger_masks, truth_table, vocabulary
from bandit.simulation.world import World
from replay.evaluation import Gain, evaluate
from replay.results import ALL_TRIGGERS


@pytest.fixture(scope="module")
def setting():
    config = default_config()
    world = World(5, n_learners=300)
    truth = truth_table(world, config)
    log = simulate_logged(world, config, 30_000, 5, logging="skewed", table=truth)
    return world, truth, log, as_logged_data(log)


def test_every_policy_gets_a_row_per_estimator_overall_and_per_trigger(setting) -> None:
    world, truth, log, data = setting
    policies = fixed_policies(world, truth, log)
    result = evaluate(data, policies, effects=False)
    triggers = {t.trigger_id for t in world.triggers}
    for policy in policies:
        for estimator in result.estimators:
            assert result.estimate(policy.name, estimator).n == data.n
            per_trigger = [result.estimate(policy.name, estimator, t) for t in triggers]
            assert sum(r.n for r in per_trigger) == data.n
    assert result.to_json()["n_events"] == data.n


def test_a_gain_is_the_paired_difference_of_the_two_policies(setting) -> None:
    world, truth, log, data = setting
    policies = {p.name: p for p in fixed_policies(world, truth, log)}
    gain = Gain("targeting", "oracle", "send-to-all")
    result = evaluate(
        data, [policies["oracle"], policies["send-to-all"]], gains=[gain], effects=False
    )
    for estimator in ("IPS", "DR"):
        row = result.contrast("targeting", estimator)
        first = result.estimate("oracle", estimator).value
        second = result.estimate("send-to-all", estimator).value
        assert row.value == pytest.approx(first - second, abs=1e-12)
        assert row.low < row.value < row.high
    assert result.contrast("targeting", "DR").low > 0  # the oracle clearly beats sending to all


def test_effects_vs_no_message_cover_the_true_effect_at_most_triggers(setting) -> None:
    world, truth, log, data = setting
    result = evaluate(data, [fixed_policies(world, truth, log)[0]])
    masks = trigger_masks(world)
    actions = vocabulary(world)
    none = actions.index("none")
    mean_truth = truth.mean(axis=0)
    covered = total = 0
    for t, trig in enumerate(world.triggers):
        for k in np.flatnonzero(masks[t]):
            if k == none:
                continue
            row = result.contrast(actions[k], "DR", trig.trigger_id)
            assert row.kind == "effect" and row.second == "none"
            true_effect = mean_truth[t, k] - mean_truth[t, none]
            covered += row.low <= true_effect <= row.high
            total += 1
    # 56 (trigger, message) effects, each a 95% interval: observed 52-54/56 across the
    # estimators for this seed.
    assert covered >= 0.85 * total
    overall = result.contrast("next_item", "IPS", ALL_TRIGGERS)
    assert overall.n == int((data.mask[:, actions.index("next_item")]).sum())


def test_a_policy_that_puts_mass_on_an_unavailable_action_is_refused(setting) -> None:
    world, _, log, data = setting
    k = len(vocabulary(world))
    everywhere = np.full((len(world.triggers), k), 1.0 / k)
    with pytest.raises(InvalidFeedback, match=r"policy 'everything'.*not a candidate"):
        evaluate(data, [TablePolicy("everything", everywhere, log)])


def test_duplicate_names_and_unknown_estimators_are_refused(setting) -> None:
    world, truth, log, data = setting
    uniform = fixed_policies(world, truth, log)[0]
    with pytest.raises(ValueError, match="unique"):
        evaluate(data, [uniform, uniform])
    with pytest.raises(ValueError, match=r"unknown estimator.*'MAGIC'"):
        evaluate(data, [uniform], estimators=("IPS", "MAGIC"))
    with pytest.raises(ValueError, match="not a candidate"):
        evaluate(data, [uniform], gains=[Gain("x", "uniform", "oracle")])
