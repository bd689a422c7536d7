"""`nudge replay` from the command line: outputs, policy specs and bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]


def nudge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nudge.cli", *args], cwd=cwd, capture_output=True, text=True,
        timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("replay-cli")
    (workdir / "config.yaml").write_bytes((ROOT / "config.yaml").read_bytes())
    for name, fraction in (("clean.jsonl", "0"), ("dirty.jsonl", "0.02")):
        done = nudge(
            "simulate", "--events", "3000", "--seed", "3", "--invalid-fraction", fraction,
            "--out", name, "--no-kafka", cwd=workdir,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    return workdir


def test_default_replay_prints_every_policy_and_writes_json_html_and_dsjson(logs: Path) -> None:
    done = nudge(
        "replay", "--events", "clean.jsonl", "--out-json", "r.json", "--html", "r.html",
        "--write-dsjson", "r.dsjson", "--quiet", cwd=logs,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for policy in ("logging", "uniform", "never-send", "best-per-trigger", "personalized"):
        assert policy in done.stdout
    result = orjson.loads((logs / "r.json").read_bytes())
    assert result["n_events"] == 3000
    assert {"personalization", "targeting"} <= {c["name"] for c in result["contrasts"]}
    assert (logs / "r.html").read_text().count("<svg") >= 2
    assert len((logs / "r.dsjson").read_bytes().splitlines()) == 3000


def test_dsjson_written_by_replay_replays_to_the_same_numbers(logs: Path) -> None:
    common = ("--policy", "uniform", "--policy", "best-per-trigger", "--json", "--quiet")
    first = nudge("replay", "--events", "clean.jsonl", "--write-dsjson", "same.dsjson",
                  *common, cwd=logs)  # fmt: skip
    second = nudge("replay", "--dsjson", "same.dsjson", *common, cwd=logs)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    a, b = orjson.loads(first.stdout), orjson.loads(second.stdout)
    assert [r["value"] for r in a["estimates"]] == pytest.approx(
        [r["value"] for r in b["estimates"]], abs=1e-12
    )


def test_invalid_lines_stop_the_replay_naming_line_and_field_unless_skipped(logs: Path) -> None:
    done = nudge("replay", "--events", "dirty.jsonl", "--policy", "uniform", cwd=logs)
    assert done.returncode == 2
    assert "dirty.jsonl line " in done.stderr and "--skip-invalid" in done.stderr
    skipped = nudge(
        "replay", "--events", "dirty.jsonl", "--policy", "uniform", "--skip-invalid", "--json",
        "--quiet", cwd=logs,
    )  # fmt: skip
    assert skipped.returncode == 0, skipped.stderr
    counts = orjson.loads(skipped.stdout)["skipped"]
    assert sum(counts.values()) > 0 and "probability_out_of_range" in counts


def test_named_specs_and_gains_and_unknown_specs(logs: Path) -> None:
    done = nudge(
        "replay", "--events", "clean.jsonl", "--policy", "old=uniform", "--policy",
        "new=best-per-trigger", "--gain", "new_vs_old", "new", "old", "--no-triggers",
        "--no-effects", "--estimators", "IPS,DR", "--json", "--quiet", cwd=logs,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = orjson.loads(done.stdout)
    assert result["policies"] == ["old", "new"] and result["estimators"] == ["IPS", "DR"]
    assert [c["name"] for c in result["contrasts"]] == ["new_vs_old", "new_vs_old"]
    bad = nudge("replay", "--events", "clean.jsonl", "--policy", "magic", cwd=logs)
    assert bad.returncode == 2 and "unknown policy spec 'magic'" in bad.stderr


def test_defaults_leave_out_never_send_when_some_decision_could_not_send_nothing(
    logs: Path,
) -> None:
    import pandas as pd

    from bandit.config import load_config
    from replay.sources import load_events
    from replay.tables import write_table

    write_table(load_events(logs / "clean.jsonl", load_config(logs / "config.yaml")), logs / "t.csv")
    frame = pd.read_csv(logs / "t.csv").drop(columns=["pmf"])
    row = frame.index[frame.chosen != "none"][0]
    frame.loc[row, "actions"] = "|".join(
        a for a in frame.loc[row, "actions"].split("|") if a != "none"
    )
    frame.to_csv(logs / "partly-none.csv", index=False)
    done = nudge("replay", "--table", "partly-none.csv", "--json", "--quiet", cwd=logs)
    assert done.returncode == 0, done.stderr
    policies = orjson.loads(done.stdout)["policies"]
    assert "never-send" not in policies and "logging" not in policies  # no pmf column either
    assert "random-message" in policies and "best-per-trigger" in policies


def test_kafka_positions_are_offsets_below_a_billion_and_times_above() -> None:
    from nudge.replay_command import _position

    assert _position("1500") == 1500
    assert _position("1767600000") == 1767600000.0
    assert isinstance(_position("1767600000"), float)
    assert _position("2026-01-05T08:00:00Z") == 1767600000.0
