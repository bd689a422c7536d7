"""Online learning of joined events: routes each to its policy (global or per trigger) and learns.

A joined event is an impression with its reward; the policy learns cost = -reward at the
logged probability, which is what makes VW's off-policy estimates (IPS/DR/MTR) unbiased.
Alongside the policies it keeps the action catalogue, each learner's reaction count (for
cold start) and, when configured, the outcome model of the send rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from bandit.arms import ArmStats
from bandit.catalogue import ActionCatalogue, ReactionCounts
from bandit.config import LearnerConfig, PruningConfig
from bandit.errors import LearnerError
from bandit.example_text import ExampleRenderer
from bandit.exploration import feature_flag_set, only_epsilon_differs, same_exploration
from bandit.join import JoinedEvent
from bandit.policies import OutcomeModel, VowpalPolicy
from bandit.pruning import PruningState
from bandit.state import LearnerState
from bandit.vw_text import NamespaceLetters, example_lines, outcome_class
from bandit.vw_worker import RemoteOutcomeModel, RemotePolicy, VowpalWorker

GLOBAL_SCOPE = "global"
Policy = VowpalPolicy | RemotePolicy
Outcomes = OutcomeModel | RemoteOutcomeModel


def scope_of(scope: str, trigger: str) -> str:
    """The policy a trigger's decisions use: its own (per_trigger) or the global one."""
    return trigger if scope == "per_trigger" else GLOBAL_SCOPE


