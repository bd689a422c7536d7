"""The learner's fast path trains exactly what the straightforward one trains.

`OnlineLearner` renders through `ExampleRenderer` and learns through VW's extension
(`VowpalPolicy.learn_text`, `OutcomeModel.learn`); the reference is `vw_text.example_lines` /
`outcome_line` handed to `vowpalwabbit.Workspace.learn`, the public API. Saved models must be
byte-identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from pruning_fixtures import simulated_joined_events

from bandit.config import Config, parse_config
from bandit.join import JoinedEvent
from bandit.learning import GLOBAL_SCOPE, OnlineLearner
from bandit.policies import OutcomeModel, VowpalPolicy
from bandit.simulation.world import World
from bandit.state import LearnerState
from bandit.vw_text import NamespaceLetters, example_lines, outcome_line

N_EVENTS = 600


@pytest.fixture(scope="module")
def events() -> list[JoinedEvent]:
    return simulated_joined_events(World(5, 300), parse_config({}), N_EVENTS, seed=11)


def learner(config: Config) -> OnlineLearner:
    return OnlineLearner(
        config.learner, none_action=config.rewards.none_action, reaction_cap=3,
        pruning=config.pruning,
    )  # fmt: skip


def labelled_lines(learner: OnlineLearner, event: JoinedEvent) -> list[str]:
    imp = event.impression
    return example_lines(
        imp.context, imp.action_ids, imp.action_features, learner.letters,
        label=(imp.chosen_index, -event.reward, imp.probability),
    )  # fmt: skip


def test_learn_text_saves_the_same_model_as_workspace_learn_of_the_lines(
    events: Sequence[JoinedEvent],
) -> None:
    config = parse_config({})
    reference_learner = learner(config)
    with (
        VowpalPolicy(config.learner.vw_arguments()) as fast,
        VowpalPolicy(config.learner.vw_arguments()) as slow,
    ):
        for event in events:
            lines = labelled_lines(reference_learner, event)
            fast.learn_text("\n".join(lines))
            slow._workspace().learn(list(lines))  # the public wrapper, line by line
        assert fast.to_bytes() == slow.to_bytes()
        assert fast.examples_learned == len(events)
    reference_learner.close()


def test_learn_text_cleans_the_text_as_workspace_parse_does() -> None:
    text = "shared |l x:1\r\n0:-1:0.5 |a id=a\n|a id=b tone=end\x0c  "
    with (
        VowpalPolicy("--cb_explore_adf --quiet") as fast,
        VowpalPolicy("--cb_explore_adf --quiet") as slow,
    ):
        for _ in range(20):
            fast.learn_text(text)
            slow._workspace().learn(text)
        assert fast.to_bytes() == slow.to_bytes()


def test_outcome_model_learns_the_same_model_as_workspace_learn(
    events: Sequence[JoinedEvent],
) -> None:
    config = parse_config({"learner": {"outcome_model": True}})
    letters = learner(config).letters
    arguments = config.learner.outcome_model_arguments()
    with OutcomeModel(arguments) as fast, OutcomeModel(arguments) as slow:
        for event in events:
            line = labelled_outcome_line(letters, event)
            fast.learn(line)
            slow._workspace().learn(line)
        assert fast.to_bytes() == slow.to_bytes()


def labelled_outcome_line(letters: NamespaceLetters, event: JoinedEvent) -> str:
    imp = event.impression
    features = imp.action_features[imp.chosen_index]
    return outcome_line(imp.context, imp.chosen, features, letters, label=event.label.value)


def reference_state(config: Config, events: Sequence[JoinedEvent]) -> LearnerState:
    """The models `Workspace.learn` trains from `vw_text`'s lines, routed as the learner does."""
    probe = learner(config)
    policies: dict[str, VowpalPolicy] = {}
    outcomes = OutcomeModel(config.learner.outcome_model_arguments())
    for event in events:
        imp = event.impression
        scope = probe.scope_of(imp.trigger)
        if scope not in policies:
            trigger = None if scope == GLOBAL_SCOPE else scope
            policies[scope] = VowpalPolicy(config.learner.vw_arguments(trigger))
        policies[scope]._workspace().learn(labelled_lines(probe, event))
        if imp.chosen != config.rewards.none_action:
            outcomes._workspace().learn(labelled_outcome_line(probe.letters, event))
    state = LearnerState(
        models={scope: policies[scope].to_bytes() for scope in sorted(policies)},
        outcome_model=outcomes.to_bytes(),
    )
    for model in (*policies.values(), outcomes):
        model.finish()
    probe.close()
    return state


@pytest.mark.parametrize("scope", ["global", "per_trigger"])
def test_learner_models_equal_workspace_learn_of_the_reference_lines(
    events: Sequence[JoinedEvent], scope: str
) -> None:
    config = parse_config(
        {
            "learner": {"outcome_model": True, "scope": scope},
            "pruning": {"evaluate_every_events": 97, "min_impressions": 5},
        }
    )
    fast = learner(config)
    for event in events:
        fast.learn(event)

    state = fast.state()
    reference = reference_state(config, events)
    assert (state.models, state.outcome_model) == (reference.models, reference.outcome_model)
    assert len(state.models) == (1 if scope == "global" else len(fast.catalogue.triggers))
    assert fast.examples_learned == len(events)
    assert state.pruning["statuses"], "pruning was evaluated on the way"
    fast.close()
