"""The README's curl examples run as written against `nudge serve` on 127.0.0.1:8080."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from tests.integration.conftest import ROOT, Deployment
from tests.integration.serving import API_KEY, start, stop, wait_ready

pytestmark = pytest.mark.kafka

MARKER = "<!-- curl-examples"


def readme_curl_lines() -> list[str]:
    """Every `curl` line of the fenced block after the README's curl-examples marker."""
    text = (ROOT / "README.md").read_text()
    after = text[text.index(MARKER) :]
    block = re.search(r"```bash\n(.*?)```", after, re.S)
    assert block is not None, "no ```bash block after the curl-examples marker"
    return [ln for ln in block.group(1).splitlines() if ln.startswith("curl ")]


def test_the_readme_has_curl_examples_for_both_apis() -> None:
    lines = readme_curl_lines()
    assert any("/v1/decide" in ln for ln in lines)
    assert any("/personalizer/v1.0/rank" in ln for ln in lines)
    assert all("127.0.0.1:8080" in ln for ln in lines)


def test_every_readme_curl_example_gets_a_2xx_answer(
    deployment: Callable[..., Deployment], tmp_path: Path
) -> None:
    assert shutil.which("curl"), "curl is needed (apt-get install curl)"
    dep = deployment(serve={"spool_directory": str(tmp_path / "spool"), "port": 8080})
    dep.simulate("--events", "3000", "--seed", "7")
    done = dep.nudge("consume", "--until-idle", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    proc = start(dep, "serve", log="serve.log", env={"NUDGE_API_KEYS": API_KEY})
    try:
        wait_ready("http://127.0.0.1:8080", proc, dep.workdir / "serve.log")
        answers = []
        for line in readme_curl_lines():
            run = subprocess.run(
                ["bash", "-c", line], capture_output=True, text=True, timeout=30,
                env={"PATH": "/usr/bin:/bin", "NUDGE_API_KEYS": API_KEY},
            )  # fmt: skip
            assert run.returncode == 0, f"{line}\n-> {run.returncode} {run.stdout} {run.stderr}"
            answers.append(run.stdout)
    finally:
        assert stop(proc) == 0
    decided = orjson.loads(answers[0])
    assert decided["event_id"] == "readme-0001" and decided["probability"] > 0
    ranked = orjson.loads(answers[2])
    assert ranked["rewardActionId"] != "peer_norm"
