"""Tests of the replay candidate contract and baselines (`replay.candidates`), without VW.

World data: decisions drawn uniformly at random in the simulated world, with the exact expected
reward of every candidate beside them (reward +1 helpful, -1 not helpful, 0 ignored or sending
nothing), so "the truly best message" is known.
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bandit.errors import InvalidFeedback, ReplayInputError
from bandit.simulation.world import NONE_ACTION, World
from replay.candidates import (
    AlwaysSend,
    BestUniform,
    Candidate,
    External,
    FoldPicks,
    LoggingPolicy,
    NeverSend,
    Uniform,
    check_probabilities,
    load_external,
)
from replay.logged import LoggedData

N_WORLD = 60_000
REWARD_OF_LABEL = np.array([1.0, -1.0, 0.0])  # helpful, not helpful, ignored
# Per-trigger picks are checked only where the truly best message beats the runner-up by this
# much: about 3 standard errors of a difference of two SNIPS values on one fold's rows here.
CLEAR_GAP = 0.15


def logged(
    actions: tuple[str, ...],
    mask: np.ndarray,
    chosen: np.ndarray,
    reward: np.ndarray,
    triggers: np.ndarray,
    *,
    none_action: str | None = NONE_ACTION,
    with_pmf: bool = True,
) -> LoggedData:
    """LoggedData of uniformly random decisions (pscore 1 / number of candidates)."""
    n = len(chosen)
    pmf = mask / mask.sum(axis=1, keepdims=True)
    return LoggedData(
        event_ids=np.array([f"e{i}" for i in range(n)], dtype=object),
        triggers=triggers.astype(object),
        learners=np.array([""] * n, dtype=object),
        timestamps=np.full(n, np.nan),
        actions=actions,
        mask=mask,
        chosen=chosen,
        pscore=pmf[np.arange(n), chosen],
        logging_pmf=pmf if with_pmf else None,
        reward=reward.astype(np.float64),
        labels=np.array([""] * n, dtype=object),
        none_action=none_action if none_action in actions else None,
        source="test",
    )


def tiny(*, none_action: str | None = NONE_ACTION, with_pmf: bool = True) -> LoggedData:
    """Four decisions over a, b, none: all three, a or none, only none, all three."""
    mask = np.array([[1, 1, 1], [1, 0, 1], [0, 0, 1], [1, 1, 1]], dtype=bool)
    return logged(
        ("a", "b", NONE_ACTION),
        mask,
        np.array([0, 2, 2, 1]),
        np.array([1.0, 0.0, 0.0, -1.0]),
        np.array(["t1", "t1", "t2", "t2"]),
        none_action=none_action,
        with_pmf=with_pmf,
    )


@functools.cache
def world_log(n: int = N_WORLD, seed: int = 5) -> tuple[LoggedData, np.ndarray]:
    """(n uniform-logged World decisions, (n, K) exact expected reward of each candidate)."""
    world = World(3, 400)
    actions = tuple(dict.fromkeys(a for t in world.triggers for a in t.candidates))
    column = {a: k for k, a in enumerate(actions)}
    rng = np.random.default_rng(seed)
    mask = np.zeros((n, len(actions)), dtype=bool)
    q = np.zeros((n, len(actions)))
    chosen = np.empty(n, dtype=np.int64)
    reward = np.zeros(n)
    triggers = np.empty(n, dtype=object)
    for i in range(n):
        learner = int(rng.integers(world.n_learners))
        trigger = world.triggers[int(rng.integers(len(world.triggers)))]
        triggers[i] = trigger.trigger_id
        outcomes = {a: world.outcome_probabilities(learner, trigger, a) for a in trigger.candidates}
        for a, (helpful, not_helpful, _ignored) in outcomes.items():
            mask[i, column[a]] = True
            q[i, column[a]] = helpful - not_helpful
        action = trigger.candidates[int(rng.integers(len(trigger.candidates)))]
        chosen[i] = column[action]
        reward[i] = REWARD_OF_LABEL[rng.choice(3, p=outcomes[action])]
    return logged(actions, mask, chosen, reward, triggers), q


def true_value(q: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(K,) mean expected reward of always choosing each action, over rows offering it."""
    return np.where(mask, q, 0.0).sum(axis=0) / np.maximum(mask.sum(axis=0), 1)


