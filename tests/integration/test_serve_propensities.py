"""100,000 decisions through `nudge serve` over HTTP (two worker processes, each with its own
random stream): the logged probability is each action's share of the draws, by the same
chi-square test the decision library passes in process (tests/unit/test_decisions.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.integration.conftest import Deployment
from tests.integration.serving import API_KEY, serving
from tests.unit.propensity_checks import assert_binomial, assert_frequencies_match

pytestmark = pytest.mark.kafka

N_DECISIONS = 100_000
CLIENTS = 8
CANDIDATES = ["hint", "review_notes.v1", "review_notes.v2", "peer_norm", "none"]


def _decide_many(base: str, n: int) -> tuple[Counter[tuple[str, str]], set[tuple[float, ...]], int]:
    counts: Counter[tuple[str, str]] = Counter()
    pmfs: set[tuple[float, ...]] = set()
    mismatched = 0
    body = {
        "trigger": "A/quiz-3/quiz-failed",
        "learner_id": "u000042",
        "context": {"learner": {"novice": 1}},
        "candidates": CANDIDATES,
    }
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for _ in range(n):
            r = client.post("/v1/decide", json=body)
            assert r.status_code == 200, r.text
            d = r.json()
            pmf = tuple(p["probability"] for p in d["pmf"])
            pmfs.add(pmf)
            mismatched += pmf[CANDIDATES.index(d["action"])] != d["probability"]
            counts[(d["action"], d["why"])] += 1
    return counts, pmfs, mismatched


def test_probabilities_served_over_http_are_the_real_sampling_frequencies(
    deployment: Callable[..., Deployment], tmp_path: Path
) -> None:
    dep = deployment(
        serve={"spool_directory": str(tmp_path / "spool"), "spool_max_events": 200_000},
        decisions={"default": {"cold_start_outcomes": 0, "forced_share": 0.1}},
    )
    dep.simulate("--events", "3000", "--seed", "7")  # a trained policy, not a uniform one
    first = dep.nudge("consume", "--until-idle", "2")
    assert first.returncode == 0, first.stderr[-2000:]
    with serving(dep, workers=2) as base, ThreadPoolExecutor(CLIENTS) as pool:
        parts = list(pool.map(lambda _: _decide_many(base, N_DECISIONS // CLIENTS), range(CLIENTS)))
    counts: Counter[tuple[str, str]] = Counter()
    pmfs: set[tuple[float, ...]] = set()
    for c, p, mismatched in parts:
        counts.update(c)
        pmfs |= p
        assert mismatched == 0
    assert len(pmfs) == 1, pmfs  # one policy, one context: one pmf in every process
    (pmf_tuple,) = pmfs
    pmf = np.array(pmf_tuple)
    by_action = np.array([sum(v for (a, _), v in counts.items() if a == x) for x in CANDIDATES])
    assert by_action.sum() == N_DECISIONS
    assert_frequencies_match(by_action, pmf)
    forced = sum(v for (_, why), v in counts.items() if why == "forced")
    assert_binomial(forced, N_DECISIONS, 0.1)
    forced_by_action = np.array([counts[(x, "forced")] for x in CANDIDATES])
    messages = np.array([a != "none" for a in CANDIDATES], dtype=float)
    assert_frequencies_match(forced_by_action, messages / messages.sum())
