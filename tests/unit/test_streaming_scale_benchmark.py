"""Smoke test of benchmarks/replay_scale.py: a small run measures time and peak RSS per size and
extrapolates them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POLICIES = (
    "logging", "uniform", "random-message", "never-send", "best-uniform", "best-per-trigger",
)  # fmt: skip


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.replay_scale", "--events", "3000,6000",
         "--rows-per-group", "1000", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_small_run_measures_every_size_and_extrapolates():
    result = orjson.loads(_run("--json"))

    assert [r["events"] for r in result["rows"]] == [3000, 6000]
    for row in result["rows"]:
        assert row["seconds"] > 0 and row["peak_rss_mb"] > 50
        assert set(row["timings_s"]) == {"scan", "tune", "score"}
        assert row["best_dr"][0] in DEFAULT_POLICIES
    assert result["extrapolation"]["events"] == 100_000_000


def test_the_table_names_its_columns_and_the_extrapolation():
    out = _run()

    assert "events   file MB   seconds    events/s  peak RSS MB" in out
    assert "extrapolated to 100,000,000 events:" in out
