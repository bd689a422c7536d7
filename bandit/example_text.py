"""The learner's hot path to VW text: `vw_text.example_lines` joined by newlines, byte for byte,
rendered from caches.

Rendering one feature in Python costs ~0.3 us (a float to 6 digits, a string through
`str.translate`) and an example has dozens, while most of them repeat from impression to
impression: a candidate set, a course, a trigger, a country, a probability of 1/K. So the
renderer keeps
- the unlabelled action lines per tuple of action ids, reused while the features are equal to
  the ones they were rendered from (compared in C: dict equality, then the key order);
- the text of each (feature name, value), and of each label number.
Everything cached is what `vw_text` renders, so the text cannot differ, but for one case handled
explicitly: 0.0 == -0.0 while they render as `0` and `-0`, so zeros are never cached by value,
and a cached action set remembers the sign of each zero it was rendered from. A test compares
this renderer with `vw_text` on random runs of examples.

Each cache is emptied when its texts pass `max_chars` (counting `ENTRY_CHARS` more per entry
for the dict's own memory): cheap, and a steady stream refills the hot entries at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain
from typing import cast

from bandit.vw_text import NamespaceLetters, action_line, feature_text, number_text

Context = Mapping[str, Mapping[str, float | str]]
Features = Mapping[str, float | str]

DEFAULT_MAX_CHARS = 4_000_000  # per cache: some 10-40 MB of memory at most
ENTRY_CHARS = 64  # what one cache entry costs besides its text, in characters' worth
MAX_NUMBERS = 4096  # label numbers kept (costs and probabilities: a handful in practice)


def _negative(value: object) -> bool:
    """Whether a number's sign is negative (tells -0.0 from 0.0)."""
    return math.copysign(1.0, cast(float, value)) < 0.0


def _is_zero(value: object) -> bool:
    return not isinstance(value, str) and value == 0


@dataclass(frozen=True, slots=True)
class ActionLines:
    """The unlabelled lines of one candidate set, and what they were rendered from."""

    features: tuple[dict[str, float | str], ...]  # copies, so a caller's edit cannot stale them
    names: list[str]  # every feature name in order: dict equality ignores the order
    zeros: tuple[tuple[int, str, bool], ...]  # (action, name, is -0.0) of each numeric zero
    lines: tuple[str, ...]
    block: str  # the lines joined by newlines
    starts: tuple[int, ...]  # where each line starts in `block`

    def same_zeros(self, features: Sequence[Features]) -> bool:
        """Whether the zeros of `features` (equal to this set's) have the same signs."""
        return all(_negative(features[i][name]) is neg for i, name, neg in self.zeros)