def small_world() -> LoggedData:
    return world_log()[0].subset(np.arange(3000))


CANDIDATES: list[Candidate] = [
    LoggingPolicy(),
    Uniform(),
    Uniform("random-message", messages_only=True),
    NeverSend(),
    AlwaysSend(Uniform()),
    AlwaysSend(NeverSend()),
    BestUniform(by_trigger=False),
    BestUniform(by_trigger=True, folds=3),
    BestUniform(by_trigger=True, include_none=False),
    External("given", np.eye(3)[[0, 0, 2, 1]]),
]


# ---- the contract ---------------------------------------------------------------------------


@pytest.mark.parametrize("candidate", CANDIDATES[:-1], ids=lambda c: c.name)
def test_every_candidate_gives_a_valid_row_per_decision_on_world_data(candidate: Candidate) -> None:
    data = small_world()
    probs = candidate.probabilities(data)
    assert probs.shape == (data.n, len(data.actions))
    assert probs.dtype == np.float64
    assert np.all(probs[~data.mask] == 0.0)
    assert np.all(probs >= 0.0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)


@pytest.mark.parametrize("candidate", CANDIDATES, ids=lambda c: c.name)
def test_every_candidate_gives_a_valid_row_per_decision_on_tiny_data(candidate: Candidate) -> None:
    data = tiny()
    probs = check_probabilities(candidate.name, data, candidate.probabilities(data))
    assert np.all(probs[~data.mask] == 0.0)


BAD_ROWS = [
    pytest.param(np.ones((3, 3)) / 3, "shape (3, 3); expected (4, 3)", id="shape"),
    pytest.param(np.eye(3)[[0, 0, 2, 1]] * [[1], [np.nan], [1], [1]], "row 1", id="nan"),
    pytest.param(np.array([[1.5, -0.5, 0], [1, 0, 0], [0, 0, 1], [1, 0, 0]]), "row 0", id="neg"),
    pytest.param(np.eye(3)[[0, 1, 2, 1]], "row 1 (event 'e1') puts 1 on 'b'", id="unavailable"),
    pytest.param(np.eye(3)[[0, 0, 2, 1]] * 0.9, "row 0 (event 'e0') sums to 0.9", id="sum"),
]


@pytest.mark.parametrize(("probs", "message"), BAD_ROWS)
def test_check_probabilities_names_the_candidate_and_the_first_bad_row(
    probs: np.ndarray, message: str
) -> None:
    with pytest.raises(InvalidFeedback, match="candidate 'mine'") as info:
        check_probabilities("mine", tiny(), probs)
    assert message in str(info.value)


# ---- logging, uniform, never send, always send ----------------------------------------------


def test_logging_policy_is_the_logged_pmf() -> None:
    data = small_world()
    assert data.logging_pmf is not None
    np.testing.assert_array_equal(LoggingPolicy().probabilities(data), data.logging_pmf)


def test_logging_policy_without_a_full_pmf_says_only_the_on_policy_mean_is_available() -> None:
    with pytest.raises(InvalidFeedback, match=r"no full pmf.*only the on-policy mean"):
        LoggingPolicy().probabilities(tiny(with_pmf=False))


