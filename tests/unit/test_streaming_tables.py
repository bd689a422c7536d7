"""Tables read in chunks (`replay.tables.read_table_chunks`, `replay.table_stream`): the rows,
skips, duplicates and errors of `load_table`, and the same replay."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from replay_truth import as_logged_data, default_config
from streaming_fixtures import assert_same_result

from bandit.errors import ReplayInputError
from bandit.simulation.logged import simulate_logged
from bandit.simulation.world import World
from replay.chunked import event_keys
from replay.duplicates import FirstSeen, repeated_keys
from replay.evaluation import evaluate
from replay.policy_specs import build_policies
from replay.table_stream import evaluate_table, table_source
from replay.tables import load_table, read_table_chunks, write_table


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """1,200 simulated decisions, then repeats of three ids (far apart) and two bad rows."""
    log = simulate_logged(World(1005, n_learners=200), default_config(), 1200, 9, logging="skewed")
    path = tmp_path_factory.mktemp("table") / "log.parquet"
    write_table(as_logged_data(log), path)
    frame = pd.read_parquet(path)
    repeats = frame.iloc[[5, 17, 1100]].assign(reward=9.0)  # later rows: dropped, not used
    bad = frame.iloc[[8, 9]].assign(probability=[2.0, np.nan])
    return pd.concat([frame, repeats, bad, frame.iloc[[5]]], ignore_index=True)


def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        text = frame.copy()
        for column in ("actions", "pmf"):
            cell = (lambda x: repr(float(x))) if column == "pmf" else str
            text[column] = ["|".join(map(cell, v)) for v in text[column]]
        text.to_csv(path, index=False)
    else:
        frame.to_parquet(path, row_group_size=300)
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_table_in_chunks_replays_as_the_loaded_table(messy, tmp_path, suffix):
    path = _write(messy, tmp_path / f"log{suffix}")
    data = load_table(path, none_action="none", on_error="skip")
    expected = evaluate(data, build_policies(None, data, default_config()).candidates)

    found = evaluate_table(path, [], none_action="none", on_error="skip", rows_per_chunk=257)

    assert_same_result(expected, found)
    assert found.skipped == {
        "duplicate_impression": 4, "probability_out_of_range": 1, "missing_field": 1,
    }  # fmt: skip


def test_chunks_keep_the_file_rows_and_only_the_first_of_a_repeated_id(messy, tmp_path):
    path = _write(messy, tmp_path / "log.parquet")

    chunks = list(table_source(path, on_error="skip", rows_per_chunk=500)())

    rows = np.concatenate([c.rows for c in chunks])
    ids = np.concatenate([c.event_ids for c in chunks])
    assert len(chunks) > 2 and rows.tolist() == [
        r for r in range(1206) if r not in (1200, 1201, 1202, 1203, 1204, 1205)
    ]
    assert len(set(ids.tolist())) == ids.size == 1200
    assert sum((c.skipped for c in chunks), Counter())["duplicate_impression"] == 4


@pytest.mark.parametrize(
    ("suffix", "where"), [(".parquet", "log.parquet row 1204"), (".csv", "log.csv line 1205")]
)
def test_a_bad_row_in_a_later_chunk_is_named_by_its_place_in_the_file(
    messy, tmp_path, suffix, where
):
    path = _write(messy.iloc[:1204], tmp_path / f"log{suffix}")  # one bad row: the last
    with pytest.raises(ReplayInputError) as whole:
        load_table(path, none_action="none")

    with pytest.raises(ReplayInputError, match=f"^{where}: probability: must be in") as chunked:
        list(read_table_chunks(path, rows_per_chunk=100))
    assert str(chunked.value) == str(whole.value)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"event_id": ["a"]}), "trigger: required column missing"),
        (pd.DataFrame({c: pd.Series([], dtype=object) for c in (
            "event_id", "trigger", "actions", "chosen", "probability", "reward")}),
         "rows: the table has no rows"),
    ],
)  # fmt: skip
def test_tables_without_the_columns_or_rows_are_refused(tmp_path, frame, message):
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)

    with pytest.raises(ReplayInputError, match=message):
        list(read_table_chunks(path))


def test_repeated_keys_are_found_across_chunks_and_buckets():
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 2**63, 50_000, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    repeats = keys[[10, 20_000, 49_999]]
    chunks = [keys[:20_000], np.concatenate([keys[20_000:], repeats, repeats[:1]])]

    assert repeated_keys(chunks).tolist() == sorted(repeats.tolist())


def test_first_seen_keeps_the_first_row_of_an_id_even_when_hashes_collide(messy, tmp_path):
    path = _write(messy.iloc[:300], tmp_path / "log.parquet")
    chunk = next(read_table_chunks(path))
    collided = event_keys(chunk.event_ids[[3, 4]])  # as if two ids shared a key: both kept

    kept = FirstSeen(collided)(chunk)

    assert kept.n == chunk.n and kept.skipped == chunk.skipped


def test_a_dataframe_streams_to_exactly_the_numbers_of_its_file(messy, tmp_path):
    frame = messy.iloc[:1200]  # one chunk: the same sums in the same order as the file's
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    options = {"none_action": "none", "interval": "bootstrap", "n_boot": 20}

    from_frame = evaluate_table(frame, [], **options).to_json()
    from_file = evaluate_table(path, [], **options).to_json()

    assert from_frame.pop("source") == "table" and from_file.pop("source") == "log.parquet"
    for result in (from_frame, from_file):
        result.pop("timings_s")
    assert from_frame == from_file
