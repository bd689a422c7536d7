"""The cached renderer writes exactly what `vw_text` writes, example after example.

`ExampleRenderer` renders the learner's examples from caches (action sets, feature texts,
label numbers); `vw_text.example_lines` / `outcome_line` are the straightforward reference.
Hypothesis draws runs of examples from small pools, so candidate sets, namespaces and values
repeat (the caches hit) and also change under the same ids: reordered feature dicts, 1 vs 1.0
vs True, 0.0 vs -0.0 vs 0 vs False, str vs number, VW's separators and other whitespace in
strings, empty namespaces and actions without features; a renderer with a tiny `max_chars`
empties its caches all the time. Every text must equal the reference's, byte for byte.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandit.example_text import DEFAULT_MAX_CHARS, ExampleRenderer
from bandit.vw_text import (
    NamespaceLetters,
    context_groups,
    example_lines,
    outcome_class,
    outcome_line,
)
from tests.unit.property_settings import PROPERTY

LETTERS = NamespaceLetters({"learner": "l", "course": "c", "trigger": "t"}, "a")

Features = dict[str, float | str]

VALUES: list[float | str] = [
    0.0, -0.0, 0, False, True, 1, 1.0, -1.0, 0.5, 1 / 3, 2.0, 1e-7, 123456789.0, -2.5e10,
    "m", "18-24", "", "a b", "x:y", "p|q", "t\tab", "n\nl", "c\rr", "_", " lead", "trail ",
    "é", "\x0c", "end\x0b", "\u2028", "\xa0nb",
]  # fmt: skip
NAMES = ["age", "paid", "kind", "tone", "n", "x.y", "é"]

values = st.sampled_from(VALUES) | st.floats(allow_nan=False, width=32)
features: st.SearchStrategy[Features] = st.dictionaries(st.sampled_from(NAMES), values, max_size=4)
contexts = st.dictionaries(st.sampled_from(list(LETTERS.context)), features, max_size=3)
action_ids = st.lists(st.sampled_from(["a", "b", "c", "none"]), min_size=1, max_size=4).map(
    lambda ids: tuple(dict.fromkeys(ids))
)


@st.composite
def examples(draw: Any) -> tuple[Any, ...]:
    """(context, action ids, action features, chosen index, cost, probability)."""
    ids = draw(action_ids)
    feats = tuple(draw(features) for _ in ids)
    index = draw(st.integers(0, len(ids) - 1))
    cost = draw(st.sampled_from([-1.0, 0.0, -0.0, 1.0, 0.25]) | st.floats(-2, 2, width=32))
    probability = draw(st.sampled_from([1 / 3, 0.25, 1.0, 0.1]) | st.floats(0.01, 1.0))
    return draw(contexts), ids, feats, index, cost, probability


def reference_text(example: tuple[Any, ...]) -> str:
    context, ids, feats, index, cost, probability = example
    return "\n".join(example_lines(context, ids, feats, LETTERS, label=(index, cost, probability)))


def fast_text(renderer: ExampleRenderer, example: tuple[Any, ...]) -> str:
    context, ids, feats, index, cost, probability = example
    actions = renderer.action_lines(ids, feats)
    return renderer.labelled_text(renderer.context_text(context), actions, index, cost, probability)


def reordered(example: tuple[Any, ...]) -> tuple[Any, ...]:
    """The same example with every feature dict in reverse order (equal dicts, other text)."""
    context, ids, feats, *rest = example
    flip = lambda f: dict(reversed(list(f.items())))  # noqa: E731
    return ({ns: flip(f) for ns, f in context.items()}, ids, tuple(map(flip, feats)), *rest)


@pytest.mark.parametrize("max_chars", [DEFAULT_MAX_CHARS, 300, 1], ids=["default", "tiny", "one"])
@PROPERTY
@given(run=st.lists(examples(), min_size=1, max_size=12))
def test_cached_text_equals_example_lines_joined_whatever_repeats_or_changes(
    max_chars: int, run: list[tuple[Any, ...]]
) -> None:
    renderer = ExampleRenderer(LETTERS, max_chars=max_chars)
    for example in [*run, *map(reordered, run), *run]:
        assert fast_text(renderer, example) == reference_text(example)


@PROPERTY
@given(
    run=st.lists(examples(), min_size=1, max_size=8), label=st.sampled_from(["helpful", "ignored"])
)
def test_outcome_text_equals_outcome_line(run: list[tuple[Any, ...]], label: str) -> None:
    renderer = ExampleRenderer(LETTERS)
    for context, ids, feats, index, *_ in run:
        expected = outcome_line(context, ids[index], feats[index], LETTERS, label=label)
        text = renderer.context_text(context)
        actions = renderer.action_lines(ids, feats)
        assert renderer.outcome_text(text, actions, index, outcome_class(label)) == expected
        assert text == context_groups(context, LETTERS)


def test_a_zero_keeps_its_sign_after_the_other_zero_was_cached() -> None:
    renderer = ExampleRenderer(LETTERS)
    for value in (0.0, -0.0, 0.0, 0, -0.0, False):
        example: tuple[Any, ...] = (
            {"learner": {"paid": value}}, ("a", "b"), ({"n": value}, {}), 0, value, 1.0,
        )  # fmt: skip
        assert fast_text(renderer, example) == reference_text(example)
    assert fast_text(renderer, example).splitlines() == [
        "shared |l paid:0", "0:0:1 |a id=a n:0", "|a id=b"
    ]  # fmt: skip


def test_action_features_changed_under_the_same_ids_are_rendered_anew() -> None:
    renderer = ExampleRenderer(LETTERS)
    features: Features = {"kind": "hint", "tone": "warm"}
    first = renderer.action_lines(("a",), (features,))
    features["tone"] = "cold"  # the caller edits its dict: the cache holds a copy

    assert renderer.action_lines(("a",), (features,)).lines == ("|a id=a kind=hint tone=cold",)
    assert first.lines == ("|a id=a kind=hint tone=warm",)
    assert renderer.action_lines(("a",), ({"tone": "cold", "kind": "hint"},)).lines == (
        "|a id=a tone=cold kind=hint",
    )


def test_bad_input_fails_as_the_reference_does() -> None:
    renderer = ExampleRenderer(LETTERS)
    with pytest.raises(KeyError, match="nowhere"):
        renderer.context_text({"nowhere": {"x": 1.0}})
    assert renderer.context_text({"nowhere": {}}) == context_groups({"nowhere": {}}, LETTERS)
    with pytest.raises(ValueError):
        renderer.action_lines(("a", "b"), ({},))
    for ids, index in ((("a",), 1), ((), 0)):
        with pytest.raises(IndexError):
            example_lines({}, ids, tuple({} for _ in ids), LETTERS, label=(index, 0.0, 1.0))
        with pytest.raises(IndexError):
            renderer.labelled_text(
                "", renderer.action_lines(ids, tuple({} for _ in ids)), index, 0.0, 1.0
            )
