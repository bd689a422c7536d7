"""DSJSON (VW / Azure Personalizer decision-service JSON): round trip, real VW, bad lines."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from vowpalwabbit import Workspace

from bandit.config import Config, load_config
from bandit.errors import ReplayInputError
from bandit.simulation.publish import write_jsonl
from bandit.simulation.traffic import simulate_traffic
from bandit.simulation.world import World
from bandit.vw_text import NamespaceLetters, example_lines
from replay.dsjson import load_dsjson, write_dsjson
from replay.logged import LoggedData
from replay.sources import load_events

ROOT = Path(__file__).resolve().parents[2]
EVENTS, SEED = 1_500, 5
COLUMNS = ("event_ids", "triggers", "learners", "timestamps", "mask", "chosen", "pscore",
           "logging_pmf", "reward", "labels")  # fmt: skip


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(ROOT / "config.yaml", environ={})


@pytest.fixture(scope="module")
def letters(config: Config) -> NamespaceLetters:
    return NamespaceLetters(config.learner.namespaces, config.learner.action_namespace)


@pytest.fixture(scope="module")
def logged(config: Config, tmp_path_factory: pytest.TempPathFactory) -> LoggedData:
    """Our own simulated events, through the consumer's decoding and join."""
    world = World(SEED, config.simulator.learners, config.simulator.courses)
    run = simulate_traffic(world, config.simulator, config.join, EVENTS, SEED)
    path = tmp_path_factory.mktemp("events") / "events.jsonl"
    write_jsonl(run, path)
    return load_events(path, config)


@pytest.fixture(scope="module")
def written(
    logged: LoggedData, letters: NamespaceLetters, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("dsjson") / "decisions.dsjson"
    write_dsjson(logged, path, letters)
    return path


def test_round_trip_keeps_every_column_and_every_context(logged, written):
    back = load_dsjson(written, none_action="none")

    assert back.actions == logged.actions and back.none_action == logged.none_action == "none"
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(back, name), getattr(logged, name), err_msg=name)
    assert back.impressions == logged.impressions
    assert back.skipped == Counter()


def test_vowpal_wabbit_learns_every_line_we_write_with_our_label(logged, written):
    lines = written.read_text().splitlines()
    with Workspace("--cb_explore_adf --dsjson --quiet") as vw:
        for i, line in enumerate(lines):
            examples = vw.parse(line)
            imp = logged.impressions[i]
            assert len(examples) == 1 + len(imp.action_ids)  # shared + one per action
            labelled = [
                (j, e.get_label().costs[0])
                for j, e in enumerate(examples[1:])
                if e.get_label().costs
            ]
            ((j, label),) = labelled
            assert j == imp.chosen_index and label.action == imp.chosen_index + 1
            assert label.cost == pytest.approx(-logged.reward[i], abs=1e-6)
            assert label.probability == pytest.approx(imp.probability, rel=1e-6)
            vw.learn(examples)
            vw.finish_example(examples)
        assert vw.get_weighted_examples() == len(lines) == logged.n
        examples = vw.parse(lines[0])
        pmf = vw.predict(examples)
        vw.finish_example(examples)
    assert len(pmf) == len(logged.impressions[0].action_ids) and sum(pmf) == pytest.approx(1)


