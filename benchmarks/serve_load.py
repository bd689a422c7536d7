"""Load benchmark of `nudge serve`: decisions/s, p50 and p99 over HTTP at concurrency 1, 8
and 32, next to the in-process `Decider.decide` on the same inputs, in the same run.

Setup: a deployment of its own (fresh topics, temporary directories) on the running local
broker (`scripts/bench-serve` starts it): `nudge simulate` + `nudge consume --until-idle` train
a snapshot once; `nudge serve --workers N` serves it on a free port with an API key. The load
is a bounded async client (httpx, one keep-alive connection per concurrent request): at each
concurrency, `--warmup` requests, then `--requests` timed ones, each a `POST /v1/decide` of a
simulated learner at a simulated trigger (the trigger's catalogue as candidates, the server's
clock), every answer checked for status 200. Latency is what the client sees (send to body
read). Then `Decider.decide` on the same snapshot and inputs in this process, one thread.

Client and service share the machine: on 2 cores the client's own CPU (httpx, asyncio) is taken
from the service, so HTTP numbers are a floor for a service on hosts of its own.
Not part of CI. Run as `scripts/bench-serve [--requests N] [--workers N] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
import orjson
import yaml

from bandit.config import load_config
from bandit.decisions import Decider
from bandit.simulation.world import World

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Row:
    """One measured configuration: what was timed, how many, how fast."""

    path: str
    concurrency: int
    requests: int
    errors: int
    decisions_per_s: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class Request:
    """One decision's inputs, for the service (JSON body) and for the library (arguments)."""

    trigger: str
    learner_id: str
    context: dict[str, dict[str, float | str]]
    body: bytes


def _row(
    path: str, concurrency: int, latencies_ns: Sequence[int], wall_s: float, errors: int
) -> Row:
    ms = np.asarray(latencies_ns, dtype=np.float64) / 1e6
    return Row(
        path, concurrency, len(ms), errors, len(ms) / wall_s,
        float(np.percentile(ms, 50)), float(np.percentile(ms, 99)),
    )  # fmt: skip


def inputs(seed: int, learners: int, courses: int, n: int) -> list[Request]:
    """`n` simulated decisions: a learner drawn uniformly at a trigger drawn uniformly."""
    world = World(seed, learners, courses)
    rng = np.random.default_rng([seed, 11])
    out = []
    for _ in range(n):
        who = int(rng.integers(world.n_learners))
        trig = world.triggers[int(rng.integers(len(world.triggers)))]
        context = world.context(who, trig)
        body = {"trigger": trig.trigger_id, "learner_id": f"u{who:06d}", "context": context}
        out.append(Request(trig.trigger_id, f"u{who:06d}", context, orjson.dumps(body)))
    return out


# ---- the deployment ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(workdir: Path, bootstrap: str) -> Path:
    """config.yaml with fresh topics and group, and directories under `workdir`."""
    run = f"bench-{uuid.uuid4().hex[:8]}"
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["kafka"].update(
        bootstrap_servers=bootstrap, impressions_topic=f"{run}.impressions",
        outcomes_topic=f"{run}.outcomes", dead_letter_topic=f"{run}.dead-letters", group_id=run,
    )  # fmt: skip
    data["checkpoint"]["directory"] = str(workdir / "checkpoints")
    data["snapshots"]["directory"] = str(workdir / "snapshots")
    data["serve"]["spool_directory"] = str(workdir / "spool")
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")}


