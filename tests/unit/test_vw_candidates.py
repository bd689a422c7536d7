"""Tests of the VW-backed replay candidates (`replay.vw_candidates`) on real Vowpal Wabbit models.

Logged data: uniform-random simulated traffic joined by the real reward join
(`decision_fixtures.joined_events`). The snapshot is published by a learner with pruning on,
so the deployed mixture has every part: forced share, cold start, pruned messages' re-test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from decision_fixtures import joined_events, publish

from bandit.config import Config, parse_config
from bandit.decisions import Decider
from bandit.errors import InvalidFeedback
from bandit.learning import OnlineLearner
from bandit.snapshots import SnapshotStore
from replay.logged import LoggedData, from_joined
from replay.vw_candidates import CrossFitVW, ProgressiveVW, SnapshotPolicy

N_SNAPSHOT_ROWS = 600  # rows replayed through the snapshot (one VW prediction each)
N_LEARNED_ROWS = 2000  # rows the progressive / cross-fitted learners walk
T0 = 1_767_600_000.0


def config(**decisions: Any) -> Config:
    """Softmax exploration (its pmf moves with every update, so dependence is visible),
    pruning quick to act, and the default mixture: forced share and cold start."""
    return parse_config(
        {
            "learner": {"exploration": {"algorithm": "softmax", "lambda": 5.0}},
            "pruning": {
                "min_impressions": 40,
                "confidence": 0.8,
                "evaluate_every_events": 200,
            },
            "decisions": {"default": {"forced_share": 0.1, "cold_start_outcomes": 1, **decisions}},
        }
    )


@pytest.fixture(scope="module")
def data() -> LoggedData:
    return from_joined(joined_events(), none_action="none", source="simulated")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot store (with LATEST) of a learner trained on every joined event."""
    cfg = config()
    learner = OnlineLearner(cfg.learner, none_action="none", reaction_cap=1, pruning=cfg.pruning)
    try:
        for event in joined_events():
            learner.learn(event)
        directory = tmp_path_factory.mktemp("snapshots")
        publish(cfg, learner, directory)
    finally:
        learner.close()
    return directory


@pytest.fixture(scope="module")
def replayed(data: LoggedData) -> LoggedData:
    return data.subset(np.arange(N_SNAPSHOT_ROWS))


@pytest.fixture(scope="module")
def decider(store: Path) -> Iterator[Decider]:
    with Decider(store, seed=1) as d:
        yield d


def columns(data: LoggedData, ids: tuple[str, ...]) -> list[int]:
    return [data.action_index(a) for a in ids]


def assert_valid(data: LoggedData, probs: np.ndarray) -> None:
    assert probs.shape == (data.n, len(data.actions))
    assert np.all(probs[~data.mask] == 0.0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)


# ---- a published snapshot ---------------------------------------------------------------------


def test_snapshot_pmf_is_the_deciders_policy_pmf(
    replayed: LoggedData, store: Path, decider: Decider
) -> None:
    probs = SnapshotPolicy(store, "pmf").probabilities(replayed)
    assert_valid(replayed, probs)
    assert replayed.impressions is not None
    for i, imp in enumerate(replayed.impressions):
        served = decider.policy.policy_pmf(
            imp.trigger, imp.context, imp.action_ids, imp.action_features
        )
        np.testing.assert_allclose(probs[i, columns(replayed, imp.action_ids)], served, atol=1e-6)


def test_snapshot_deployed_is_the_pmf_decide_logs_for_the_same_inputs(
    replayed: LoggedData, store: Path, decider: Decider
) -> None:
    probs = SnapshotPolicy(store, "deployed").probabilities(replayed)
    assert_valid(replayed, probs)
    assert replayed.impressions is not None
    whys = set()
    for i, imp in enumerate(replayed.impressions):
        decision = decider.decide(
            imp.trigger,
            imp.learner_id,
            imp.context,
            imp.action_ids,
            action_features=dict(zip(imp.action_ids, imp.action_features, strict=True)),
            event_id=imp.event_id,
            timestamp=T0,
        )
        whys.add(decision.why)
        np.testing.assert_allclose(
            probs[i, columns(replayed, imp.action_ids)], decision.pmf, rtol=0, atol=1e-12
        )
    # the rows exercised every part of the mixture
    assert {"cold_start", "forced", "retest", "exploit"} <= whys


def test_snapshot_deployed_differs_from_the_policy_pmf_by_the_mixture(
    replayed: LoggedData, store: Path
) -> None:
    pmf = SnapshotPolicy(store, "pmf").probabilities(replayed)
    deployed = SnapshotPolicy(store, "deployed").probabilities(replayed)
    assert np.abs(pmf - deployed).max() > 0.05


def test_decision_pmf_is_the_pmf_decide_logs_without_drawing(
    replayed: LoggedData, decider: Decider
) -> None:
    assert replayed.impressions is not None
    imp = replayed.impressions[0]
    pmf = decider.decision_pmf(imp.trigger, imp.learner_id, imp.context, imp.action_ids)
    logged = decider.decide(imp.trigger, imp.learner_id, imp.context, imp.action_ids)
    assert tuple(pmf) == logged.pmf


