"""Vowpal Wabbit text format for `cb_explore_adf` multi-line examples, and nowhere else.

One `shared` line carries the context namespaces; one line per candidate action carries the
action namespace with an `id=<action>` feature (so even "send nothing" has a feature and the
pmf keeps its length). The chosen line gets the label `0:<cost>:<probability>` with
cost = -reward: VW minimises cost, we maximise reward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_UNSAFE = str.maketrans({" ": "_", "\t": "_", "\n": "_", "\r": "_", "|": "_", ":": "_"})


def safe_text(value: str) -> str:
    """A text feature value as this format writes it (VW's separators replaced by `_`)."""
    return value.translate(_UNSAFE)


@dataclass(frozen=True, slots=True)
class NamespaceLetters:
    """Maps context namespace names to one-letter VW namespaces; `action` is the action one."""

    context: Mapping[str, str]
    action: str


def feature_text(name: str, value: float | str) -> str:
    """One feature as this format writes it: `name=text` (sanitised) or `name:number` (6 g)."""
    if isinstance(value, str):
        return f"{name}={value.translate(_UNSAFE)}"
    return f"{name}:{value:.6g}"


def number_text(value: float) -> str:
    """A number of a label or a feature: six significant digits."""
    return f"{value:.6g}"


def _features(features: Mapping[str, float | str]) -> str:
    # `feature_text` inline (decisions render contexts with this too); `ExampleRenderer`'s
    # test compares the two
    parts = []
    for name, value in features.items():
        if isinstance(value, str):
            parts.append(f"{name}={value.translate(_UNSAFE)}")
        else:
            parts.append(f"{name}:{value:.6g}")
    return " ".join(parts)


def context_groups(
    context: Mapping[str, Mapping[str, float | str]], letters: NamespaceLetters
) -> str:
    """The `|l ... |c ...` namespace groups of a context (no `shared`, no label)."""
    return " ".join(f"|{letters.context[ns]} {_features(f)}" for ns, f in context.items() if f)


def shared_line(context: Mapping[str, Mapping[str, float | str]], letters: NamespaceLetters) -> str:
    """The `shared |l ... |c ...` line of a context."""
    groups = context_groups(context, letters)
    return "shared " + groups if groups else "shared |"


def action_line(
    action_id: str, features: Mapping[str, float | str], letters: NamespaceLetters
) -> str:
    """The unlabelled line of one candidate action."""
    extra = _features(features)
    return f"|{letters.action} id={action_id}" + (f" {extra}" if extra else "")


def label_prefix(cost: float, probability: float) -> str:
    """The label in front of the chosen action's line, with its separating space."""
    return f"0:{number_text(cost)}:{number_text(probability)} "


def example_lines(
    context: Mapping[str, Mapping[str, float | str]],
    action_ids: Sequence[str],
    action_features: Sequence[Mapping[str, float | str]],
    letters: NamespaceLetters,
    label: tuple[int, float, float] | None = None,
) -> list[str]:
    """The lines of one multi-line example; `label` is (chosen index, cost, probability)."""
    lines = [shared_line(context, letters)]
    lines.extend(
        action_line(a, f, letters) for a, f in zip(action_ids, action_features, strict=True)
    )
    if label is not None:
        index, cost, probability = label
        lines[index + 1] = f"{label_prefix(cost, probability)}{lines[index + 1]}"
    return lines


OUTCOME_CLASSES = ("helpful", "not_helpful", "ignored")  # VW --oaa classes 1, 2, 3


def outcome_line(
    context: Mapping[str, Mapping[str, float | str]],
    action_id: str,
    features: Mapping[str, float | str],
    letters: NamespaceLetters,
    label: str | None = None,
) -> str:
    """One single-line example of the outcome model: context and action in one line.

    `label` is an outcome label (`helpful`, `not_helpful`, `ignored`), class 1, 2 or 3.
    """
    line = f"{context_groups(context, letters)} {action_line(action_id, features, letters)}"
    if label is None:
        return line.strip()
    return f"{outcome_class(label)} {line.strip()}"


def outcome_class(label: str) -> int:
    """The VW `--oaa` class of an outcome label: 1 helpful, 2 not helpful, 3 ignored."""
    return OUTCOME_CLASSES.index(label) + 1
