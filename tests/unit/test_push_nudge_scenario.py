"""The push-nudge study on the simulator, replayed end to end from our own event log.

60,000 pushes logged by random assignment (4 messages + no message, 1/5 each) as impression
and outcome JSON lines, read back with `load_events` (the consumer's reward join), then the
study's policies, each chosen out of sample by 2-fold cross-fitting: the best single message
for all, a personalized VW policy, a random message, and never sending. The truth is each
policy's exact expected login rate on the logged parents.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bandit.simulation.push_study import (
    PUSH_ACTIONS,
    PushStudy,
    parent_index,
    push_config,
    push_events,
)
from bandit.vw_text import NamespaceLetters
from replay.candidates import AlwaysSend, BestUniform, External, NeverSend, Uniform
from replay.dsjson import load_dsjson, write_dsjson
from replay.evaluation import Gain, evaluate
from replay.sources import load_events
from replay.vw_candidates import CrossFitVW

SEED = 1
PUSHES = 60_000
RANKED = ("personalized", "best-uniform", "random-message", "never-send")


@pytest.fixture(scope="module")
def study_log(tmp_path_factory: pytest.TempPathFactory):
    config = push_config()
    study = PushStudy(SEED)
    path = tmp_path_factory.mktemp("push") / "pushes.jsonl"
    path.write_bytes(b"\n".join(push_events(study, PUSHES, SEED)) + b"\n")
    return config, study, path, load_events(path, config)


def _candidates(config):
    personalized = CrossFitVW(config, folds=2, mode="greedy", name="personalized")
    return [
        BestUniform(by_trigger=False, include_none=False, name="best-uniform"),
        personalized,
        AlwaysSend(personalized),
        Uniform(name="random-message", messages_only=True),
        NeverSend(),
    ]


GAINS = [
    Gain("personalization", "personalized", "best-uniform"),
    Gain("targeting", "personalized", "always-send(personalized)"),
]


@pytest.fixture(scope="module")
def replayed(study_log):
    config, study, _, data = study_log
    # Each policy's rows computed once (the VW ones train), then both evaluated and scored.
    targets = {c.name: c.probabilities(data) for c in _candidates(config)}
    result = evaluate(
        data, [External(name, probs) for name, probs in targets.items()],
        gains=GAINS, by_trigger=False,
    )  # fmt: skip
    parents = np.array([parent_index(learner) for learner in data.learners])
    logins = study.login_probabilities()[parents]
    columns = [data.actions.index(a) for a in PUSH_ACTIONS]
    truth = {
        name: float((logins * probs[:, columns]).sum(axis=1).mean())
        for name, probs in targets.items()
    }
    return result, truth


def test_the_log_is_read_whole_through_the_reward_join(study_log) -> None:
    _, _, _, data = study_log
    assert data.n == PUSHES
    assert set(data.actions) == set(PUSH_ACTIONS) and data.none_action == "none"
    assert 0.40 < data.reward.mean() < 0.50  # login rate of random assignment


@pytest.mark.parametrize("estimator", ["IPS", "SNIPS", "DR", "DRos"])
def test_replay_ranks_the_study_policies_as_the_truth_does(replayed, estimator) -> None:
    result, truth = replayed
    assert sorted(RANKED, key=truth.__getitem__, reverse=True) == list(RANKED)
    estimated = {name: result.estimate(name, estimator).value for name in RANKED}
    assert sorted(RANKED, key=estimated.__getitem__, reverse=True) == list(RANKED), estimated


@pytest.mark.parametrize("estimator", ["IPS", "SNIPS", "DR", "DRos"])
def test_policy_intervals_cover_their_true_login_rates(replayed, estimator) -> None:
    # Five 95% intervals per estimator: one miss is expected now and then (this seed: IPS
    # and SNIPS miss random-message's truth by 0.0001); the coverage rate itself is proven
    # over 60 seeds in test_replay_coverage.py.
    result, truth = replayed
    missed = [
        name
        for name, true_value in truth.items()
        if not result.estimate(name, estimator).low <= true_value <= result.estimate(name, estimator).high
    ]
    assert len(missed) <= 1, missed


def test_personalization_and_targeting_gains_come_with_intervals(replayed) -> None:
    result, truth = replayed
    personalization = result.contrast("personalization", "DR")
    targeting = result.contrast("targeting", "DR")
    true_personalization = truth["personalized"] - truth["best-uniform"]
    true_targeting = truth["personalized"] - truth["always-send(personalized)"]
    assert personalization.low <= true_personalization <= personalization.high
    assert personalization.low > 0  # personalized clearly beats the best single message
    assert targeting.low <= true_targeting <= targeting.high
    assert targeting.value > 0


def test_dsjson_round_trip_gives_the_same_estimates(study_log, replayed, tmp_path: Path) -> None:
    config, _, _, data = study_log
    result, _ = replayed
    path = tmp_path / "pushes.dsjson"
    letters = NamespaceLetters(config.learner.namespaces, config.learner.action_namespace)
    write_dsjson(data, path, letters)
    again = load_dsjson(path, none_action="none")
    round_trip = evaluate(again, _candidates(config), gains=GAINS, by_trigger=False)
    assert len(round_trip.estimates) == len(result.estimates)
    for row in result.estimates:
        other = round_trip.estimate(row.policy, row.estimator, row.trigger)
        assert other.value == pytest.approx(row.value, abs=1e-12)
        assert (other.low, other.high) == pytest.approx((row.low, row.high), abs=1e-12)
    for row in result.contrasts:
        other = round_trip.contrast(row.name, row.estimator, row.trigger)
        assert other.value == pytest.approx(row.value, abs=1e-12)