def nudge(config: Path, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nudge.cli", *args, "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, env=_env(), timeout=900,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(
            f"nudge {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}"
        )


def train(config: Path, events: int, seed: int) -> None:
    """A snapshot learned from `events` simulated uniform-random impressions."""
    nudge(config, "simulate", "--events", str(events), "--seed", str(seed))
    nudge(config, "consume", "--until-idle", "3")


def start_server(
    config: Path, port: int, workers: int, key: str, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "nudge.cli", "serve", "--config", str(config),
             "--port", str(port), "--workers", str(workers)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            env={**_env(), "NUDGE_API_KEYS": key},
        )  # fmt: skip


def wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"nudge serve exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"nudge serve not ready after {timeout_s:.0f}s: {log.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- the load --------------------------------------------------------------------------------


async def _drive(
    client: httpx.AsyncClient, requests: Sequence[Request], concurrency: int, n: int
) -> tuple[list[int], float, int]:
    """`n` decisions with at most `concurrency` in flight: (latencies ns, wall s, errors)."""
    latencies: list[int] = []
    errors = 0
    numbers = iter(range(n))  # shared by the tasks; asyncio runs one at a time

    async def one_slot() -> None:
        nonlocal errors
        for i in numbers:
            started = time.perf_counter_ns()
            resp = await client.post("/v1/decide", content=requests[i % len(requests)].body)
            latencies.append(time.perf_counter_ns() - started)
            if resp.status_code != 200:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(one_slot() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started, errors


async def http_rows(
    base: str, key: str, requests: Sequence[Request], levels: Sequence[int], n: int, warmup: int,
    workers: int,
) -> list[Row]:  # fmt: skip
    rows = []
    for concurrency in levels:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        async with httpx.AsyncClient(
            base_url=base, headers=headers, limits=limits, timeout=30
        ) as client:
            await _drive(client, requests, concurrency, warmup)
            latencies, wall_s, errors = await _drive(client, requests, concurrency, n)
        rows.append(_row(f"HTTP, {workers} workers", concurrency, latencies, wall_s, errors))
    return rows


def library_row(snapshots: Path, requests: Sequence[Request], n: int, warmup: int) -> Row:
    """`Decider.decide` in this process, one thread, on the same inputs."""
    latencies = []
    with Decider(snapshots, seed=1) as decider:
        for i in range(warmup):
            r = requests[i % len(requests)]
            decider.decide(r.trigger, r.learner_id, r.context)
        started = time.perf_counter()
        for i in range(n):
            r = requests[i % len(requests)]
            t0 = time.perf_counter_ns()
            decider.decide(r.trigger, r.learner_id, r.context)
            latencies.append(time.perf_counter_ns() - t0)
        wall_s = time.perf_counter() - started
    return _row("in-process Decider.decide", 1, latencies, wall_s, 0)


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| path | concurrency | requests | errors | decisions/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.path} | {r.concurrency} | {r.requests:,} | {r.errors} | "
            f"{r.decisions_per_s:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="timed requests per level")
    parser.add_argument("--warmup", type=int, default=500, help="untimed requests per level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--workers", type=int, default=2, help="nudge serve worker processes")
    parser.add_argument("--train-events", type=int, default=20000, help="simulated impressions")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bootstrap", default=f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary deployment")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="nudge-bench-serve-"))
    config = write_config(workdir, args.bootstrap)
    cfg = load_config(config, environ={})
    print(f"training a snapshot on {args.train_events:,} simulated impressions ...", flush=True)
    train(config, args.train_events, args.seed)
    requests = inputs(args.seed, cfg.simulator.learners, cfg.simulator.courses, 2000)
    key = secrets.token_hex(16)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = workdir / "serve.log"
    server = start_server(config, port, args.workers, key, log)
    try:
        wait_ready(base, server, log)
        print(f"nudge serve ready on {base} ({args.workers} workers); load ...", flush=True)
        rows = asyncio.run(
            http_rows(
                base, key, requests, args.concurrency, args.requests, args.warmup, args.workers
            )
        )
    finally:
        stop_server(server)
    rows.append(library_row(Path(cfg.snapshots.directory), requests, args.requests, args.warmup))
    print()
    print(
        f"nudge serve load ({os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{args.requests:,} timed requests per row after {args.warmup:,} warm-up; client on the "
        f"same machine; load average {os.getloadavg()[0]:.1f} at the end)"
    )
    print()
    print(table(rows))
    if args.json:
        args.json.write_bytes(orjson.dumps([asdict(r) for r in rows], option=orjson.OPT_INDENT_2))
    if args.keep:
        print(f"(deployment kept in {workdir})")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if any(r.errors for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