def test_vowpal_wabbit_trains_the_same_model_from_our_dsjson_as_from_our_text_format(
    config: Config, letters: NamespaceLetters, logged: LoggedData, written: Path
) -> None:
    """Same features (VW's count, interactions included), same loss, same scores: the DSJSON
    keys namespaces by their configured letters, as the text format does."""
    arguments = config.learner.vw_arguments().replace("--quiet", "")
    lines = written.read_text().splitlines()
    impressions = logged.impressions
    assert impressions is not None

    def text(i: int, label: bool = True) -> list[str]:
        imp = impressions[i]
        cost = (imp.chosen_index, -float(logged.reward[i]), imp.probability)
        return example_lines(
            imp.context, imp.action_ids, imp.action_features, letters, cost if label else None
        )

    from_text = Workspace(arguments, enable_logging=True)
    from_dsjson = Workspace(f"{arguments} --dsjson", enable_logging=True)
    for i, line in enumerate(lines):
        _learn(from_text, text(i))
        _learn(from_dsjson, line)
    assert from_text.get_weighted_examples() == from_dsjson.get_weighted_examples() == logged.n
    loss = (from_text.get_sum_loss(), from_dsjson.get_sum_loss())
    few = range(0, len(lines), len(lines) // 5)
    scores_text = [_scores(from_text, text(i, label=False)) for i in few]
    scores_dsjson = [_scores(from_dsjson, lines[i]) for i in few]
    from_text.finish()
    from_dsjson.finish()

    assert _total_features(from_dsjson) == _total_features(from_text) > 10 * logged.n
    assert loss[1] == pytest.approx(loss[0], rel=1e-4)
    for ours, theirs in zip(scores_dsjson, scores_text, strict=True):
        assert ours == pytest.approx(theirs, abs=1e-5) and any(theirs)


def _learn(vw: Workspace, example: str | list[str]) -> None:
    examples = vw.parse(example)
    vw.learn(examples)
    vw.finish_example(examples)


def _scores(vw: Workspace, example: str | list[str]) -> list[float]:
    """VW's score of each action (the examples after the shared one) for one decision."""
    examples = vw.parse(example)
    vw.predict(examples)
    scores = [e.get_partial_prediction() for e in examples[1:]]
    vw.finish_example(examples)
    return scores


def _total_features(vw: Workspace) -> int:
    """The `total feature number` VW's driver reports when it finishes."""
    (line,) = [x for x in vw.get_log() if x.startswith("total feature number")]
    return int(line.rsplit("=", 1)[1])


def test_vowpal_wabbit_ignores_the_underscore_keys_we_add_inside_c(written):
    line = written.read_text().splitlines()[0]
    doc = orjson.loads(line)
    bare = {
        **doc,
        "c": {
            **{k: v for k, v in doc["c"].items() if k not in ("_nudge", "_multi")},
            "_multi": [{k: v for k, v in a.items() if k != "_id"} for a in doc["c"]["_multi"]],
        },
    }
    with Workspace("--cb_explore_adf --dsjson --quiet") as vw:
        ours, without = _features(vw, line), _features(vw, orjson.dumps(bare).decode())
    assert ours == without
    assert all(len(f) > 1 for f in ours)  # real features besides the constant


def _features(vw: Workspace, line: str) -> list[list[tuple[int, int, float]]]:
    """(namespace, hash, value) of every feature of every example of a line."""
    examples = vw.parse(line)
    out = [
        sorted(
            (e.namespace(i), e.feature(i, j), e.feature_weight(i, j))
            for i in range(e.num_namespaces())
            for j in range(e.num_features_in(i))
        )
        for e in examples
    ]
    vw.finish_example(examples)
    return out


# ---- hand-written lines ------------------------------------------------------------------


def personalizer_line(**changes: Any) -> dict[str, Any]:
    """A Personalizer-style line (VW's own dsjson parser test, with `p` summing to 1)."""
    doc = {
        "_label_cost": -1,
        "_label_probability": 0.8166667,
        "_label_Action": 2,
        "_labelIndex": 1,
        "o": [{"v": 1.0, "EventId": "0074434d3a3a46529f65de8a59631939", "ActionTaken": False}],
        "Timestamp": "2019-05-06T19:14:12.6960000Z",
        "Version": "1",
        "EventId": "0074434d3a3a46529f65de8a59631939",
        "a": [2, 1, 3],
        "c": {
            "shared_ns": {"shared_feature": 0},
            "_multi": [
                {
                    "_tag": "tag",
                    "ns1": {"f1": 1, "f2": "strng"},
                    "ns2": [{"f3": "value1"}, {"ns3": {"f4": 0.994963765}}],
                },
                {"_tag": "tag", "ns1": {"f1": 1, "f2": "strng"}},
                {"_tag": "tag", "ns1": {"f1": 1, "f2": "other"}},
            ],
        },
        "p": [0.8166667, 0.09166665, 0.09166665],
        "VWState": {"m": "096200c6c41e42bbb879c12830247637/0639c12bea464192828b250ffc389657"},
    }
    return {**doc, **changes}


def write_lines(path: Path, lines: list[bytes | dict[str, Any]]) -> Path:
    path.write_bytes(
        b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n" for x in lines)
    )
    return path


def test_a_personalizer_style_line_parses(tmp_path):
    path = write_lines(tmp_path / "p.dsjson", [personalizer_line()])

    data = load_dsjson(path, none_action=None)

    assert data.actions == ("action-1", "action-2", "action-3")
    assert data.chosen.tolist() == [1] and data.pscore.tolist() == [0.8166667]
    assert data.reward.tolist() == [1.0] and data.triggers.tolist() == ["all"]
    assert data.logging_pmf.tolist() == [[0.09166665, 0.8166667, 0.09166665]]
    assert data.timestamps[0] == pytest.approx(1557170052.696)
    (imp,) = data.impressions
    assert imp.context == {"shared_ns": {"shared_feature": 0.0}}
    assert imp.action_features[0] == {
        "ns1.f1": 1.0, "ns1.f2": "strng", "ns2[0].f3": "value1", "ns2[1].ns3.f4": 0.994963765
    }  # fmt: skip
    assert data.none_action is None and data.labels.tolist() == [""]


def test_vowpal_wabbit_reads_the_personalizer_style_line_too():
    with Workspace("--cb_explore_adf --dsjson --quiet") as vw:
        vw.learn(orjson.dumps(personalizer_line()).decode())
        assert vw.get_weighted_examples() == 1


@pytest.mark.parametrize(
    ("context", "trigger"),
    [
        ({"_nudge": {"trigger": "quiz_failed"}, "trigger": {"id": "other"}}, "quiz_failed"),
        ({"trigger": {"id": "course_start"}}, "course_start"),
        ({}, "all"),
    ],
    ids=["nudge", "trigger-id", "none"],
)
def test_the_trigger_comes_from_nudge_then_trigger_id_then_all(tmp_path, context, trigger):
    doc = personalizer_line()
    doc["c"] = {**doc["c"], **context}
    data = load_dsjson(write_lines(tmp_path / "t.dsjson", [doc]), none_action=None)
    assert data.triggers.tolist() == [trigger]


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in personalizer_line().items() if k != key}


