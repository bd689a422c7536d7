"""DSJSON written by other systems (Azure Personalizer, the Decision Service): their shapes,
their namespaces given VW letters, the send-nothing action named on the command line, the logs
replay refuses in one line, and the personalized model trained once for two candidates.

The files under ``data/dsjson`` were written by hand from VW's and Personalizer's format
(VW's DSJSON parser tests, the Decision Service's log converter); each is read by VW itself
below, so they are DSJSON as VW knows it.
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from foreign_push_logs import FOREIGN_NONE, write_push_logs
from hypothesis import given
from hypothesis import strategies as st
from property_settings import PROPERTY
from test_cli_replay import nudge
from vowpalwabbit import Workspace

from bandit.config import Config, LearnerConfig, LowRankConfig, load_config
from bandit.errors import InvalidFeedback, ReplayInputError
from bandit.vw_text import NamespaceLetters, example_lines
from replay import vw_candidates
from replay.candidates import AlwaysSend
from replay.dsjson import load_dsjson
from replay.evaluation import evaluate
from replay.logged import LoggedData
from replay.policy_specs import build_policies
from replay.vw_candidates import CrossFitVW, ProgressiveVW, learner_settings
from replay.vw_namespaces import learner_for_log, log_namespaces, namespace_letters

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data" / "dsjson"
PERSONALIZER = DATA / "personalizer.dsjson"
DECISION_SERVICE = DATA / "decision_service.dsjson"
PUSHES, SEED = 3_000, 4
VW_POLICIES = ("personalized", "always-send(personalized)")


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(ROOT / "config.yaml", environ={})


# ---- the push-nudge scenario as another system's DSJSON, through the command line ----------


@pytest.fixture(scope="module")
def push_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work directory with the push study in our DSJSON (own.dsjson) and in another
    system's (foreign.dsjson), and our config."""
    return write_push_logs(tmp_path_factory.mktemp("foreign"), PUSHES, SEED)


def test_a_log_with_namespaces_the_config_lacks_replays_with_the_default_personalized_policy(
    push_logs: Path,
) -> None:
    """The reproduction: this crashed with `KeyError: 'Parent'` (a traceback) when the
    personalized candidate rendered VW lines with the config's letters."""
    done = nudge("replay", "--dsjson", "foreign.dsjson", "--json", "--quiet", cwd=push_logs)

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    result = orjson.loads(done.stdout)
    assert "personalized" in result["policies"]
    assert "always-send(personalized)" not in result["policies"]  # no send-nothing action known


def test_push_study_from_another_system_estimates_as_from_our_own_format(
    push_logs: Path,
) -> None:
    """Acceptance: foreign namespace names, no `_id`s, no `c._nudge`: plain replay with
    --none-action runs every default policy, and every policy that does not learn from the
    contexts gets the estimates our own format gets (the trigger, unknown to the other
    system, is `all` there)."""
    own = nudge("replay", "--dsjson", "own.dsjson", "--json", "--quiet", cwd=push_logs)
    foreign = nudge(
        "replay", "--dsjson", "foreign.dsjson", "--none-action", FOREIGN_NONE, "--json",
        "--quiet", cwd=push_logs,
    )  # fmt: skip

    assert own.returncode == 0 and foreign.returncode == 0, own.stderr + foreign.stderr
    ours, theirs = orjson.loads(own.stdout), orjson.loads(foreign.stdout)
    assert theirs["policies"] == ours["policies"] and set(VW_POLICIES) <= set(ours["policies"])
    assert {"personalization", "targeting"} <= {c["name"] for c in theirs["contrasts"]}
    assert theirs["triggers"] == ["all"] and len(ours["triggers"]) == 1

    def values(result: dict[str, Any]) -> dict[tuple[str, str, str], float]:
        return {
            (r["policy"], r["estimator"], "*" if r["trigger"] == "*" else "one"): r["value"]
            for r in result["estimates"]
            if r["policy"] not in VW_POLICIES
        }

    expected = values(ours)
    assert len(expected) == 2 * 5 * (len(ours["policies"]) - len(VW_POLICIES))
    assert values(theirs) == pytest.approx(expected, abs=1e-12)
    vw_rows = [r for r in theirs["estimates"] if r["policy"] in VW_POLICIES]
    assert vw_rows and all(math.isfinite(r["value"]) for r in vw_rows)


