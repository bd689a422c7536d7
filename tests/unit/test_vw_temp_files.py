"""Model files Vowpal Wabbit reads and writes through paths are never left behind (issue 11):
a consumer killed with `kill -9` used to leave a `/tmp/nudge-model-*.vw` per model for good.

Each test runs processes with their own TMPDIR, so what they leave is theirs alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bandit.scratch import PREFIX, ScratchDir, sweep

ROOT = Path(__file__).resolve().parents[2]

# A process that saves and restores a policy and an outcome model, as a consumer does at
# start and at each checkpoint, then waits to be killed (or exits, with "exit").
WORKER = """
import sys, time
from bandit.config import LearnerConfig
from bandit.policies import OutcomeModel, VowpalPolicy
config = LearnerConfig()
fresh = VowpalPolicy(config.vw_arguments())
policy = VowpalPolicy(config.vw_arguments(), fresh.to_bytes())
outcomes = OutcomeModel(config.outcome_model_arguments())
restored = OutcomeModel(config.outcome_model_arguments(), outcomes.to_bytes())
policy.to_bytes()
print("ready", flush=True)
if sys.argv[1] == "wait":
    time.sleep(120)
"""


def _run(tmpdir: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, mode],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmpdir)},
    )  # fmt: skip


def _left(tmpdir: Path) -> list[str]:
    return sorted(p.relative_to(tmpdir).as_posix() for p in tmpdir.rglob("*"))


def test_a_killed_process_leaves_no_model_file_and_the_next_start_sweeps_its_directory(
    tmp_path: Path,
) -> None:
    worker = _run(tmp_path, "wait")
    assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)

    left = _left(tmp_path)
    assert [name for name in left if name.endswith(".vw")] == []  # was 2 nudge-model-*.vw
    assert len([name for name in left if "/" not in name]) == 1  # its scratch directory...
    assert left[0].startswith(PREFIX)

    again = _run(tmp_path, "exit")  # ...which the next process sweeps; its own goes at exit
    assert again.wait(timeout=60) == 0
    assert _left(tmp_path) == []


def test_a_live_process_keeps_its_scratch_directory(tmp_path: Path) -> None:
    live = ScratchDir.create(tmp_path)
    try:
        dead = tmp_path / f"{PREFIX}dead"
        dead.mkdir()
        (dead / "lock").touch()
        (dead / "nudge-save-x.vw").write_bytes(b"half a model")
        unfinished = tmp_path / ".nudge-vw-new-old"  # killed between making and locking
        unfinished.mkdir()
        os.utime(unfinished, (time.time() - 3600, time.time() - 3600))
        young = tmp_path / ".nudge-vw-new-young"  # being made right now
        young.mkdir()

        assert sweep(tmp_path) == [dead, unfinished]

        assert live.path.is_dir() and young.is_dir()
        made = live.new_file("nudge-model-", b"model")
        assert made.parent == live.path and made.read_bytes() == b"model"
    finally:
        live.remove()
    assert not live.path.exists()
