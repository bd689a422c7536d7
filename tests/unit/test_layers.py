"""The layers hold at run time: the pure core loads neither Vowpal Wabbit nor Kafka.

import-linter checks the static import graph in the test command; this checks what importing
really loads, in a fresh interpreter (a lazy or conditional import would slip past a graph).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE_MODULES = (
    "bandit.events",
    "bandit.envelopes",
    "bandit.decoding",
    "bandit.join",
    "bandit.watermarks",
    "bandit.state",
    "bandit.ports",
    "bandit.config",
    "bandit.mixture",
    "bandit.pruning",
    "bandit.snapshots",
    "bandit.atomic_dir",
    "bandit.dir_lock",
    "bandit.scratch",
    "bandit.vw_io_flags",
    "bandit.learned_ids",
    "bandit.saved",
    "replay.estimators",
)
HEAVY = ("vowpalwabbit", "pylibvw", "kafka")


def _loaded_after_import(module: str) -> list[str]:
    code = (
        f"import sys, {module}\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    return [m for m in out.split(",") if m]


@pytest.mark.parametrize("module", PURE_MODULES)
def test_importing_a_pure_core_module_loads_neither_vowpal_wabbit_nor_kafka(module: str) -> None:
    assert _loaded_after_import(module) == []


def test_the_check_sees_a_module_that_does_load_vowpal_wabbit() -> None:
    assert "vowpalwabbit" in _loaded_after_import("bandit.policies")


def test_the_check_sees_a_module_that_does_load_kafka() -> None:
    assert "kafka" in _loaded_after_import("streams.kafka_io")
