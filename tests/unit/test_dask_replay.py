"""Replay of a log in Parquet parts, in one process and on a 2-worker local Dask cluster:
the same numbers (the chunks' sums merge in the same order), and the in-memory numbers of the
same rows, duplicates across files and skipped rows included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from replay_truth import as_logged_data, default_config
from streaming_fixtures import assert_same_result
from test_cli_replay import nudge

from bandit.errors import UsageError
from bandit.simulation.logged import simulate_logged
from bandit.simulation.world import World
from replay.table_parts import local_map, mark_duplicates, table_files, table_parts
from replay.table_stream import evaluate_table
from replay.tables import write_table

ROOT = Path(__file__).resolve().parents[2]
ROWS_PER_CHUNK = 400  # several runs of row groups per file: several parts
ROW_GROUP = 150
SPLIT = 1700  # rows of the first file; the second repeats 30 of its ids


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """whole.parquet: 3,000 logged decisions, one bad row and 30 repeated ids; parts/: the same
    rows in two files of small row groups."""
    directory = tmp_path_factory.mktemp("dask-replay")
    (directory / "config.yaml").write_bytes((ROOT / "config.yaml").read_bytes())
    log = simulate_logged(World(1011, n_learners=200), default_config(), 3000, 4, logging="skewed")
    write_table(as_logged_data(log), directory / "plain.parquet")
    table = pq.read_table(directory / "plain.parquet")
    probability = table.column("probability").to_pylist()
    probability[5] = 0.0  # invalid: skipped with --skip-invalid
    table = table.set_column(table.schema.get_field_index("probability"), "probability",
                             pa.array(probability))  # fmt: skip
    repeats = table.slice(100, 30)  # the same ids again, later in the log: dropped
    whole = pa.concat_tables([table, repeats])
    pq.write_table(whole, directory / "whole.parquet", row_group_size=ROW_GROUP)
    (directory / "parts").mkdir()
    pq.write_table(whole.slice(0, SPLIT), directory / "parts" / "a.parquet", row_group_size=ROW_GROUP)
    pq.write_table(whole.slice(SPLIT), directory / "parts" / "b.parquet", row_group_size=ROW_GROUP)
    return directory


def _evaluate(table: str, **options: Any) -> Any:
    return evaluate_table(
        table, [], none_action="none", on_error="skip", rows_per_chunk=ROWS_PER_CHUNK, **options
    )


def test_parts_of_the_log_give_the_numbers_of_the_whole_file(workdir: Path) -> None:
    whole = _evaluate(str(workdir / "whole.parquet"))
    parts = _evaluate(str(workdir / "parts" / "*.parquet"))
    assert_same_result(parts, whole)
    assert parts.skipped == {"probability_out_of_range": 1, "duplicate_impression": 30}


def test_duplicates_are_the_rows_after_the_first_of_their_id_across_files(workdir: Path) -> None:
    parts = table_parts(table_files(str(workdir / "parts" / "*.parquet")), ROWS_PER_CHUNK)
    assert len(parts) > 4 and {p.path for p in parts} == {
        str(workdir / "parts" / "a.parquet"), str(workdir / "parts" / "b.parquet"),
    }  # fmt: skip
    marked = mark_duplicates(parts, local_map(parts), on_error="skip")
    dropped = [row for part in marked for row in part.drop]
    assert dropped == list(range(3000, 3030))  # the later copies, never the first


def test_a_two_worker_dask_run_gives_the_single_process_numbers(workdir: Path) -> None:
    flags = ("--table", "parts/*.parquet", "--skip-invalid", "--bootstrap", "20", "--json",
             "--quiet")  # fmt: skip
    single = nudge("replay", *flags, cwd=workdir)
    on_dask = nudge("replay", *flags, "--dask", "local:2", cwd=workdir)
    assert single.returncode == 0 and on_dask.returncode == 0, single.stderr + on_dask.stderr
    one, two = orjson.loads(single.stdout), orjson.loads(on_dask.stdout)
    del one["timings_s"], two["timings_s"]
    assert two == one  # to the last bit: the same chunks, merged in the same order
    assert one["n_events"] == 2999 and {r["method"] for r in one["estimates"]} == {
        "poisson-bootstrap"
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--events", "x.jsonl", "--dask", "local:2"], "--dask runs the passes of --table"),
        (["--table", "parts/*.parquet", "--dask", "local:2", "--policy", "crossfit"],
         "--dask streams trigger-level policies only"),
        (["--table", "parts/*.parquet", "--tune"], "a glob of Parquet files is read in chunks"),
        (["--table", "nothing/*.parquet"], "no file matches the pattern"),
        (["--table", "parts/*.parquet", "--dask", "local:x"], "local:N needs a number"),
    ],
)  # fmt: skip
def test_dask_and_glob_misuse_fails_in_one_line(
    workdir: Path, args: list[str], message: str
) -> None:
    (workdir / "x.jsonl").touch()
    done = nudge("replay", *args, "--quiet", cwd=workdir)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_unreachable_scheduler_is_a_usage_error() -> None:
    from replay.dask_passes import dask_client

    with pytest.raises(UsageError, match="cannot reach the scheduler"), dask_client(
        "tcp://127.0.0.1:9"
    ):
        pass
