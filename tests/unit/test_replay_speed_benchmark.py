"""Smoke test of benchmarks/replay_speed.py: a small run prints events/s for every row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "replay_speed.py"
SMALL = ["--events", "20000", "--repeats", "1"]
STEPS = (
    "LoggedFeedback construction",
    "IPS.estimate()",
    "DRos.estimate()",
    "IPS.bootstrap_interval(n_boot=200)",
    "baseline: Python loop IPS",
)


def _run(*extra: str) -> str:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *SMALL, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_small_run_prints_events_per_second_and_the_goal_line() -> None:
    out = _run()
    assert "events/s" in out
    for step in STEPS:
        assert step in out
    assert "IPS-family over 20k events:" in out
    assert "(goal: a few seconds)" in out


def test_json_output_has_a_rate_and_a_loop_ratio_per_row() -> None:
    result = orjson.loads(_run("--json"))
    rows = result["rows"]
    assert {"construction", "IPS estimate", "loop"} <= set(rows)
    assert all(row["events_per_s"] > 0 and row["vs_loop"] > 0 for row in rows.values())
    assert result["loop_check_abs_diff"] < 1e-9
