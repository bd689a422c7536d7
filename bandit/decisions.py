"""The decision library: load a snapshot, decide what to show (or nothing), log it exactly.

`Decider.decide(trigger, learner_id, context)` returns the chosen action, its probability
under the whole mixture (forced share, cold start, versions, the VW policy or the send rule),
the full pmf, the policy version, why it was chosen, and the impression event to log.
`Decider.decision_pmf(...)` gives that same pmf without drawing (for offline replay).
Hot reload: `reload()` (or the `watch()` thread) loads a new `LATEST` completely and verifies
it before swapping one reference; a call in flight finishes on the policy it started with, and
a snapshot that fails verification is refused while the previous one stays in use. Given the
signing key (`key=bandit.snapshots.signing_key()`), only snapshots signed with it are taken.
Usable without Kafka; thread-safe.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import TypeAdapter, ValidationError

from bandit.config import DecisionRuleConfig, DecisionsConfig
from bandit.errors import NudgeError, SnapshotError
from bandit.events import Identifier, timestamp_text
from bandit.learning import scope_of
from bandit.mixture import (
    argmax,
    collapse_versions,
    draw,
    message_mask,
    mix,
    send_rule_choice,
    send_rule_pmf,
    uniform_over,
)
from bandit.policies import OutcomeModel, VowpalPolicy
from bandit.snapshots import Snapshot, SnapshotStore, load_snapshot
from bandit.vw_text import action_line, context_groups, shared_line

log = logging.getLogger("nudge.decide")

Why = Literal["exploit", "explore", "forced", "cold_start", "retest"]
Context = Mapping[str, Mapping[str, float | str]]


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision: what to show, with what probability, from which policy, and why."""

    action: str
    index: int
    probability: float
    pmf: tuple[float, ...]
    actions: tuple[str, ...]
    why: Why
    policy_version: str
    impression: dict[str, Any]  # the wire-format impression event, ready to log

    def impression_json(self) -> bytes:
        """The impression as JSON bytes for the impressions topic."""
        return orjson.dumps(self.impression)


@dataclass(frozen=True, slots=True)
class _Components:
    """The mixture over the offered candidates: f * uniform + (1 - f) * component."""

    uniform: list[float]
    component: list[float]  # uniform again when cold, else the policy or the send rule
    forced_share: float
    cold: bool


@dataclass(frozen=True, slots=True)
class _Mixture:
    """The full decision pmf over every candidate, and the parts `decide` draws it by."""

    ids: tuple[str, ...]
    feats: tuple[Mapping[str, Any], ...]
    pmf: list[float]
    offered: tuple[int, ...]  # candidates neither pruned nor held
    retest: tuple[int, ...]  # pruned candidates that get the re-test share
    share: float  # the re-test share (0 when nothing is pruned)
    parts: _Components


class _RetryOnNewPolicy(Exception):
    """The policy was swapped out and closed between picking it up and using it."""


