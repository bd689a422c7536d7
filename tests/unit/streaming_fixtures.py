"""Shared by the streaming replay tests: a log in memory evaluated chunk by chunk, and the check
that two `ReplayResult`s carry the same numbers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from replay.candidates import Candidate
from replay.chunked import chunks_of_logged
from replay.logged import LoggedData
from replay.planned_candidates import build_planned
from replay.results import ReplayResult
from replay.streaming_eval import evaluate_stream

NUMBERS = ("value", "low", "high", "se")


@dataclass(frozen=True)
class RowTable:
    """A fixed policy: row i of ``probs`` at the decision whose id is ``f"{prefix}{i}"`` (as
    `replay_truth.as_logged_data` names them), so that it also answers for a chunk."""

    name: str
    probs: np.ndarray
    prefix: str = "e"

    def probabilities(self, data: LoggedData) -> np.ndarray:
        rows = [int(str(e)[len(self.prefix) :]) for e in data.event_ids]
        return self.probs[rows]


def stream(
    data: LoggedData,
    candidates: Sequence[Candidate] | None = None,
    *,
    rows_per_chunk: int = 700,
    specs: Sequence[str] = (),
    **options: Any,
) -> ReplayResult:
    """`evaluate_stream` over ``data`` in chunks; ``candidates`` fixed, else built from
    ``specs`` (the default set when empty) after the scan."""

    def policies(plan: Any) -> Sequence[Candidate]:
        return list(candidates) if candidates is not None else build_planned(specs, plan)

    return evaluate_stream(
        lambda: chunks_of_logged(data, rows_per_chunk),
        policies,
        none_action=data.none_action,
        actions=data.actions,
        source_name=data.source,
        **options,
    )


def assert_same_result(first: ReplayResult, second: ReplayResult, *, atol: float = 1e-9) -> None:
    """Same rows in the same order, numbers within ``atol``, same diagnostics and notes."""
    assert (first.n_events, first.actions, first.triggers, first.policies, first.estimators) == (
        second.n_events, second.actions, second.triggers, second.policies, second.estimators,
    )  # fmt: skip
    assert dict(first.skipped) == dict(second.skipped)
    assert first.notes == second.notes
    for rows_a, rows_b in (
        (first.estimates, second.estimates),
        (first.contrasts, second.contrasts),
    ):
        assert len(rows_a) == len(rows_b)
        for a, b in zip(rows_a, rows_b, strict=True):
            for f in fields(a):
                x, y = getattr(a, f.name), getattr(b, f.name)
                if f.name in NUMBERS:
                    assert np.isclose(x, y, rtol=0.0, atol=atol, equal_nan=True), (a, b, f.name)
                elif f.name != "method":
                    assert x == y, (a, b, f.name)
    for a, b in zip(first.diagnostics, second.diagnostics, strict=True):
        assert (a.policy, a.n, a.min_weight, a.max_weight, a.warnings) == (
            b.policy, b.n, b.min_weight, b.max_weight, b.warnings,
        )  # fmt: skip
        assert np.isclose(a.ess, b.ess, rtol=1e-12)
        assert np.isclose(a.zero_support_share, b.zero_support_share, rtol=1e-12)
