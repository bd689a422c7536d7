"""Tests of `replay.tuning`: the settings search, its progressive-validation values, the
out-of-sample tuned personalised candidate and the config snippet to deploy (real VW)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import yaml
from decision_fixtures import joined_events

from bandit.config import Config, parse_config
from replay.estimators import Estimate
from replay.logged import LoggedData, from_joined
from replay.tuning import (
    SearchSpace,
    Setting,
    TunedCrossFitVW,
    config_setting,
    coordinate_search,
    dr_value,
    progressive_run,
    quick_space,
    tune,
    with_vw_options,
)
from replay.vw_candidates import ProgressiveVW

N_ROWS = 1200


@pytest.fixture(scope="module")
def data() -> LoggedData:
    joined = joined_events()[:N_ROWS]
    return from_joined(joined, none_action="none", source="simulated")


@pytest.fixture(scope="module")
def config() -> Config:
    return parse_config({})


def test_vw_options_replace_every_spelling_once() -> None:
    args = "--cb_type mtr -b 20 -l 0.3 --learning_rate=0.2 --power_t 0"
    out = with_vw_options(args, {"--learning_rate": "0.05", "--cb_type": "ips"})
    assert out.split() == [
        "-b",
        "20",
        "--power_t",
        "0",
        "--learning_rate",
        "0.05",
        "--cb_type",
        "ips",
    ]


def test_the_search_starts_at_the_configs_own_settings(config: Config) -> None:
    start = config_setting(config.learner)
    assert start == Setting(0.1, "mtr", "shared-x-action", 0, 0.1)
    assert config_setting(start.apply(config.learner)) == start


def test_each_setting_applies_to_a_valid_learner_config(config: Config) -> None:
    for dimension in SearchSpace().neighbours(config_setting(config.learner)):
        for setting in dimension:
            learner = setting.apply(config.learner)
            assert config_setting(learner) == setting
            assert learner.namespaces == config.learner.namespaces
            assert (learner.low_rank is not None) == (setting.low_rank > 0)


class _Closable:
    """A stand-in for a trained learner: the search closes every one but the winner's."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _estimate(value: float) -> Estimate:
    return Estimate("DR", value, 0.0, value, value, 0.95, "normal")


def test_coordinate_search_climbs_each_dimension_and_keeps_only_the_winner() -> None:
    def value(s: Setting) -> float:  # best: lr 0.3, cb_type dr, no interactions
        return (
            -abs(np.log(s.learning_rate / 0.3)) + (s.cb_type == "dr") + (s.interactions == "none")
        )

    runs: list[Setting] = []
    learners: dict[Setting, _Closable] = {}

    def run(setting: Setting) -> tuple[Estimate, Any]:
        runs.append(setting)
        learners[setting] = _Closable()
        return _estimate(value(setting)), learners[setting]

    start = Setting(0.1, "mtr", "shared-x-action", 0, 0.1)
    search = coordinate_search(start, SearchSpace(rounds=2), run)
    assert search.best.setting == Setting(0.3, "dr", "none", 0, 0.1)
    assert len(runs) == len(set(runs))  # each setting run once
    assert [s for s, c in learners.items() if not c.closed] == [search.best.setting]
    assert search.learner is learners[search.best.setting]


def test_a_tie_keeps_the_configs_own_setting() -> None:
    start = Setting(0.1, "mtr", "shared-x-action", 0, 0.1)
    search = coordinate_search(start, quick_space(), lambda s: (_estimate(1.0), _Closable()))
    assert search.best.setting == start


def test_a_trials_value_is_dr_of_what_progressive_validation_predicted(
    data: LoggedData, config: Config
) -> None:
    setting = Setting(0.5, "ips", "shared-x-action", 0, 0.2)
    estimate, learner = progressive_run(config, data, np.arange(data.n), setting)
    learner.close()
    tuned = config.model_copy(update={"learner": setting.apply(config.learner)})
    target = ProgressiveVW(tuned, mode="pmf").probabilities(data)
    assert estimate.value == pytest.approx(
        dr_value(data, np.arange(data.n), target, 0.95).value, abs=1e-12
    )


def test_the_tuned_candidate_scores_each_fold_without_its_rewards(
    data: LoggedData, config: Config
) -> None:
    """Out of sample: changing the rewards of fold 0 changes nothing fold 0 is scored with."""
    space = SearchSpace(
        learning_rates=(0.1, 1.0), cb_types=("mtr",), interactions=("shared-x-action", "none"),
        low_ranks=(0,), epsilons=(0.1,),
    )  # fmt: skip
    folds = data.folds(2)
    first = TunedCrossFitVW(config, space)
    probs = first.probabilities(data)
    flipped = dataclasses.replace(data, reward=np.where(folds == 0, 1.0 - data.reward, data.reward))
    again = TunedCrossFitVW(config, space).probabilities(flipped)
    assert np.array_equal(probs[folds == 0], again[folds == 0])
    assert not np.array_equal(probs[folds == 1], again[folds == 1])  # fold 1 learned from them
    assert len(first.chosen) == 2
    assert np.allclose(probs.sum(axis=1), 1.0)


def test_tune_gives_a_snippet_that_configures_the_winner(data: LoggedData, config: Config) -> None:
    tuning = tune(config, data, quick_space())
    snippet = yaml.safe_load(tuning.snippet())
    deployed = parse_config({"learner": snippet["learner"]})
    assert config_setting(deployed.learner) == tuning.best.setting
    report = tuning.to_json()
    assert report["best"]["value"] == max(t["value"] for t in report["trials"])
    assert len(report["trials"]) == len({t["setting"] for t in report["trials"]})
