"""A restored policy keeps its saved reductions and exploration; runtime flags come from config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bandit.config import LearnerConfig, parse_config
from bandit.errors import LearnerError
from bandit.events import Impression, OutcomeLabel
from bandit.join import JoinedEvent
from bandit.learning import OnlineLearner
from bandit.snapshots import SnapshotStore, warm_start_state

ACTIONS = ("hint", "encourage", "none")
FEATURES: tuple[dict[str, float | str], ...] = ({"kind": "hint"}, {"kind": "encourage"}, {})
CONTEXT = {"learner": {"novice": 1.0}}


def _trained(learner_section: dict[str, Any]) -> OnlineLearner:
    learner = OnlineLearner(LearnerConfig.model_validate(learner_section))
    rng = np.random.default_rng(1)
    for i in range(300):
        chosen = int(rng.integers(3))
        imp = Impression(
            f"e{i}", float(i), "t", "u", CONTEXT, ACTIONS, FEATURES, chosen, 1 / 3, "test"
        )
        reward = 1.0 if chosen == 0 else 0.0
        learner.learn(JoinedEvent(imp, OutcomeLabel.HELPFUL, None, reward, defaulted=False))
    return learner


def _snapshot(tmp_path: Path, learner_section: dict[str, Any]) -> Path:
    learner = _trained(learner_section)
    cfg = parse_config({"learner": learner_section})
    SnapshotStore(tmp_path).publish(cfg, learner.state(), {}, 300)
    learner.close()
    return tmp_path


def test_warm_start_with_a_new_epsilon_explores_with_the_new_epsilon(tmp_path: Path) -> None:
    directory = _snapshot(tmp_path, {"exploration": {"algorithm": "epsilon", "epsilon": 0.1}})
    config = LearnerConfig.model_validate({"exploration": {"epsilon": 0.6}})
    warm = OnlineLearner(config, state=warm_start_state(directory))
    pmf = warm.predict("t", CONTEXT, ACTIONS, FEATURES)
    # Epsilon-greedy over 3 actions with epsilon 0.6: 1 - 0.6 + 0.2 on the greedy, 0.2 elsewhere.
    np.testing.assert_allclose(np.sort(pmf), [0.2, 0.2, 0.6], atol=1e-6)
    warm.close()


def test_warm_start_asking_for_another_exploration_algorithm_is_refused(tmp_path: Path) -> None:
    directory = _snapshot(tmp_path, {"exploration": {"algorithm": "epsilon", "epsilon": 0.1}})
    config = LearnerConfig.model_validate({"exploration": {"algorithm": "softmax", "lambda": 5}})
    with pytest.raises(LearnerError, match="keeps its exploration algorithm"):
        OnlineLearner(config, state=warm_start_state(directory))


def test_a_restored_policy_takes_a_new_learning_rate_but_refuses_a_new_cb_type() -> None:
    section = {"vw_args": "--cb_type mtr -b 18 --learning_rate 0.1"}
    state = _trained(section).state()
    faster = LearnerConfig.model_validate({"vw_args": "--cb_type mtr -b 18 --learning_rate 0.7"})
    restored = OnlineLearner(faster, state=state)
    running = next(iter(restored._policies.values())).vw_arguments()
    assert "--learning_rate 0.699999" in running  # VW prints its float32
    restored.close()
    other = LearnerConfig.model_validate({"vw_args": "--cb_type dr -b 18"})
    with pytest.raises(LearnerError, match="keeps its reductions"):
        OnlineLearner(other, state=state)


def test_a_restored_policy_refuses_changed_interactions_or_low_rank() -> None:
    state = _trained({}).state()
    for changed in ({"interactions": [["learner", "action"]]}, {"low_rank": {"rank": 4}}):
        with pytest.raises(LearnerError, match="interactions/low rank"):
            OnlineLearner(LearnerConfig.model_validate(changed), state=state)
    OnlineLearner(LearnerConfig(), state=state).close()  # unchanged: fine
