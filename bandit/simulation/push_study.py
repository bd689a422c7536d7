"""A push-nudge study on the simulator: weekly pushes to parents to bring a child back to a
maths app, four messages plus a no-message control, assigned uniformly at random.

Follows the randomized study of push nudges to ~100,000 parents (teacher recommendation, peer
usage norm, parental role, future opportunities; control gets nothing; outcome: the child
logs in that week). The truth is stylised and stronger than the real study's so that a log
of tens of thousands of pushes separates the policies:
- the child logs in with probability sigmoid(base + effect of the message);
- the base rises with last week's use and falls in rural schools (control ~40%);
- each message helps a subgroup and does nothing or harm elsewhere, so the best single
  message beats a random one, a personalized assignment beats the best single message, and
  holding back where every message harms (targeting) beats sending to all.
The reward is the login (downstream value 1), for the control too; see `push_config`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from bandit.config import Config, RewardConfig
from bandit.events import OutcomeLabel, timestamp_text

PUSH_MESSAGES = ("teacher", "peer_norm", "parent_role", "future")
NO_MESSAGE = "none"
PUSH_ACTIONS = (*PUSH_MESSAGES, NO_MESSAGE)
PUSH_TRIGGER = "app/week/push"
GRADES = (1, 2, 3, 4, 5, 6)
ACHIEVEMENT = ("low", "mid", "high")
MESSAGE_FEATURES: dict[str, dict[str, float | str]] = {
    "teacher": {"kind": "teacher", "tone": "authority"},
    "peer_norm": {"kind": "peer_norm", "tone": "social"},
    "parent_role": {"kind": "parent_role", "tone": "identity"},
    "future": {"kind": "future", "tone": "aspiration"},
    NO_MESSAGE: {"kind": "none"},
}


@dataclass(frozen=True)
class Parents:
    """Parent (child) attributes, one array each (index = parent)."""

    grade: np.ndarray
    rural: np.ndarray
    prior_use: np.ndarray
    achievement: np.ndarray


def push_config(base: Config | None = None) -> Config:
    """A config whose reward is the login: every label 0, downstream value weight 1, and the
    control earns the same value (``send_nothing`` 0 plus the login)."""
    base = base or Config()
    rewards = RewardConfig(
        helpful=0.0, not_helpful=0.0, ignored=0.0, value_weight=1.0,
        none_action=NO_MESSAGE, send_nothing=0.0,
    )  # fmt: skip
    return base.model_copy(update={"rewards": rewards})


class PushStudy:
    """The parents and the truth of every message; all randomness from `seed`."""

    def __init__(self, seed: int, n_parents: int = 20_000) -> None:
        rng = np.random.default_rng([seed, 21])
        self.seed = seed
        self.n_parents = n_parents
        self.parents = Parents(
            grade=rng.integers(1, 7, n_parents),
            rural=(rng.random(n_parents) < 0.35).astype(np.int64),
            prior_use=(rng.random(n_parents) < 0.45).astype(np.int64),
            achievement=rng.choice(3, n_parents, p=[0.3, 0.45, 0.25]),
        )

    def login_probabilities(self) -> np.ndarray:
        """(parents, 5) P(the child logs in this week) under each action of `PUSH_ACTIONS`."""
        p = self.parents
        base = -0.75 + 1.3 * p.prior_use - 0.35 * p.rural + 0.05 * (p.grade - 3.5)
        young = p.grade <= 3
        effects = np.stack(
            [
                np.where(young, 0.45, -0.25),  # teacher: helps parents of young children
                np.where(p.prior_use == 0, 0.40, -0.30),  # peer norm: only for non-users
                np.where(p.rural == 1, 0.40, -0.20),  # parental role: rural families
                np.where(p.achievement == 2, 0.45, np.where(p.achievement == 0, -0.30, 0.0)),
                np.zeros(self.n_parents),  # no message
            ],
            axis=1,
        )
        return 1.0 / (1.0 + np.exp(-(base[:, None] + effects)))

    def context(self, parent: int) -> dict[str, dict[str, float | str]]:
        """The namespaced features a decision service would log for `parent`."""
        p = self.parents
        return {
            "learner": {
                "grade": f"g{int(p.grade[parent])}",
                "rural": float(p.rural[parent]),
                "prior_use": float(p.prior_use[parent]),
                "achievement": ACHIEVEMENT[int(p.achievement[parent])],
            },
            "trigger": {"id": PUSH_TRIGGER, "state": "push"},
        }


def push_events(
    study: PushStudy, n: int, seed: int, start: str = "2026-03-02T17:00:00+00:00"
) -> list[bytes]:
    """n uniformly random pushes (5 arms, probability 1/5) and the logins they led to, as the
    impression and outcome JSON lines our decision service and app would log (time order)."""
    import orjson

    rng = np.random.default_rng([seed, 22])
    probs = study.login_probabilities()
    t0 = datetime.fromisoformat(start).timestamp()
    lines: list[bytes] = []
    k = len(PUSH_ACTIONS)
    actions = [{"id": a, "features": MESSAGE_FEATURES[a]} for a in PUSH_ACTIONS]
    for i in range(n):
        parent = int(rng.integers(study.n_parents))
        arm = int(rng.integers(k))
        ts = t0 + 0.5 * i
        event_id = f"push{seed}-{i:07d}"
        impression: dict[str, Any] = {
            "type": "impression",
            "event_id": event_id,
            "timestamp": timestamp_text(ts),
            "trigger": PUSH_TRIGGER,
            "learner_id": f"p{parent:06d}",
            "context": study.context(parent),
            "actions": actions,
            "chosen": PUSH_ACTIONS[arm],
            "probability": 1.0 / k,
            "pmf": [1.0 / k] * k,
            "policy_version": "random-assignment",
        }
        lines.append(orjson.dumps(impression))
        if rng.random() < probs[parent, arm]:
            outcome = {
                "type": "outcome",
                "event_id": event_id,
                "timestamp": timestamp_text(ts + 60.0),
                "trigger": PUSH_TRIGGER,
                "outcome": OutcomeLabel.HELPFUL.value,
                "value": 1.0,
            }
            lines.append(orjson.dumps(outcome))
    return lines


def parent_index(learner_id: str) -> int:
    """The parent of a logged learner id ("p000042" -> 42)."""
    return int(learner_id[1:])


def expected_login(study: PushStudy, parents: np.ndarray, target: np.ndarray) -> float:
    """True expected login rate of a policy given as (rows, 5) probabilities over
    `PUSH_ACTIONS` for the parents of `parents` (conditional on those parents)."""
    return float((study.login_probabilities()[parents] * target).sum(axis=1).mean())
