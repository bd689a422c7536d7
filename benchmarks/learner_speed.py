"""Learner speed benchmark: `OnlineLearner` alone, in this process, on simulated joined events.

The simulator of `--config` logs `--events` impressions and their outcomes; they are decoded
and joined as `nudge replay` does (no broker), then learned by fresh learners with the config's
learner and pruning settings. Rows (the best of `--repeats`, in µs per event and events/s):

  learn          `OnlineLearner.learn(event)`, what the consumer calls
  render         `ExampleRenderer`: context, action lines, labelled text (fresh caches)
  vw             `VowpalPolicy.learn_text` on those texts (VW's extension: parse, learn, finish)
  bookkeeping    catalogue, arm evidence, pruning evaluations, reaction counts
  reference      the straightforward path for the same examples: `vw_text.example_lines` and
                 `Workspace.learn(lines)`, VW's public Python wrapper (render + VW only)

`--chunk N` hands each step the events in fresh copies of N (made just before, not timed): new
strings whose hashes are not computed yet, as a consumer's freshly decoded impressions; it
reads 5-20% slower than the default (the events as built, hashed after the first repeat),
partly because copying between chunks also evicts the learner's data from the CPU caches.

Times are wall time on a shared machine: compare rows of one run. Not part of CI. Run as
`python -m benchmarks.learner_speed --events 30000`.
"""

from __future__ import annotations

import argparse
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bandit.config import Config, load_config
from bandit.decoding import decode_message
from bandit.envelopes import Envelope, Source
from bandit.example_text import ExampleRenderer
from bandit.join import JoinedEvent, join_events
from bandit.learning import OnlineLearner
from bandit.policies import VowpalPolicy
from bandit.simulation.traffic import simulate_traffic
from bandit.simulation.world import World
from bandit.vw_text import example_lines
from streams.consumer import reaction_cap

ROOT = Path(__file__).resolve().parents[1]


def simulated_events(config: Config, n: int, seed: int) -> list[JoinedEvent]:
    """`n` impressions of the config's simulated world, decoded and joined with outcomes."""
    sim = config.simulator
    run = simulate_traffic(World(seed, sim.learners, sim.courses), sim, config.join, n, seed)
    envelopes = []
    for i, message in enumerate(run.messages):
        decoded = decode_message(message.value, Source(message.kind, 0, i), config.event_rules())
        if isinstance(decoded, Envelope):
            envelopes.append(decoded)
    joined, _ = join_events(envelopes, config.join, config.rewards)
    return joined


def new_learner(config: Config) -> OnlineLearner:
    """A fresh learner with the consumer's settings."""
    return OnlineLearner(
        config.learner, none_action=config.rewards.none_action,
        reaction_cap=reaction_cap(config), pruning=config.pruning,
    )  # fmt: skip


def fresh_chunks(events: Sequence[JoinedEvent], size: int) -> Iterator[list[JoinedEvent]]:
    """The events in chunks of `size`, each a fresh copy (new strings, floats and dicts) made
    just before it is used; `size` 0: the events themselves, in one chunk."""
    if size <= 0:
        yield list(events)
        return
    for start in range(0, len(events), size):
        yield pickle.loads(pickle.dumps(events[start : start + size]))  # noqa: S301 (ours)


Step = Callable[[list[JoinedEvent]], object]


def timed_over_chunks(
    events: Sequence[JoinedEvent],
    chunk: int,
    open_: Callable[[], Step],
    close: Callable[[], object],
) -> float:
    """Seconds `open_()`'s step spends on all the chunks (copying them is not timed)."""
    step = open_()
    seconds = 0.0
    try:
        for part in fresh_chunks(events, chunk):
            started = time.perf_counter()
            step(part)
            seconds += time.perf_counter() - started
    finally:
        close()
    return seconds


def rows(
    config: Config, events: Sequence[JoinedEvent], repeats: int, chunk: int
) -> dict[str, float]:
    """Seconds of each row (see the module docstring) for `events`, the best of `repeats`."""
    letters = new_learner(config).letters
    learners: list[OnlineLearner] = []
    policies: list[VowpalPolicy] = []

    def close() -> None:
        for one in learners:
            one.close()
        for policy in policies:
            policy.finish()
        learners.clear()
        policies.clear()

    def learner() -> OnlineLearner:
        learners.append(new_learner(config))
        return learners[-1]

    def policy() -> VowpalPolicy:
        policies.append(VowpalPolicy(config.learner.vw_arguments()))
        return policies[-1]

    def learn() -> Step:
        learn_one = learner().learn
        return lambda part: [learn_one(event) for event in part]

    def render_step() -> Step:
        renderer = ExampleRenderer(letters)
        return lambda part: [render(renderer, event) for event in part]

    texts: Iterator[str] = iter(())

    def vw() -> Step:
        nonlocal texts
        renderer = ExampleRenderer(letters)
        texts = iter([render(renderer, event) for event in events])  # rendered untimed
        learn_text = policy().learn_text
        return lambda part: [learn_text(next(texts)) for _ in part]

    def bookkeeping() -> Step:
        record = learner()._record  # the learner's own step, on purpose
        return lambda part: [record(event, None) for event in part]

    def reference() -> Step:
        workspace = policy()._workspace()  # VW's public wrapper, on purpose

        def step(part: list[JoinedEvent]) -> None:
            for event in part:
                imp = event.impression
                workspace.learn(
                    example_lines(
                        imp.context, imp.action_ids, imp.action_features, letters,
                        label=(imp.chosen_index, -event.reward, imp.probability),
                    )
                )  # fmt: skip

        return step

    steps = {
        "learn": learn, "render": render_step, "vw": vw,
        "bookkeeping": bookkeeping, "reference": reference,
    }  # fmt: skip
    return {
        name: min(timed_over_chunks(events, chunk, open_, close) for _ in range(repeats))
        for name, open_ in steps.items()
    }


def render(renderer: ExampleRenderer, event: JoinedEvent) -> str:
    imp = event.impression
    return renderer.labelled_text(
        renderer.context_text(imp.context),
        renderer.action_lines(imp.action_ids, imp.action_features),
        imp.chosen_index, -event.reward, imp.probability,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--chunk", type=int, default=0, help="events per fresh copy (0: none)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    events = simulated_events(config, args.events, args.seed)
    print(f"{len(events)} joined events, learner args: {config.learner.vw_arguments()}")
    for name, seconds in rows(config, events, args.repeats, args.chunk).items():
        per = seconds / len(events)
        print(f"  {name:12s} {per * 1e6:7.2f} us/event {1 / per:10,.0f} events/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
