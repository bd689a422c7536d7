"""The official Azure Personalizer client (v1.0), unchanged, against `nudge serve` and a real
broker: Rank and Reward for 2,000 simulated decisions are learned exactly, with the rewards sent."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest
from azure.cognitiveservices.personalizer import PersonalizerClient
from azure.cognitiveservices.personalizer.models import (
    ErrorResponseException,
    RankableAction,
    RankRequest,
)
from msrest.authentication import CognitiveServicesCredentials

from bandit.simulation.world import MESSAGE_FEATURES, NONE_ACTION, World
from streams.kafka_io import read_topic
from streams.stats import Ledger
from tests.integration.conftest import Deployment
from tests.integration.serving import API_KEY, serving, stats, wait_drained

pytestmark = pytest.mark.kafka

DECISIONS = 2000  # ranked and rewarded at once, all learned
DEFERRED = 100  # besides: every 21st rank defers activation; 60 are activated, 40 never
SEED = 11


def _context_features(world: World, who: int, trig: object) -> list[dict[str, object]]:
    """Personalizer style: a list of objects; scalars name the trigger and the learner, the
    simulator's namespaces become top-level objects."""
    ctx = world.context(who, trig)  # type: ignore[arg-type]
    return [{"trigger": trig.trigger_id, "learner_id": f"u{who:06d}"}] + [  # type: ignore[attr-defined]
        {ns: feats} for ns, feats in ctx.items()
    ]


def test_the_azure_personalizer_client_ranks_and_rewards_and_the_consumer_learns_exactly_that(
    deployment: Callable[..., Deployment], tmp_path: Path
) -> None:
    dep = deployment(serve={"spool_directory": str(tmp_path / "spool")})
    first = dep.nudge("consume", "--until-idle", "1")  # topics and a first (untrained) snapshot
    assert first.returncode == 0, first.stderr[-2000:]
    world = World(SEED, 300, dep.config.simulator.courses)
    rng = np.random.default_rng(SEED)
    learned_ids: list[str] = []
    labels: Counter[str] = Counter()
    reward_sum = 0.0
    logged_probability: dict[str, float] = {}
    with serving(dep) as base:
        client = PersonalizerClient(base, CognitiveServicesCredentials(API_KEY))
        wrong = PersonalizerClient(base, CognitiveServicesCredentials("not-the-key-0123456789"))
        with pytest.raises(ErrorResponseException) as denied:
            wrong.rank(RankRequest(actions=[RankableAction(id="hint", features=[{}])],
                                   context_features=[{"trigger": "x"}]))  # fmt: skip
        assert denied.value.response.status_code == 401
        deferred: list[tuple[str, float | None]] = []
        for n in range(DECISIONS + DEFERRED):
            who = int(rng.integers(world.n_learners))
            trig = world.triggers[int(rng.integers(len(world.triggers)))]
            actions = [
                RankableAction(id=a, features=[dict(MESSAGE_FEATURES[a])]) for a in trig.candidates
            ]
            excluded = []
            if n % 5 == 0:  # exclude one or two messages (never all)
                messages = [a for a in trig.candidates if a != NONE_ACTION]
                excluded = list(rng.choice(messages, size=min(2, len(messages) - 1), replace=False))
            defer = n % 21 == 20
            event_id = f"az-{n:05d}"
            response = client.rank(RankRequest(
                actions=actions, context_features=_context_features(world, who, trig),
                excluded_actions=excluded or None, event_id=event_id, defer_activation=defer,
            ))  # fmt: skip
            assert response.event_id == event_id
            chosen = response.reward_action_id
            assert chosen not in excluded
            ranking = {r.id: r.probability for r in response.ranking}
            assert set(ranking) == set(trig.candidates)
            assert all(ranking[a] == 0.0 for a in excluded)
            assert response.ranking[0].id == chosen and ranking[chosen] > 0
            assert abs(sum(ranking.values()) - 1.0) < 1e-6
            value = None
            if chosen != NONE_ACTION:
                probs = world.outcome_probabilities(who, trig, chosen)
                label = ("helpful", "not_helpful", "ignored")[int(rng.choice(3, p=probs))]
                value = {"helpful": 1.0, "not_helpful": -1.0, "ignored": None}[label]
            if defer:
                deferred.append((event_id, value))
                if value is not None and len(deferred) % 2 == 0:
                    client.events.reward(event_id, value)  # waits for activation
                continue
            if value is not None:
                client.events.reward(event_id, value)
            learned_ids.append(event_id)
            logged_probability[event_id] = ranking[chosen]
            labels[_label(value, chosen)] += 1
            reward_sum += value or 0.0
        for i, (event_id, value) in enumerate(deferred):
            if i % 5 < 3:  # 60 of 100 are shown: activated, then rewarded if not already
                client.events.activate(event_id)
                if value is not None and (i + 1) % 2 != 0:
                    client.events.reward(event_id, value)
                learned_ids.append(event_id)
                labels[_label(value, "")] += 1
                reward_sum += value or 0.0
            elif value is not None and (i + 1) % 2 != 0:
                client.events.reward(event_id, value)  # never activated: never learned
        wait_drained(base)

    learned = stats(dep)
    assert learned["ledger"] == _ledger(learned_ids), learned
    assert len(deferred) == DEFERRED
    assert learned["learned"] == len(learned_ids) == DECISIONS + 60
    assert learned["outcomes_learned"] == {k: v for k, v in sorted(labels.items()) if v}
    assert learned["reward_sum"] == pytest.approx(reward_sum)
    assert learned["dead_lettered"] == 0, learned["dead_letters_by_reason"]
    # The logged probability is the one the ranking gave the chosen action.
    for key, value, _ in read_topic(dep.config.kafka, dep.config.kafka.impressions_topic):
        impression = orjson.loads(value)
        assert key == impression["event_id"].encode()
        if impression["event_id"] in logged_probability:
            assert impression["probability"] == logged_probability[impression["event_id"]]


def _label(value: float | None, chosen: str) -> str:
    if chosen == NONE_ACTION or value is None:
        return "ignored"
    return "helpful" if value > 0 else "not_helpful"


def _ledger(ids: list[str]) -> dict[str, object]:
    ledger = Ledger.of(ids)
    return {"count": ledger.count, "digest": f"{ledger.digest:016x}"}
