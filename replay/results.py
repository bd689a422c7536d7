"""What a replay run found: estimates per policy and estimator, diagnostics, gains and effects.

Plain frozen records so the console table, the JSON output and the HTML report all read the
same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd
    from _typeshed import DataclassInstance

    from replay.result_plot import SvgFigure

ALL_TRIGGERS = "*"  # the `trigger` of a row that covers every trigger


@dataclass(frozen=True)
class EstimateRow:
    """One policy's value by one estimator, overall (trigger ``*``) or at one trigger."""

    policy: str
    estimator: str
    trigger: str
    value: float
    low: float
    high: float
    se: float
    n: int  # logged decisions the row rests on
    method: str  # interval: normal | bootstrap


@dataclass(frozen=True)
class PolicyDiagnostics:
    """Overlap of the logged data with one candidate policy (unclipped importance weights)."""

    policy: str
    n: int
    ess: float
    min_weight: float
    max_weight: float
    zero_support_share: float
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Contrast:
    """A paired difference of two values on the same logged decisions, with its interval.

    ``kind`` gain: policy ``first`` minus policy ``second`` (e.g. personalized minus best
    uniform); effect: always sending message ``first`` minus sending nothing (``second``).
    """

    kind: Literal["gain", "effect"]
    name: str
    first: str
    second: str
    trigger: str
    estimator: str
    value: float
    low: float
    high: float
    se: float
    n: int
    method: str


@dataclass(frozen=True)
class ReplayResult:
    """Everything one `nudge replay` run reports."""

    source: str
    n_events: int
    skipped: dict[str, int]
    actions: tuple[str, ...]
    triggers: tuple[str, ...]
    policies: tuple[str, ...]
    estimators: tuple[str, ...]
    confidence: float
    estimates: tuple[EstimateRow, ...]
    diagnostics: tuple[PolicyDiagnostics, ...]
    contrasts: tuple[Contrast, ...] = ()
    notes: tuple[str, ...] = ()
    timings_s: dict[str, float] = field(default_factory=dict)

    def estimate(self, policy: str, estimator: str, trigger: str = ALL_TRIGGERS) -> EstimateRow:
        """The row of one policy and estimator; KeyError naming what exists otherwise."""
        for row in self.estimates:
            if (row.policy, row.estimator, row.trigger) == (policy, estimator, trigger):
                return row
        raise KeyError(
            f"no estimate for policy {policy!r}, estimator {estimator!r}, trigger {trigger!r}; "
            f"policies {list(self.policies)}, estimators {list(self.estimators)}"
        )

    def contrast(self, name: str, estimator: str, trigger: str = ALL_TRIGGERS) -> Contrast:
        for row in self.contrasts:
            if (row.name, row.estimator, row.trigger) == (name, estimator, trigger):
                return row
        raise KeyError(f"no contrast {name!r} for estimator {estimator!r}, trigger {trigger!r}")

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (floats as they are; the CLI serialises with orjson)."""
        return {
            "source": self.source,
            "n_events": self.n_events,
            "skipped": dict(self.skipped),
            "actions": list(self.actions),
            "triggers": list(self.triggers),
            "policies": list(self.policies),
            "estimators": list(self.estimators),
            "confidence": self.confidence,
            "estimates": [asdict(r) for r in self.estimates],
            "diagnostics": [{**asdict(d), "warnings": list(d.warnings)} for d in self.diagnostics],
            "contrasts": [asdict(c) for c in self.contrasts],
            "notes": list(self.notes),
            "timings_s": dict(self.timings_s),
        }

    def to_frame(self) -> pd.DataFrame:
        """The estimates as a tidy DataFrame, one row per policy, estimator and trigger
        (``*``: all triggers): policy, estimator, trigger, value, low, high, se, n, method."""
        return _frame(EstimateRow, self.estimates)

    def gains_frame(self) -> pd.DataFrame:
        """The paired contrasts, one row per contrast, estimator and trigger: kind (gain, or
        effect of a message vs no message), name, first, second (value = first - second),
        trigger, estimator, value, low, high, se, n, method."""
        return _frame(Contrast, self.contrasts)

    def diagnostics_frame(self) -> pd.DataFrame:
        """Overlap per policy: n, ess, min_weight, max_weight, zero_support_share, warnings."""
        return _frame(PolicyDiagnostics, self.diagnostics)

    def plot(
        self, *, estimators: Sequence[str] | None = None, trigger: str = ALL_TRIGGERS
    ) -> SvgFigure:
        """Policy values, then gains and effects, with their intervals, as an SVG figure that
        Jupyter shows inline (`replay.result_plot`)."""
        from replay.result_plot import result_plot

        return result_plot(self, estimators=estimators, trigger=trigger)


def _frame(row_type: type[DataclassInstance], rows: Sequence[DataclassInstance]) -> pd.DataFrame:
    """Rows of a result dataclass as a DataFrame with its fields as columns (even when empty)."""
    import pandas as pd

    columns = [f.name for f in fields(row_type)]
    return pd.DataFrame([asdict(r) for r in rows], columns=columns)
