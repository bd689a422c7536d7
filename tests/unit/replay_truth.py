"""Shared by replay tests: simulated logs with known truth as `LoggedData`, and fixed policies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandit.config import Config
from bandit.simulation.logged import SimulatedLog, trigger_masks
from bandit.simulation.world import World
from replay.logged import LoggedData


def as_logged_data(log: SimulatedLog, prefix: str = "e") -> LoggedData:
    """The simulated log as replay input (no contexts: policies here read learner and trigger)."""
    n = len(log.chosen)
    return LoggedData(
        event_ids=np.array([f"{prefix}{i}" for i in range(n)], dtype=object),
        triggers=np.array(log.trigger_ids, dtype=object)[log.triggers],
        learners=np.array([f"u{i:06d}" for i in log.learners], dtype=object),
        timestamps=np.arange(n, dtype=np.float64),
        actions=log.actions,
        mask=log.mask,
        chosen=log.chosen,
        pscore=log.pscore,
        logging_pmf=log.logging_pmf,
        reward=log.reward,
        labels=np.array([""] * n, dtype=object),
        none_action="none",
    )


@dataclass(frozen=True)
class TablePolicy:
    """A fixed policy: (triggers, K) probabilities, or (learners, triggers, K) personalized."""

    name: str
    table: np.ndarray
    log: SimulatedLog

    def probabilities(self, data: LoggedData) -> np.ndarray:
        if self.table.ndim == 2:
            return self.table[self.log.triggers]
        return self.table[self.log.learners, self.log.triggers]

    @property
    def personalized(self) -> bool:
        return self.table.ndim == 3


def fixed_policies(world: World, truth: np.ndarray, log: SimulatedLog) -> list[TablePolicy]:
    """Uniform, never send, send to all, best message per trigger (trigger-level policies) and
    the oracle and a softmax of the truth (personalized ones)."""
    masks = trigger_masks(world)
    k = masks.shape[1]
    uniform = np.where(masks, 1.0 / masks.sum(axis=1, keepdims=True), 0.0)
    never = np.zeros_like(uniform)
    never[:, k - 1] = 1.0
    messages = masks.copy()
    messages[:, k - 1] = False
    send_all = np.where(messages, 1.0 / messages.sum(axis=1, keepdims=True), 0.0)
    best = np.eye(k)[np.where(masks, truth.mean(axis=0), -np.inf).argmax(axis=1)]
    available = np.where(masks[None], truth, -np.inf)
    oracle = np.eye(k)[available.argmax(axis=2)]
    soft = np.where(masks[None], np.exp(5.0 * np.where(masks[None], truth, 0.0)), 0.0)
    soft /= soft.sum(axis=2, keepdims=True)
    tables = {
        "uniform": uniform, "never-send": never, "send-to-all": send_all,
        "best-per-trigger": best, "oracle": oracle, "soft-oracle": soft,
    }  # fmt: skip
    return [TablePolicy(name, table, log) for name, table in tables.items()]


def default_config() -> Config:
    return Config()
