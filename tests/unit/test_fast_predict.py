"""The decision hot path reads VW's predictions through its extension directly; it must agree
with the public `Workspace.predict` exactly (a VW upgrade that breaks this fails here)."""

from __future__ import annotations

import numpy as np

from bandit.config import LearnerConfig
from bandit.policies import OutcomeModel, VowpalPolicy

LINES = [
    "shared |l novice:1 country=PE |c domain=math",
    "|a id=hint kind=hint",
    "|a id=peer",
    "|a id=none",
]


def _trained_policy() -> VowpalPolicy:
    policy = VowpalPolicy(LearnerConfig().vw_arguments())
    rng = np.random.default_rng(2)
    for _ in range(200):
        chosen = int(rng.integers(3))
        lines = list(LINES)
        lines[chosen + 1] = f"0:{-1.0 if chosen == 2 else 0.5}:0.333 {lines[chosen + 1]}"
        policy.learn(lines)
    return policy


def test_fast_pmf_equals_the_workspace_prediction_in_action_order() -> None:
    policy = _trained_policy()
    slow = policy._workspace().predict(list(LINES))
    fast = policy.predict_list(LINES)
    assert fast == slow
    assert int(np.argmax(fast)) == 2  # the action with the reward, so the order is the actions'
    policy.finish()


def test_fast_outcome_probabilities_equal_the_workspace_prediction() -> None:
    model = OutcomeModel(LearnerConfig().outcome_model_arguments())
    for _ in range(100):
        model.learn("1 |l novice:1 |a id=hint")
        model.learn("3 |l novice:0 |a id=hint")
    lines = ["|l novice:1 |a id=hint", "|l novice:0 |a id=hint"]
    fast = model.predict_list(lines)
    slow = [model._workspace().predict(line) for line in lines]
    assert fast == slow
    assert fast[0][0] > fast[0][2] and fast[1][2] > fast[1][0]
    model.finish()
