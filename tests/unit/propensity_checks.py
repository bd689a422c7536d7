"""The statistical checks of logged propensities, shared by the library's tests and the HTTP
service's: observed draw frequencies against the logged pmf."""

from __future__ import annotations

import numpy as np
from scipy import stats

# Goodness of fit: a correct sampler fails a chi-square test at this level one time in a
# thousand; with fixed seeds a pass is reproducible, and a wrong propensity (e.g. the
# policy's pmf logged while the mixture was drawn) gives p far below it at this sample size.
P_MIN = 0.001
# Counts of one outcome (forced, exploit) are binomial; 5 standard deviations (p < 6e-7).
SIGMAS = 5.0


def assert_frequencies_match(counts: np.ndarray, pmf: np.ndarray) -> None:
    """Zero-probability actions never drawn; the others at their pmf by chi-square."""
    positive = pmf > 0.0
    assert counts[~positive].sum() == 0, f"drew zero-probability actions: {counts} for {pmf}"
    if positive.sum() < 2:
        return  # one possible action: nothing to test beyond the line above
    expected = counts.sum() * pmf[positive] / pmf[positive].sum()
    result = stats.chisquare(counts[positive], expected)
    assert result.pvalue > P_MIN, f"observed {counts[positive]} vs expected {expected.round(1)}"


def assert_binomial(count: int, n: int, p: float) -> None:
    if p == 0.0:
        assert count == 0
        return
    sd = np.sqrt(n * p * (1.0 - p))
    assert abs(count - n * p) <= SIGMAS * sd, f"{count} of {n}, expected {n * p:.0f} ± {sd:.0f}"
