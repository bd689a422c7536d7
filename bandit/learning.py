"""Online learning of joined events: routes each to its policy (global or per trigger) and learns.

A joined event is an impression with its reward; the policy learns cost = -reward at the
logged probability, which is what makes VW's off-policy estimates (IPS/DR/MTR) unbiased.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from bandit.config import LearnerConfig
from bandit.events import Impression, OutcomeLabel
from bandit.policies import VowpalPolicy
from bandit.vw_text import NamespaceLetters, example_lines

GLOBAL_SCOPE = "global"


@dataclass(frozen=True, slots=True)
class JoinedEvent:
    """An impression with the outcome the join settled on and the reward it is worth."""

    impression: Impression
    label: OutcomeLabel
    value: float | None
    reward: float
    defaulted: bool  # True when no outcome arrived in the window


class OnlineLearner:
    """The set of VW policies of one deployment, keyed by scope (one global, or per trigger)."""

    def __init__(self, config: LearnerConfig, models: Mapping[str, bytes] | None = None) -> None:
        self.config = config
        self.letters = NamespaceLetters(dict(config.namespaces), config.action_namespace)
        self._arguments = config.vw_arguments()
        self._policies: dict[str, VowpalPolicy] = {}
        for scope, model in (models or {}).items():
            self._policies[scope] = VowpalPolicy(self._arguments, model)

    def scope_of(self, trigger: str) -> str:
        return trigger if self.config.scope == "per_trigger" else GLOBAL_SCOPE

    def _policy(self, scope: str) -> VowpalPolicy:
        policy = self._policies.get(scope)
        if policy is None:
            policy = self._policies[scope] = VowpalPolicy(self._arguments)
        return policy

    def learn(self, event: JoinedEvent) -> None:
        imp = event.impression
        lines = example_lines(
            imp.context,
            imp.action_ids,
            imp.action_features,
            self.letters,
            label=(imp.chosen_index, -event.reward, imp.probability),
        )
        self._policy(self.scope_of(imp.trigger)).learn(lines)

    def predict(
        self,
        trigger: str,
        context: Mapping[str, Mapping[str, float | str]],
        action_ids: tuple[str, ...],
        action_features: tuple[Mapping[str, float | str], ...],
    ) -> np.ndarray:
        """The current exploration pmf for a decision (uniform for a scope never trained)."""
        scope = self.scope_of(trigger)
        if scope not in self._policies:
            return np.full(len(action_ids), 1.0 / len(action_ids))
        lines = example_lines(context, action_ids, action_features, self.letters)
        return self._policies[scope].predict(lines)

    def models(self) -> Iterator[tuple[str, bytes]]:
        """(scope, model bytes) of every policy, for checkpoints and snapshots."""
        for scope in sorted(self._policies):
            yield scope, self._policies[scope].to_bytes()

    @property
    def examples_learned(self) -> int:
        """Examples learned by this process (not counting those inside restored models)."""
        return sum(p.examples_learned for p in self._policies.values())

    def close(self) -> None:
        for policy in self._policies.values():
            policy.finish()
        self._policies.clear()
