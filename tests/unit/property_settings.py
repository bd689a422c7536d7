"""Hypothesis settings of the property tests that hold a fast path to its reference: the same
300 examples every run (derandomized, no example database), however slow VW or the machine."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
