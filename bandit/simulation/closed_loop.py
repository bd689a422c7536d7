"""The closed loop on the simulator: decide with the live snapshot, log to Kafka, learn, reload.

The simulated platform asks a `DecisionPort` what to show at each trigger (the port logs the
impression with the decider's exact probability) and, after the learner's reaction delay,
reports the outcome. A separately running `nudge consume` joins and learns and publishes
snapshots; the decider hot-reloads them. After each round the true expected reward of the
decisions actually made (exact, from the simulator) is reported next to what uniform random
and send-to-all would have earned on the same decisions, so the climb is visible. The port is
the decision library in process (`LibraryPort`) or `nudge serve` over HTTP; the loop is given
how to read the topics' end offsets, so it knows nothing of Kafka or HTTP.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from bandit.config import Config
from bandit.errors import NudgeError
from bandit.events import OutcomeLabel
from bandit.learning import OnlineLearner
from bandit.simulation.decision_port import DecisionPort
from bandit.simulation.world import MESSAGE_FEATURES, Trigger, World
from bandit.snapshots import SnapshotStore, signing_key
from bandit.state import LearnerState

log = logging.getLogger("nudge.loop")
_LABELS = (OutcomeLabel.HELPFUL, OutcomeLabel.NOT_HELPFUL, OutcomeLabel.IGNORED)


@dataclass(frozen=True, slots=True)
class LoopOptions:
    """How long the loop runs and how patiently it waits for the learner."""

    rounds: int = 10
    decisions_per_round: int = 2000
    seed: int = 7
    snapshot_wait_s: float = 60.0
    watch_interval_s: float = 0.25


@dataclass(frozen=True, slots=True)
class RoundReport:
    """The exact value of one round's decisions and of the baselines on the same decisions."""

    round: int
    decisions: int
    policy: str
    learned: int
    deployed: float
    uniform: float
    send_to_all: float
    never_send: float
    oracle: float
    none_mass_where_best: float
    held_back: float  # expected share of decisions that sent nothing
    helpful: float  # expected P(helpful reaction) per decision
    not_helpful: float  # expected P(not-helpful reaction) per decision
    why: dict[str, int] = field(default_factory=dict)
    waited_s: float = 0.0
    caught_up: bool = True

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(slots=True)
class _RoundTally:
    n: int = 0
    deployed: float = 0.0
    uniform: float = 0.0
    send_all: float = 0.0
    never: float = 0.0
    oracle: float = 0.0
    none_best: int = 0
    none_mass: float = 0.0
    held_back: float = 0.0
    helpful: float = 0.0
    not_helpful: float = 0.0
    why: Counter[str] = field(default_factory=Counter)


def initial_snapshot(config: Config, world: World, store: SnapshotStore) -> str:
    """The deployment's untrained state (policy uniform over every candidate; a fresh outcome
    model if the send rule is configured) with the world's catalogue."""
    catalogue = {
        "actions": {a: dict(MESSAGE_FEATURES[a]) for t in world.triggers for a in t.candidates},
        "triggers": {t.trigger_id: list(t.candidates) for t in world.triggers},
    }
    learner = OnlineLearner(config.learner, state=LearnerState(catalogue=catalogue))
    try:
        return store.publish(config, learner.state(), {}, 0)
    finally:
        learner.close()


def ensure_snapshot(config: Config, seed: int) -> str | None:
    """Publish the untrained snapshot of the world of `seed` into the configured directory if
    it has none yet (something must decide the first round); its name, or None."""
    key = signing_key(config.snapshots.signing_key_file)
    store = SnapshotStore(config.snapshots.directory, config.snapshots.keep, key=key)
    if store.latest_pointer() is not None:
        return None
    sim = config.simulator
    name = initial_snapshot(config, World(seed, sim.learners, sim.courses), store)
    log.info("no snapshot yet: starting from the untrained policy %s (uniform)", name)
    return name


EndOffsets = Callable[[], Mapping[str, int]]  # "topic/partition" -> next offset to be written