BAD_LINES = [
    pytest.param(_without("_label_probability"), "_label_probability", "missing_field",
                 id="no-probability"),
    pytest.param(personalizer_line(_label_probability=0), "_label_probability",
                 "probability_out_of_range", id="probability-0"),
    pytest.param(personalizer_line(_label_probability=1.5), "_label_probability",
                 "probability_out_of_range", id="probability-1.5"),
    pytest.param(personalizer_line(_label_Action=0), "_label_Action", "chosen_not_in_actions",
                 id="action-0"),
    pytest.param(personalizer_line(_label_Action=4), "_label_Action", "chosen_not_in_actions",
                 id="action-beyond-multi"),
    pytest.param(b'{"_label_cost": -1, "_label_probability": 0.5', "json", "undecodable",
                 id="malformed-json"),
    pytest.param(personalizer_line(p=[0.8166667, 0.2, 0.2]), "p", "pmf_invalid",
                 id="p-not-summing-to-1"),
    pytest.param(personalizer_line(p=[0.5, 0.25, 0.25]), "p", "pmf_invalid",
                 id="p-disagrees-with-probability"),
    pytest.param(personalizer_line(a=[1, 2, 3]), "a", "invalid_value", id="a-not-chosen-first"),
    pytest.param(personalizer_line(_labelIndex=0), "_labelIndex", "invalid_value",
                 id="label-index"),
    pytest.param(_without("_label_cost"), "_label_cost", "missing_field", id="no-cost"),
    pytest.param(_without("EventId"), "EventId", "missing_field", id="no-event-id"),
    pytest.param(personalizer_line(Timestamp="yesterday"), "Timestamp", "bad_timestamp",
                 id="timestamp"),
    pytest.param(personalizer_line(c={"_multi": []}), "c._multi", "empty_actions",
                 id="no-actions"),
]  # fmt: skip


@pytest.mark.parametrize(("bad", "field", "reason"), BAD_LINES)
def test_a_bad_line_is_an_error_naming_its_line_and_field(tmp_path, bad, field, reason):
    good2 = personalizer_line(EventId="e2")
    path = write_lines(tmp_path / "log.dsjson", [personalizer_line(), bad, good2])

    with pytest.raises(ReplayInputError) as caught:
        load_dsjson(path, none_action=None)

    assert (caught.value.where, caught.value.field) == ("log.dsjson line 2", field)
    assert "--skip-invalid" in caught.value.problem


@pytest.mark.parametrize(("bad", "field", "reason"), BAD_LINES)
def test_skip_mode_counts_a_bad_line_under_its_reason(tmp_path, bad, field, reason):
    good2 = personalizer_line(EventId="e2")
    path = write_lines(tmp_path / "log.dsjson", [personalizer_line(), bad, good2])

    data = load_dsjson(path, none_action=None, on_error="skip")

    assert data.skipped == Counter({reason: 1}) and data.n == 2


def test_skip_learn_lines_and_repeated_event_ids_are_counted_not_loaded(tmp_path):
    lines = [
        personalizer_line(),
        {"_skipLearn": True, "EventId": "e2", "c": {}},
        personalizer_line(),
    ]
    data = load_dsjson(write_lines(tmp_path / "s.dsjson", lines), none_action=None)
    assert data.n == 1
    assert data.skipped == Counter({"skip_learn": 1, "duplicate_impression": 1})


def test_dropped_events_are_refused_even_when_skipping(tmp_path):
    path = write_lines(tmp_path / "d.dsjson", [personalizer_line(pdrop=0.1)])
    with pytest.raises(ReplayInputError, match=r"d\.dsjson line 1: pdrop: .*reweight"):
        load_dsjson(path, none_action=None, on_error="skip")
    no_drop = write_lines(tmp_path / "ok.dsjson", [personalizer_line(pdrop=0)])
    assert load_dsjson(no_drop, none_action=None).n == 1


def test_a_line_without_timestamp_has_nan_time(tmp_path):
    data = load_dsjson(
        write_lines(tmp_path / "n.dsjson", [_without("Timestamp")]), none_action=None
    )
    assert math.isnan(data.timestamps[0]) and data.impressions[0].ts == 0.0


def test_without_a_logged_pmf_p_splits_the_rest_evenly_and_is_not_read_back_as_one(
    logged, letters, tmp_path
):
    no_pmf = replace(logged, logging_pmf=None)
    path = tmp_path / "nopmf.dsjson"
    write_dsjson(no_pmf, path, letters)

    first = orjson.loads(path.read_text().splitlines()[0])
    k, chosen_p = len(first["a"]), first["_label_probability"]
    assert first["p"] == [chosen_p, *[(1 - chosen_p) / (k - 1)] * (k - 1)]
    back = load_dsjson(path, none_action="none")
    assert back.logging_pmf is None
    np.testing.assert_array_equal(back.pscore, logged.pscore)
