"""The live value of the deployed policy: hand-computed estimates, interval coverage where the
truth is known, and the trip from the consumer into a signed snapshot manifest."""

from __future__ import annotations

import bisect
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from consumer_fixtures import BOUNDED, MAX_POLL_RECORDS, Stream, make_stream

from bandit.config import Config
from bandit.errors import CheckpointError, SnapshotSignatureError
from bandit.events import Impression, OutcomeLabel
from bandit.join import JoinedEvent
from bandit.live_value import IPS, ON_POLICY, LiveValue
from bandit.ports import Record
from bandit.snapshots import LATEST, MANIFEST, SnapshotStore
from bandit.state import LearnerState
from streams.consumer import RunOptions, StreamLearner
from streams.memory import ManualClock, MemorySource

Z95 = 1.959963984540054
NONE = "none"


def joined(
    actions: tuple[str, ...],
    chosen: str,
    probability: float,
    reward: float,
    pmf: tuple[float, ...] | None = None,
    ts: float = 0.0,
) -> JoinedEvent:
    impression = Impression(
        event_id=f"e{ts}", ts=ts, trigger="t", learner_id="u", context={},
        action_ids=actions, action_features=tuple({} for _ in actions),
        chosen_index=actions.index(chosen), probability=probability, policy_version="v", pmf=pmf,
    )  # fmt: skip
    return JoinedEvent(impression, OutcomeLabel.IGNORED, None, reward, defaulted=False)


def fed(events: list[JoinedEvent], window: int = 5000) -> LiveValue:
    live = LiveValue(window=window, none_action=NONE)
    for event in events:
        live.add(event)
    return live


# ---- closed form --------------------------------------------------------------------------

HAND_MADE = [
    joined(("a", "b", NONE), "a", 0.5, 1.0, ts=1.0),
    joined(("a", "b", NONE), NONE, 0.25, 0.2, ts=2.0),
    joined(("a", "b"), "b", 0.5, -1.0, ts=3.0),
    joined(("a", NONE), "a", 0.8, 0.0, ts=4.0),
]


def test_deployed_value_is_the_mean_logged_reward_with_a_t_free_normal_interval() -> None:
    deployed = fed(HAND_MADE).estimates()["deployed"]

    # rewards 1, 0.2, -1, 0: mean 0.05, sample variance 2.03 / 3
    half = Z95 * math.sqrt(2.03 / 3 / 4)
    assert deployed["estimator"] == ON_POLICY
    assert deployed["n"] == 4
    assert deployed["value"] == pytest.approx(0.05)
    assert deployed["low"] == pytest.approx(0.05 - half)
    assert deployed["high"] == pytest.approx(0.05 + half)


def test_send_nothing_is_the_ips_value_over_the_events_that_offered_it() -> None:
    nothing = fed(HAND_MADE).estimates()["send_nothing"]

    # offered in events 1, 2, 4; terms 0, 0.2 / 0.25 = 0.8, 0; SNIPS: 0.8 / (1 / 0.25)
    half = Z95 * math.sqrt((0.8**2 - 3 * (0.8 / 3) ** 2) / 2 / 3)
    assert nothing["estimator"] == IPS
    assert nothing["action"] == NONE
    assert (nothing["n"], nothing["n_chosen"]) == (3, 1)
    assert nothing["value"] == pytest.approx(0.8 / 3)
    assert nothing["low"] == pytest.approx(0.8 / 3 - half)
    assert nothing["high"] == pytest.approx(0.8 / 3 + half)
    assert nothing["snips"] == pytest.approx(0.2)


def test_each_message_gets_its_ips_value_and_the_best_one_is_picked() -> None:
    estimates = fed(HAND_MADE).estimates()

    by_message = estimates["by_message"]
    # a: offered 4 times, terms 1 / 0.5 = 2, 0, 0, 0 / 0.8 = 0; b: offered 3 times, -1 / 0.5
    assert by_message["a"]["value"] == pytest.approx(0.5)
    assert (by_message["a"]["n"], by_message["a"]["n_chosen"]) == (4, 2)
    assert by_message["b"]["value"] == pytest.approx(-2.0 / 3)
    assert (by_message["b"]["n"], by_message["b"]["n_chosen"]) == (3, 1)
    assert by_message[NONE]["value"] == pytest.approx(0.8 / 3)
    best = estimates["best_message"]
    assert (best["estimator"], best["action"]) == (IPS, "a")
    assert best["value"] == pytest.approx(0.5)
    assert (best["low"], best["high"]) == (by_message["a"]["low"], by_message["a"]["high"])
    assert (estimates["n"], estimates["from_ts"], estimates["to_ts"]) == (4, 1.0, 4.0)