def test_uniform_spreads_over_every_available_action() -> None:
    probs = Uniform().probabilities(tiny())
    np.testing.assert_allclose(probs[0], [1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(probs[1], [0.5, 0.0, 0.5])


def test_random_message_skips_none_except_where_only_none_is_available() -> None:
    probs = Uniform(messages_only=True).probabilities(tiny())
    np.testing.assert_allclose(probs, [[0.5, 0.5, 0], [1, 0, 0], [0, 0, 1], [0.5, 0.5, 0]])


def test_never_send_puts_all_mass_on_the_none_action() -> None:
    probs = NeverSend().probabilities(tiny())
    np.testing.assert_array_equal(probs, np.eye(3)[[2, 2, 2, 2]])


def test_never_send_without_a_none_action_in_the_log_is_a_clear_error() -> None:
    with pytest.raises(InvalidFeedback, match="no send-nothing action"):
        NeverSend().probabilities(tiny(none_action=None))


def test_never_send_where_none_was_not_offered_names_the_row() -> None:
    data = tiny()
    mask = data.mask.copy()
    mask[3] = [True, True, False]
    broken = logged(data.actions, mask, data.chosen, data.reward, data.triggers)
    with pytest.raises(InvalidFeedback, match=r"row 3 \(event 'e3'\) did not offer 'none'"):
        NeverSend().probabilities(broken)


def test_always_send_moves_the_none_mass_onto_messages_in_proportion() -> None:
    base = External("base", np.array([[0.2, 0.4, 0.4], [0.5, 0, 0.5], [0, 0, 1], [0, 0, 1]]))
    probs = AlwaysSend(base).probabilities(tiny())
    # row 0: 0.4 moves 1:2 onto a, b; row 3 sent nothing, so uniform over its messages;
    # row 2 offers no message and keeps sending nothing.
    np.testing.assert_allclose(probs, [[1 / 3, 2 / 3, 0], [1, 0, 0], [0, 0, 1], [0.5, 0.5, 0]])
    assert AlwaysSend(base).name == "always-send(base)"


def test_always_send_never_sends_nothing_where_a_message_is_available() -> None:
    data = small_world()
    probs = AlwaysSend(LoggingPolicy()).probabilities(data)
    none = data.action_index(NONE_ACTION)
    assert np.all(probs[:, none] == 0.0)


# ---- best uniform: chosen out of sample -------------------------------------------------------


def test_best_message_overall_is_the_truly_best_message_on_every_fold() -> None:
    data, q = world_log()
    truth = true_value(q, data.mask)
    messages = [k for k, a in enumerate(data.actions) if a != NONE_ACTION]
    best = data.actions[max(messages, key=lambda k: truth[k])]
    picks = BestUniform(by_trigger=False, include_none=False).picks(data)
    assert [p.best() for p in picks.values()] == [best, best]
    assert NONE_ACTION not in picks[0].overall.actions


def test_best_message_per_trigger_is_the_truly_best_where_it_clearly_is() -> None:
    data, q = world_log()
    triggers = data.triggers.astype(str)
    picks = BestUniform(by_trigger=True).picks(data)
    checked = 0
    for trigger in data.trigger_ids:
        rows = triggers == trigger
        truth = true_value(q[rows], data.mask[rows])
        offered = np.flatnonzero(data.mask[rows][0])
        ranked = offered[np.argsort(-truth[offered])]
        if truth[ranked[0]] - truth[ranked[1]] < CLEAR_GAP:
            continue
        checked += 1
        for fold in picks.values():
            assert fold.best(trigger) == data.actions[ranked[0]], (trigger, fold.fold)
    assert checked >= 6  # the world has clear winners (e.g. none after a passed final)


def test_best_per_trigger_beats_best_overall_in_true_value() -> None:
    data, q = world_log()
    per_trigger = BestUniform(by_trigger=True).probabilities(data)
    overall = BestUniform(by_trigger=False).probabilities(data)
    assert (q * per_trigger).sum(axis=1).mean() > (q * overall).sum(axis=1).mean() + 0.05


def rankings(picks: FoldPicks) -> list[tuple[str, tuple[str, ...], tuple[float, ...]]]:
    """Every ranking of a fold, values rounded and nan as -inf, so equal picks compare equal."""
    named = [("*", picks.overall), *sorted(picks.by_trigger.items())]
    return [
        (t, r.actions, tuple(-np.inf if np.isnan(v) else round(v, 12) for v in r.values))
        for t, r in named
    ]


def test_a_folds_pick_never_uses_that_folds_own_rewards() -> None:
    data = small_world()
    folds = data.folds(2)
    # Make every message in fold 0 look terrible: only fold 1's picks may change.
    reward = np.where(
        (folds == 0) & (data.chosen != data.action_index(NONE_ACTION)), -5.0, data.reward
    )
    changed = logged(data.actions, data.mask, data.chosen, reward, data.triggers)
    for by_trigger in (False, True):
        candidate = BestUniform(by_trigger=by_trigger)
        before, after = candidate.picks(data), candidate.picks(changed)
        assert rankings(before[0]) == rankings(after[0])
        assert rankings(before[1]) != rankings(after[1])
        rows = folds == 0
        np.testing.assert_array_equal(
            candidate.probabilities(data)[rows], candidate.probabilities(changed)[rows]
        )


def test_best_uniform_falls_to_the_next_ranked_action_where_the_best_is_not_offered() -> None:
    data = small_world()
    candidate = BestUniform(by_trigger=False)
    probs = candidate.probabilities(data)
    folds = data.folds(2)
    picks = candidate.picks(data)
    for i in range(0, data.n, 97):
        ranking = picks[int(folds[i])].overall.actions
        expected = next(a for a in ranking if data.mask[i, data.action_index(a)])
        assert probs[i, data.action_index(expected)] == 1.0


def test_best_uniform_needs_two_folds_and_names_itself() -> None:
    with pytest.raises(ValueError, match="at least 2 folds"):
        BestUniform(by_trigger=False, folds=1)
    assert BestUniform(by_trigger=True, include_none=False).name == (
        "best-uniform-messages-per-trigger"
    )


# ---- external policies and side files -------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


GOOD_JSONL = "\n".join(
    [
        '{"event_id": "e0", "probabilities": {"a": 0.25, "b": 0.25, "none": 0.5}}',
        '{"event_id": "e1", "probabilities": {"a": 1.0}}',
        "",
        '{"event_id": "e2", "probabilities": {"none": 1}}',
        '{"event_id": "e3", "probabilities": {"b": 0.3333, "none": 0.6667}}',
        '{"event_id": "other", "probabilities": {"a": 1}}',
    ]
)
GOOD_CSV = """event_id,action,probability
e0,a,0.25
e0,b,0.25
e0,none,0.5
e1,a,1
e2,none,1
e3,b,0.3333
e3,none,0.6667
"""
EXPECTED = np.array([[0.25, 0.25, 0.5], [1, 0, 0], [0, 0, 1], [0, 0.3333, 0.6667]])


@pytest.mark.parametrize(("suffix", "text"), [(".jsonl", GOOD_JSONL), (".csv", GOOD_CSV)])
def test_side_file_gives_each_events_probabilities_by_event_id(
    tmp_path: Path, suffix: str, text: str
) -> None:
    candidate = load_external(write(tmp_path / f"scores{suffix}", text), tiny())
    assert candidate.name == "scores"
    np.testing.assert_allclose(candidate.probabilities(tiny()), EXPECTED, atol=1e-12)


def test_external_mapping_equals_the_side_file() -> None:
    mapping = {"e0": {"a": 0.25, "b": 0.25, "none": 0.5}, "e1": {"a": 1.0}}
    mapping |= {"e2": {"none": 1.0}, "e3": {"b": 0.3333, "none": 0.6667}}
    np.testing.assert_allclose(External("m", mapping).probabilities(tiny()), EXPECTED)


def test_external_mapping_missing_an_event_names_the_candidate() -> None:
    with pytest.raises(ReplayInputError, match=r"candidate 'm'.*event_id.*'e1'"):
        External("m", {"e0": {"a": 1.0}}).probabilities(tiny())


JSONL_ERRORS = [
    pytest.param('{"event_id": "e0", "probabilities": {"a": 1}}\n{oops', 2, "line", id="json"),
    pytest.param('["e0"]', 1, "line", id="not-object"),
    pytest.param('{"probabilities": {"a": 1}}', 1, "event_id", id="no-event-id"),
    pytest.param('{"event_id": "e0", "probabilities": {}}', 1, "probabilities", id="empty"),
    pytest.param('{"event_id": "e0", "probabilities": {"zzz": 1}}', 1, "action", id="unknown"),
    pytest.param('{"event_id": "e0", "probabilities": {"a": "x"}}', 1, "probability", id="text"),
    pytest.param('{"event_id": "e0", "probabilities": {"a": 1.5}}', 1, "probability", id="big"),
    pytest.param(
        '{"event_id": "e0", "probabilities": {"a": 1}}\n'
        '{"event_id": "e0", "probabilities": {"a": 1}}',
        2,
        "event_id",
        id="repeat",
    ),
    pytest.param(
        '{"event_id": "e0", "probabilities": {"a": 1}}\n'
        '{"event_id": "e1", "probabilities": {"b": 1}}',
        2,
        "probabilities",
        id="unavailable",
    ),
    pytest.param(
        '{"event_id": "e0", "probabilities": {"a": 0.5, "b": 0.4}}', 1, "probabilities", id="sum"
    ),
]


@pytest.mark.parametrize(("text", "line", "field"), JSONL_ERRORS)
def test_bad_jsonl_side_file_names_the_line_and_field(
    tmp_path: Path, text: str, line: int, field: str
) -> None:
    path = write(tmp_path / "p.jsonl", text)
    with pytest.raises(ReplayInputError) as info:
        load_external(path, tiny())
    assert (info.value.where, info.value.field) == (f"{path} line {line}", field)


CSV_HEAD = "event_id,action,probability\n"
CSV_ERRORS = [
    pytest.param("event,action,probability\ne0,a,1\n", 1, "header", id="header"),
    pytest.param(CSV_HEAD + "e0,a,1\n,a,1\n", 3, "event_id", id="no-event-id"),
    pytest.param(CSV_HEAD + "e0,zzz,1\n", 2, "action", id="unknown"),
    pytest.param(CSV_HEAD + "e0,a,0.5\ne0,a,0.5\n", 3, "action", id="repeat"),
    pytest.param(CSV_HEAD + "e0,a,nan\n", 2, "probability", id="nan"),
    pytest.param(CSV_HEAD + "e0,a,1\ne1,none,0.5\ne1,b,0.5\n", 4, "probabilities", id="unavail"),
    pytest.param(CSV_HEAD + "e0,a,1\ne1,none,0.5\ne1,a,0.4\n", 3, "probabilities", id="sum"),
]


@pytest.mark.parametrize(("text", "line", "field"), CSV_ERRORS)
def test_bad_csv_side_file_names_the_line_and_field(
    tmp_path: Path, text: str, line: int, field: str
) -> None:
    path = write(tmp_path / "p.csv", text)
    with pytest.raises(ReplayInputError) as info:
        load_external(path, tiny())
    assert (info.value.where, info.value.field) == (f"{path} line {line}", field)


def test_side_file_missing_a_logged_event_says_how_many_are_missing(tmp_path: Path) -> None:
    path = write(tmp_path / "p.jsonl", '{"event_id": "e0", "probabilities": {"a": 1}}')
    with pytest.raises(ReplayInputError, match=r"'e1' \(3 of 4 logged events missing\)") as info:
        load_external(path, tiny())
    assert (info.value.where, info.value.field) == (str(path), "event_id")


def test_side_file_of_unknown_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReplayInputError, match=r"use \.jsonl or \.csv"):
        load_external(write(tmp_path / "p.parquet", ""), tiny())


def test_world_log_is_uniform_logging_over_the_triggers_candidates() -> None:
    data, _q = world_log()
    counts = Counter(data.triggers.tolist())
    assert len(counts) == 16
    assert data.logging_pmf is not None
    np.testing.assert_allclose(data.pscore, 1.0 / data.mask.sum(axis=1))
