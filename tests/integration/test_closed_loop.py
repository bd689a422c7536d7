"""The whole loop through a real broker: decide from snapshots, log, learn, publish, reload."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable

import numpy as np
import orjson
import pytest

from bandit.decisions import Decider
from bandit.simulation.world import World
from bandit.snapshots import SnapshotStore
from streams.checkpoints import CheckpointStore
from tests.integration.closed_loop_checks import (
    DECISIONS,
    ROUNDS,
    SEED,
    check_final_policy,
    check_rounds,
)
from tests.integration.conftest import Deployment

pytestmark = pytest.mark.kafka


def test_closed_loop_learns_to_beat_random_and_send_to_all_and_holds_back_where_nothing_helps(
    deployment: Callable[..., Deployment],
) -> None:
    dep = deployment(simulator={"learners": 1000})
    consumer = dep.popen("consume")
    report = dep.workdir / "rounds.json"
    try:
        done = dep.nudge(
            "loop", "--rounds", str(ROUNDS), "--decisions", str(DECISIONS), "--seed", str(SEED),
            "--report-json", str(report), "--wait", "90", timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    finally:
        consumer.send_signal(signal.SIGTERM)
        _, err = consumer.communicate(timeout=120)
    assert consumer.returncode == 0, err
    check_rounds(orjson.loads(report.read_bytes()))
    check_final_policy(dep)


def test_export_writes_a_snapshot_whose_decider_scores_like_the_checkpoint(
    deployment: Callable[..., Deployment],
) -> None:
    from bandit.learning import OnlineLearner
    from bandit.simulation.world import MESSAGE_FEATURES

    dep = deployment()
    dep.simulate("--events", "3000", "--seed", "5")
    done = dep.nudge("consume", "--until-idle", "3")
    assert done.returncode == 0, done.stderr
    out = dep.workdir / "exported"
    done = dep.nudge("export", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "snap-" in done.stdout

    ckpt = CheckpointStore(dep.config.checkpoint.directory).latest()
    assert ckpt is not None
    learner = OnlineLearner(dep.config.learner, state=ckpt.learner)
    world = World(5, dep.config.simulator.learners, dep.config.simulator.courses)
    with Decider(out, seed=1) as decider:
        for who, trig in [(1, world.triggers[0]), (42, world.triggers[5]), (7, world.triggers[13])]:
            ctx = world.context(who, trig)
            feats = tuple(MESSAGE_FEATURES[a] for a in trig.candidates)
            expected = learner.predict(trig.trigger_id, ctx, trig.candidates, feats)
            got = decider.policy.policy_pmf(trig.trigger_id, ctx, trig.candidates, feats)
            np.testing.assert_array_equal(got, expected)
    learner.close()


def test_snapshots_reach_a_decision_service_through_the_compacted_topic(
    deployment: Callable[..., Deployment],
) -> None:
    dep = deployment(snapshots={"kafka_topic": f"{uuid.uuid4().hex[:8]}.snapshots"})
    dep.simulate("--events", "2000", "--seed", "3")
    done = dep.nudge("consume", "--until-idle", "3")
    assert done.returncode == 0, done.stderr
    mirror = dep.workdir / "mirror"
    done = dep.nudge("follow-snapshots", "--out", str(mirror), "--until-idle", "3")
    assert done.returncode == 0, done.stderr

    published = SnapshotStore(dep.config.snapshots.directory).load_latest()
    mirrored = SnapshotStore(mirror).load_latest()
    assert mirrored.manifest.policy_id == published.manifest.policy_id
    assert mirrored.state.models == published.state.models
    assert mirrored.manifest.files == published.manifest.files
    with Decider(mirror, seed=1) as decider:
        assert decider.version == published.manifest.policy_id
