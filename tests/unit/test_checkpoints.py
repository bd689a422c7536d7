"""Unit tests of the atomic checkpoint store (`streams.checkpoints`) and the exactly-once ledger."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from bandit.errors import CheckpointError
from bandit.state import LearnerState
from streams.checkpoints import FORMAT_VERSION, Checkpoint, CheckpointStore
from streams.stats import ConsumerStats, Ledger, event_hash


def make_checkpoint(sequence: int) -> Checkpoint:
    return Checkpoint(
        sequence=sequence,
        offsets={"nudge.impressions/0": 100 * sequence, "nudge.outcomes/0": 90 * sequence + 1},
        join_state={
            "watermark": 1_767_600_000.5,
            "pending": [{"impression": {"raw": "e30=", "source": ["t", 0, 7]}, "outcomes": []}],
            "waiting": [],
            "closed": [["e1", 1_767_600_100.0, True]],
        },
        stats={"consumed": 10 * sequence, "ledger": {"count": 3, "digest": "00000000000000ff"}},
        learner=LearnerState(
            models={
                "global": b"\x00\x01model-bytes-" + str(sequence).encode(),
                "quiz_failed": b"\xffother\x00model",
            },
            arguments={
                "global": "--cb_explore_adf --epsilon 0.1 --quiet",
                "quiz_failed": "--cb_explore_adf --softmax --lambda 5 --quiet",
            },
        ),
        vw_arguments="--cb_explore_adf --epsilon 0.1 --quiet",
    )


def checkpoint_dirs(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("ckpt-*"))


def test_saved_checkpoint_loads_back_equal(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "ckpts")
    ckpt = make_checkpoint(1)

    path = store.save(ckpt)

    assert path == tmp_path / "ckpts" / "ckpt-000000001"
    assert store.load(path) == ckpt
    assert store.latest() == ckpt
    assert CheckpointStore(tmp_path / "ckpts").latest() == ckpt  # a fresh store sees it too


def test_checkpoint_without_models_round_trips(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    ckpt = Checkpoint(1, {}, {}, {}, LearnerState(), "--cb_explore_adf")
    store.save(ckpt)
    assert store.latest() == ckpt


def test_current_points_at_the_newest_checkpoint(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=5)
    for sequence in (1, 2, 3):
        store.save(make_checkpoint(sequence))

    assert (tmp_path / "CURRENT").read_text() == "ckpt-000000003"
    latest = store.latest()
    assert latest is not None
    assert latest == make_checkpoint(3)
    assert checkpoint_dirs(tmp_path) == ["ckpt-000000001", "ckpt-000000002", "ckpt-000000003"]
    assert store.load(tmp_path / "ckpt-000000001") == make_checkpoint(1)


def test_keep_prunes_older_checkpoints(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=2)
    for sequence in range(1, 5):
        store.save(make_checkpoint(sequence))

    assert checkpoint_dirs(tmp_path) == ["ckpt-000000003", "ckpt-000000004"]
    assert store.latest() == make_checkpoint(4)
    assert store.load(tmp_path / "ckpt-000000003") == make_checkpoint(3)


def test_saving_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(make_checkpoint(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CURRENT", "ckpt-000000001"]


def test_tampered_model_file_is_refused_with_a_sha256_error(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    path = store.save(make_checkpoint(1))
    model_files = sorted((path / "models").iterdir())
    assert len(model_files) == 2
    data = bytearray(model_files[0].read_bytes())
    data[0] ^= 0xFF
    model_files[0].write_bytes(bytes(data))

    with pytest.raises(CheckpointError, match="sha256"):
        store.latest()


def test_other_format_version_is_refused(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    path = store.save(make_checkpoint(1))
    state = orjson.loads((path / "state.json").read_bytes())
    assert state["format"] == FORMAT_VERSION
    state["format"] = FORMAT_VERSION + 1
    (path / "state.json").write_bytes(orjson.dumps(state))

    with pytest.raises(CheckpointError, match="format"):
        store.latest()


def test_unreadable_state_json_is_a_checkpoint_error(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    path = store.save(make_checkpoint(1))
    (path / "state.json").write_bytes(b'{"format": 1, "sequ')
    with pytest.raises(CheckpointError, match=r"state\.json"):
        store.latest()


def test_missing_model_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    path = store.save(make_checkpoint(1))
    (path / "models" / "policy-0000.vw").unlink()
    with pytest.raises(CheckpointError):
        store.latest()


def test_no_checkpoint_means_latest_is_none(tmp_path: Path) -> None:
    assert CheckpointStore(tmp_path).latest() is None
    assert CheckpointStore(tmp_path / "does-not-exist").latest() is None


def test_leftover_temporary_checkpoint_from_a_crash_does_not_affect_latest(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(make_checkpoint(1))
    # a writer killed mid-save: a half-written temporary directory, CURRENT untouched
    crashed = tmp_path / ".tmp-ckpt-000000002-424242"
    (crashed / "models").mkdir(parents=True)
    (crashed / "models" / "policy-0000.vw").write_bytes(b"half a mod")
    (crashed / "state.json").write_bytes(b'{"format": 1, "seq')

    assert store.latest() == make_checkpoint(1)
    assert CheckpointStore(tmp_path).latest() == make_checkpoint(1)

    store.save(make_checkpoint(2))  # the next save cleans the leftover up
    assert not crashed.exists()
    assert store.latest() == make_checkpoint(2)


def test_stale_current_temp_file_does_not_affect_latest(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(make_checkpoint(1))
    (tmp_path / ".CURRENT.tmp").write_text("ckpt-000000002")  # crash before the rename
    assert store.latest() == make_checkpoint(1)


def full_learner_state() -> LearnerState:
    """A learner state with every field set, as a per-trigger learner with an outcome model has."""
    return LearnerState(
        models={"idle": b"idle-model\x00", "quiz_failed": b"quiz-model\xff"},
        outcome_model=b"outcome-model\x01",
        catalogue={"actions": {"hint": {"kind": "hint"}}, "triggers": {"idle": ["hint", "none"]}},
        reactions={"learner-1": 2, "learner-2": 1},
        masks={"idle": b"idle-mask"},
        arguments={"idle": "--cb_explore_adf --epsilon 0.2", "quiz_failed": "--cb_explore_adf"},
        arms={"idle": {"hint": {"shown": 3.0}}},
        pruning={"statuses": {"idle": {"hint": {"status": "pruned", "since": 1.0}}}},
    )


def test_every_field_of_the_learner_state_round_trips(tmp_path: Path) -> None:
    ckpt = Checkpoint(4, {"t/0": 9}, {}, {"consumed": 9}, full_learner_state(), "--cb_explore_adf")
    CheckpointStore(tmp_path).save(ckpt)

    loaded = CheckpointStore(tmp_path).latest()

    assert loaded == ckpt
    assert loaded is not None and loaded.learner == full_learner_state()


def test_state_json_keeps_the_format_2_layout(tmp_path: Path) -> None:
    ckpt = Checkpoint(4, {"t/0": 9}, {}, {}, full_learner_state(), "--cb_explore_adf")
    path = CheckpointStore(tmp_path).save(ckpt)

    state = orjson.loads((path / "state.json").read_bytes())

    assert sorted(state) == sorted(
        ["format", "sequence", "created_at", "offsets", "join", "stats", "models", "masks",
         "outcome_model", "catalogue", "reactions", "policy_arguments", "arms", "pruning",
         "vw_arguments"]
    )  # fmt: skip
    assert {k: v["file"] for k, v in state["models"].items()} == {
        "idle": "models/policy-0000.vw",
        "quiz_failed": "models/policy-0001.vw",
    }
    assert state["masks"]["idle"]["file"] == "models/mask-0000.vw"
    assert state["outcome_model"]["file"] == "models/outcomes-0000.vw"
    assert state["policy_arguments"] == full_learner_state().arguments


def test_format_1_checkpoint_gives_every_scope_the_global_vw_arguments(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    path = store.save(make_checkpoint(1))
    state = orjson.loads((path / "state.json").read_bytes())
    format_1 = {
        k: v
        for k, v in state.items()
        if k not in {"masks", "outcome_model", "catalogue", "reactions", "policy_arguments",
                     "arms", "pruning"}
    }  # fmt: skip
    (path / "state.json").write_bytes(orjson.dumps({**format_1, "format": 1}))
    (path / "manifest.json").unlink()  # formats 1 and 2 wrote none

    loaded = store.latest()

    assert loaded is not None
    assert loaded.learner.models == make_checkpoint(1).learner.models
    assert loaded.learner.arguments == {
        "global": "--cb_explore_adf --epsilon 0.1 --quiet",
        "quiz_failed": "--cb_explore_adf --epsilon 0.1 --quiet",
    }
    assert loaded.learner.masks == {} and loaded.learner.outcome_model is None
    assert (loaded.learner.catalogue, loaded.learner.arms, loaded.learner.pruning) == ({}, {}, {})


# ---- ledger -----------------------------------------------------------------------------------


def test_ledger_digest_is_independent_of_order() -> None:
    ids = [f"e{i}" for i in range(500)]
    shuffled = ids.copy()
    random.Random(3).shuffle(shuffled)
    assert shuffled != ids

    a, b = Ledger.of(ids), Ledger.of(shuffled)

    assert (a.count, a.digest) == (b.count, b.digest) == (500, a.digest)
    assert a == b


def test_ledger_detects_a_repeated_id_standing_in_for_a_dropped_one() -> None:
    ids = [f"e{i}" for i in range(500)]
    wrong = [*ids[:-1], ids[0]]  # e0 learned twice, e499 never: same count

    a, b = Ledger.of(ids), Ledger.of(wrong)

    assert a.count == b.count
    assert a.digest != b.digest


def test_ledger_digest_is_the_sum_of_hashes_mod_2_64() -> None:
    ids = ["a", "b", "a"]
    assert Ledger.of(ids).digest == sum(event_hash(i) for i in ids) % (1 << 64)
    assert Ledger.of([]) == Ledger(0, 0)


def test_ledger_survives_the_stats_json_round_trip() -> None:
    stats = ConsumerStats(ledger=Ledger.of([f"e{i}" for i in range(50)]))
    data = orjson.loads(orjson.dumps(stats.to_json()))
    assert ConsumerStats.from_json(data).ledger == stats.ledger
