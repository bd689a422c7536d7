"""`nudge decide` and `nudge export` from the command line (no broker needed)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bandit.config import Config
from bandit.events import decode_event
from bandit.snapshots import SnapshotStore
from bandit.state import LearnerState
from nudge.cli import main

TRIGGER = "A/quiz-3/quiz-failed"


def _untrained_snapshot(directory: Path) -> None:
    catalogue = {
        "actions": {"hint": {"kind": "hint"}, "peer": {"kind": "peer"}, "none": {}},
        "triggers": {TRIGGER: ["hint", "peer", "none"]},
    }
    SnapshotStore(directory).publish(Config(), LearnerState(catalogue=catalogue), {}, 0)


def test_decide_prints_impressions_that_decode_under_the_contract(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _untrained_snapshot(tmp_path)
    code = main(
        [
            "decide", "--config", "config.yaml", "--snapshots", str(tmp_path),
            "--trigger", TRIGGER, "--learner", "u1", "--context", '{"learner": {"novice": 1}}',
            "--reactions", "3", "--repeat", "4", "--seed", "1",
        ]
    )  # fmt: skip
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    for line in lines:
        impression = decode_event(line.encode(), Config().event_rules())
        assert impression.action_ids == ("hint", "peer", "none")  # type: ignore[union-attr]
        assert orjson.loads(line)["policy_version"] == "nudge-000001"


def test_decide_with_a_bad_context_says_what_is_expected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _untrained_snapshot(tmp_path)
    code = main(
        ["decide", "--snapshots", str(tmp_path), "--trigger", TRIGGER, "--learner", "u1",
         "--context", "[1, 2]"]
    )  # fmt: skip
    assert code == 2
    assert "--context must be a JSON object" in capsys.readouterr().err


def test_export_without_a_checkpoint_says_to_consume_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NUDGE_CHECKPOINT__DIRECTORY", str(tmp_path / "none"))
    assert main(["export", "--out", str(tmp_path / "out")]) == 2
    assert "run `nudge consume` first" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ('{"device": {"os": "ios"}}', "namespace 'device' is not configured"),
        ('{"learner": {"prior ctr": 0.1}}', "feature name 'prior ctr'"),
        ('{"learner": 5}', "must map feature names to values"),
        ('{"learner": {"x": [1]}}', "a feature is a finite number or text"),
    ],
)
def test_decide_refuses_a_context_the_event_contract_would_reject(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], context: str, message: str
) -> None:
    _untrained_snapshot(tmp_path)
    code = main(
        ["decide", "--snapshots", str(tmp_path), "--trigger", TRIGGER, "--learner", "u1",
         "--context", context, "--reactions", "0"]
    )  # fmt: skip
    assert code == 2
    assert message in capsys.readouterr().err


BAD_IDS = ["", " ", "a b", "a:b", "a|b", "x" * 129]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("field", ["trigger", "learner_id", "event_id"])
def test_the_decider_refuses_an_id_the_consumer_would_dead_letter(
    tmp_path: Path, field: str, bad: str
) -> None:
    from bandit.decisions import Decider
    from bandit.errors import InvalidEvent, NudgeError

    _untrained_snapshot(tmp_path)
    ids = {"trigger": TRIGGER, "learner_id": "u1", "event_id": "e1"}
    with Decider(tmp_path, seed=1) as decider:
        good = decider.decide(ids["trigger"], ids["learner_id"], {}, event_id=ids["event_id"])
        with pytest.raises(NudgeError, match=f"^{field} ") as caught:
            decider.decide(**{**ids, field: bad}, context={})  # type: ignore[arg-type]

    assert "event contract" in str(caught.value)
    # The same impression with the bad id is what the consumer would dead-letter.
    logged = {**orjson.loads(good.impression_json()), field: bad}
    with pytest.raises(InvalidEvent) as refused:
        decode_event(orjson.dumps(logged), Config().event_rules())
    assert refused.value.reason == "invalid_value"


def test_the_decider_refuses_a_candidate_id_the_consumer_would_dead_letter(
    tmp_path: Path,
) -> None:
    from bandit.decisions import Decider
    from bandit.errors import NudgeError

    _untrained_snapshot(tmp_path)
    with Decider(tmp_path, seed=1) as decider, pytest.raises(NudgeError, match="candidate"):
        decider.decide(TRIGGER, "u1", {}, ["hint", "a:b"], action_features={"a:b": {}})
