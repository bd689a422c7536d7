"""Our own event log as replay input: `replay.sources.load_events` over simulator JSON lines."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from bandit.config import Config, load_config
from bandit.decoding import decode_message
from bandit.envelopes import Envelope, Source
from bandit.errors import InvalidEvent, ReplayInputError
from bandit.events import decode_event, timestamp_text
from bandit.join import join_events
from bandit.simulation.publish import write_jsonl
from bandit.simulation.traffic import SimulationRun, simulate_traffic
from bandit.simulation.world import World
from replay.logged import LoggedData, from_joined
from replay.sources import load_events

ROOT = Path(__file__).resolve().parents[2]
EVENTS, SEED, INVALID = 3_000, 11, 0.02
T0 = 1_767_600_000.0  # 2026-01-05T08:00:00Z
COLUMNS = ("event_ids", "triggers", "learners", "timestamps", "mask", "chosen", "pscore",
           "logging_pmf", "reward", "labels")  # fmt: skip


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(ROOT / "config.yaml", environ={})


@pytest.fixture(scope="module")
def run(config: Config) -> SimulationRun:
    world = World(SEED, config.simulator.learners, config.simulator.courses)
    return simulate_traffic(world, config.simulator, config.join, EVENTS, SEED, INVALID)


@pytest.fixture(scope="module")
def log_file(run: SimulationRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("events") / "events.jsonl"
    write_jsonl(run, path)
    return path


def assert_same_logged(a: LoggedData, b: LoggedData) -> None:
    assert a.actions == b.actions and a.none_action == b.none_action
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.impressions == b.impressions
    assert a.skipped == b.skipped


def test_skip_mode_counts_every_invalid_line_and_join_rejection_by_reason(config, run, log_file):
    data = load_events(log_file, config, on_error="skip")

    assert run.invalid > 0.01 * len(run.messages)
    decode_reasons = Counter({r: data.skipped[r] for r in run.invalid_by_reason})
    assert decode_reasons == run.invalid_by_reason
    assert data.skipped == run.expected_dead_letters  # decode failures plus join rejections


def test_joined_decisions_are_exactly_the_valid_impressions(config, run, log_file):
    data = load_events(log_file, config, on_error="skip")

    assert data.n == run.impressions
    assert sorted(data.event_ids.tolist()) == sorted(run.valid_event_ids)


def test_file_gives_the_same_logged_data_as_joining_the_messages_in_process(config, run, log_file):
    rules = config.event_rules()
    envelopes, skipped = [], Counter()
    for n, msg in enumerate(run.messages, start=1):
        item = decode_message(msg.value, Source("events.jsonl", 0, n), rules)
        if isinstance(item, Envelope):
            envelopes.append(item)
        else:
            skipped[item.reason] += 1
    joined, rejected = join_events(envelopes, config.join, config.rewards)
    skipped.update(r.reason for r in rejected)
    expected = from_joined(joined, none_action=config.rewards.none_action, skipped=skipped)

    assert_same_logged(load_events(log_file, config, on_error="skip"), expected)


def test_raise_mode_stops_at_the_first_invalid_line_by_number(config, run, log_file):
    first_bad = next(
        n for n, msg in enumerate(run.messages, start=1) if _invalid(msg.value, config)
    )

    with pytest.raises(ReplayInputError) as caught:
        load_events(log_file, config)

    assert caught.value.where == f"events.jsonl line {first_bad}"
    assert "--skip-invalid" in str(caught.value)


def _invalid(raw: bytes, config: Config) -> bool:
    try:
        decode_event(raw, config.event_rules())
    except InvalidEvent:
        return True
    return False


# ---- hand-made lines ------------------------------------------------------------------------


def impression(event_id: str = "e1", ts: float = T0, **changes: Any) -> dict[str, Any]:
    doc = {
        "type": "impression",
        "event_id": event_id,
        "timestamp": timestamp_text(ts),
        "trigger": "quiz_failed",
        "learner_id": "u1",
        "context": {"learner": {"level": "novice"}},
        "actions": [{"id": "hint", "features": {"kind": "hint"}}, {"id": "none"}],
        "chosen": "hint",
        "probability": 0.5,
        "pmf": [0.5, 0.5],
    }
    return {**doc, **changes}


def outcome(event_id: str = "e1", ts: float = T0 + 10, **changes: Any) -> dict[str, Any]:
    doc = {
        "type": "outcome",
        "event_id": event_id,
        "timestamp": timestamp_text(ts),
        "trigger": "quiz_failed",
        "outcome": "helpful",
    }
    return {**doc, **changes}


def write_lines(path: Path, lines: list[bytes | dict[str, Any]]) -> Path:
    path.write_bytes(
        b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n" for x in lines)
    )
    return path


BAD_LINES = [
    pytest.param(impression("e2", probability=1.5, pmf=None), "probability",
                 "probability_out_of_range", id="probability-above-1"),
    pytest.param(impression("e2", probability=0.0, pmf=None), "probability",
                 "probability_out_of_range", id="probability-0"),
    pytest.param(impression("e2", timestamp="last tuesday"), "timestamp", "bad_timestamp",
                 id="timestamp"),
    pytest.param(impression("e2", pmf=[0.25, 0.25]), "pmf", "pmf_invalid", id="pmf"),
    pytest.param({k: v for k, v in impression("e2").items() if k != "event_id"}, "event_id",
                 "missing_field", id="missing-event-id"),
    pytest.param(orjson.dumps(impression("e2"))[:40], "json", "undecodable", id="truncated"),
    pytest.param(impression("e2", chosen="nope"), "chosen", "chosen_not_in_actions",
                 id="chosen-unknown"),
    pytest.param(impression("e2", actions=[], pmf=None), "actions", "empty_actions",
                 id="no-actions"),
    pytest.param(impression("e2", campaign="spring"), "campaign", "unknown_field",
                 id="unknown-field"),
    pytest.param(impression("e2", context={"browser": {"lang": "es"}}), "context",
                 "unknown_namespace", id="unknown-namespace"),
    pytest.param(outcome("e1", outcome="loved_it"), "outcome", "invalid_value",
                 id="outcome-label"),
    pytest.param(outcome("e1", type="reaction"), "type", "unknown_event_type",
                 id="event-type"),
]  # fmt: skip


@pytest.mark.parametrize(("bad", "field", "reason"), BAD_LINES)
def test_an_invalid_line_is_an_error_naming_its_line_and_field(
    config, tmp_path, bad, field, reason
):
    path = write_lines(tmp_path / "events.jsonl", [impression("e1"), bad, outcome("e1")])

    with pytest.raises(ReplayInputError) as caught:
        load_events(path, config)

    assert (caught.value.where, caught.value.field) == ("events.jsonl line 2", field)
    assert reason in caught.value.problem and "--skip-invalid" in caught.value.problem


@pytest.mark.parametrize(("bad", "field", "reason"), BAD_LINES)
def test_skip_mode_counts_an_invalid_line_under_its_reason(config, tmp_path, bad, field, reason):
    path = write_lines(tmp_path / "events.jsonl", [impression("e1"), bad, outcome("e1")])

    data = load_events(path, config, on_error="skip")

    assert data.skipped == Counter({reason: 1})
    assert data.event_ids.tolist() == ["e1"] and data.reward.tolist() == [1.0]


def test_join_rejections_are_counted_even_in_raise_mode(config, tmp_path):
    lines = [impression("e1"), impression("e1"), outcome("e1"), outcome("e9")]
    path = write_lines(tmp_path / "events.jsonl", lines)

    data = load_events(path, config)

    assert data.skipped == Counter({"duplicate_impression": 1, "unmatched_outcome": 1})
    assert data.n == 1


def test_blank_lines_are_ignored_but_still_numbered(config, tmp_path):
    lines = [b"", impression("e1"), b"   ", outcome("e1"), impression("e2", probability=2.0)]
    path = write_lines(tmp_path / "events.jsonl", lines)

    with pytest.raises(ReplayInputError, match=r"events\.jsonl line 5: probability"):
        load_events(path, config)
    assert load_events(path, config, on_error="skip").n == 1


@pytest.mark.parametrize(
    "lines", [[], [outcome("e1")], [b"{"]], ids=["empty", "only-outcomes", "only-invalid"]
)
def test_a_file_without_a_joinable_decision_is_an_error_naming_the_file(config, tmp_path, lines):
    path = write_lines(tmp_path / "events.jsonl", lines)

    with pytest.raises(ReplayInputError) as caught:
        load_events(path, config, on_error="skip")

    assert caught.value.where == "events.jsonl"


def test_progress_is_reported_every_10000_lines(config, tmp_path):
    path = write_lines(tmp_path / "events.jsonl", [impression("e1"), *[b""] * 24_999])
    calls: list[tuple[str, int, int | None]] = []

    load_events(
        path, config, progress=lambda stage, done, total: calls.append((stage, done, total))
    )

    assert calls == [("read", 10_000, None), ("read", 20_000, None), ("read", 25_000, 25_000)]


def test_an_unknown_on_error_mode_is_refused(config, log_file):
    with pytest.raises(ValueError, match="on_error"):
        load_events(log_file, config, on_error="ignore")  # type: ignore[arg-type]
