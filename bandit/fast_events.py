"""Fast checks of wire values that accept only what the event contract's pydantic types accept.

`bandit.events.decode_event` builds an event from orjson's dict with these checks and falls
back to pydantic on any refusal, so a check may refuse more than pydantic does (the message
is then only slower) but never accept more, and what it accepts converts to the same value.
That is why some accept only a safe subset: timestamps in one RFC 3339 spelling, integers
that are exact as floats. Each check returns the converted value, or `None` to say "ask
pydantic". Values come from orjson, which never yields NaN, infinities or non-str keys.
"""

from __future__ import annotations

import re
from datetime import datetime
from itertools import chain
from typing import Any, TypeGuard, TypeVar

K = TypeVar("K")
V = TypeVar("V")

# Unicode White_Space, what pydantic's Rust regex means by \s (Python's re also counts
# U+001C..U+001F, which pydantic accepts in an id).
_WHITE_SPACE = "\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_MAX_REMEMBERED = 16_384

# YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+HH:MM|-HH:MM): read alike by pydantic and fromisoformat.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
).fullmatch
_EXACT_INT = 2**53  # beyond it int-to-float rounding is pydantic's business
_MAX_TEXT_VALUE = 256  # FeatureValue's text length
_FLOAT = {float}


class TextRule:
    """Strings of 1..`max_length` characters with no white space and none of `forbidden`,
    as the pattern `^[^\\s<forbidden>]+$` reads under pydantic; it remembers the strings that
    passed (ids and feature names repeat from message to message), up to a bound."""

    def __init__(self, max_length: int, forbidden: str) -> None:
        self.max_length = max_length
        self.forbidden = forbidden
        self._fullmatch = re.compile(
            f"[^{_WHITE_SPACE}{re.escape(forbidden)}]{{1,{max_length}}}"
        ).fullmatch
        self.passed: set[str] = set()

    def fits(self, text: object) -> TypeGuard[str]:
        """Whether `text` is a str this rule accepts."""
        return type(text) is str and (text in self.passed or self._learn(text))

    def fits_once(self, text: object) -> TypeGuard[str]:
        """`fits` without remembering, for values that never repeat (event ids)."""
        return type(text) is str and self._fullmatch(text) is not None

    def _learn(self, text: str) -> bool:
        if self._fullmatch(text) is None:
            return False
        if len(self.passed) >= _MAX_REMEMBERED:
            self.passed.clear()
        self.passed.add(text)
        return True


def remember(memo: dict[K, V], key: K, value: V, bound: int) -> None:
    """Add to a memo of checks passed, emptying it first when it holds `bound` entries (so it
    stays small under streams of ever-new values)."""
    if len(memo) >= bound:
        memo.clear()
    memo[key] = value


def epoch_seconds(text: object) -> float | None:
    """Event time of an RFC 3339 timestamp with a timezone, as pydantic's `AwareDatetime`
    then `datetime.timestamp()` give it; `None` for any other spelling."""
    if type(text) is not str or _RFC3339(text) is None:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:  # a day the month does not have, year 0
        return None


def number(value: object) -> float | None:
    """A JSON number as pydantic's float reads it (an int becomes a float; bools refused)."""
    if type(value) is float:
        return value
    if type(value) is int and -_EXACT_INT <= value <= _EXACT_INT:
        return float(value)
    return None


def numbers(values: object) -> list[float] | None:
    """A non-empty JSON list of numbers as pydantic reads `list[float]`, else None."""
    if type(values) is not list or not values:
        return None
    if set(map(type, values)) == _FLOAT:
        return values
    converted: list[float] = []
    for value in values:
        as_float = number(value)
        if as_float is None:
            return None
        converted.append(as_float)
    return converted


def plain_groups(groups: list[Any], names: TextRule, limit: int) -> bool:
    """Whether all `groups` are `{name: float | str}` dicts of at most `limit` features that
    pydantic keeps as they are: fitting names, float values or text of at most 256 characters.
    One pass over all of a message's groups (cheaper than one call per group)."""
    if not groups:
        return True
    if set(map(type, groups)) != {dict} or max(map(len, groups)) > limit:
        return False
    if not names.passed.issuperset(chain.from_iterable(groups)) and not all(
        map(names.fits, chain.from_iterable(groups))
    ):
        return False
    for value in chain.from_iterable(map(dict.values, groups)):
        kind = type(value)
        if kind is not float and (kind is not str or len(value) > _MAX_TEXT_VALUE):
            return False
    return True


def converted_group(group: object, names: TextRule, limit: int) -> dict[str, Any] | None:
    """A `{name: float | str}` group as pydantic's lax union reads it: ints and bools become
    floats, floats and text of at most 256 characters stay; None for anything else."""
    if type(group) is not dict or len(group) > limit or not all(map(names.fits, group)):
        return None
    converted: dict[str, Any] = {}
    for name, value in group.items():
        kind = type(value)
        if kind is float or kind is bool or (kind is int and -_EXACT_INT <= value <= _EXACT_INT):
            converted[name] = float(value)
        elif kind is str and len(value) <= _MAX_TEXT_VALUE:
            converted[name] = value
        else:  # null, lists, objects, long text (which pydantic might read as a number)
            return None
    return converted
