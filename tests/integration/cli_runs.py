"""Running `nudge` as a user would, against a config of fresh topics: shared by the broker tests
that check what the command line prints and how long it takes."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def write_config(
    tmp_path: Path, bootstrap: str, connect_timeout_s: float, client: dict[str, Any]
) -> Path:
    """config.yaml with fresh topics, group and directories, the given brokers and client."""
    run = f"it-{uuid.uuid4().hex[:10]}"
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["kafka"].update(
        bootstrap_servers=bootstrap, connect_timeout_s=connect_timeout_s, client=client,
        impressions_topic=f"{run}.impressions", outcomes_topic=f"{run}.outcomes",
        dead_letter_topic=f"{run}.dead-letters", group_id=run,
    )  # fmt: skip
    data["checkpoint"]["directory"] = str(tmp_path / "checkpoints")
    data["snapshots"].update(directory=str(tmp_path / "snapshots"), kafka_topic=f"{run}.snaps")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def nudge(
    *args: str, config: Path, env: dict[str, str] | None = None, timeout_s: float = 300
) -> tuple[subprocess.CompletedProcess[str], float]:
    """`nudge ARGS --config CONFIG` in a clean environment (plus `env`); (result, seconds)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "nudge.cli", *args, "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **(env or {})},
    )  # fmt: skip
    return done, time.monotonic() - started
