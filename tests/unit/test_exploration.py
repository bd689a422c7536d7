"""Every exploration algorithm, through the same checks: one definition serves config, flags and VW."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from bandit.exploration import (
    ALGORITHM_FLAGS,
    ALGORITHMS,
    RESERVED_VW_FLAGS,
    EpsilonGreedy,
    Exploration,
    flag_values,
    same_exploration,
    with_default_algorithm,
)
from bandit.policies import VowpalPolicy

SECTION = TypeAdapter(Exploration)


def _name(cls: type) -> str:
    literal = cls.model_fields["algorithm"].annotation  # type: ignore[attr-defined]
    return literal.__args__[0]


@pytest.mark.parametrize("cls", ALGORITHMS, ids=_name)
def test_a_section_naming_the_algorithm_parses_into_its_class_with_its_defaults(cls: type) -> None:
    parsed = SECTION.validate_python({"algorithm": _name(cls)})
    assert type(parsed) is cls
    assert parsed == cls.model_validate({"algorithm": _name(cls)})


@pytest.mark.parametrize("cls", ALGORITHMS, ids=_name)
def test_rendered_flags_are_the_algorithms_own_and_reserved(cls: type) -> None:
    flags = set(flag_values(SECTION.validate_python({"algorithm": _name(cls)}).vw_flags()))
    assert flags <= cls.flags <= RESERVED_VW_FLAGS
    if cls.selector is not None:
        assert cls.selector in flags and cls.selector in ALGORITHM_FLAGS


@pytest.mark.parametrize("cls", ALGORITHMS, ids=_name)
def test_vowpal_wabbit_accepts_the_flags_and_keeps_the_algorithm(cls: type) -> None:
    flags = SECTION.validate_python({"algorithm": _name(cls)}).vw_flags()
    policy = VowpalPolicy(f"--cb_explore_adf {flags} --quiet")
    try:
        restored = VowpalPolicy(f"--cb_explore_adf {flags} --quiet", policy.to_bytes())
        restored.finish()
    finally:
        policy.finish()
    assert same_exploration(flags, flags)


def test_a_section_without_algorithm_is_epsilon_greedy() -> None:
    parsed = SECTION.validate_python(with_default_algorithm({"epsilon": 0.2}))
    assert parsed == EpsilonGreedy(epsilon=0.2)


def test_an_unknown_parameter_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError, match="psi"):
        SECTION.validate_python({"algorithm": "softmax", "psi": 1.0})


def test_every_algorithm_but_epsilon_greedy_has_its_own_selector_flag() -> None:
    selectors = [cls.selector for cls in ALGORITHMS if cls.selector is not None]
    assert len(selectors) == len(ALGORITHMS) - 1 == len(set(selectors))