def test_snapshot_greedy_is_one_hot_on_the_policys_argmax(
    replayed: LoggedData, store: Path
) -> None:
    pmf = SnapshotPolicy(store, "pmf").probabilities(replayed)
    greedy = SnapshotPolicy(store, "greedy").probabilities(replayed)
    assert_valid(replayed, greedy)
    assert set(np.unique(greedy)) == {0.0, 1.0}
    masked = np.where(replayed.mask, pmf, -1.0)
    np.testing.assert_array_equal(greedy.argmax(axis=1), masked.argmax(axis=1))


def test_snapshot_policy_reads_a_store_or_one_snapshot_directory(
    replayed: LoggedData, store: Path
) -> None:
    pointer = SnapshotStore(store).latest_pointer()
    assert pointer is not None
    name = pointer[0]
    rows = replayed.subset(np.arange(50))
    from_store = SnapshotPolicy(store).probabilities(rows)
    from_directory = SnapshotPolicy(store / name).probabilities(rows)
    np.testing.assert_array_equal(from_store, from_directory)
    assert SnapshotPolicy(store / name, "greedy").name == f"{name}:greedy"


# ---- contexts are required ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda store: SnapshotPolicy(store),
        lambda _store: ProgressiveVW(config()),
        lambda _store: CrossFitVW(config()),
    ],
    ids=["snapshot", "progressive", "crossfit"],
)
def test_vw_candidates_on_a_source_without_contexts_say_so(
    replayed: LoggedData, store: Path, make: Any
) -> None:
    without = dataclasses.replace(replayed, impressions=None)
    with pytest.raises(InvalidFeedback, match="has no contexts"):
        make(store).probabilities(without)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SnapshotPolicy("x", "best"), "SnapshotPolicy mode must be one of"),
        (lambda: ProgressiveVW(config(), "deployed"), "ProgressiveVW mode must be one of"),
        (lambda: CrossFitVW(config(), folds=1), "CrossFitVW needs at least 2 folds"),
    ],
    ids=["snapshot-mode", "progressive-mode", "crossfit-folds"],
)
def test_vw_candidates_refuse_unknown_modes_and_too_few_folds(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


# ---- progressive validation: predict, then learn -----------------------------------------------


@pytest.fixture(scope="module")
def walked(data: LoggedData) -> LoggedData:
    return data.subset(np.arange(N_LEARNED_ROWS))


def with_rewards(data: LoggedData, reward: np.ndarray) -> LoggedData:
    return dataclasses.replace(data, reward=reward)


def test_progressive_row_i_never_depends_on_row_i_or_later(walked: LoggedData) -> None:
    i = 1200
    candidate = ProgressiveVW(config())
    before = candidate.probabilities(walked)
    reward = walked.reward.copy()
    reward[i] = 5.0 if reward[i] <= 0 else -5.0
    after = candidate.probabilities(with_rewards(walked, reward))
    assert_valid(walked, before)
    np.testing.assert_array_equal(before[: i + 1], after[: i + 1])
    assert np.abs(before[i + 1 :] - after[i + 1 :]).max() > 1e-4


def test_progressive_first_row_is_uniform_because_nothing_was_learned_yet(
    walked: LoggedData,
) -> None:
    probs = ProgressiveVW(config()).probabilities(walked.subset(np.arange(5)))
    offered = walked.mask[0]
    np.testing.assert_allclose(probs[0, offered], 1.0 / offered.sum())


def test_progressive_greedy_is_one_hot_and_reports_progress(walked: LoggedData) -> None:
    calls: list[tuple[str, int, int]] = []
    greedy = ProgressiveVW(config(), "greedy", progress=lambda *a: calls.append(a))
    probs = greedy.probabilities(walked)
    assert_valid(walked, probs)
    assert set(np.unique(probs)) == {0.0, 1.0}
    assert calls == [("progressive-vw:greedy", walked.n, walked.n)]


# ---- cross-fitting: trained on the other folds ---------------------------------------------------


def test_crossfit_fold_rows_never_depend_on_their_own_folds_rewards(walked: LoggedData) -> None:
    folds = walked.folds(2)
    candidate = CrossFitVW(config(), mode="pmf")
    before = candidate.probabilities(walked)
    flipped = with_rewards(walked, np.where(folds == 0, -walked.reward - 1.0, walked.reward))
    after = candidate.probabilities(flipped)
    assert_valid(walked, before)
    np.testing.assert_array_equal(before[folds == 0], after[folds == 0])
    assert np.abs(before[folds == 1] - after[folds == 1]).max() > 0.05


def test_crossfit_greedy_is_one_hot_and_reports_each_folds_stages(walked: LoggedData) -> None:
    calls: list[tuple[str, int, int]] = []
    probs = CrossFitVW(config(), folds=3, progress=lambda *a: calls.append(a)).probabilities(walked)
    assert_valid(walked, probs)
    assert set(np.unique(probs)) == {0.0, 1.0}
    stages = [stage for stage, done, total in calls if done == total]
    assert stages == [
        f"crossfit-vw:greedy fold {f}/3 {step}" for f in (1, 2, 3) for step in ("train", "predict")
    ]