class ClosedLoop:
    """Runs the simulated platform against a live consumer through Kafka and snapshots.

    `port` decides and logs the impressions and outcomes (a snapshot must exist: see
    `ensure_snapshot`); `end_offsets()` tells, after a round, how far the topics go, so the
    loop can wait until they hold everything it sent (a service may log it a little later)
    and then for a snapshot trained through all of it.
    """

    def __init__(
        self, config: Config, options: LoopOptions, port: DecisionPort, end_offsets: EndOffsets
    ) -> None:
        self.config = config
        self.options = options
        self.port = port
        self.end_offsets = end_offsets
        sim = config.simulator
        self.world = World(options.seed, sim.learners, sim.courses)
        self.rng = np.random.default_rng([options.seed, 5])
        self.t = datetime.fromisoformat(sim.start).timestamp()
        # (arrival time, sequence, event id, trigger, label, value) of outcomes not yet sent
        self._outcomes: list[tuple[float, int, str, str, OutcomeLabel, float]] = []
        self._sequence = 0
        self._sent: Counter[str] = Counter()  # messages sent per topic

    def run(self, report: Callable[[RoundReport], None]) -> list[RoundReport]:
        reports: list[RoundReport] = []
        before = _per_topic(self.end_offsets())
        for r in range(1, self.options.rounds + 1):
            view = self.port.policy()
            tally = self._round()
            self.port.flush()
            waited, caught_up = self._wait_for_learner(before)
            reports.append(self._report(r, tally, view.version, view.examples, waited, caught_up))
            report(reports[-1])
        self._send_outcomes(until=math.inf)
        self.port.flush()
        return reports

    # ---- one round ----------------------------------------------------------------------

    def _round(self) -> _RoundTally:
        cfg, world, rng = self.config, self.world, self.rng
        tally = _RoundTally()
        for _ in range(self.options.decisions_per_round):
            self.t += float(rng.exponential(cfg.simulator.mean_gap_s))
            who = int(rng.integers(world.n_learners))
            trig = world.triggers[int(rng.integers(len(world.triggers)))]
            self._sequence += 1
            event_id = f"loop{self.options.seed}-{self._sequence:09d}"
            self._send_outcomes(until=self.t)  # the reactions that arrived before this trigger
            decision = self.port.decide(
                trig.trigger_id, f"u{who:06d}", world.context(who, trig), trig.candidates,
                event_id, self.t,
            )  # fmt: skip
            self._sent[cfg.kafka.impressions_topic] += 1
            truth = world.expected_rewards(
                who, trig, cfg.rewards, cfg.join, cfg.simulator.median_delay_s
            )
            pmf = np.asarray(decision.pmf)
            none = trig.candidates.index(cfg.rewards.none_action)
            tally.n += 1
            tally.deployed += float(pmf @ truth)
            tally.uniform += float(truth.mean())
            tally.send_all += float(np.delete(truth, none).mean())
            tally.never += float(truth[none])
            tally.oracle += float(truth.max())
            if int(np.argmax(truth)) == none:
                tally.none_best += 1
                tally.none_mass += float(pmf[none])
            tally.held_back += float(pmf[none])
            for a, p in zip(trig.candidates, pmf, strict=True):
                if p > 0.0 and a != cfg.rewards.none_action:
                    ph, pn, _ = world.outcome_probabilities(who, trig, a)
                    tally.helpful += float(p) * ph
                    tally.not_helpful += float(p) * pn
            tally.why[decision.why] += 1
            self._react(who, trig, decision.action, event_id)
        self._send_outcomes(until=self.t)
        return tally

    def _react(self, who: int, trig: Trigger, action: str, event_id: str) -> None:
        """Draw the learner's reaction; queue its outcome event at the time it would arrive."""
        cfg = self.config
        if action == cfg.rewards.none_action:
            return
        probs = self.world.outcome_probabilities(who, trig, action)
        label = _LABELS[int(self.rng.choice(3, p=probs))]
        if label == OutcomeLabel.IGNORED:
            return  # no reaction: nothing is sent, the join applies the default outcome
        delay = float(self.rng.lognormal(math.log(cfg.simulator.median_delay_s), 1.0))
        delay = min(delay, 1.5 * cfg.join.window_s)
        value = float(self.rng.poisson(3.0 if label == OutcomeLabel.HELPFUL else 1.0))
        heapq.heappush(
            self._outcomes,
            (self.t + delay, self._sequence, event_id, trig.trigger_id, label, value),
        )

    def _send_outcomes(self, until: float) -> None:
        while self._outcomes and self._outcomes[0][0] <= until:
            at, _, event_id, trigger, label, value = heapq.heappop(self._outcomes)
            self.port.report_outcome(event_id, trigger, label, value, at)
            self._sent[self.config.kafka.outcomes_topic] += 1

    def _wait_for_learner(self, before: Mapping[str, int]) -> tuple[float, bool]:
        """Wait until the topics hold everything sent so far (`before`: their message counts
        when the loop started), then until the port decides with a snapshot trained through
        all of it."""
        started = time.monotonic()
        while True:
            ends = self.end_offsets()
            held = _per_topic(ends)
            if all(held.get(t, 0) >= before.get(t, 0) + n for t, n in self._sent.items()):
                break
            if self._waited_too_long(started, "the topics to hold the round"):
                return time.monotonic() - started, False
            time.sleep(0.1)
        while True:
            trained = self.port.policy().trained_through
            if all(trained.get(k, 0) >= end for k, end in ends.items()):
                return time.monotonic() - started, True
            if self._waited_too_long(started, "a snapshot covering the round"):
                return time.monotonic() - started, False
            time.sleep(0.05)

    def _waited_too_long(self, started: float, what: str) -> bool:
        if time.monotonic() - started <= self.options.snapshot_wait_s:
            return False
        log.warning(
            "no sign of %s after %.0fs (is `nudge consume` running?); going on with %s",
            what, self.options.snapshot_wait_s, self.port.policy().version,
        )  # fmt: skip
        return True

    @staticmethod
    def _report(
        r: int, t: _RoundTally, policy: str, learned: int, waited: float, caught_up: bool
    ) -> RoundReport:
        if t.n == 0:
            raise NudgeError("a round needs at least one decision")
        return RoundReport(
            round=r,
            decisions=t.n,
            policy=policy,
            learned=learned,
            deployed=t.deployed / t.n,
            uniform=t.uniform / t.n,
            send_to_all=t.send_all / t.n,
            never_send=t.never / t.n,
            oracle=t.oracle / t.n,
            none_mass_where_best=t.none_mass / t.none_best if t.none_best else 0.0,
            held_back=t.held_back / t.n,
            helpful=t.helpful / t.n,
            not_helpful=t.not_helpful / t.n,
            why=dict(t.why),
            waited_s=round(waited, 2),
            caught_up=caught_up,
        )


def _per_topic(offsets: Mapping[str, int]) -> dict[str, int]:
    """End offsets summed over each topic's partitions: how many messages it holds (from 0)."""
    totals: Counter[str] = Counter()
    for key, end in offsets.items():
        totals[key.rpartition("/")[0]] += end
    return dict(totals)