def test_none_action_names_an_action_the_log_has(push_logs: Path) -> None:
    done = nudge(
        "replay", "--dsjson", "foreign.dsjson", "--none-action", "none", "--quiet", cwd=push_logs
    )

    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "--none-action none: no action of the log has this id" in line
    assert FOREIGN_NONE in line


# ---- VW letters for the log's namespaces -------------------------------------------------


@pytest.mark.parametrize(
    ("names", "taken", "letters"),
    [
        (["User", "Course"], "a", {"Course": "c", "User": "u"}),
        (["Activity", "User"], "a", {"Activity": "A", "User": "u"}),  # a is the action's
        (["user", "User", "Usage"], "a", {"Usage": "u", "User": "U", "user": "s"}),
        ([" ", "Browser", "FromUrl"], "a", {" ": "c", "Browser": "b", "FromUrl": "f"}),
        (["42", "_x"], "a", {"42": "b", "_x": "x"}),
    ],
    ids=["initials", "other-case", "next-letter", "root-takes-a-free-one", "no-letters"],
)
def test_namespaces_get_distinct_letters_their_initials_first(names, taken, letters):
    assert namespace_letters(names, taken=taken) == letters
    assert namespace_letters(list(reversed(names)), taken=taken) == letters  # order-free


def test_every_letter_but_the_actions_can_be_given_and_no_more():
    names = [f"ns{i}" for i in range(51)]
    given = namespace_letters(names, taken="a")
    assert len(set(given.values())) == 51 and "a" not in given.values()
    with pytest.raises(InvalidFeedback, match="52 context namespaces, VW has 52 one-letter"):
        namespace_letters([*names, "one_more"], taken="a")


def test_a_log_in_the_configs_namespaces_keeps_the_configs_learner(config):
    data = load_dsjson(PERSONALIZER, none_action=None)
    ours = [
        replace(imp, context={"learner": {"x": 1.0}, "course": {"y": "z"}, "Other": {}})
        for imp in data.impressions
    ]  # an empty namespace renders nothing, so it needs no letter

    assert learner_for_log(config.learner, ours) is config.learner


def test_a_foreign_log_gets_its_namespaces_and_shared_times_action_interactions(config):
    data = load_dsjson(PERSONALIZER, none_action=None)
    low_rank = LowRankConfig(pairs=[("learner", "action"), ("FromUrl", "action")])
    learner = config.learner.model_copy(update={"low_rank": low_rank})

    settings = learner_for_log(learner, data.impressions)

    assert log_namespaces(data.impressions) == (" ", "FromUrl", "User")
    assert settings.namespaces == {" ": "b", "FromUrl": "f", "User": "u"}
    assert settings.action_namespace == config.learner.action_namespace == "a"
    assert settings.interactions == [(" ", "action"), ("FromUrl", "action"), ("User", "action")]
    assert settings.low_rank is not None and settings.low_rank.pairs == [("FromUrl", "action")]
    assert "-q ba -q fa -q ua" in settings.feature_flags()
    LearnerConfig.model_validate(settings.model_dump())  # a valid learner section


def test_vw_candidates_learn_a_personalizer_log_whose_action_ids_have_spaces(config):
    data = load_dsjson(PERSONALIZER, none_action=None)
    assert "Cold brew" in data.actions
    learned = vw_candidates._joined(data, 0, data.impressions[0]).impression
    assert learned.action_ids == ("Cappucino", "Cold_brew", "Iced_mocha", "Latte")

    for candidate in (CrossFitVW(config), ProgressiveVW(config, mode="greedy")):
        probs = candidate.probabilities(data)
        assert probs.shape == (data.n, 4)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert learner_settings(config, data.impressions).namespaces.keys() == {
        " ",
        "FromUrl",
        "User",
    }