class ExampleRenderer:
    """Renders a learner's examples as `"\\n".join(example_lines(...))` does, from caches."""

    def __init__(self, letters: NamespaceLetters, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        self.letters = letters
        self.max_chars = max_chars
        self._prefix = {ns: f"|{letter}" for ns, letter in letters.context.items()}
        self._features: dict[str, dict[float | str, str]] = {}  # name -> value -> text
        self._feature_chars = 0
        self._zero_features: dict[str, tuple[str, str]] = {}  # name -> texts of 0 and -0
        self._action_sets: dict[tuple[str, ...], ActionLines] = {}
        self._action_chars = 0
        self._numbers: dict[float, str] = {}
        self._zero_numbers = (number_text(0.0), number_text(-0.0))

    # ---- context -------------------------------------------------------------------------

    def context_text(self, context: Context) -> str:
        """`vw_text.context_groups`: the `|l ... |c ...` groups of a context."""
        parts: list[str] = []
        append = parts.append
        by_name = self._features
        zeros_of = self._zero_features
        prefix = self._prefix
        for namespace, features in context.items():
            if not features:
                continue
            append(prefix[namespace])  # KeyError for an unknown one, as vw_text
            for name, value in features.items():
                texts = by_name.get(name)
                if texts is not None:
                    text = texts.get(value)
                    if text is not None:
                        append(text)
                        continue
                if value == 0:  # a number (no text equals 0): its text depends on the sign
                    zeros = zeros_of.get(name)
                    if zeros is not None:
                        append(zeros[math.copysign(1.0, value) < 0.0])
                        continue
                append(self._feature_text(name, value))
        return " ".join(parts)

    def _feature_text(self, name: str, value: float | str) -> str:
        if value == 0:  # a number: no text equals 0
            zeros = self._zero_features.get(name)
            if zeros is None:
                zeros = (feature_text(name, 0.0), feature_text(name, -0.0))
                if len(self._zero_features) * ENTRY_CHARS >= self.max_chars:
                    self._zero_features.clear()
                self._zero_features[name] = zeros
            return zeros[_negative(value)]
        text = feature_text(name, value)
        if self._feature_chars >= self.max_chars:
            self._features.clear()
            self._feature_chars = 0
        self._features.setdefault(name, {})[value] = text
        self._feature_chars += len(text) + ENTRY_CHARS
        return text

    # ---- actions and label ---------------------------------------------------------------

    def action_lines(
        self, action_ids: Sequence[str], action_features: Sequence[Features]
    ) -> ActionLines:
        """The unlabelled lines of a candidate set (`vw_text.action_line` of each action)."""
        ids = action_ids if type(action_ids) is tuple else tuple(action_ids)
        features = action_features if type(action_features) is tuple else tuple(action_features)
        cached = self._action_sets.get(ids)
        if (
            cached is not None
            and cached.features == features
            and cached.names == [*chain.from_iterable(features)]
            and (not cached.zeros or cached.same_zeros(features))
        ):
            return cached
        return self._new_action_set(ids, features)

    def _new_action_set(self, ids: tuple[str, ...], features: tuple[Features, ...]) -> ActionLines:
        lines = tuple(action_line(a, f, self.letters) for a, f in zip(ids, features, strict=True))
        starts = list(accumulate((len(line) + 1 for line in lines[:-1]), initial=0))
        zeros = tuple(
            (i, name, _negative(value))
            for i, f in enumerate(features)
            for name, value in f.items()
            if _is_zero(value)
        )
        rendered = ActionLines(
            tuple(dict(f) for f in features), [*chain.from_iterable(features)], zeros,
            lines, "\n".join(lines), tuple(starts),
        )  # fmt: skip
        if self._action_chars >= self.max_chars:
            self._action_sets.clear()
            self._action_chars = 0
        self._action_sets[ids] = rendered
        self._action_chars += 2 * len(rendered.block) + ENTRY_CHARS * (1 + len(lines))
        return rendered

    def _number(self, value: float) -> str:
        if value == 0:
            return self._zero_numbers[_negative(value)]
        text = number_text(value)
        if len(self._numbers) >= MAX_NUMBERS:
            self._numbers.clear()
        self._numbers[value] = text
        return text

    def labelled_text(
        self, context_text: str, actions: ActionLines, index: int, cost: float, probability: float
    ) -> str:
        """The whole labelled example, its lines joined by newlines (no trailing newline)."""
        if not 0 <= index < len(actions.lines):
            raise IndexError(f"chosen index {index} of {len(actions.lines)} actions")
        numbers = self._numbers
        cost_text = numbers.get(cost) or self._number(cost)
        probability_text = numbers.get(probability) or self._number(probability)
        start = actions.starts[index]
        block = actions.block
        # `vw_text.shared_line`, then the action lines with `vw_text.label_prefix` in front of
        # the chosen one
        shared = f"shared {context_text}" if context_text else "shared |"
        return f"{shared}\n{block[:start]}0:{cost_text}:{probability_text} {block[start:]}"

    def outcome_text(self, context_text: str, actions: ActionLines, index: int, label: int) -> str:
        """`vw_text.outcome_line` of action `index` with class `label` (1, 2 or 3)."""
        line = f"{context_text} {actions.lines[index]}"
        return f"{label} {line.strip()}"
