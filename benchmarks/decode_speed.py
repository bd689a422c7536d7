"""Decode speed: microseconds per message for `decode_event` and its pydantic reference.

Times `bandit.events.decode_event` (fast path, pydantic on refusal) and
`decode_event_reference` (pydantic alone) on simulated traffic (`bandit.simulation`, the
default config: ~900-byte impressions with 3-5 actions and 4 context namespaces, and their
outcomes), plus the shared first step (size, orjson, duplicate-key check) on its own. Each
row is the best of `--repeats` passes over the messages (the least disturbed by other load).
No pass/fail exit status.

Run as `python -m benchmarks.decode_speed`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

from bandit.config import Config
from bandit.events import EventRules, _parsed, decode_event, decode_event_reference
from bandit.simulation.traffic import simulate_traffic
from bandit.simulation.world import World


def best_us_per_message(
    decode: Callable[[bytes, EventRules], object],
    messages: Sequence[bytes],
    rules: EventRules,
    repeats: int,
) -> float:
    """The fastest of `repeats` passes over `messages`, in microseconds per message."""
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time_ns()
        for raw in messages:
            decode(raw, rules)
        best = min(best, (time.thread_time_ns() - start) / len(messages) / 1_000)
    return best


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impressions", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    cfg = Config()
    sim, rules = cfg.simulator, cfg.event_rules()
    run = simulate_traffic(
        World(args.seed, sim.learners, sim.courses), sim, cfg.join, args.impressions, args.seed
    )
    by_kind = {
        kind: [m.value for m in run.messages if m.kind == kind]
        for kind in ("impression", "outcome")
    }
    for kind, messages in by_kind.items():
        size = sum(map(len, messages)) / len(messages)
        print(f"{kind}s: {len(messages)}, {size:.0f} bytes on average")
    print(f"{'us per message':28s} {'impression':>10s} {'outcome':>8s}")
    for name, decode in (
        ("decode_event", decode_event),
        ("decode_event_reference", decode_event_reference),
        ("  of which parse + key check", _parsed),
    ):
        cells = [best_us_per_message(decode, m, rules, args.repeats) for m in by_kind.values()]
        print(f"{name:28s} {cells[0]:10.2f} {cells[1]:8.2f}")


if __name__ == "__main__":
    main()