# ---- Personalizer / Decision Service shapes ----------------------------------------------


def test_vowpal_wabbit_reads_the_hand_written_logs():
    for path in (PERSONALIZER, DECISION_SERVICE):
        with Workspace("--cb_explore_adf --dsjson --quiet") as vw:
            for line in path.read_text().splitlines():
                examples = vw.parse(line)
                vw.learn(examples)
                vw.finish_example(examples)
            assert vw.get_weighted_examples() == len(path.read_text().splitlines())


def test_a_personalizer_log_reads_tags_namespaces_root_features_and_seven_digit_times():
    data = load_dsjson(PERSONALIZER, none_action=None)

    assert data.actions == ("Cappucino", "Cold brew", "Iced mocha", "Latte")  # from _tag
    assert data.n == 5 and data.skipped == Counter({"skip_learn": 1})
    assert data.chosen.tolist() == [3, 1, 1, 2, 0]
    assert data.reward.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]  # -_label_cost
    assert data.timestamps[0] == pytest.approx(1612456289.246)
    assert data.timestamps[1] == pytest.approx(1612456330.763283)  # .7632830Z
    assert math.isnan(data.timestamps[2])  # a line without Timestamp
    first, last = data.impressions[0], data.impressions[-1]
    assert first.context == {
        "FromUrl": {"timeofday": "Afternoon", "weather": "Sunny", "name": "Cathy"},  # [{...}]
        "User": {"segment": "new"},  # `_age` is not a feature, as in VW
        " ": {"returning": 1.0, "visits": 3.0, "browser": "edge"},  # false and `_synthetic` not
    }
    assert last.context["FromUrl"] == {
        "timeofday": "Afternoon", "weather": "Sunny", "[1].weather": "Cloudy", "name": "Fay",
    }  # fmt: skip
    assert first.action_features[1] == {
        "i.constant": 1.0, "i.id": "Cold brew", "j[0].type": "cold", "j[0].origin": "brazil",
        "j[0].organic": "yes", "j[0].roast": "light",
    }  # fmt: skip
    assert data.logging_pmf[0].tolist() == [0.05, 0.05, 0.05, 0.85]
    assert data.triggers.tolist() == ["all"] * 5 and data.labels.tolist() == [""] * 5


def test_a_decision_service_log_without_ids_or_tags_names_actions_by_position():
    data = load_dsjson(DECISION_SERVICE, none_action=None)

    assert data.actions == ("action-1", "action-2", "action-3")
    assert data.impressions[0].action_features[2] == {
        "Action.constant": 1.0, "Action.PayloadID": "425039840",
    }  # fmt: skip
    assert data.impressions[0].context["Profile"] == {
        "COUNTRY": "US", "FB": "FALSE", "F1": 0.0, "F3": 0.00157480315,
    }  # fmt: skip


def line(**changes: Any) -> dict[str, Any]:
    """The first Personalizer line of the fixture, changed."""
    doc = orjson.loads(PERSONALIZER.read_text().splitlines()[0])
    return {**doc, **changes}


def with_multi(*items: dict[str, Any]) -> dict[str, Any]:
    doc = line(a=[1, 2], p=[0.85, 0.15], _label_Action=1, _labelIndex=0)
    doc["c"] = {**doc["c"], "_multi": list(items)}
    return doc


def load_one(tmp_path: Path, doc: dict[str, Any] | bytes, **options: Any) -> LoggedData:
    path = tmp_path / "one.dsjson"
    path.write_bytes(doc if isinstance(doc, bytes) else orjson.dumps(doc))
    return load_dsjson(path, none_action=None, **options)


