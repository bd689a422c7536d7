"""Streaming replay (`replay.streaming_eval`) gives the in-memory numbers, however it is chunked.

The reference is `replay.evaluation.evaluate` on the whole log: every estimate, interval,
gain, effect and diagnostic must agree to 1e-9 (observed: 1e-15, the order of summation).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from replay_truth import as_logged_data, default_config, fixed_policies
from streaming_fixtures import RowTable, assert_same_result, stream

from bandit.errors import ReplayInputError
from bandit.simulation.logged import simulate_logged, truth_table
from bandit.simulation.world import World
from replay.candidates import AlwaysSend, BestUniform, Uniform
from replay.chunk_scan import LogPlan, ScanStats, scan_chunk
from replay.chunked import chunks_of_logged
from replay.evaluation import Gain, evaluate
from replay.logged import LoggedData
from replay.planned_candidates import PickedBest, build_planned, fold_picks, streamable
from replay.policy_specs import build_policies


@pytest.fixture(scope="module")
def study() -> tuple[World, np.ndarray, LoggedData]:
    config = default_config()
    world = World(1003, n_learners=300)
    truth = truth_table(world, config)
    log = simulate_logged(world, config, 3000, 5, logging="skewed", table=truth)
    return world, truth, as_logged_data(log)


def _plan(data: LoggedData, folds: int = 2) -> LogPlan:
    stats = ScanStats(folds)
    for chunk in chunks_of_logged(data, 500):
        stats = stats.merge(scan_chunk(chunk, folds))
    return LogPlan.of(stats, none_action=data.none_action, actions=data.actions)


@pytest.mark.parametrize("rows_per_chunk", [61, 487, 3000])
def test_default_policies_gains_and_effects_equal_the_in_memory_replay(study, rows_per_chunk):
    _, _, data = study
    gains = [Gain("targeting-ish", "best-per-trigger", "uniform")]
    expected = evaluate(data, build_policies(None, data, default_config()).candidates, gains=gains)

    found = stream(data, rows_per_chunk=rows_per_chunk, gains=gains)

    assert_same_result(expected, found)
    assert len(found.contrasts) > 100 and found.timings_s.keys() == {"scan", "tune", "score"}


def test_clipped_weights_and_no_triggers_equal_the_in_memory_replay(study):
    _, _, data = study
    candidates = build_policies(None, data, default_config()).candidates
    options = {"clip": 3.0, "by_trigger": False, "confidence": 0.9}

    assert_same_result(evaluate(data, candidates, **options), stream(data, **options))


def test_personalized_targets_equal_the_in_memory_replay_and_are_warned_about(study):
    world, truth, data = study
    log = simulate_logged(world, default_config(), 3000, 5, logging="skewed", table=truth)
    policies = {p.name: p for p in fixed_policies(world, truth, log)}
    candidates = [
        RowTable(name, policies[name].probabilities(data)) for name in ("uniform", "soft-oracle")
    ]
    gains = [Gain("personalization", "soft-oracle", "uniform")]
    expected = evaluate(data, candidates, gains=gains, effects=False)

    found = stream(data, candidates, gains=gains, effects=False)

    assert_same_result(expected, found)
    assert any("DM's tabular" in w for w in found.diagnostics[1].warnings)


def test_a_log_without_a_send_nothing_action_says_so_and_has_no_effects(study):
    _, _, data = study
    renamed = LoggedData(**{**data.__dict__, "none_action": None})
    expected = evaluate(renamed, [Uniform(), BestUniform(by_trigger=True, name="best")])

    found = stream(renamed, specs=["uniform", "best=best-per-trigger"])

    assert_same_result(expected, found)
    assert found.notes == (
        "no send-nothing action in the log: effects vs no message not estimated",
    )


@pytest.mark.parametrize("by_trigger", [False, True])
@pytest.mark.parametrize("include_none", [False, True])
def test_best_actions_picked_from_the_first_pass_equal_best_uniform(
    study, by_trigger, include_none
):
    _, _, data = study
    best = BestUniform(by_trigger=by_trigger, include_none=include_none, folds=3)
    plan = _plan(data, folds=3)

    picked = PickedBest("b", 3, fold_picks(plan, by_trigger=by_trigger, include_none=include_none))

    assert picked.probabilities(data).tolist() == best.probabilities(data).tolist()
    for fold, picks in best.picks(data).items():
        rankings = [(picks.overall, picked.picks[fold].overall)] + [
            (r, picked.picks[fold].by_trigger[t]) for t, r in picks.by_trigger.items()
        ]
        assert picked.picks[fold].by_trigger.keys() == picks.by_trigger.keys()
        for expected, found in rankings:
            assert (found.actions, found.rows) == (expected.actions, expected.rows)
            np.testing.assert_allclose(found.values, expected.values, rtol=1e-12)


def test_specs_build_trigger_level_candidates_and_always_send_of_them(study):
    _, _, data = study
    plan = _plan(data)

    built = build_planned(["uniform", "b=best-message", "always-send:b", "never-send"], plan)

    assert [c.name for c in built] == ["uniform", "b", "always-send(b)", "never-send"]
    assert isinstance(built[2], AlwaysSend) and built[2].base is built[1]


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["uniform", "best-per-trigger", "always-send:best-uniform"], True),
        (["crossfit:greedy"], False),
        (["p=snapshot:snaps/", "always-send:p"], False),
        (["external:side.jsonl"], False),
        (["uniform", "always-send:crossfit"], False),
    ],
)
def test_only_trigger_level_specs_stream(specs, expected):
    assert streamable(specs) is expected


def test_an_empty_scan_is_an_error_naming_the_skips():
    scanned = ScanStats(2, {}, Counter(x=2))

    with pytest.raises(
        ReplayInputError, match=r"log.csv: rows: no usable row \(skipped: \{'x': 2\}"
    ):
        LogPlan.of(scanned, none_action=None, source="log.csv")
