"""Pruning through the real broker: the consumer judges every message at every trigger, the
state survives a restart, the snapshot carries it and a decider honours it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from bandit.decisions import Decider
from bandit.simulation.world import World
from bandit.snapshots import SnapshotStore
from streams.checkpoints import CheckpointStore
from tests.integration.conftest import Deployment

pytestmark = pytest.mark.kafka

SEED = 7


def _arms_and_changes(dep: Deployment) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    done = dep.nudge("arms", "--json")
    assert done.returncode == 0, done.stderr
    body = orjson.loads(done.stdout)
    return list(body["arms"]), list(body["changes"])


def _arms(dep: Deployment) -> list[dict[str, Any]]:
    return _arms_and_changes(dep)[0]


def test_pruning_state_is_checkpointed_restored_exported_and_honoured(
    deployment: Callable[..., Deployment],
) -> None:
    dep = deployment(pruning={"evaluate_every_events": 500})
    dep.simulate("--events", "20000", "--seed", str(SEED))
    done = dep.nudge("consume", "--until-idle", "3")
    assert done.returncode == 0, done.stderr
    rule = dep.config.pruning

    arms = _arms(dep)
    pruned = {(r["trigger"], r["action"]) for r in arms if r["status"] == "pruned"}
    assert pruned, "20,000 uniform impressions show several messages to be bad somewhere"
    for r in arms:
        if r["status"] == "pruned":
            assert r["shown"] >= rule.min_impressions and r["high"] < rule.threshold, r
        elif (
            r["status"] == "active" and r["high"] is not None and r["shown"] >= rule.min_impressions
        ):
            assert r["high"] >= rule.threshold, r
    # The world's worst pairs (truly bad by design) are among them.
    world = World(SEED, dep.config.simulator.learners, dep.config.simulator.courses)
    assert {(t, m) for m, t in world.bad_pairs} & pruned

    # A restart with no new input keeps the evidence and the statuses exactly.
    done = dep.nudge("consume", "--until-idle", "2")
    assert done.returncode == 0, done.stderr
    assert _arms(dep) == arms

    # The snapshot carries the held set; the decider holds those back except for re-tests.
    snapshot = SnapshotStore(dep.config.snapshots.directory).load_latest()
    held = {(t, a) for t, actions in snapshot.manifest.pruning["held"].items() for a in actions}
    assert held == pruned
    ckpt = CheckpointStore(dep.config.checkpoint.directory).latest()
    assert ckpt is not None and snapshot.state.pruning == ckpt.learner.pruning
    trigger, action = sorted(pruned)[0]
    why: Counter[str] = Counter()
    with Decider(dep.config.snapshots.directory, seed=1) as decider:
        for i in range(3000):
            decision = decider.decide(trigger, f"u{i:06d}", {}, reactions=10)
            if decision.action == action:
                why[decision.why] += 1
                pruned_at = [a for t, a in pruned if t == trigger]
                assert decision.probability == pytest.approx(rule.retest_share / len(pruned_at))
    assert set(why) == {"retest"}, why
