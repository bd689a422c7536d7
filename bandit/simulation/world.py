"""A synthetic learning platform with known truth: learners, courses, triggers and messages.

The chance that a learner finds a message helpful / not helpful / ignores it is a softmax
over (helpful, not helpful, ignored=0) logits that depend on learner × message × trigger:
- `hint` helps novices who failed a quiz and annoys experienced learners;
- `review_notes` helps active learners; its `v2` version is better for paid learners;
- `peer_norm` helps students and low prior-click learners, annoys the employed;
- `next_item` helps after a completed lecture; `encourage` helps inactive learners;
- after a passed final every message does net harm, so sending nothing is best there;
- some (message, trigger) pairs are truly bad (a large not-helpful boost): `bad_pairs`.
Everything is drawn from a seed, and `expected_rewards` gives the exact expected reward of
every candidate, which later work uses to score policies against the truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bandit.config import JoinConfig, RewardConfig
from bandit.events import OutcomeLabel

NONE_ACTION = "none"
GENDERS = ("f", "m", "x")
AGE_BANDS = ("18-24", "25-34", "35-49", "50+")
COUNTRIES = ("US", "IN", "BR", "PE", "DE", "NG")
EMPLOYMENT = ("student", "employed", "unemployed")
EDUCATION = ("secondary", "bachelor", "graduate")
DOMAINS = ("math", "cs", "business", "language")
STATES = ("lecture-completed", "quiz-failed", "inactive-7d", "final-passed")
CANDIDATES_BY_STATE = {
    "lecture-completed": ("next_item", "review_notes.v1", "peer_norm", "encourage", NONE_ACTION),
    "quiz-failed": (
        "hint",
        "review_notes.v1",
        "review_notes.v2",
        "encourage",
        "peer_norm",
        NONE_ACTION,
    ),
    "inactive-7d": ("encourage", "peer_norm", "next_item", NONE_ACTION),
    "final-passed": ("next_item", "encourage", NONE_ACTION),
}
# (helpful, not helpful) logit offsets of each message at each trigger state.
BASE_LOGITS = {
    ("next_item", "lecture-completed"): (-0.2, -1.6),
    ("review_notes.v1", "lecture-completed"): (-1.0, -1.0),
    ("peer_norm", "lecture-completed"): (-1.2, -0.9),
    ("encourage", "lecture-completed"): (-1.4, -1.2),
    ("hint", "quiz-failed"): (-0.6, -1.2),
    ("review_notes.v1", "quiz-failed"): (-0.8, -1.1),
    ("review_notes.v2", "quiz-failed"): (-0.9, -1.2),
    ("encourage", "quiz-failed"): (-1.1, -1.0),
    ("peer_norm", "quiz-failed"): (-1.3, -0.8),
    ("encourage", "inactive-7d"): (-0.5, -1.2),
    ("peer_norm", "inactive-7d"): (-0.9, -1.0),
    ("next_item", "inactive-7d"): (-1.0, -0.8),
    ("next_item", "final-passed"): (-1.8, -0.4),
    ("encourage", "final-passed"): (-1.6, -0.5),
}  # fmt: skip
MESSAGE_FEATURES = {
    "hint": {"kind": "hint", "tone": "instructive"},
    "review_notes.v1": {"kind": "review_notes", "version": "v1", "tone": "instructive"},
    "review_notes.v2": {"kind": "review_notes", "version": "v2", "tone": "friendly"},
    "peer_norm": {"kind": "peer_norm", "tone": "social"},
    "next_item": {"kind": "next_item", "tone": "neutral"},
    "encourage": {"kind": "encourage", "tone": "friendly"},
    NONE_ACTION: {"kind": "none"},
}


@dataclass(frozen=True, slots=True)
class Learners:
    """Learner attributes, one array per attribute (index = learner)."""

    gender: np.ndarray
    age_band: np.ndarray
    country: np.ndarray
    employment: np.ndarray
    education: np.ndarray
    paid: np.ndarray
    completed_courses: np.ndarray
    prior_ctr: np.ndarray
    weekly_activity: np.ndarray


@dataclass(frozen=True, slots=True)
class Trigger:
    """A course-item-state where nudges fire, with its candidate messages."""

    trigger_id: str
    course: int
    state: str
    candidates: tuple[str, ...]


class World:
    """The simulated platform; all randomness comes from `seed`."""

    def __init__(
        self, seed: int, n_learners: int = 5000, n_courses: int = 4, bad_pair_share: float = 0.15
    ):
        rng = np.random.default_rng([seed, 1])
        self.seed = seed
        self.learners = Learners(
            gender=rng.integers(0, len(GENDERS), n_learners),
            age_band=rng.integers(0, len(AGE_BANDS), n_learners),
            country=rng.integers(0, len(COUNTRIES), n_learners),
            employment=rng.choice(len(EMPLOYMENT), n_learners, p=[0.4, 0.45, 0.15]),
            education=rng.integers(0, len(EDUCATION), n_learners),
            paid=(rng.random(n_learners) < 0.3).astype(np.int64),
            completed_courses=rng.geometric(0.3, n_learners) - 1,
            prior_ctr=rng.beta(2.0, 6.0, n_learners),
            weekly_activity=rng.lognormal(1.0, 0.8, n_learners),
        )
        self.n_learners = n_learners
        self.course_domain = rng.integers(0, len(DOMAINS), n_courses)
        self.course_difficulty = rng.integers(1, 4, n_courses)
        self.course_rating = np.round(rng.uniform(3.0, 5.0, n_courses), 1)
        self.triggers: tuple[Trigger, ...] = tuple(
            Trigger(f"{chr(ord('A') + c)}/{item}/{state}", c, state, CANDIDATES_BY_STATE[state])
            for c in range(n_courses)
            for item, state in zip(("lecture-9", "quiz-3", "week-2", "final"), STATES, strict=True)
        )
        self._pair_offset: dict[tuple[str, str], float] = {}
        bad: set[tuple[str, str]] = set()
        for trig in self.triggers:
            for msg in trig.candidates:
                if msg == NONE_ACTION:
                    continue
                self._pair_offset[(msg, trig.trigger_id)] = float(rng.normal(0.0, 0.2))
                if trig.state != "final-passed" and rng.random() < bad_pair_share:
                    bad.add((msg, trig.trigger_id))
        self.bad_pairs: frozenset[tuple[str, str]] = frozenset(bad)

    # ---- truth --------------------------------------------------------------------------

    def outcome_probabilities(
        self, learner: int, trigger: Trigger, message: str
    ) -> tuple[float, float, float]:
        """P(helpful), P(not helpful), P(ignored) of `message` shown to `learner` at `trigger`."""
        if message == NONE_ACTION:
            return 0.0, 0.0, 1.0
        h, n = BASE_LOGITS[(message, trigger.state)]
        h += self._pair_offset[(message, trigger.trigger_id)]
        if (message, trigger.trigger_id) in self.bad_pairs:
            n += 1.8
            h -= 0.8
        L = self.learners
        novice = L.completed_courses[learner] < 2
        active = L.weekly_activity[learner] > 3.0
        kind = message.split(".")[0]
        if kind == "hint":
            h += 1.3 if novice else -0.6
            n += -0.4 if novice else 1.0
        elif kind == "review_notes":
            h += 0.9 if active else -0.4
            if message.endswith("v2"):
                h += 0.7 if L.paid[learner] else -0.5
        elif kind == "peer_norm":
            h += 0.8 if EMPLOYMENT[L.employment[learner]] == "student" else -0.2
            h += 1.2 * (0.25 - L.prior_ctr[learner])
            n += 0.8 if EMPLOYMENT[L.employment[learner]] == "employed" else 0.0
        elif kind == "next_item":
            h += 0.3 * (4 - self.course_difficulty[trigger.course]) - 0.3
        elif kind == "encourage":
            h += 0.5 if not active else -0.3
            n += 0.4 if active else 0.0
        eh, en = math.exp(h), math.exp(n)
        z = 1.0 + eh + en
        return eh / z, en / z, 1.0 / z

    def expected_rewards(
        self,
        learner: int,
        trigger: Trigger,
        rewards: RewardConfig,
        join: JoinConfig,
        median_delay_s: float,
    ) -> np.ndarray:
        """Exact expected reward of each candidate at `trigger`, as the join will score it.

        A reaction counts only if it arrives within the window (log-normal delay); otherwise the
        default outcome's reward applies. Downstream value: Poisson(3) if helpful, (1) if not.
        """
        q = delay_within(join.window_s, median_delay_s)
        r_default = rewards.of(join.default_outcome, None)
        # An ignored nudge sends no outcome, so the default outcome's reward applies to it.
        r_h = rewards.of(OutcomeLabel.HELPFUL, None)
        r_n = rewards.of(OutcomeLabel.NOT_HELPFUL, None)
        out = np.empty(len(trigger.candidates))
        for i, msg in enumerate(trigger.candidates):
            if msg == rewards.none_action:
                out[i] = rewards.send_nothing  # nothing shown: no reaction, no downstream value
                continue
            ph, pn, pi = self.outcome_probabilities(learner, trigger, msg)
            reacted = ph * (q * r_h + (1 - q) * r_default) + pn * (q * r_n + (1 - q) * r_default)
            value = rewards.value_weight * q * (3.0 * ph + 1.0 * pn)
            out[i] = reacted + pi * r_default + value
        return out

    # ---- the context a decision service would log ----------------------------------------

    def context(self, learner: int, trigger: Trigger) -> dict[str, dict[str, float | str]]:
        """Namespaced features of one decision (the `context` field of an impression)."""
        L = self.learners
        c = trigger.course
        return {
            "learner": {
                "gender": GENDERS[L.gender[learner]],
                "age": AGE_BANDS[L.age_band[learner]],
                "country": COUNTRIES[L.country[learner]],
                "employment": EMPLOYMENT[L.employment[learner]],
                "education": EDUCATION[L.education[learner]],
                "paid": float(L.paid[learner]),
                "novice": float(L.completed_courses[learner] < 2),
                "completed_log": round(math.log1p(float(L.completed_courses[learner])), 4),
                "prior_ctr": round(float(L.prior_ctr[learner]), 4),
            },
            "course": {
                "domain": DOMAINS[self.course_domain[c]],
                "difficulty": float(self.course_difficulty[c]),
                "rating": float(self.course_rating[c]),
            },
            "trigger": {"id": trigger.trigger_id, "state": trigger.state},
            "activity": {
                "weekly": round(float(L.weekly_activity[learner]), 3),
                "active": float(L.weekly_activity[learner] > 3.0),
            },
        }


def delay_within(window_s: float, median_delay_s: float, sigma: float = 1.0) -> float:
    """P(log-normal reaction delay with this median and sigma <= window_s)."""
    z = (math.log(window_s) - math.log(median_delay_s)) / sigma
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
