"""Value types built per message: read-only to the type checker, plain slotted classes at run time.

A frozen dataclass sets each field through `object.__setattr__` when it is built (1.2 µs for 11
fields, against 0.25 µs for the same class unfrozen), and the consumer builds several per
message (its source, envelope, event, joined event, closed window): some 3 µs of each event.
`value_type` makes a slotted dataclass with the equality and hash of a frozen one, and tells
type checkers it is frozen (PEP 681 `dataclass_transform`), so an assignment to a field is
still a type error; only run time skips the guard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True)
def value_type(cls: type[T]) -> type[T]:
    """`@dataclass(frozen=True, slots=True)` to a type checker; at run time the same class
    without the per-field guard (fields compared and hashed as a frozen dataclass's)."""
    return dataclass(slots=True, unsafe_hash=True)(cls)
