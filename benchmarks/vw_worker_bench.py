"""VW worker benchmark: learning in this process against learning in `bandit.vw_worker`'s child.

On `--events` synthetic events (`benchmarks.consumer_bench.synthetic_events`: one trigger,
5 actions with 2 features each, 10 context features; the config's learner arguments), rendered
once as the learner renders them (`bandit.vw_text.example_lines`):

  start          `VowpalWorker.start()` then a first round trip (`ping`), per start method;
                 forkserver's second worker (its server already running) too
  round trip     `ping` to an idle child: the latency `to_bytes` and `predict` add
  encode         one batch of `--batch` examples: `encode_batch` against orjson and a NUL join
                 (parent side), and their decoding (child side), microseconds per batch
  learn          `policy.learn(lines)` for every event, then `to_bytes()`: in process
                 (`VowpalPolicy`) and through the worker (`RemotePolicy`) at each batch size;
                 wall time (the parent's time to ship all and get the final model), the parent's
                 CPU time per example (what the main process spends; the in-process CPU is what
                 it spent before) and the child's CPU time; the worker's model must equal the
                 in-process one byte for byte
  render+learn   the consumer's split: render each event and learn it, in process and through
                 the worker at `--batch`: the worker overlaps VW with the rendering

Each number is the best of `--repeats` (2 cores shared with anything else running).
Run as `python -m benchmarks.vw_worker_bench` (`--json` for every number). Not part of CI.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import orjson

from bandit.config import LearnerConfig, load_config
from bandit.join import JoinedEvent
from bandit.policies import VowpalPolicy
from bandit.vw_text import NamespaceLetters, example_lines
from bandit.vw_worker import RemotePolicy, VowpalWorker, decode_batch, encode_batch
from benchmarks.consumer_bench import FIXED_ACTIONS, FIXED_FEATURES, synthetic_events

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (32, 128, 512, 2048, 8192)
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def child_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux `/proc/<pid>/stat`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_S


def render(event: JoinedEvent, letters: NamespaceLetters) -> list[str]:
    """The lines `OnlineLearner.learn` renders for an event."""
    imp = event.impression
    return example_lines(
        imp.context, imp.action_ids, imp.action_features, letters,
        label=(imp.chosen_index, -event.reward, imp.probability),
    )  # fmt: skip


def best(repeats: int, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The run with the least wall time of `repeats`."""
    return min((run() for _ in range(repeats)), key=lambda r: float(r["wall_s"]))


def start_cost(method: Literal["spawn", "forkserver"], repeats: int) -> dict[str, float]:
    """Seconds `start()` takes (the parent's wait) and to a finished first round trip (`ping`:
    the child's interpreter, imports and the parent's `__main__` re-imported)."""
    calls, trips = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        with VowpalWorker(start_method=method) as worker:
            calls.append(time.perf_counter() - started)
            worker.ping()
            trips.append(time.perf_counter() - started)
    return {
        "start_call_s": round(min(calls), 4),
        "first_trip_first_s": round(trips[0], 3),
        "first_trip_best_s": round(min(trips), 3),
    }


def round_trip_us(n: int = 2000) -> float:
    """Microseconds of one `ping` to an idle child (what `to_bytes` or `predict` add)."""
    with VowpalWorker() as worker:
        worker.ping()
        started = time.perf_counter()
        for _ in range(n):
            worker.ping()
        return round((time.perf_counter() - started) / n * 1e6, 1)


def encoding_cost(texts: Sequence[str], repeats: int = 50) -> dict[str, float]:
    """Microseconds to encode and decode one batch of `texts`, by format."""
    indices = [0] * len(texts)
    ours = encode_batch(indices, texts)
    as_json = orjson.dumps([indices, list(texts)])
    nul = "\x00".join(texts).encode()

    def micro(fn: Callable[[], object]) -> float:
        started = time.perf_counter()
        for _ in range(repeats):
            fn()
        return round((time.perf_counter() - started) / repeats * 1e6, 1)

    return {
        "examples": len(texts),
        "bytes": len(ours),
        "lengths_encode_us": micro(lambda: encode_batch(indices, texts)),
        "lengths_decode_us": micro(lambda: decode_batch(ours)),
        "orjson_encode_us": micro(lambda: orjson.dumps([indices, list(texts)])),
        "orjson_decode_us": micro(lambda: orjson.loads(as_json)),
        "nul_join_encode_us": micro(lambda: "\x00".join(texts).encode()),
        "nul_split_decode_us": micro(lambda: nul.decode().split("\x00")),
    }


def learn_in_process(arguments: str, examples: Sequence[list[str]]) -> dict[str, Any]:
    with VowpalPolicy(arguments) as policy:
        wall, cpu = time.perf_counter(), time.process_time()
        for lines in examples:
            policy.learn(lines)
        model = policy.to_bytes()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return _numbers(len(examples), wall, cpu, None, model)