class OnlineLearner:
    """The VW models of one deployment: policies by scope, and the optional outcome model."""

    def __init__(
        self,
        config: LearnerConfig,
        models: Mapping[str, bytes] | None = None,
        *,
        state: LearnerState | None = None,
        none_action: str = "none",
        reaction_cap: int = 0,
        pruning: PruningConfig | None = None,
        separate_process: bool = False,
    ) -> None:
        """`separate_process`: the VW models live in a child process (`bandit.vw_worker`),
        fed in batches, so VW learns on another core while this one renders the next events;
        `state()` waits for every example sent before it (a consistent cut)."""
        state = state or LearnerState(models=dict(models or {}))
        self.config = config
        self.none_action = none_action
        self.letters = NamespaceLetters(dict(config.namespaces), config.action_namespace)
        self._masks = dict(state.masks)
        self._worker = VowpalWorker().start() if separate_process else None
        self._policies: dict[str, Policy] = {}
        self._outcomes: Outcomes | None = None
        try:
            for scope, model in state.models.items():
                runtime = self._runtime_flags(scope, state.arguments.get(scope))
                self._policies[scope] = self._new_policy(
                    scope, model, self._masks.get(scope), runtime
                )
            if config.outcome_model:
                arguments = config.outcome_model_arguments()
                self._outcomes = (
                    OutcomeModel(arguments, state.outcome_model)
                    if self._worker is None
                    else RemoteOutcomeModel(
                        self._worker, "outcome-model", arguments, state.outcome_model
                    )
                )
        except BaseException:
            self.close()
            raise
        self.catalogue = ActionCatalogue.from_json(state.catalogue)
        self.reactions = ReactionCounts(reaction_cap, state.reactions)
        self.pruning_config = pruning or PruningConfig(enabled=False)
        self.arms = ArmStats.from_json(
            state.arms, self.pruning_config.half_life_impressions, none_action
        )
        self.pruning = PruningState.from_json(state.pruning)
        self._render = ExampleRenderer(self.letters)
        self._per_trigger = config.scope == "per_trigger"  # `scope_of` without a call per event

    def scope_of(self, trigger: str) -> str:
        return scope_of(self.config.scope, trigger)

    def _arguments_of(self, scope: str) -> str:
        return self.config.vw_arguments(None if scope == GLOBAL_SCOPE else scope)

    def _runtime_flags(self, scope: str, saved: str | None) -> str:
        """Flags a restored policy takes from the config: `vw_args` (VW refuses ones that
        disagree with the saved reductions) and a changed epsilon; a saved model keeps its
        exploration algorithm, so asking for another one is an error, not silently ignored."""
        trigger = None if scope == GLOBAL_SCOPE else scope
        if saved is not None and feature_flag_set(saved) != feature_flag_set(
            self.config.feature_flags()
        ):
            raise LearnerError(
                f"policy {scope!r} was saved with interactions/low rank "
                f"{sorted(feature_flag_set(saved))}, the config asks for "
                f"{sorted(feature_flag_set(self.config.feature_flags()))}; a saved VW model keeps "
                "them: restore learner.interactions / low_rank, or start a new deployment"
            )
        wanted = self.config.exploration_for(trigger).vw_flags()
        if saved is None or same_exploration(saved, wanted):
            return self.config.vw_args
        if only_epsilon_differs(saved, wanted):
            return f"{self.config.vw_args} {wanted}"
        raise LearnerError(
            f"policy {scope!r} was saved with {saved!r}, but the config explores with "
            f"{wanted!r}; a saved VW model keeps its exploration algorithm: restore "
            "learner.exploration, or start a new deployment (a new checkpoint directory)"
        )

    def _new_policy(
        self, scope: str, model: bytes | None = None, mask: bytes | None = None, runtime: str = ""
    ) -> Policy:
        arguments = self._arguments_of(scope)
        if self._worker is None:
            return VowpalPolicy(arguments, model, mask, runtime)
        return RemotePolicy(self._worker, f"policy:{scope}", arguments, model, mask, runtime)

    def _policy(self, scope: str) -> Policy:
        policy = self._policies.get(scope)
        if policy is None:
            policy = self._policies[scope] = self._new_policy(scope)
        return policy

    def learn(self, event: JoinedEvent) -> None:
        """Learn one joined event: its policy, then the catalogue, the evidence of pruning, the
        reaction counts and the outcome model."""
        policy, text, outcome = self._render_event(event)
        policy.learn_text(text)
        self._record(event, outcome)

    def _render_event(self, event: JoinedEvent) -> tuple[Policy, str, str | None]:
        """The policy of the event, its labelled example and its outcome-model line (None when
        there is no outcome model or it chose the none action)."""
        imp = event.impression
        render = self._render
        context = render.context_text(imp.context)
        actions = render.action_lines(imp.action_ids, imp.action_features)
        index = imp.chosen_index
        text = render.labelled_text(context, actions, index, -event.reward, imp.probability)
        scope = imp.trigger if self._per_trigger else GLOBAL_SCOPE
        policy = self._policies.get(scope) or self._policy(scope)
        outcome = None
        if self._outcomes is not None and imp.action_ids[index] != self.none_action:
            outcome = render.outcome_text(context, actions, index, outcome_class(event.label.value))
        return policy, text, outcome

    def _record(self, event: JoinedEvent, outcome: str | None) -> None:
        """Everything but the policy: catalogue, evidence, pruning, reactions, outcome model."""
        imp = event.impression
        self.catalogue.observe(imp)
        self.arms.observe(
            imp.trigger, imp.action_ids, imp.chosen_index, imp.probability, event.reward,
            event.label, imp.ts, imp.pmf,
        )  # fmt: skip
        pruning = self.pruning
        pruning.events_since_evaluation += 1
        if pruning.events_since_evaluation >= self.pruning_config.evaluate_every_events:
            self.evaluate_pruning(imp.ts)
        if not event.defaulted:
            self.reactions.record(imp.learner_id)
        if outcome is not None and self._outcomes is not None:
            self._outcomes.learn(outcome)

    def evaluate_pruning(self, now: float) -> None:
        """Re-judge every message at every trigger on the evidence so far (event time `now`)."""
        self.pruning.evaluate(self.arms, self.pruning_config, now)

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

    def state(self) -> LearnerState:
        """A copy of everything learned, for a checkpoint or a snapshot."""
        return LearnerState(
            models=dict(self.models()),
            outcome_model=self._outcomes.to_bytes() if self._outcomes is not None else None,
            catalogue=self.catalogue.to_json(),
            reactions=self.reactions.to_json(),
            masks=dict(self._masks),
            arguments={scope: self._arguments_of(scope) for scope in self._policies},
            arms=self.arms.to_json(),
            pruning=self.pruning.to_json(),
        )

    @property
    def examples_learned(self) -> int:
        """Examples learned by this process (not counting those inside restored models)."""
        return sum(p.examples_learned for p in self._policies.values())

    def close(self) -> None:
        for policy in self._policies.values():
            policy.finish()
        self._policies.clear()
        if self._outcomes is not None:
            self._outcomes.finish()
            self._outcomes = None
        if self._worker is not None:
            self._worker.close()