@pytest.mark.parametrize(
    ("items", "ids"),
    [
        ([{"_id": "x", "_tag": "t1"}, {"_tag": "t2"}], ("x", "t2")),
        ([{"_tag": "t1"}, {"_tag": 7}], ("t1", "7")),
        ([{"_tag": "t1"}, {}], ("action-1", "action-2")),  # a tag missing: positions
        ([{"_tag": "same"}, {"_tag": "same"}], ("action-1", "action-2")),  # placeholder tags
    ],
    ids=["id-before-tag", "integer-tag", "missing-tag", "repeated-tag"],
)
def test_action_ids_come_from_id_then_distinct_tags_then_positions(tmp_path, items, ids):
    assert load_one(tmp_path, with_multi(*items)).actions == ids


def test_a_tag_that_is_not_text_is_an_error_of_its_line(tmp_path):
    with pytest.raises(ReplayInputError, match=r"line 1: c\._multi\[1\]\._tag: an action id"):
        load_one(tmp_path, with_multi({"_tag": "t1"}, {"_tag": {"x": 1}}))


def test_root_arrays_of_numbers_are_namespaces_and_feature_names_lose_vw_separators(tmp_path):
    doc = line()
    doc["c"] = {**doc["c"], "numbers": [4, 5.6], "Geo": {"home town": "Oslo", "a|b:c": 1}}

    (imp,) = load_one(tmp_path, doc).impressions

    assert imp.context["numbers"] == {"[0]": 4.0, "[1]": 5.6}
    assert imp.context["Geo"] == {"home_town": "Oslo", "a_b_c": 1.0}


# ---- logs replay refuses, in one line ----------------------------------------------------

UNSUPPORTED = [
    pytest.param(DATA / "ccb.dsjson", "_outcomes", "conditional contextual bandit (CCB)",
                 id="ccb"),
    pytest.param(DATA / "slates.dsjson", "_outcomes", "a slates log", id="slates"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "field", "kind"), UNSUPPORTED)
def test_ccb_and_slates_logs_are_refused_on_their_first_line_even_when_skipping(path, field, kind):
    with pytest.raises(ReplayInputError) as caught:
        load_dsjson(path, none_action=None, on_error="skip")

    assert (caught.value.where, caught.value.field) == (f"{path.name} line 1", field)
    assert kind in caught.value.problem and "found _outcomes and c._slots" in caught.value.problem


def test_vowpal_wabbit_reads_the_ccb_and_slates_files_as_what_they_are():
    for name, reduction in (("ccb.dsjson", "--ccb_explore_adf"), ("slates.dsjson", "--slates")):
        with Workspace(f"{reduction} --dsjson --quiet") as vw:
            path = DATA / name
            examples = vw.parse(path.read_text().strip())
            vw.learn(examples)
            vw.finish_example(examples)


@pytest.mark.parametrize(
    ("doc", "field", "found"),
    [
        ({"_label_ca": {"cost": 0.1, "pdf_value": 0.2, "action": 1.5}, "c": {}}, "_label_ca",
         "continuous-action (CATS)"),
        ({"c": {"_slots": [{"_id": "s"}], "_multi": [{}]}, "EventId": "e"}, "c._slots",
         "found c._slots"),
    ],
    ids=["continuous-actions", "slots-without-outcomes"],
)  # fmt: skip
def test_other_log_kinds_are_refused_naming_what_was_found(tmp_path, doc, field, found):
    with pytest.raises(ReplayInputError) as caught:
        load_one(tmp_path, doc, on_error="skip")
    assert caught.value.field == field and found in caught.value.problem


