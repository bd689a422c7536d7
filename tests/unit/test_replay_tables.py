"""Tables of logged decisions (DataFrame, CSV, Parquet) as replay input: `replay.tables`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bandit.config import load_config
from bandit.errors import ReplayInputError
from bandit.simulation.publish import write_jsonl
from bandit.simulation.traffic import simulate_traffic
from bandit.simulation.world import World
from replay.logged import LoggedData
from replay.sources import load_events
from replay.tables import load_table, write_table

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ("event_ids", "triggers", "learners", "timestamps", "mask", "chosen", "pscore",
           "logging_pmf", "reward", "labels")  # fmt: skip


def frame(**changes: list[Any]) -> pd.DataFrame:
    """Four valid decisions over two candidate lists; `changes` replace whole columns."""
    columns: dict[str, list[Any]] = {
        "event_id": ["e1", "e2", "e3", "e4"],
        "trigger": ["quiz_failed", "quiz_failed", "course_start", "quiz_failed"],
        "actions": [["hint", "none"], ["hint", "none"], ["welcome", "hint", "none"],
                    ["hint", "none"]],
        "chosen": ["hint", "none", "welcome", "none"],
        "probability": [0.5, 0.5, 0.2, 0.5],
        "reward": [1.0, 0.0, -1.0, 0.0],
        "pmf": [[0.5, 0.5], [0.5, 0.5], [0.2, 0.4, 0.4], [0.5, 0.5]],
        "learner_id": ["u1", "u2", "u1", "u3"],
        "timestamp": [1_767_600_000.0, 1_767_600_001.5, 1_767_600_002.25, 1_767_600_003.0],
        "label": ["helpful", "ignored", "not_helpful", "ignored"],
    }  # fmt: skip
    return pd.DataFrame({**columns, **changes})


def as_csv(df: pd.DataFrame, path: Path) -> Path:
    """The CSV a user would write: lists as '|'-separated text."""
    text = df.copy()
    for column in ("actions", "pmf"):
        if column in text.columns:
            text[column] = [
                "|".join(map(str, v)) if isinstance(v, list) else v for v in text[column]
            ]
    text.to_csv(path, index=False)
    return path


def assert_same_logged(a: LoggedData, b: LoggedData) -> None:
    assert a.actions == b.actions and a.none_action == b.none_action
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_a_frame_loads_into_columns_over_one_action_vocabulary():
    data = load_table(frame(), none_action="none")

    assert data.actions == ("hint", "none", "welcome")
    assert data.chosen.tolist() == [0, 1, 2, 1]
    two, three = [True, True, False], [True, True, True]
    assert data.mask.tolist() == [two, two, three, two]
    assert data.logging_pmf[2].tolist() == [0.4, 0.4, 0.2]
    assert data.none_action == "none" and data.impressions is None
    assert data.labels.tolist() == ["helpful", "ignored", "not_helpful", "ignored"]


def test_frame_csv_and_parquet_give_the_same_logged_data(tmp_path):
    df = frame()
    df.to_parquet(tmp_path / "log.parquet")

    from_frame = load_table(df, none_action="none")
    assert_same_logged(load_table(as_csv(df, tmp_path / "log.csv"), none_action="none"), from_frame)
    assert_same_logged(load_table(tmp_path / "log.parquet", none_action="none"), from_frame)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_our_events_written_as_a_table_read_back_the_same(tmp_path, suffix):
    config = load_config(ROOT / "config.yaml", environ={})
    world = World(9, config.simulator.learners, config.simulator.courses)
    run = simulate_traffic(world, config.simulator, config.join, 1_000, 9)
    write_jsonl(run, tmp_path / "events.jsonl")
    logged = load_events(tmp_path / "events.jsonl", config)

    write_table(logged, tmp_path / f"log.{suffix}")

    assert_same_logged(load_table(tmp_path / f"log.{suffix}", none_action="none"), logged)


def test_rfc3339_text_and_epoch_seconds_give_the_same_time():
    text = frame(timestamp=["2026-01-05T08:00:00Z", "2026-01-05T08:00:01.5+00:00",
                            "2026-01-05T09:00:02.25+01:00", "2026-01-05T08:00:03"])  # fmt: skip
    np.testing.assert_array_equal(
        load_table(text, none_action=None).timestamps,
        load_table(frame(), none_action=None).timestamps,
    )


def test_optional_columns_may_be_left_out():
    data = load_table(frame().drop(columns=["pmf", "learner_id", "timestamp", "label"]),
                      none_action="none")  # fmt: skip
    assert data.logging_pmf is None and np.isnan(data.timestamps).all()
    assert data.learners.tolist() == [""] * 4 and data.labels.tolist() == [""] * 4


def test_a_repeated_event_id_is_counted_and_its_first_row_kept():
    data = load_table(frame(event_id=["e1", "e2", "e1", "e4"]), none_action=None)
    assert data.event_ids.tolist() == ["e1", "e2", "e4"]
    assert data.skipped == Counter({"duplicate_impression": 1})


def test_a_missing_required_column_is_an_error_naming_it(tmp_path):
    with pytest.raises(ReplayInputError) as caught:
        load_table(as_csv(frame().drop(columns=["probability"]), tmp_path / "t.csv"),
                   none_action=None)  # fmt: skip
    assert (caught.value.where, caught.value.field) == ("t.csv", "probability")


def _row3(column: str, value: Any) -> dict[str, list[Any]]:
    """Column `column` of `frame()` with data row 3 set to `value`."""
    values = list(frame()[column])
    values[2] = value
    return {column: values}


BAD_ROWS = [
    pytest.param(_row3("probability", 0.0), "probability", "probability_out_of_range", id="p-0"),
    pytest.param(_row3("probability", 1.5), "probability", "probability_out_of_range",
                 id="p-1.5"),
    pytest.param(_row3("probability", "high"), "probability", "wrong_type", id="p-text"),
    pytest.param(_row3("reward", "good"), "reward", "wrong_type", id="reward-text"),
    pytest.param(_row3("chosen", "nudge"), "chosen", "chosen_not_in_actions",
                 id="chosen-not-in-actions"),
    pytest.param(_row3("pmf", [0.5, 0.25, 0.25]), "pmf", "pmf_invalid", id="pmf-disagrees"),
    pytest.param(_row3("pmf", [0.2, 0.2, 0.2]), "pmf", "pmf_invalid", id="pmf-sum"),
    pytest.param(_row3("pmf", [0.2, 0.8]), "pmf", "pmf_invalid", id="pmf-length"),
    pytest.param(_row3("event_id", ""), "event_id", "missing_field", id="no-event-id"),
    pytest.param(_row3("actions", ["hint", "hint", "welcome"]), "actions", "duplicate_action_id",
                 id="repeated-action"),
    pytest.param(_row3("timestamp", "last tuesday"), "timestamp", "bad_timestamp",
                 id="timestamp"),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "column", "reason"), BAD_ROWS)
def test_a_bad_frame_row_is_an_error_naming_row_and_column(changes, column, reason):
    with pytest.raises(ReplayInputError) as caught:
        load_table(frame(**changes), none_action=None)
    assert (caught.value.where, caught.value.field) == ("row 3", column)
    assert reason in caught.value.problem


@pytest.mark.parametrize(("changes", "column", "reason"), BAD_ROWS)
def test_a_bad_csv_row_is_an_error_naming_its_line_and_column(tmp_path, changes, column, reason):
    path = as_csv(frame(**changes), tmp_path / "log.csv")
    with pytest.raises(ReplayInputError) as caught:
        load_table(path, none_action=None)
    assert (caught.value.where, caught.value.field) == ("log.csv line 4", column)


@pytest.mark.parametrize(("changes", "column", "reason"), BAD_ROWS)
def test_skip_mode_counts_a_bad_row_under_its_reason(changes, column, reason):
    data = load_table(frame(**changes), none_action=None, on_error="skip")
    assert data.skipped == Counter({reason: 1})
    assert data.event_ids.tolist() == ["e1", "e2", "e4"]


def test_a_table_without_a_usable_row_is_an_error():
    with pytest.raises(ReplayInputError, match="no usable row"):
        load_table(frame(probability=[0.0] * 4), none_action=None, on_error="skip")


@pytest.mark.parametrize(
    ("name", "content", "field", "problem"),
    [
        ("utf16.csv", b"\xff\xfee\x00v\x00\n\x00", "encoding", "not UTF-8 text"),
        ("empty.csv", b"", "format", "not a readable CSV"),
        ("open-quote.csv", b'a,b\n"x,1\n', "format", "not a readable CSV"),
        ("corrupt.parquet", b"PAR1garbagePAR1", "format", "not a readable Parquet file"),
        ("text.parquet", b"event_id,chosen\n", "format", "not a readable Parquet file"),
    ],
)
def test_an_unreadable_table_file_is_an_error_naming_it(tmp_path, name, content, field, problem):
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(ReplayInputError, match=problem) as caught:
        load_table(path, none_action=None)
    assert (caught.value.where, caught.value.field) == (name, field)
