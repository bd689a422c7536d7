"""Broker tests: a real Apache Kafka started by the project's own script, fresh topics per test."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import yaml

from bandit.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def broker() -> str:
    """Starts the local broker with scripts/kafka if it is not running; returns bootstrap servers."""
    subprocess.run([str(ROOT / "scripts" / "kafka"), "start"], check=True, cwd=ROOT)
    return f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"


@dataclass(frozen=True)
class Deployment:
    """A config file with its own topics and checkpoint directory, and a way to run `nudge`."""

    path: Path
    config: Config
    workdir: Path

    def nudge(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nudge.cli", *args, "--config", str(self.path)],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=_clean_env(),
        )  # fmt: skip

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "nudge.cli", *args, "--config", str(self.path)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_clean_env(),
        )  # fmt: skip

    def simulate(self, *args: str) -> dict[str, object]:
        done = self.nudge("simulate", *args)
        assert done.returncode == 0, done.stderr
        return orjson.loads(done.stdout)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")}


@pytest.fixture
def deployment(broker: str, tmp_path: Path) -> Callable[..., Deployment]:
    """Factory: a deployment on fresh topics, with optional config section overrides."""

    def make(**sections: dict[str, object]) -> Deployment:
        run = f"it-{uuid.uuid4().hex[:10]}"
        data = yaml.safe_load((ROOT / "config.yaml").read_text())
        data["kafka"].update(
            bootstrap_servers=broker,
            impressions_topic=f"{run}.impressions",
            outcomes_topic=f"{run}.outcomes",
            dead_letter_topic=f"{run}.dead-letters",
            group_id=run,
        )
        data["checkpoint"]["directory"] = str(tmp_path / "checkpoints")
        data["snapshots"]["directory"] = str(tmp_path / "snapshots")
        data["consumer"]["progress_every_s"] = 1
        for name, values in sections.items():
            data[name].update(values)
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(data))
        return Deployment(path, load_config(path, environ={}), tmp_path)

    return make
