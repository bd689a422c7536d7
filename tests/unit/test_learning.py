"""Unit tests of the VW text format, the VW policy and the online learner (real Vowpal Wabbit)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from bandit.config import LearnerConfig
from bandit.errors import LearnerError
from bandit.events import Impression, OutcomeLabel
from bandit.join import JoinedEvent
from bandit.learning import GLOBAL_SCOPE, OnlineLearner
from bandit.policies import VowpalPolicy
from bandit.scratch import scratch_dir
from bandit.vw_text import NamespaceLetters, action_line, example_lines, shared_line

LETTERS = NamespaceLetters({"learner": "l", "course": "c"}, "a")

Context = dict[str, dict[str, float | str]]


def softmax_config(**overrides: object) -> LearnerConfig:
    return LearnerConfig.model_validate(
        {"exploration": {"algorithm": "softmax", "lambda": 5.0}, **overrides}
    )


def make_impression(
    event_id: str,
    context: Context,
    action_ids: tuple[str, ...],
    chosen: int,
    probability: float,
    trigger: str = "quiz_failed",
    action_features: tuple[dict[str, float | str], ...] | None = None,
) -> Impression:
    return Impression(
        event_id=event_id,
        ts=1_767_600_000.0,
        trigger=trigger,
        learner_id="learner-1",
        context=context,
        action_ids=action_ids,
        action_features=action_features or tuple({} for _ in action_ids),
        chosen_index=chosen,
        probability=probability,
        policy_version="v1",
    )


def joined(impression: Impression, reward: float) -> JoinedEvent:
    label = OutcomeLabel.HELPFUL if reward > 0 else OutcomeLabel.IGNORED
    return JoinedEvent(impression, label, None, reward, defaulted=False)


# ---- VW text format ---------------------------------------------------------------------------


def test_example_lines_have_a_shared_line_and_one_id_line_per_action() -> None:
    lines = example_lines(
        {"learner": {"level": "novice", "score": 0.25}, "course": {"id": "c1"}},
        ("hint", "video", "none"),
        ({"kind": "hint", "len": 3}, {"kind": "video"}, {}),
        LETTERS,
    )
    assert lines == [
        "shared |l level=novice score:0.25 |c id=c1",
        "|a id=hint kind=hint len:3",
        "|a id=video kind=video",
        "|a id=none",
    ]


def test_label_is_only_on_the_chosen_line() -> None:
    lines = example_lines(
        {"learner": {"level": "novice"}},
        ("hint", "video", "none"),
        ({}, {}, {}),
        LETTERS,
        label=(1, -1.0, 0.25),
    )
    assert lines == [
        "shared |l level=novice",
        "|a id=hint",
        "0:-1:0.25 |a id=video",
        "|a id=none",
    ]


def test_learner_labels_the_chosen_action_with_cost_minus_reward(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[list[str]] = []
    original = VowpalPolicy.learn_text

    def spy(self: VowpalPolicy, text: str) -> None:
        seen.append(text.split("\n"))
        original(self, text)

    monkeypatch.setattr(VowpalPolicy, "learn_text", spy)
    learner = OnlineLearner(LearnerConfig())
    try:
        imp = make_impression("e1", {"learner": {"level": "novice"}}, ("x", "y", "z"), 2, 0.4)
        learner.learn(joined(imp, 1.0))
        learner.learn(joined(imp, -0.5))
    finally:
        learner.close()

    assert seen == [
        ["shared |l level=novice", "|a id=x", "|a id=y", "0:-1:0.4 |a id=z"],
        ["shared |l level=novice", "|a id=x", "|a id=y", "0:0.5:0.4 |a id=z"],
    ]
    assert learner.examples_learned == 0  # close() dropped the policies


def test_string_feature_values_are_sanitised() -> None:
    line = shared_line({"learner": {"name": "a b\tc|d:e\nf\rg"}}, LETTERS)
    assert line == "shared |l name=a_b_c_d_e_f_g"
    assert action_line("hint", {"title": "Try: this | now"}, LETTERS) == (
        "|a id=hint title=Try__this___now"
    )


def test_empty_context_gives_a_bare_shared_line() -> None:
    assert shared_line({}, LETTERS) == "shared |"
    assert shared_line({"learner": {}, "course": {"id": "c1"}}, LETTERS) == "shared |c id=c1"


def test_numeric_features_use_six_significant_digits() -> None:
    assert shared_line({"learner": {"x": 1 / 3, "y": 2.0, "z": 1e-9}}, LETTERS) == (
        "shared |l x:0.333333 y:2 z:1e-09"
    )


# ---- policy -----------------------------------------------------------------------------------


def test_action_without_features_still_gets_an_id_and_a_probability() -> None:
    lines = example_lines(
        {"learner": {"level": "novice"}}, ("hint", "none"), ({"k": 1.0}, {}), LETTERS
    )
    assert lines[2] == "|a id=none"
    with VowpalPolicy(LearnerConfig().vw_arguments()) as policy:
        policy.learn(
            example_lines(
                {"learner": {"level": "novice"}},
                ("hint", "none"),
                ({"k": 1.0}, {}),
                LETTERS,
                label=(1, -1.0, 0.5),
            )
        )
        pmf = policy.predict(lines)

    assert pmf.shape == (2,)
    assert np.all(pmf > 0)
    assert pmf.sum() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("n_actions", [1, 2, 5])
def test_predict_returns_one_probability_per_action(n_actions: int) -> None:
    ids = tuple(f"a{i}" for i in range(n_actions))
    lines = example_lines({}, ids, tuple({} for _ in ids), LETTERS)
    with VowpalPolicy(LearnerConfig().vw_arguments()) as policy:
        pmf = policy.predict(lines)
    assert pmf.shape == (n_actions,)
    assert pmf.sum() == pytest.approx(1.0, abs=1e-6)


def random_examples(
    seed: int, n: int
) -> Iterator[tuple[Context, tuple[str, ...], tuple[dict[str, float | str], ...], int, float]]:
    """(context, action ids, action features, chosen index, reward) of a random log."""
    rng = np.random.default_rng(seed)
    levels = ["novice", "intermediate", "expert"]
    all_actions = ["hint", "video", "peer", "none"]
    for _ in range(n):
        context: Context = {
            "learner": {"level": levels[rng.integers(3)], "score": float(rng.random())},
            "course": {"id": f"c{rng.integers(4)}"},
        }
        k = int(rng.integers(2, 5))
        ids = tuple(all_actions[:k])
        features = tuple({"len": float(i + 1)} if i % 2 == 0 else {} for i in range(k))
        chosen = int(rng.integers(k))
        reward = float(rng.choice([-1.0, 0.0, 1.0]))
        yield context, ids, features, chosen, reward


def probe_lines() -> list[list[str]]:
    return [
        example_lines(context, ids, features, LETTERS)
        for context, ids, features, _, _ in random_examples(99, 20)
    ]


def learn_log(policy: VowpalPolicy, seed: int, n: int) -> None:
    for context, ids, features, chosen, reward in random_examples(seed, n):
        lines = example_lines(
            context, ids, features, LETTERS, label=(chosen, -reward, 1 / len(ids))
        )
        policy.learn(lines)


def predictions(policy: VowpalPolicy) -> list[np.ndarray]:
    return [policy.predict(lines) for lines in probe_lines()]


def test_restored_policy_continues_learning_exactly_like_the_uninterrupted_one() -> None:
    config = LearnerConfig(
        namespaces={"learner": "l", "course": "c"},
        interactions=[("learner", "action"), ("course", "action")],
        exploration={"algorithm": "softmax", "lambda": 5.0},
    )
    arguments = config.vw_arguments()
    assert "--softmax" in arguments

    a = VowpalPolicy(arguments)
    b = VowpalPolicy(arguments)
    try:
        learn_log(a, seed=1, n=300)
        learn_log(b, seed=1, n=300)
        before = predictions(b)
        model = a.to_bytes()
        a.finish()

        a = VowpalPolicy(arguments, model)
        assert "--softmax" in a.vw_arguments()
        assert all(
            np.allclose(x, y, atol=1e-6) for x, y in zip(predictions(a), before, strict=True)
        )

        learn_log(a, seed=2, n=200)
        learn_log(b, seed=2, n=200)
        after_a, after_b = predictions(a), predictions(b)
    finally:
        a.finish()
        b.finish()

    # softmax gives a continuous pmf, so equal pmfs mean equal learned weights
    assert any(0.05 < p < 0.95 for pmf in after_b for p in pmf)
    assert not all(np.allclose(x, y, atol=1e-3) for x, y in zip(before, after_b, strict=True))
    for x, y in zip(after_a, after_b, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-6)


def test_online_learner_restored_from_its_models_predicts_the_same() -> None:
    config = softmax_config()
    learner = OnlineLearner(config)
    try:
        for i, (context, ids, features, chosen, reward) in enumerate(random_examples(5, 100)):
            imp = make_impression(
                f"e{i}", context, ids, chosen, 1 / len(ids), action_features=features
            )
            learner.learn(joined(imp, reward))
        models = dict(learner.models())
        restored = OnlineLearner(config, models)
        try:
            for context, ids, features, _, _ in random_examples(6, 10):
                np.testing.assert_allclose(
                    restored.predict("quiz_failed", context, ids, features),
                    learner.predict("quiz_failed", context, ids, features),
                    atol=1e-6,
                )
            assert restored.examples_learned == 0  # counts this process only
        finally:
            restored.close()
    finally:
        learner.close()
    assert learner.examples_learned == 0


# ---- online learner scopes ----------------------------------------------------------------------


def test_per_trigger_scope_creates_one_model_per_trigger() -> None:
    learner = OnlineLearner(LearnerConfig(scope="per_trigger"))
    try:
        for i, trigger in enumerate(["quiz_failed", "idle", "quiz_failed", "streak"]):
            imp = make_impression(f"e{i}", {}, ("x", "y"), 0, 0.5, trigger=trigger)
            learner.learn(joined(imp, 1.0))
        models = list(learner.models())
        assert [scope for scope, _ in models] == ["idle", "quiz_failed", "streak"]
        assert all(isinstance(m, bytes) and m for _, m in models)
        assert learner.examples_learned == 4
        # a trigger never seen has no model yet: uniform pmf
        pmf = learner.predict("new_trigger", {}, ("x", "y", "z"), ({}, {}, {}))
        np.testing.assert_allclose(pmf, [1 / 3, 1 / 3, 1 / 3])
        assert [s for s, _ in learner.models()] == ["idle", "quiz_failed", "streak"]
    finally:
        learner.close()


def test_global_scope_shares_one_model_across_triggers() -> None:
    learner = OnlineLearner(LearnerConfig())
    try:
        assert list(learner.models()) == []
        for i, trigger in enumerate(["quiz_failed", "idle"]):
            learner.learn(joined(make_impression(f"e{i}", {}, ("x", "y"), 0, 0.5, trigger), 1.0))
        assert [scope for scope, _ in learner.models()] == [GLOBAL_SCOPE]
    finally:
        learner.close()


# ---- the policy learns --------------------------------------------------------------------------


def best_action(learner: OnlineLearner, u: str) -> str:
    pmf = learner.predict("quiz_failed", {"learner": {"u": u}}, ("x", "y"), ({}, {}))
    return ("x", "y")[int(np.argmax(pmf))]


@pytest.mark.parametrize(
    "exploration",
    [{"algorithm": "epsilon", "epsilon": 0.1}, {"algorithm": "softmax", "lambda": 10.0}],
    ids=["epsilon", "softmax"],
)
def test_policy_learns_the_best_action_for_each_context(exploration: dict[str, object]) -> None:
    learner = OnlineLearner(LearnerConfig.model_validate({"exploration": exploration}))
    try:
        for i in range(1000):
            u, chosen = i % 2, (i // 2) % 2  # every (context, action) pair, logged uniformly
            reward = 1.0 if chosen == u else 0.0  # x (0) is right for u=0, y (1) for u=1
            imp = make_impression(f"e{i}", {"learner": {"u": str(u)}}, ("x", "y"), chosen, 0.5)
            learner.learn(joined(imp, reward))
        assert best_action(learner, "0") == "x"
        assert best_action(learner, "1") == "y"
    finally:
        learner.close()


# ---- errors and lifecycle -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    ["--cb_explore_adf --no_such_flag --quiet", "--cb_explore_adf --epsilon not-a-number --quiet"],
)
def test_bad_vw_arguments_raise_learner_error(arguments: str) -> None:
    with pytest.raises(LearnerError, match="refused arguments"):
        VowpalPolicy(arguments)


def test_unreadable_model_bytes_raise_learner_error() -> None:
    with pytest.raises(LearnerError):
        VowpalPolicy(LearnerConfig().vw_arguments(), b"this is not a VW model")


def test_finish_twice_is_safe_and_a_finished_policy_refuses_work() -> None:
    policy = VowpalPolicy(LearnerConfig().vw_arguments())
    policy.finish()
    policy.finish()
    with pytest.raises(LearnerError, match="finished"):
        policy.predict(["shared |", "|a id=x"])
    with pytest.raises(LearnerError, match="finished"):
        policy.to_bytes()


def test_restored_policy_removes_its_temporary_model_file() -> None:
    model = VowpalPolicy(LearnerConfig().vw_arguments())
    data = model.to_bytes()
    model.finish()
    policy = VowpalPolicy(LearnerConfig().vw_arguments(), data)
    # VW has read the model: its file is gone at once, not at finish (bandit.scratch)
    assert policy._files == []
    assert not list(scratch_dir().path.glob("*.vw"))
    policy.finish()
    policy.finish()
    assert policy._files == []