def learn_in_worker(arguments: str, examples: Sequence[list[str]], batch: int) -> dict[str, Any]:
    with VowpalWorker(batch_examples=batch) as worker:
        policy = RemotePolicy(worker, "global", arguments)
        assert worker.pid is not None
        child = child_cpu_s(worker.pid)
        wall, cpu = time.perf_counter(), time.process_time()
        for lines in examples:
            policy.learn(lines)
        model = policy.to_bytes()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        child = child_cpu_s(worker.pid) - child
    return _numbers(len(examples), wall, cpu, child, model)


def render_and_learn(
    arguments: str,
    events: Sequence[JoinedEvent],
    letters: NamespaceLetters,
    batch: int | None,
) -> dict[str, Any]:
    """Render and learn each event, in process (`batch` None) or through a worker."""
    worker = VowpalWorker(batch_examples=batch).start() if batch else None
    try:
        policy: VowpalPolicy | RemotePolicy = (
            RemotePolicy(worker, "global", arguments) if worker else VowpalPolicy(arguments)
        )
        wall, cpu = time.perf_counter(), time.process_time()
        for event in events:
            policy.learn(render(event, letters))
        model = policy.to_bytes()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        policy.finish()
    finally:
        if worker is not None:
            worker.close()
    return _numbers(len(events), wall, cpu, None, model)


def _numbers(n: int, wall: float, cpu: float, child: float | None, model: bytes) -> dict[str, Any]:
    return {
        "wall_s": round(wall, 4),
        "eps": round(n / wall),
        "parent_cpu_us_per_example": round(cpu / n * 1e6, 2),
        "child_cpu_us_per_example": None if child is None else round(child / n * 1e6, 2),
        "model": model,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    learner = _learner_config(args.config)
    arguments = learner.vw_arguments()
    letters = NamespaceLetters(dict(learner.namespaces), learner.action_namespace)
    events = synthetic_events(
        args.events, FIXED_ACTIONS, FIXED_FEATURES, list(learner.namespaces), "none", args.seed
    )
    examples = [render(e, letters) for e in events]
    texts = ["\n".join(lines) for lines in examples]
    results: dict[str, Any] = {
        "events": args.events,
        "arguments": arguments,
        "mean_text_chars": round(sum(map(len, texts)) / len(texts)),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),  # > cpus - 1: no core for the child
        "start": {m: start_cost(m, args.repeats) for m in ("spawn", "forkserver")},
        "round_trip_us": round_trip_us(),
        "encode": encoding_cost(texts[: args.batch]),
    }
    local = best(args.repeats, lambda: learn_in_process(arguments, examples))
    learn = {"in_process": local}
    for batch in args.batches:
        got = best(args.repeats, functools.partial(learn_in_worker, arguments, examples, batch))
        got["same_model"] = got["model"] == local["model"]
        learn[f"worker_{batch}"] = got
    results["learn"] = learn
    results["render_learn"] = {
        "in_process": best(
            args.repeats, lambda: render_and_learn(arguments, events, letters, None)
        ),
        f"worker_{args.batch}": best(
            args.repeats, lambda: render_and_learn(arguments, events, letters, args.batch)
        ),
    }
    for table in (results["learn"], results["render_learn"]):
        for row in table.values():
            row.pop("model")
    return results


def _learner_config(path: Path) -> LearnerConfig:
    return load_config(path, environ={}).learner if path.exists() else LearnerConfig()


def report(results: dict[str, Any]) -> str:
    out = [
        f"{results['events']} events, {results['mean_text_chars']} characters each; "
        f"VW {results['arguments']}; {results['cpus']} cpus, load average "
        f"{results['load_average_1m']} at the start",
        "start (start() + first round trip): "
        + ", ".join(
            f"{m}: start() {s['start_call_s']}s, ready {s['first_trip_first_s']}s "
            f"(best {s['first_trip_best_s']}s)"
            for m, s in results["start"].items()
        ),
        f"round trip to an idle child: {results['round_trip_us']} us",
        "encode one batch: " + ", ".join(f"{k}={v}" for k, v in results["encode"].items()),
        "",
        f"{'learn':<22}{'wall s':>8}{'eps':>9}{'parent us/ex':>14}{'child us/ex':>13}  same",
    ]
    for section in ("learn", "render_learn"):
        if section == "render_learn":
            out += ["", f"{'render + learn':<22}"]
        for name, row in results[section].items():
            child = row["child_cpu_us_per_example"]
            out.append(
                f"{name:<22}{row['wall_s']:>8.3f}{row['eps']:>9}"
                f"{row['parent_cpu_us_per_example']:>14.2f}"
                f"{'' if child is None else f'{child:.2f}':>13}  {row.get('same_model', '')}"
            )
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--events", type=int, default=30_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=512, help="batch size of the render+learn run")
    p.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")],
                   default=list(BATCHES), help="batch sizes of the learn runs, comma-separated")  # fmt: skip
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    p.add_argument("--json", action="store_true", help="print every number as JSON")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    if args.json:
        sys.stdout.write(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
