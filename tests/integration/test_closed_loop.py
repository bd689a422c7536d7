"""The whole loop through a real broker: decide from snapshots, log, learn, publish, reload."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable

import numpy as np
import orjson
import pytest

from bandit.decisions import Decider
from bandit.simulation.scoring import score_decider
from bandit.simulation.world import World
from bandit.snapshots import SnapshotStore
from streams.checkpoints import CheckpointStore
from tests.integration.conftest import Deployment

pytestmark = pytest.mark.kafka

SEED = 7
ROUNDS = 12


def test_closed_loop_learns_to_beat_random_and_send_to_all_and_holds_back_where_nothing_helps(
    deployment: Callable[..., Deployment],
) -> None:
    dep = deployment(simulator={"learners": 1000})
    consumer = dep.popen("consume")
    report = dep.workdir / "rounds.json"
    try:
        done = dep.nudge(
            "loop", "--rounds", str(ROUNDS), "--decisions", "2000", "--seed", str(SEED),
            "--report-json", str(report), "--wait", "90", timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    finally:
        consumer.send_signal(signal.SIGTERM)
        _, err = consumer.communicate(timeout=120)
    assert consumer.returncode == 0, err
    rounds = orjson.loads(report.read_bytes())

    # Every round was decided by a newer snapshot that covered everything logged before it.
    assert all(r["caught_up"] for r in rounds)
    versions = [r["policy"] for r in rounds]
    assert versions == sorted(set(versions)), versions
    assert rounds[0]["learned"] == 0 and rounds[-1]["learned"] > 0.8 * 2000 * (ROUNDS - 1)
    # The true reward of the decisions made climbs from the untrained policy's.
    assert rounds[-1]["deployed"] - rounds[0]["deployed"] >= 0.12, rounds

    # The final snapshot on fresh decisions, scored exactly against the simulator's truth.
    # Observed with 8 rounds over 6 runs (seed 7): deployed +0.149 to +0.171 against random
    # -0.047 and send-to-all -0.070; where sending nothing is truly best the greedy choice is
    # `none` in 0.50-0.96 of decisions (0.42-1.00 for six traffic seeds in process), and `none`
    # gets 0.68-0.80 of the mass there, 0.03-0.07 elsewhere. With 16,000 decisions the
    # epsilon-greedy learner sometimes has not yet settled where `none` wins by a hair; in
    # process the worst of those runs reached 0.92 by 24,000 decisions, hence 12 rounds.
    cfg = dep.config
    world = World(SEED, cfg.simulator.learners, cfg.simulator.courses)
    with Decider(cfg.snapshots.directory, seed=SEED) as decider:
        final = decider.version
        scores = score_decider(world, decider, cfg, 4000, SEED + 1000)
    assert scores.exploration - scores.uniform >= 0.12, scores.as_dict()
    assert scores.exploration - scores.send_to_all >= 0.12, scores.as_dict()
    assert scores.none_best_share > 0.1  # the world does have places where nothing is best
    none_stats = {k: v for k, v in scores.as_dict().items() if k.startswith("none")}
    assert scores.none_chosen_where_best >= 0.5, none_stats
    assert scores.none_mass_where_best >= 4 * scores.none_mass_elsewhere, none_stats
    assert scores.none_mass_where_best >= scores.none_mass_elsewhere + 0.3, none_stats

    # The consumer's last snapshot (on SIGTERM) is the one served, and it matches its checkpoint.
    ckpt = CheckpointStore(cfg.checkpoint.directory).latest()
    assert ckpt is not None
    snapshot = SnapshotStore(cfg.snapshots.directory).load_latest()
    assert snapshot.manifest.policy_id == final
    assert snapshot.manifest.trained_through == ckpt.offsets
    assert snapshot.manifest.examples == ckpt.stats["learned"]
    assert snapshot.state.models == ckpt.learner.models


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