class LoadedPolicy:
    """One verified snapshot with live VW models; predictions are serialised by a lock."""

    def __init__(self, snapshot: Snapshot, rules: DecisionsConfig | None = None) -> None:
        m = snapshot.manifest
        self.snapshot = snapshot
        self.version = m.policy_id
        self.scope = m.scope
        self.none_action = m.none_action
        self.letters = m.letters()
        self.namespaces = frozenset(m.namespaces)
        try:
            self.rules = rules or m.decision_rules()
        except ValueError as exc:  # pydantic ValidationError: rules from another version
            raise SnapshotError(f"{snapshot.name}: decision rules do not validate: {exc}") from None
        self.reaction_cap = int(m.pruning.get("reaction_cap", -1))
        deepest = max(r.cold_start_outcomes for r in self.rules.all_rules())
        if 0 <= self.reaction_cap < deepest:
            raise SnapshotError(
                f"{snapshot.name}: decision rules want cold_start_outcomes {deepest}, but the "
                f"consumer counted reactions only up to {self.reaction_cap}: every learner "
                "would stay cold; raise cold_start_outcomes in the consumer's config too"
            )
        self.actions = m.actions
        self.triggers = m.triggers
        self.reactions = snapshot.state.reactions
        self.retest_share = float(m.pruning.get("retest_share", 0.0))
        self._held: dict[str, dict[str, str]] = dict(m.pruning.get("held", {}))
        self._overrides: dict[str, dict[str, str]] = dict(m.pruning.get("overrides", {}))
        self._holds_by_trigger: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        self._rules_by_trigger: dict[str, DecisionRuleConfig] = {}
        # The catalogue's actions never change within a snapshot: render their VW text once.
        self._action_lines = {a: action_line(a, f, self.letters) for a, f in m.actions.items()}
        self._lock = threading.Lock()
        self._closed = False
        self._policies: dict[str, VowpalPolicy] = {}
        self._outcomes: OutcomeModel | None = None
        try:
            for scope, model in snapshot.state.models.items():
                self._policies[scope] = VowpalPolicy(m.vw_arguments, model)
            if snapshot.state.outcome_model is not None:
                self._outcomes = OutcomeModel("", snapshot.state.outcome_model)
        except (NudgeError, OSError) as exc:
            self.close()
            raise SnapshotError(f"{snapshot.name}: a model did not load: {exc}") from exc
        if any(r.policy == "send_rule" for r in self.rules.all_rules()) and not self._outcomes:
            self.close()
            raise SnapshotError(
                f"{snapshot.name}: decision rules use send_rule but the snapshot has no outcome "
                "model (set learner.outcome_model: true in the consumer's config)"
            )

    def holds_for(self, trigger: str) -> tuple[frozenset[str], frozenset[str]]:
        """(pruned, held) messages at `trigger`: pruned ones still get the re-test share,
        held ones (manual `hold`) none. Manual overrides replace the learner's status (the
        first matching pattern wins per message), so a newer config wins over older state."""
        cached = self._holds_by_trigger.get(trigger)
        if cached is None:
            statuses = dict(self._held.get(trigger, {}))
            decided: set[str] = set()
            for pattern, actions in self._overrides.items():
                if not fnmatch.fnmatchcase(trigger, pattern):
                    continue
                for action, manual in actions.items():
                    if action not in decided:
                        decided.add(action)
                        statuses[action] = "forced_hold" if manual == "hold" else "forced_keep"
            pruned = frozenset(a for a, s in statuses.items() if s == "pruned")
            held = frozenset(a for a, s in statuses.items() if s == "forced_hold")
            cached = self._holds_by_trigger[trigger] = (pruned, held)
        return cached

    def rule_for(self, trigger: str) -> DecisionRuleConfig:
        rule = self._rules_by_trigger.get(trigger)
        if rule is None:
            rule = self._rules_by_trigger[trigger] = self.rules.rule_for(trigger)
        return rule

    def _action_texts(
        self, ids: Sequence[str], feats: Sequence[Mapping[str, Any]] | None
    ) -> list[str]:
        if feats is None:
            cached = self._action_lines
            return [cached.get(a) or action_line(a, {}, self.letters) for a in ids]
        return [action_line(a, f, self.letters) for a, f in zip(ids, feats, strict=True)]

    def policy_pmf(
        self,
        trigger: str,
        context: Context,
        ids: Sequence[str],
        feats: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[float]:
        """VW's exploration pmf (uniform when the trigger's scope was never trained).

        `feats` None means the catalogue's features (their VW text is cached).
        """
        policy = self._policies.get(scope_of(self.scope, trigger))
        if policy is None:
            return [1.0 / len(ids)] * len(ids)
        lines = [shared_line(context, self.letters), *self._action_texts(ids, feats)]
        with self._lock:
            if self._closed:
                raise _RetryOnNewPolicy
            return policy.predict_list(lines)

    def outcome_probabilities(
        self,
        context: Context,
        ids: Sequence[str],
        feats: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[list[float]]:
        """P(helpful), P(not helpful), P(ignored) of showing each candidate."""
        assert self._outcomes is not None  # noqa: S101 - checked in __init__
        shared = context_groups(context, self.letters)
        lines = [f"{shared} {text}" for text in self._action_texts(ids, feats)]
        with self._lock:
            if self._closed:
                raise _RetryOnNewPolicy
            return self._outcomes.predict_list(lines)

    def close(self) -> None:
        """Release the models once no call is using them."""
        with self._lock:
            self._closed = True
            for policy in self._policies.values():
                policy.finish()
            if self._outcomes is not None:
                self._outcomes.finish()


class Decider:
    """Decides nudges from the newest snapshot in a directory, reloading when it changes.

    `key`: the snapshot signing key; with it, a snapshot that is unsigned or whose signature
    does not match is refused like any that fails verification (the last good one stays).
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        seed: int | None = None,
        rules: DecisionsConfig | None = None,
        key: bytes | None = None,
    ) -> None:
        self._setup(SnapshotStore(directory, key=key), seed, rules)
        if not self.reload():
            raise SnapshotError(self.last_error or f"{directory}: no snapshot could be loaded")

    @classmethod
    def from_snapshot(
        cls,
        path: Path | str,
        *,
        seed: int | None = None,
        rules: DecisionsConfig | None = None,
        key: bytes | None = None,
    ) -> Decider:
        """A decider on one snapshot directory (no `LATEST`, no reloading)."""
        decider = cls.__new__(cls)
        decider._setup(SnapshotStore(Path(path).parent, key=key), seed, rules)
        decider._current = LoadedPolicy(load_snapshot(path, key=key), rules)
        decider._fixed = True
        return decider

    def _setup(self, store: SnapshotStore, seed: int | None, rules: DecisionsConfig | None) -> None:
        self.store = store
        self._rules = rules
        # Exploration draws, not secrets; random() is one atomic C call, so thread-safe.
        self._rng = random.Random(seed)  # noqa: S311
        self._current: LoadedPolicy | None = None
        self._pointer: tuple[str, str] | None = None
        self._refused_pointer: tuple[str, str] | None = None
        self._fixed = False  # from_snapshot: one snapshot, never reloaded
        self._reload_lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self.reloads = 0
        self.refused = 0
        self.last_error: str | None = None

    @property
    def policy(self) -> LoadedPolicy:
        if self._current is None:
            raise SnapshotError("the decider is closed")
        return self._current

    @property
    def version(self) -> str:
        return self.policy.version

    # ---- hot reload ---------------------------------------------------------------------

    def reload(self) -> bool:
        """Load `LATEST` if it changed; True if a new policy is now in use.

        A snapshot that fails verification is refused (logged, `last_error`, `refused`) and
        the policy in use stays.
        """
        with self._reload_lock:
            pointer = None
            try:
                pointer = self.store.latest_pointer()
                if pointer is None:
                    self.last_error = (
                        f"{self.store.directory}: no snapshot yet (no LATEST); run `nudge consume` "
                        "or `nudge export` first"
                    )
                    return False
                if self._fixed or pointer in (self._pointer, self._refused_pointer):
                    return False  # unchanged, or already refused (logged once)
                loaded = LoadedPolicy(self.store.load(*pointer), self._rules)
            except SnapshotError as exc:
                self.refused += 1
                self.last_error = str(exc)
                self._refused_pointer = pointer
                log.error("snapshot refused, keeping %s: %s", self._version_or_none(), exc)
                return False
            old, self._current, self._pointer = self._current, loaded, pointer
            self.reloads += 1
            self.last_error = None
        if old is not None:
            old.close()  # waits for a call still predicting on it
            log.info("policy %s replaced by %s", old.version, loaded.version)
        return True

    def _version_or_none(self) -> str:
        return self._current.version if self._current else "nothing"

    def watch(self, interval_s: float = 1.0) -> None:
        """Reload in a daemon thread every `interval_s` until `close()`."""
        if self._watcher is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.reload()
                except Exception as exc:  # the watcher must outlive any one bad snapshot
                    self.last_error = f"reload failed: {exc!r}"
                    log.exception("snapshot reload failed; keeping %s", self._version_or_none())

        self._watcher = threading.Thread(target=loop, name="nudge-snapshot-watch", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
        if self._current is not None:
            self._current.close()
            self._current = None

    def __enter__(self) -> Decider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- deciding -----------------------------------------------------------------------

    def decide(
        self,
        trigger: str,
        learner_id: str,
        context: Context,
        candidates: Sequence[str] | None = None,
        *,
        action_features: Mapping[str, Mapping[str, float | str]] | None = None,
        reactions: int | None = None,
        event_id: str | None = None,
        timestamp: float | None = None,
    ) -> Decision:
        """Choose what to show `learner_id` at `trigger` (or nothing), with its exact probability.

        `candidates` defaults to the actions the snapshot saw at `trigger`; features come from
        the snapshot's catalogue unless `action_features` gives them. `reactions` overrides the
        snapshot's count of the learner's logged outcomes (for cold start).
        """
        check_identifier("trigger", trigger)
        check_identifier("learner_id", learner_id)
        if event_id is not None:
            check_identifier("event_id", event_id)
        for action in candidates or ():
            check_identifier("candidate action", action)
        while True:
            policy = self.policy
            try:
                return self._decide(
                    policy, trigger, learner_id, context, candidates, action_features,
                    reactions, event_id, timestamp,
                )  # fmt: skip
            except _RetryOnNewPolicy:
                continue

    def decision_pmf(
        self,
        trigger: str,
        learner_id: str,
        context: Context,
        candidates: Sequence[str] | None = None,
        *,
        action_features: Mapping[str, Mapping[str, float | str]] | None = None,
        reactions: int | None = None,
    ) -> list[float]:
        """The pmf over the candidates that `decide` would log for these inputs, without drawing.

        Offline replay evaluates the deployed mixture with it; `decide` samples this same pmf.
        """
        while True:
            policy = self.policy
            try:
                return self._mixture(
                    policy, trigger, learner_id, context, candidates, action_features, reactions
                ).pmf
            except _RetryOnNewPolicy:
                continue

    def _mixture(
        self,
        policy: LoadedPolicy,
        trigger: str,
        learner_id: str,
        context: Context,
        candidates: Sequence[str] | None,
        action_features: Mapping[str, Mapping[str, float | str]] | None,
        reactions: int | None,
    ) -> _Mixture:
        """The whole decision mixture over the candidates: pruning re-test share around the
        forced share, cold start and the policy; no randomness, so `decide` and
        `decision_pmf` cannot disagree."""
        ids = tuple(candidates) if candidates is not None else self._available(policy, trigger)
        if not ids:
            raise NudgeError(f"no candidate actions at trigger {trigger!r}")
        if len(set(ids)) != len(ids):
            raise NudgeError(
                f"candidate actions repeat: {sorted(a for a in set(ids) if ids.count(a) > 1)}"
            )
        _check_context(context, policy.namespaces)
        catalogue = policy.actions
        feats = tuple((action_features or {}).get(a) or catalogue.get(a) or {} for a in ids)
        if reactions is None:
            reactions = policy.reactions.get(learner_id, 0)
        pruned, held = policy.holds_for(trigger)
        offered = [i for i, a in enumerate(ids) if a not in pruned and a not in held]
        if not offered:  # everything held back and no send-nothing action: hold nothing
            offered = list(range(len(ids)))
        retest = [i for i, a in enumerate(ids) if a in pruned and a not in held]
        share = policy.retest_share if retest and len(offered) < len(ids) else 0.0
        sub_ids = tuple(ids[i] for i in offered)
        # VW text of the catalogue's own features is cached; given features are rendered.
        sub_given = tuple(feats[i] for i in offered) if action_features else None
        parts = self._components(policy, trigger, context, sub_ids, sub_given, reactions)
        sub_pmf = mix(parts.uniform, parts.component, parts.forced_share)
        pmf = [0.0] * len(ids)
        for j, i in enumerate(offered):
            pmf[i] = (1.0 - share) * sub_pmf[j]
        for i in retest if share else ():
            pmf[i] += share / len(retest)
        return _Mixture(ids, feats, pmf, tuple(offered), tuple(retest), share, parts)

    def _decide(
        self,
        policy: LoadedPolicy,
        trigger: str,
        learner_id: str,
        context: Context,
        candidates: Sequence[str] | None,
        action_features: Mapping[str, Mapping[str, float | str]] | None,
        reactions: int | None,
        event_id: str | None,
        timestamp: float | None,
    ) -> Decision:
        m = self._mixture(
            policy, trigger, learner_id, context, candidates, action_features, reactions
        )
        ids, feats, pmf = m.ids, m.feats, m.pmf
        sub_index, why = self._sample(m.parts)
        if m.share and self._rng.random() < m.share:
            index, why = m.retest[draw([1.0] * len(m.retest), self._rng.random())], "retest"
        else:
            index = m.offered[sub_index]
        timestamp = time.time() if timestamp is None else timestamp
        impression = {
            "type": "impression",
            "event_id": event_id or os.urandom(16).hex(),
            "timestamp": timestamp_text(timestamp),
            "trigger": trigger,
            "learner_id": learner_id,
            "context": {ns: dict(f) for ns, f in context.items()},
            "actions": [{"id": a, "features": dict(f)} for a, f in zip(ids, feats, strict=True)],
            "chosen": ids[index],
            "probability": pmf[index],
            "pmf": pmf,
            "policy_version": policy.version,
            "why": why,
        }
        return Decision(
            action=ids[index],
            index=index,
            probability=pmf[index],
            pmf=tuple(pmf),
            actions=ids,
            why=why,
            policy_version=policy.version,
            impression=impression,
        )

    def _components(
        self,
        policy: LoadedPolicy,
        trigger: str,
        context: Context,
        ids: tuple[str, ...],
        given: tuple[Mapping[str, Any], ...] | None,
        reactions: int,
    ) -> _Components:
        """The parts of the mixture over the offered candidates: uniform, policy, forced share."""
        rule = policy.rule_for(trigger)
        messages = message_mask(ids, policy.none_action)
        uniform = uniform_over(messages)
        cold = reactions < rule.cold_start_outcomes
        if cold:
            component = uniform
        elif rule.policy == "bandit":
            component = policy.policy_pmf(trigger, context, ids, given)
            if rule.versions == "best":
                component = collapse_versions(component, ids, component)
        else:
            component = self._send_rule(policy, rule, context, ids, given, messages)
        return _Components(uniform, component, rule.forced_share, cold)

    @staticmethod
    def _available(policy: LoadedPolicy, trigger: str) -> tuple[str, ...]:
        offered = policy.triggers.get(trigger)
        if offered is None:
            raise NudgeError(
                f"trigger {trigger!r} is not in snapshot {policy.version}'s catalogue "
                f"({len(policy.triggers)} triggers); pass `candidates` explicitly"
            )
        return tuple(offered)

    @staticmethod
    def _send_rule(
        policy: LoadedPolicy,
        rule: DecisionRuleConfig,
        context: Context,
        ids: tuple[str, ...],
        feats: tuple[Mapping[str, Any], ...] | None,
        messages: list[bool],
    ) -> list[float]:
        outcomes = policy.outcome_probabilities(context, ids, feats)
        none_index = ids.index(policy.none_action) if policy.none_action in ids else None
        choice = send_rule_choice(outcomes, messages, none_index, rule.send_margin)
        pmf = send_rule_pmf(choice, len(ids), rule.send_rule_epsilon)
        if rule.versions == "best":
            # The rule's choice is already a best version; its epsilon share of the other
            # versions moves onto each message's most helpful one, as for the bandit policy.
            helpful = [row[0] if m else -1.0 for row, m in zip(outcomes, messages, strict=True)]
            pmf = collapse_versions(pmf, ids, helpful)
        return pmf

    def _sample(self, parts: _Components) -> tuple[int, Why]:
        """Draw the mixture in two stages, so the reason is known: forced, or the component."""
        if parts.forced_share > 0.0 and self._rng.random() < parts.forced_share:
            return draw(parts.uniform, self._rng.random()), "forced"
        index = draw(parts.component, self._rng.random())
        if parts.cold:
            return index, "cold_start"
        return index, "exploit" if index == argmax(parts.component) else "explore"


_FEATURE_NAME = re.compile(r"^[^\s|:=]{1,64}$")
_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)


def check_identifier(field: str, value: object) -> None:
    """The event contract's rule for an id (`bandit.events.Identifier`), checked before
    deciding: an impression the consumer would dead-letter as `invalid_value` is refused here."""
    try:
        _IDENTIFIER.validate_python(value)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise NudgeError(
            f"{field} {value!r} breaks the event contract (the consumer would dead-letter the "
            f"impression): {problem}"
        ) from None


def _check_context(context: Context, namespaces: frozenset[str]) -> None:
    """The checks the event contract will make of the logged context, made before deciding:
    an impression the consumer would dead-letter is a caller's bug, reported at once."""
    for ns, features in context.items():
        if ns not in namespaces:
            raise NudgeError(
                f"context namespace {ns!r} is not configured (known: {sorted(namespaces)})"
            )
        if not isinstance(features, Mapping):
            raise NudgeError(f"context[{ns!r}] must map feature names to values")
        for name, value in features.items():
            if not isinstance(name, str) or not _FEATURE_NAME.match(name):
                raise NudgeError(
                    f"context[{ns!r}] feature name {name!r}: 1-64 characters, no space, '|', ':' "
                    "or '='"
                )
            if isinstance(value, str):
                if len(value) > 256:
                    raise NudgeError(f"context[{ns!r}][{name!r}]: text longer than 256")
            elif not isinstance(value, int | float) or not math.isfinite(value):
                raise NudgeError(
                    f"context[{ns!r}][{name!r}] = {value!r}: a feature is a finite number or text"
                )