def test_the_none_action_is_never_the_best_message() -> None:
    live = fed([joined(("a", NONE), NONE, 0.5, 1.0), joined(("a", NONE), "a", 0.5, -1.0)])

    assert live.estimates()["best_message"]["action"] == "a"


def test_a_message_held_back_by_the_logged_pmf_was_not_offered_there() -> None:
    events = [
        joined(("a", "b", NONE), "a", 0.5, 1.0, pmf=(0.5, 0.0, 0.5)),
        joined(("a", "b", NONE), "b", 0.5, 1.0, pmf=(0.25, 0.5, 0.25)),
    ]

    by_message = fed(events).estimates()["by_message"]

    assert by_message["b"]["n"] == 1  # only the second event offered it
    assert by_message["b"]["value"] == pytest.approx(2.0)
    assert by_message["a"]["n"] == 2


def test_only_the_last_window_events_count() -> None:
    events = [joined(("a", NONE), "a", 0.5, r, ts=float(i)) for i, r in enumerate([9.0, 1.0, 3.0])]

    estimates = fed(events, window=2).estimates()

    assert estimates["n"] == 2
    assert estimates["deployed"]["value"] == pytest.approx(2.0)
    assert estimates["from_ts"] == 1.0


def test_one_event_gives_values_without_intervals_and_none_gives_no_estimates() -> None:
    one = fed([joined(("a", NONE), "a", 0.5, 1.0)]).estimates()
    empty = fed([]).estimates()

    assert one["deployed"] == {
        "estimator": ON_POLICY, "value": 1.0, "low": None, "high": None, "n": 1,
    }  # fmt: skip
    assert one["best_message"]["low"] is None
    assert one["send_nothing"]["snips"] is None  # never chosen: SNIPS has no denominator
    assert empty["n"] == 0
    assert empty["deployed"] is empty["send_nothing"] is empty["best_message"] is None
    assert empty["by_message"] == {}


def test_without_the_none_action_among_candidates_there_is_no_send_nothing_estimate() -> None:
    assert fed([joined(("a", "b"), "a", 0.5, 1.0)]).estimates()["send_nothing"] is None


def test_estimates_are_json_and_survive_a_state_round_trip() -> None:
    live = fed(HAND_MADE, window=3)

    restored = LiveValue.from_state(orjson.loads(orjson.dumps(live.state())), 3, 0.95, NONE)

    assert restored.estimates() == orjson.loads(orjson.dumps(live.estimates()))
    assert len(restored) == 3


def test_a_state_saved_before_offered_sets_were_numbered_still_restores() -> None:
    live = fed(HAND_MADE, window=3)
    state = live.state()
    sets = state.pop("offered")
    state["events"] = [[ts, sets[k], *rest] for ts, k, *rest in state["events"]]  # old format

    restored = LiveValue.from_state(state, 3, 0.95, NONE)

    assert restored.estimates() == live.estimates()


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"actions": ["a"], "events": [[0.0, [0, 1], 0, 0.5, 1.0]]}, "index out of range"),
        ({"actions": ["a"], "events": [[0.0, [0], 0, 0.5]]}, "not enough values"),
        ({"actions": ["a"], "events": [["x", [0], 0, 0.5, 1.0]]}, "could not convert"),
        ({"actions": ["a"], "offered": [[0]], "events": [[0.0, 1, 0, 0.5, 1.0]]}, "out of range"),
    ],
)
def test_a_saved_state_that_does_not_parse_is_refused(state: dict[str, Any], message: str) -> None:
    with pytest.raises(CheckpointError, match=f"saved live value does not parse.*{message}"):
        LiveValue.from_state(state)


