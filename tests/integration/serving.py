"""Running `nudge serve` (and the consumer beside it) as real processes for the broker tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson

from tests.integration.conftest import ROOT, Deployment

API_KEY = "test-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")}
    env.update(extra or {})
    return env


def start(
    dep: Deployment, *args: str, log: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`nudge ARGS` in the background, its output in `workdir/LOG` (never a pipe that fills)."""
    out = (dep.workdir / log).open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "nudge.cli", *args, "--config", str(dep.path)],
        cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=_env(env),
    )  # fmt: skip


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (local test server)
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 60) -> None:
    """Until GET /readyz answers 200 (a verified snapshot is loaded and Kafka reachable)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"nudge serve exited {proc.returncode}: {log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            status, _ = get(f"{base}/readyz", timeout=2)
            if status == 200:
                return
        time.sleep(0.3)
    raise AssertionError(f"nudge serve not ready after {timeout_s} s: {log.read_text()[-3000:]}")


def metric(base: str, name: str) -> float:
    """The value of an unlabelled metric from /metrics."""
    _, body = get(f"{base}/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} in /metrics")


def spool_depth(base: str) -> int:
    """nudge_spool_depth_events from /metrics."""
    return int(metric(base, "nudge_spool_depth_events"))


def wait_drained(base: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while spool_depth(base) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert spool_depth(base) == 0, "the spool did not drain"


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@contextlib.contextmanager
def serving(dep: Deployment, workers: int = 2, keys: str = API_KEY) -> Iterator[str]:
    """`nudge serve` on a free port with `keys`; yields its base URL; stops it afterwards."""
    port = free_port()
    proc = start(
        dep, "serve", "--port", str(port), "--workers", str(workers), log="serve.log",
        env={"NUDGE_API_KEYS": keys},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, dep.workdir / "serve.log")
        yield base
    finally:
        code = stop(proc)
        assert code == 0, (dep.workdir / "serve.log").read_text()[-3000:]


def stats(dep: Deployment) -> dict[str, object]:
    """Learn everything in the topics (closing every window) and return the consumer's stats."""
    out = dep.workdir / "stats.json"
    done = dep.nudge("consume", "--until-idle", "3", "--stats-json", str(out), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return orjson.loads(out.read_bytes())