def test_an_object_of_unknown_structure_names_its_keys_and_can_be_skipped(tmp_path):
    ours = b'{"type":"impression","event_id":"e1","trigger":"t","actions":[]}\n'
    path = tmp_path / "events.jsonl"
    path.write_bytes(ours + orjson.dumps(line()) + b"\n")

    with pytest.raises(ReplayInputError) as caught:
        load_dsjson(path, none_action=None)
    assert (caught.value.where, caught.value.field) == ("events.jsonl line 1", "line")
    assert "keys [actions, event_id, trigger, type]" in caught.value.problem
    assert "use --events" in caught.value.problem
    skipped = load_dsjson(path, none_action=None, on_error="skip")
    assert skipped.n == 1 and skipped.skipped == Counter({"unknown_structure": 1})


def test_the_command_line_refuses_a_ccb_log_in_one_line(tmp_path):
    (tmp_path / "config.yaml").write_bytes((ROOT / "config.yaml").read_bytes())
    done = nudge("replay", "--dsjson", str(DATA / "ccb.dsjson"), "--quiet", cwd=tmp_path)

    assert done.returncode == 2 and "Traceback" not in done.stderr
    (message,) = done.stderr.strip().splitlines()
    assert message.startswith("nudge: ccb.dsjson line 1: _outcomes: found _outcomes")


# ---- the personalized model trained once -------------------------------------------------


@pytest.fixture
def learner_starts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per VW learner the candidates start (a cross-fit starts one per fold)."""
    started: list[int] = []
    original = vw_candidates.OnlineLearner

    def counting(*args: Any, **kwargs: Any) -> Any:
        started.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(vw_candidates, "OnlineLearner", counting)
    return started


@pytest.fixture(scope="module")
def own_log(push_logs: Path) -> LoggedData:
    return load_dsjson(push_logs / "own.dsjson", none_action="none")


def test_the_default_set_trains_the_personalized_model_once_for_both_its_candidates(
    config, own_log, learner_starts
):
    candidates = build_policies(None, own_log, config).candidates  # the default set
    assert set(VW_POLICIES) <= {c.name for c in candidates}

    evaluate(own_log, candidates, estimators=("IPS",), by_trigger=False, effects=False)

    assert len(learner_starts) == 2  # one per fold, not two per fold


def test_a_remembered_model_is_reused_for_the_same_log_only(config, own_log, learner_starts):
    personalized = CrossFitVW(config, name="personalized")
    first = personalized.probabilities(own_log)
    again = AlwaysSend(personalized).probabilities(own_log)
    assert len(learner_starts) == 2
    first[:] = 0.0  # a copy each time: the caller cannot spoil what is remembered
    np.testing.assert_allclose(personalized.probabilities(own_log).sum(axis=1), 1.0)
    assert len(learner_starts) == 2 and again.shape == first.shape

    personalized.probabilities(own_log.subset(np.arange(own_log.n // 2)))
    assert len(learner_starts) == 4


# ---- any JSON: an error of its line or a log VW candidates can render --------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.sampled_from(["", "x", "a b", "k|v:1", "_x", "none"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["_multi", "_tag", "_id", "U", "u", " ", "x y", "_p", "a"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@PROPERTY
@given(context=JSON_VALUES, multi=JSON_VALUES, whole=st.booleans())
def test_any_json_is_an_error_of_its_line_or_a_log_vw_candidates_can_render(
    config, context, multi, whole
):
    doc: Any = line(a=None)
    if whole:
        doc = context
    elif isinstance(context, dict):
        doc["c"] = {**context, "_multi": multi if isinstance(multi, list) else [multi]}
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "any.dsjson"
        path.write_bytes(orjson.dumps(doc))
        try:
            data = load_dsjson(path, none_action=None)
        except ReplayInputError:
            return
    settings = learner_settings(config, data.impressions)
    letters = NamespaceLetters(settings.namespaces, settings.action_namespace)
    for imp in data.impressions:
        vw = vw_candidates._vw_view(imp)
        example_lines(vw.context, vw.action_ids, vw.action_features, letters)


def test_the_reward_is_the_cost_vw_learned_not_the_original_one(tmp_path):
    data = load_one(tmp_path, line(_label_cost=-1.0, _original_label_cost=-0.25))
    assert data.reward.tolist() == [1.0]
