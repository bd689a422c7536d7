"""Value types: compared and hashed as frozen dataclasses, read-only to the type checker."""

from __future__ import annotations

import pickle
import subprocess
import sys
from dataclasses import FrozenInstanceError, dataclass, field, replace
from pathlib import Path

import pytest

from bandit.envelopes import Envelope, Source
from bandit.events import Outcome, OutcomeLabel
from bandit.value_types import value_type

ROOT = Path(__file__).resolve().parents[2]


@value_type
class Point:
    x: float
    y: float
    note: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class FrozenPoint:
    x: float
    y: float
    note: str = field(default="", compare=False)


def test_equality_and_hash_are_those_of_the_frozen_dataclass() -> None:
    pairs = [((1.0, 2.0, "a"), (1.0, 2.0, "b")), ((1.0, 2.0, ""), (2.0, 1.0, ""))]
    for left, right in pairs:
        assert (Point(*left) == Point(*right)) == (FrozenPoint(*left) == FrozenPoint(*right))
        assert hash(Point(*left)) == hash(FrozenPoint(*left))
    assert {Point(1.0, 2.0, "a"), Point(1.0, 2.0, "b")} == {Point(1.0, 2.0)}
    with pytest.raises(FrozenInstanceError):
        FrozenPoint(1.0, 2.0).x = 3.0  # type: ignore[misc]  # the frozen one guards at run time


def test_a_value_type_has_slots_pickles_and_replaces() -> None:
    source = Source("impressions", 2, 41)
    assert not hasattr(source, "__dict__")
    copied = pickle.loads(pickle.dumps(source))  # noqa: S301  # our own bytes
    assert copied == source and source.partition_key == "impressions/2"
    outcome = Outcome("e1", 10.0, "A/quiz-3/quiz-failed", OutcomeLabel.HELPFUL, None)
    envelope = Envelope(outcome, b"{}", source)
    assert replace(envelope, raw=b"[]") == Envelope(outcome, b"[]", source)


def test_assigning_a_field_of_a_value_type_is_a_type_error(tmp_path: Path) -> None:
    snippet = tmp_path / "assign.py"
    snippet.write_text(
        "from bandit.envelopes import Source\n"
        "source = Source('t', 0, 1)\n"
        "source.offset = 5\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent", str(snippet)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout
    assert 'assign.py:3: error: Property "offset" defined in "Source" is read-only' in done.stdout
