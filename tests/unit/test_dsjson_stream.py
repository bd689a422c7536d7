"""A DSJSON log replayed with trigger-level policies is read in batches of lines (bounded
memory) and gives `load_dsjson`'s numbers, repeated EventIds and bad lines included."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from foreign_push_logs import write_push_logs
from streaming_fixtures import assert_same_result
from test_cli_replay import nudge

from bandit.config import parse_config
from replay.dsjson import load_dsjson
from replay.dsjson_stream import dsjson_source
from replay.evaluation import evaluate
from replay.policy_specs import build_policies
from replay.table_stream import evaluate_table

SPECS = ["uniform", "never-send", "best-uniform", "best-per-trigger", "always-send:uniform"]


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The push study as our DSJSON, plus a repeated EventId (later, other reward: dropped)
    and a line that is not JSON (skipped)."""
    workdir = write_push_logs(tmp_path_factory.mktemp("dsjson-stream"), 3000, 4)
    lines = (workdir / "own.dsjson").read_bytes().splitlines()
    again = orjson.loads(lines[10])
    again["_label_cost"] = -1.0 - float(again["_label_cost"])
    lines[2000:2000] = [orjson.dumps(again), b"{not json"]
    (workdir / "log.dsjson").write_bytes(b"\n".join(lines) + b"\n")
    return workdir


def test_batches_of_lines_give_the_numbers_of_the_whole_file(log: Path) -> None:
    path = log / "log.dsjson"
    data = load_dsjson(path, none_action="none", on_error="skip")
    whole = evaluate(data, build_policies(SPECS, data, parse_config({})).candidates)
    chunked = evaluate_table(
        path, SPECS, none_action="none", on_error="skip",
        chunks=dsjson_source(path, none_action="none", on_error="skip", lines_per_chunk=700),
    )  # fmt: skip
    assert_same_result(chunked, whole)
    assert chunked.skipped == {"duplicate_impression": 1, "undecodable": 1} == dict(data.skipped)


def test_the_command_streams_dsjson_given_trigger_level_policies(log: Path) -> None:
    policies = [arg for spec in SPECS for arg in ("--policy", spec)]
    done = nudge(
        "replay", "--dsjson", "log.dsjson", *policies, "--skip-invalid", "--json", "--quiet",
        cwd=log,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = orjson.loads(done.stdout)
    assert set(result["timings_s"]) == {"scan", "tune", "score"}  # the chunked passes ran
    assert result["n_events"] == 3000
