"""`nudge replay --table` streams the file (trigger-level policies) with the in-memory numbers,
and `nudge simulate --out` streams its messages: the same bytes as the whole run."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from replay_truth import as_logged_data, default_config
from test_cli_replay import nudge

from bandit.config import Config
from bandit.simulation.logged import simulate_logged
from bandit.simulation.publish import write_jsonl
from bandit.simulation.traffic import SimulationRun, simulate_traffic, stream_traffic
from bandit.simulation.world import World
from replay.evaluation import Gain, evaluate
from replay.policy_specs import build_policies
from replay.tables import load_table, write_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("stream-cli")
    (directory / "config.yaml").write_bytes((ROOT / "config.yaml").read_bytes())
    log = simulate_logged(World(1011, n_learners=200), default_config(), 2000, 4, logging="skewed")
    write_table(as_logged_data(log), directory / "log.parquet")
    return directory


def test_replay_of_a_table_gives_the_in_memory_numbers(workdir):
    done = nudge(
        "replay", "--table", "log.parquet", "--gain", "g", "best-per-trigger", "uniform",
        "--json", "--quiet", cwd=workdir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = orjson.loads(done.stdout)
    data = load_table(workdir / "log.parquet", none_action="none")
    candidates = build_policies(None, data, default_config()).candidates
    expected = evaluate(data, candidates, gains=[Gain("g", "best-per-trigger", "uniform")])

    assert set(found["timings_s"]) == {"scan", "tune", "score"}  # the streaming path ran
    assert found["policies"] == list(expected.policies)
    for kind, rows in (("estimates", expected.estimates), ("contrasts", expected.contrasts)):
        assert len(found[kind]) == len(rows)
        for got, want in zip(found[kind], rows, strict=True):
            assert (got["value"], got["low"], got["high"]) == pytest.approx(
                (want.value, want.low, want.high), abs=1e-9
            )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "uniform", "--gain", "g", "uniform", "best"],
         "--gain g uniform best: 'best' is not a candidate policy; the candidates are uniform"),
        (["--policy", "never-send", "--none-action", "hint"],
         "--policy never-send: candidate 'never-send': "),
        (["--none-action", "nothing"], "--none-action nothing: no action of the log has this id"),
    ],
)  # fmt: skip
def test_streamed_tables_refuse_bad_flags_as_the_command_does(workdir, args, message):
    done = nudge("replay", "--table", "log.parquet", *args, "--quiet", cwd=workdir)

    assert done.returncode == 2
    assert message in done.stderr


def test_specs_that_need_the_log_in_memory_still_run_on_tables(workdir):
    side = workdir / "side.jsonl"
    data = load_table(workdir / "log.parquet", none_action="none")
    side.write_bytes(
        b"\n".join(
            orjson.dumps({"event_id": e, "probabilities": {"none": 1.0}}) for e in data.event_ids
        )
    )
    done = nudge(
        "replay", "--table", "log.parquet", "--policy", "external:side.jsonl", "--policy",
        "never-send", "--json", "--quiet", cwd=workdir,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    found = orjson.loads(done.stdout)
    assert "scan" not in found["timings_s"]
    side_row = next(r for r in found["estimates"] if r["policy"] == "side" and r["trigger"] == "*")
    never = next(
        r for r in found["estimates"] if r["policy"] == "never-send" and r["trigger"] == "*"
    )
    assert side_row["value"] == never["value"]


@pytest.mark.parametrize(
    ("seed", "events", "invalid"), [(7, 1500, 0.05), (3, 800, 0.0), (5, 1, 0.5)]
)
def test_streamed_traffic_is_the_whole_run_message_for_message(seed, events, invalid):
    config = Config()
    world = World(seed, config.simulator.learners, config.simulator.courses)
    run = simulate_traffic(world, config.simulator, config.join, events, seed, invalid)
    tally = SimulationRun(messages=[])

    streamed = list(
        stream_traffic(world, config.simulator, config.join, events, seed, invalid, tally)
    )

    assert streamed == run.messages
    assert tally.summary() == run.summary()
    assert tally.valid_event_ids == run.valid_event_ids


def test_simulate_writes_the_same_file_as_the_whole_run(tmp_path):
    (tmp_path / "config.yaml").write_bytes((ROOT / "config.yaml").read_bytes())
    done = nudge(
        "simulate", "--events", "600", "--seed", "9", "--invalid-fraction", "0.03",
        "--out", "sim.jsonl", "--no-kafka", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = Config()
    world = World(9, config.simulator.learners, config.simulator.courses)
    run = simulate_traffic(world, config.simulator, config.join, 600, 9, 0.03)
    write_jsonl(run, tmp_path / "whole.jsonl")

    assert (tmp_path / "sim.jsonl").read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    summary = orjson.loads(done.stdout)
    assert {
        k: v for k, v in summary.items() if k not in ("out", "seed", "seconds")
    } == run.summary()