@pytest.mark.parametrize(
    ("window", "confidence", "message"),
    [
        (0, 0.95, "window must be at least 1 event, got 0"),
        (10, 1.0, r"confidence must be in \(0, 1\), got 1.0"),
        (10, 0.0, r"confidence must be in \(0, 1\), got 0.0"),
    ],
)
def test_invalid_parameters_are_refused(window: int, confidence: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LiveValue(window, confidence)


# ---- coverage where the truth is known ------------------------------------------------------


@dataclass(frozen=True)
class TinyWorld:
    """Triggers with their frequency, candidates and per-candidate (P(+1), P(-1)) rewards; the
    logging policy gives `lead` to the first candidate and splits the rest evenly
    (`lead=None`: uniform)."""

    lead: float | None
    triggers: tuple[tuple[float, dict[str, tuple[float, float]]], ...] = (
        (0.5, {"a": (0.30, 0.10), "b": (0.20, 0.25), "c": (0.35, 0.05), NONE: (0.10, 0.02)}),
        (0.3, {"c": (0.40, 0.10), "a": (0.10, 0.30), NONE: (0.12, 0.04)}),
        (0.2, {"b": (0.35, 0.05), "c": (0.30, 0.05)}),
    )  # c is best everywhere: its true value, 0.29, beats a (0.05) and b (0.07) clearly

    def pmf(self, k: int) -> np.ndarray:
        if self.lead is None:
            return np.full(k, 1.0 / k)
        return np.array([self.lead, *([(1.0 - self.lead) / (k - 1)] * (k - 1))])

    def truth(self) -> dict[str, float]:
        """deployed, and the value of always choosing each action where it is offered."""
        deployed = 0.0
        offered: dict[str, list[tuple[float, float]]] = {}
        for frequency, rewards in self.triggers:
            means = [h - n for h, n in rewards.values()]
            deployed += frequency * float(np.dot(self.pmf(len(means)), means))
            for action, mean in zip(rewards, means, strict=True):
                offered.setdefault(action, []).append((frequency, mean))
        out = {"deployed": deployed}
        for action, pairs in offered.items():
            out[action] = sum(f * m for f, m in pairs) / sum(f for f, _ in pairs)
        return out

    def events(self, n: int, seed: int) -> list[JoinedEvent]:
        rng = np.random.default_rng(seed)
        frequencies = [f for f, _ in self.triggers]
        triggers = rng.choice(len(self.triggers), n, p=frequencies)
        u_action, u_reward = rng.random(n), rng.random(n)
        tables = []  # per trigger: cumulative pmf, and per action its impression and rewards
        for _, rewards in self.triggers:
            actions, pmf = tuple(rewards), self.pmf(len(rewards)).tolist()
            chosen = [
                (joined(actions, a, p, 0.0).impression, rewards[a])
                for a, p in zip(actions, pmf, strict=True)
            ]
            tables.append((np.cumsum(pmf)[:-1].tolist(), chosen))
        out = []
        for i in range(n):
            edges, chosen = tables[triggers[i]]
            impression, (helpful, harmful) = chosen[bisect.bisect_right(edges, u_action[i])]
            u = u_reward[i]
            reward = 1.0 if u < helpful else -1.0 if u < helpful + harmful else 0.0
            out.append(JoinedEvent(impression, OutcomeLabel.IGNORED, None, reward, False))
        return out


def _covers(estimate: dict[str, Any], truth: float) -> bool:
    return bool(estimate["low"] <= truth <= estimate["high"])


@pytest.mark.parametrize("lead", [None, 0.6], ids=["uniform-logging", "skewed-logging"])
def test_95_percent_intervals_cover_the_true_values_about_95_percent_of_the_time(
    lead: float | None,
) -> None:
    world = TinyWorld(lead)
    truth = world.truth()
    runs = 200
    covered = dict.fromkeys(["deployed", "send_nothing", "a", "b", "c"], 0)
    for seed in range(runs):
        estimates = fed(world.events(800, seed)).estimates()
        covered["deployed"] += _covers(estimates["deployed"], truth["deployed"])
        covered["send_nothing"] += _covers(estimates["send_nothing"], truth[NONE])
        for action in ("a", "b", "c"):
            covered[action] += _covers(estimates["by_message"][action], truth[action])
    # 200 runs: the coverage of a correct 95% interval is 0.95 +- 0.015 (one sd); the bounds
    # sit more than 2.5 sd away, and also catch intervals too wide to be informative.
    for name, count in covered.items():
        assert 0.90 <= count / runs <= 0.99, (name, count / runs)


def test_with_a_clear_winner_the_best_message_is_the_truly_best_one() -> None:
    world = TinyWorld(lead=0.6)
    truth = world.truth()
    messages = {a: v for a, v in truth.items() if a not in ("deployed", NONE)}

    best = fed(world.events(5000, seed=7)).estimates()["best_message"]

    assert best["action"] == max(messages, key=messages.__getitem__)


# ---- from the consumer into the snapshot manifest ----------------------------------------


def _latest_live_value(stream: Stream) -> dict[str, Any]:
    manifest = SnapshotStore(stream.config.snapshots.directory).load_latest().manifest
    assert manifest.live_value is not None
    return manifest.live_value


def test_the_consumer_ships_the_live_value_of_every_learned_event_with_its_snapshots(
    tmp_path: Path,
) -> None:
    stream = make_stream(tmp_path)

    stats = stream.consumer().run(BOUNDED)

    live = _latest_live_value(stream)
    assert live["n"] == stats.learned == stream.truth.impressions
    assert live["deployed"]["value"] == pytest.approx(stats.reward_sum / stats.learned)
    assert live["send_nothing"]["action"] == NONE
    assert set(live["by_message"]) >= {NONE, live["best_message"]["action"]}


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a.b": leaf} for nested dicts (pytest.approx compares flat ones only)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class _StoppingSource(MemorySource):
    """Asks its consumer to stop (as SIGTERM does) during its `stop_at`-th poll."""

    def __init__(self, stream: Stream, clock: ManualClock, stop_at: int) -> None:
        super().__init__(
            stream.broker, stream.topics, max_poll_records=MAX_POLL_RECORDS, clock=clock
        )
        self.stop_at = stop_at
        self.polls = 0
        self.learner: StreamLearner | None = None

    def poll(self, timeout_ms: int) -> list[Record]:
        self.polls += 1
        if self.polls == self.stop_at and self.learner is not None:
            self.learner.request_stop()
        return super().poll(timeout_ms)


def test_a_restarted_consumer_ships_the_same_live_value_as_an_uninterrupted_one(
    tmp_path: Path,
) -> None:
    whole = make_stream(tmp_path / "whole")
    whole.consumer().run(BOUNDED)
    stream = make_stream(tmp_path / "restarted")
    clock = ManualClock()
    source = _StoppingSource(stream, clock, stop_at=9)
    first = stream.consumer(clock, source=source)
    source.learner = first
    first.run(RunOptions())
    assert 0 < len(first.live_value) < stream.truth.impressions

    stream.consumer().run(BOUNDED)

    assert _flat(_latest_live_value(stream)) == pytest.approx(_flat(_latest_live_value(whole)))


def test_the_live_value_is_signed_with_the_manifest(tmp_path: Path) -> None:
    key = b"k" * 32
    catalogue = {"actions": {"hint": {}, NONE: {}}, "triggers": {"t": ["hint", NONE]}}
    estimates = fed(HAND_MADE).estimates()
    store = SnapshotStore(tmp_path, key=key)
    name = store.publish(Config(), LearnerState(catalogue=catalogue), {}, 0, live_value=estimates)
    assert store.load_latest().manifest.live_value == orjson.loads(orjson.dumps(estimates))

    manifest = orjson.loads((tmp_path / name / MANIFEST).read_bytes())
    manifest["live_value"]["deployed"]["value"] = 0.99  # a flattering edit, hashes recomputed
    data = orjson.dumps(manifest)
    (tmp_path / name / MANIFEST).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    (tmp_path / LATEST).write_bytes(orjson.dumps({"name": name, "manifest_sha256": digest}))

    assert SnapshotStore(tmp_path).load_latest().manifest.live_value is not None
    with pytest.raises(SnapshotSignatureError, match="signature does not match"):
        SnapshotStore(tmp_path, key=key).load_latest()
