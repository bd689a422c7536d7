"""A checkpoint directory left alone for months: every file checksummed, a corrupt newest
checkpoint passed over for the newest whole one (loudly, and counted), `CURRENT` confined to
its directory, a missing `CURRENT` an error (issue 11).

Store-level tests use `make_checkpoint`; consumer-level ones run the in-memory stream, stop a
consumer midway (as SIGTERM does), damage its directory and restart on it.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import yaml
from consumer_fixtures import BOUNDED, Stream, distinct_reasons, make_stream
from test_checkpoints import full_learner_state, make_checkpoint
from test_consumer_restarts import StoppingSource

from bandit.errors import CheckpointCorrupt, CheckpointError
from streams.checkpoints import MANIFEST, Checkpoint, CheckpointStore
from streams.memory import ManualClock

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[2]


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("ckpt-*"))


def _edit_state(path: Path, change: Callable[[dict], None]) -> None:
    state = orjson.loads((path / "state.json").read_bytes())
    change(state)
    (path / "state.json").write_bytes(orjson.dumps(state))


def _flip_first_model_byte(path: Path) -> None:
    model = sorted((path / "models").iterdir())[0]
    data = bytearray(model.read_bytes())
    data[0] ^= 0xFF
    model.write_bytes(bytes(data))


def _edit_manifest_digest(path: Path) -> None:
    manifest = orjson.loads((path / MANIFEST).read_bytes())
    manifest["files"]["state.json"] = "0" * 64
    (path / MANIFEST).write_bytes(orjson.dumps(manifest))


# What goes wrong with a file over months, and the words the warning must use for it.
DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "offsets-rewound": (
        lambda p: _edit_state(p, lambda s: s.update(offsets={k: 0 for k in s["offsets"]})),
        "state.json: sha256 mismatch",
    ),
    "stats-edited": (
        lambda p: _edit_state(p, lambda s: s["stats"].update(consumed=1)),
        "state.json: sha256 mismatch",
    ),
    "state-truncated": (
        lambda p: (p / "state.json").write_bytes((p / "state.json").read_bytes()[:40]),
        "state.json",
    ),
    "model-bit-flip": (_flip_first_model_byte, "policy-0000.vw: sha256 mismatch"),
    "model-missing": (lambda p: (p / "models" / "policy-0001.vw").unlink(), "policy-0001.vw"),
    "manifest-missing": (lambda p: (p / MANIFEST).unlink(), MANIFEST),
    "manifest-edited": (_edit_manifest_digest, f"{MANIFEST}: its sha256 does not match"),
    "directory-gone": (lambda p: shutil.rmtree(p), "state.json: unreadable"),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=str)
def test_a_corrupt_newest_checkpoint_falls_back_to_the_newest_whole_one_with_a_warning(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = CheckpointStore(tmp_path, keep=3)
    for sequence in (1, 2, 3):
        store.save(make_checkpoint(sequence))
    harm, words = DAMAGE[damage]
    harm(tmp_path / "ckpt-000000003")

    with caplog.at_level(logging.WARNING, logger="nudge.checkpoints"):
        latest = CheckpointStore(tmp_path, keep=3).latest()

    assert latest == make_checkpoint(2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("ckpt-000000003 is corrupt" in w and words in w for w in warnings), warnings
    assert any("resuming from ckpt-000000002" in w for w in warnings), warnings
    restored = CheckpointStore(tmp_path).restore()
    assert restored.checkpoint == make_checkpoint(2)
    assert len(restored.skipped) == 1 and restored.skipped[0].startswith("ckpt-000000003: ")
    assert words in restored.skipped[0]


def test_two_corrupt_checkpoints_are_both_passed_over(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=3)
    for sequence in (1, 2, 3):
        store.save(make_checkpoint(sequence))
    _flip_first_model_byte(tmp_path / "ckpt-000000003")
    (tmp_path / "ckpt-000000002" / MANIFEST).unlink()

    assert store.latest() == make_checkpoint(1)
    skipped = store.restore().skipped
    assert [s.split(":")[0] for s in skipped] == ["ckpt-000000003", "ckpt-000000002"]


def test_no_whole_checkpoint_left_is_an_error_naming_each_problem(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=2)
    for sequence in (1, 2):
        store.save(make_checkpoint(sequence))
    _flip_first_model_byte(tmp_path / "ckpt-000000002")
    _edit_state(tmp_path / "ckpt-000000001", lambda s: s.update(sequence=7))

    with pytest.raises(CheckpointError) as caught:
        store.latest()

    message = str(caught.value)
    assert "no whole checkpoint to resume from" in message
    assert "ckpt-000000002: " in message and "sha256 mismatch" in message
    assert "ckpt-000000001: " in message and "state.json" in message
    assert "backup" in message


def test_newer_attempts_that_never_became_current_are_not_fallen_back_to(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=3)
    for sequence in (1, 2, 3):
        store.save(make_checkpoint(sequence))
    (tmp_path / "CURRENT").write_text("ckpt-000000002")  # 3 was renamed, CURRENT not yet moved
    _flip_first_model_byte(tmp_path / "ckpt-000000002")

    assert store.latest() == make_checkpoint(1)


# ---- CURRENT -------------------------------------------------------------------------------


def test_a_missing_current_beside_checkpoints_is_an_error_saying_what_to_do(
    tmp_path: Path,
) -> None:
    store = CheckpointStore(tmp_path, keep=3)
    for sequence in (1, 2):
        store.save(make_checkpoint(sequence))
    (tmp_path / "CURRENT").unlink()

    with pytest.raises(CheckpointError) as caught:
        store.latest()

    message = str(caught.value)
    assert f"{tmp_path / 'CURRENT'} is missing" in message
    assert "ckpt-000000001, ckpt-000000002" in message
    assert f"echo ckpt-000000002 > {tmp_path / 'CURRENT'}" in message
    assert "start from scratch" in message
    (tmp_path / "CURRENT").write_text("ckpt-000000002\n")  # what the message says to do
    assert store.latest() == make_checkpoint(2)


def test_an_empty_current_is_a_directory_opened_but_never_checkpointed(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=3)
    store.open_for_writing()
    try:
        assert (tmp_path / "CURRENT").read_bytes() == b""
        assert store.latest() is None
        # a first checkpoint renamed into place, CURRENT not yet moved: not a checkpoint yet
        store.save(make_checkpoint(1))
        (tmp_path / "CURRENT").write_bytes(b"")
        assert store.latest() is None
    finally:
        store.close()


@pytest.mark.parametrize(
    "pointer",
    [
        "../../other-deployment/checkpoints/ckpt-000000001",
        "{other}/ckpt-000000001",  # absolute
        "ckpt-000000001/../../../other-deployment/checkpoints/ckpt-000000001",
        "./ckpt-000000001",
        "ckpt-latest",
    ],
)
def test_current_never_leaves_its_directory(tmp_path: Path, pointer: str) -> None:
    other = tmp_path / "other-deployment" / "checkpoints"
    CheckpointStore(other).save(make_checkpoint(1))
    mine = tmp_path / "mine" / "checkpoints"
    mine.mkdir(parents=True)
    (mine / "CURRENT").write_text(pointer.format(other=other))

    with pytest.raises(CheckpointError) as caught:
        CheckpointStore(mine).latest()

    assert "not a checkpoint of this directory (ckpt-<digits>)" in str(caught.value)
    assert repr(pointer.format(other=other)) in str(caught.value)


def test_a_checkpoint_that_is_a_symlink_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other-deployment"
    CheckpointStore(other).save(make_checkpoint(5))
    mine = tmp_path / "mine"
    CheckpointStore(mine).save(make_checkpoint(4))
    (mine / "ckpt-000000005").symlink_to(other / "ckpt-000000005")
    (mine / "CURRENT").write_text("ckpt-000000005")

    with pytest.raises(CheckpointError, match="is a symbolic link"):
        CheckpointStore(mine).latest()


# ---- the manifest and older formats --------------------------------------------------------


def test_every_file_of_a_checkpoint_is_in_its_manifest(tmp_path: Path) -> None:
    ckpt = Checkpoint(4, {"t/0": 9}, {}, {}, full_learner_state(), "--cb_explore_adf")
    path = CheckpointStore(tmp_path).save(ckpt)

    manifest = orjson.loads((path / MANIFEST).read_bytes())
    on_disk = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}

    assert manifest["format"] == 3
    assert set(manifest["files"]) == on_disk - {MANIFEST}
    assert len(manifest["sha256"]) == 64


def test_a_format_2_checkpoint_written_by_the_previous_version_still_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.copytree(DATA / "checkpoints-format-2", tmp_path / "ckpts")

    with caplog.at_level(logging.WARNING, logger="nudge.checkpoints"):
        loaded = CheckpointStore(tmp_path / "ckpts").latest()

    assert loaded is not None
    assert loaded.sequence == 4 and loaded.offsets == {"t/0": 9, "t/1": 3}
    assert loaded.learner == full_learner_state()
    assert any("format 2" in r.getMessage() for r in caplog.records)


def test_a_format_2_checkpoint_with_a_corrupt_model_still_falls_back(tmp_path: Path) -> None:
    shutil.copytree(DATA / "checkpoints-format-2", tmp_path / "ckpts")
    _flip_first_model_byte(tmp_path / "ckpts" / "ckpt-000000004")

    with pytest.raises(CheckpointCorrupt, match="sha256 mismatch"):
        CheckpointStore(tmp_path / "ckpts").load(tmp_path / "ckpts" / "ckpt-000000004")


# ---- through the consumer ------------------------------------------------------------------


def _stopped_midway(tmp_path: Path) -> Stream:
    """A stream whose first consumer stopped (SIGTERM) after a few checkpoints (keep 3)."""
    stream = make_stream(tmp_path, checkpoint={"keep": 3})
    clock = ManualClock()
    source = StoppingSource(stream, clock, stop_at=9)
    first = stream.consumer(clock, source=source)
    source.learner = first
    first.run(BOUNDED)
    assert len(_names(stream.config.checkpoint.directory)) >= 2
    return stream


def test_offsets_rewound_in_state_json_are_not_learned_twice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stream = _stopped_midway(tmp_path)
    directory = stream.config.checkpoint.directory
    newest, previous = _names(directory)[::-1][:2]
    offsets = CheckpointStore(directory).load(directory / newest).offsets
    rewound = {key: max(0, offset - 40) for key, offset in offsets.items()}
    _edit_state(directory / newest, lambda s: s.update(offsets=rewound))  # 80 messages again

    with caplog.at_level(logging.WARNING, logger="nudge.checkpoints"):
        restarted = stream.consumer()
    final = restarted.run(BOUNDED)

    assert final.consumed == len(stream.truth.messages)  # not 80 messages twice
    assert dict(final.dead_letters_by_reason) == dict(stream.truth.expected_dead_letters)
    assert final.learned == stream.truth.impressions
    assert final.ledger == stream.expected_ledger()  # each event learned exactly once
    assert restarted.resumed_from == int(previous.removeprefix("ckpt-"))
    assert distinct_reasons(stream.dead_letters()) == stream.truth.expected_dead_letters
    assert any(
        f"{newest} is corrupt" in r.getMessage() and "state.json: sha256 mismatch" in r.getMessage()
        for r in caplog.records
    )
    assert restarted.summary()["checkpoint_fallbacks"] == 1  # counted, cumulative


def test_a_consumer_refuses_to_start_afresh_when_current_was_deleted(tmp_path: Path) -> None:
    stream = _stopped_midway(tmp_path)
    (stream.config.checkpoint.directory / "CURRENT").unlink()

    with pytest.raises(CheckpointError, match="CURRENT is missing"):
        stream.consumer()

    names = _names(stream.config.checkpoint.directory)
    (stream.config.checkpoint.directory / "CURRENT").write_text(names[-1])
    final = stream.consumer().run(BOUNDED)  # the lock was released by the refused start
    assert final.ledger == stream.expected_ledger()


def test_a_consumer_never_merges_another_deployments_state(tmp_path: Path) -> None:
    other = _stopped_midway(tmp_path / "other")
    stream = make_stream(tmp_path / "mine")
    directory = stream.config.checkpoint.directory
    directory.mkdir(parents=True)
    newest = _names(other.config.checkpoint.directory)[-1]
    relative = Path("../../other/checkpoints") / newest
    (directory / "CURRENT").write_text(str(relative))

    with pytest.raises(CheckpointError, match="not a checkpoint of this directory"):
        stream.consumer()


@pytest.mark.parametrize("command", ["score", "export"])
def test_the_command_line_says_what_to_do_about_a_missing_current(
    tmp_path: Path, command: str
) -> None:
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["checkpoint"]["directory"] = str(tmp_path / "checkpoints")
    data["snapshots"]["directory"] = str(tmp_path / "snapshots")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    store = CheckpointStore(tmp_path / "checkpoints")
    store.save(make_checkpoint(1))
    (tmp_path / "checkpoints" / "CURRENT").unlink()

    done = subprocess.run(
        [sys.executable, "-m", "nudge.cli", command, "--config", "config.yaml", "--seed", "1"]
        if command == "score"
        else [sys.executable, "-m", "nudge.cli", command, "--config", "config.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip

    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"nudge: {tmp_path / 'checkpoints' / 'CURRENT'} is missing")
    assert "echo ckpt-000000001 >" in done.stderr
