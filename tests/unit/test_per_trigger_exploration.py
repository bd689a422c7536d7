"""Exploration configured per trigger: each trigger's policy runs, saves and serves its own rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bandit.config import parse_config
from bandit.decisions import Decider
from bandit.events import Impression, OutcomeLabel
from bandit.join import JoinedEvent
from bandit.learning import OnlineLearner
from bandit.snapshots import SnapshotStore

FINAL, QUIZ = "A/final/final-passed", "A/quiz-3/quiz-failed"
ACTIONS = ("hint", "encourage", "none")
FEATURES: tuple[dict[str, float | str], ...] = (
    {"kind": "hint"},
    {"kind": "encourage"},
    {"kind": "none"},
)


def _event(i: int, trigger: str, chosen: int, reward: float) -> JoinedEvent:
    imp = Impression(
        f"e{i}", float(i), trigger, f"u{i % 7}", {"learner": {"novice": float(i % 2)}},
        ACTIONS, FEATURES, chosen, 1 / 3, "test",
    )  # fmt: skip
    return JoinedEvent(imp, OutcomeLabel.HELPFUL, None, reward, defaulted=False)


def test_each_trigger_policy_uses_the_exploration_its_pattern_names(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "learner": {
                "scope": "per_trigger",
                "exploration": {"algorithm": "epsilon", "epsilon": 0.3},
                "exploration_by_trigger": {"*/final/*": {"algorithm": "softmax", "lambda": 2}},
            },
            "decisions": {"default": {"forced_share": 0.0, "cold_start_outcomes": 0}},
        }
    )
    learner = OnlineLearner(cfg.learner)
    rng = np.random.default_rng(3)
    for i in range(600):
        chosen = int(rng.integers(3))
        for trigger in (FINAL, QUIZ):
            learner.learn(_event(i, trigger, chosen, 1.0 if chosen == 0 else 0.0))
    ctx = {"learner": {"novice": 1.0}}
    final_pmf = learner.predict(FINAL, ctx, ACTIONS, FEATURES)
    quiz_pmf = learner.predict(QUIZ, ctx, ACTIONS, FEATURES)
    # Epsilon-greedy: exactly two distinct values, the non-greedy ones at epsilon / K.
    np.testing.assert_allclose(np.sort(quiz_pmf)[:2], [0.1, 0.1], atol=1e-6)
    # Softmax with lambda 2 on costs within [-1, 0]: no action gets epsilon-style equal mass,
    # and nothing is near-deterministic.
    assert final_pmf.max() < 0.9 and len(np.unique(np.round(final_pmf, 6))) == 3

    store = SnapshotStore(tmp_path)
    store.publish(cfg, learner.state(), {}, 1200)
    manifest = store.load_latest().manifest
    assert manifest.exploration["by_trigger"] == {
        "*/final/*": {"algorithm": "softmax", "lambda": 2.0}
    }
    with Decider(tmp_path, seed=1) as decider:
        for trigger, expected in ((FINAL, final_pmf), (QUIZ, quiz_pmf)):
            decision = decider.decide(trigger, "u1", ctx, ACTIONS, reactions=5)
            np.testing.assert_allclose(decision.pmf, expected, atol=1e-9)
    learner.close()
