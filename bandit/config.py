"""The one validated configuration model, loaded from `config.yaml` plus `NUDGE_*` overrides.

Unknown keys are rejected everywhere; cross-field rules name the values they compare.
Environment variables override the file: `NUDGE_KAFKA__BOOTSTRAP_SERVERS=host:9092` sets
`kafka.bootstrap_servers` (sections joined by `__`). A value is text, byte for byte; only the
field's declared type converts it (see `env_overrides`). Values under secret-looking keys
(`is_secret_key`) are never echoed in an error.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
import types
from collections.abc import Mapping, Sequence
from contextlib import suppress
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from bandit.errors import ConfigError
from bandit.events import EventRules, OutcomeLabel
from bandit.exploration import (
    RESERVED_VW_FLAGS,
    EpsilonGreedy,
    Exploration,
    with_default_algorithm,
)
from bandit.vw_io_flags import io_problem

ENV_PREFIX = "NUDGE_"
# The `NUDGE_*` variables that are not `NUDGE_<SECTION>__<FIELD>` config overrides.
# NUDGE_SNAPSHOT_KEY: bandit.snapshots.SIGNING_KEY_ENV; NUDGE_API_KEYS: `nudge serve` API keys;
# NUDGE_SERVE_CONFIG: the config path `nudge serve` hands its worker processes.
STANDALONE_VARIABLES = frozenset({"NUDGE_SNAPSHOT_KEY", "NUDGE_API_KEYS", "NUDGE_SERVE_CONFIG"})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


DEFAULT_MAX_REQUEST_BYTES = 1_048_576  # kafka-python's producer default, and the consumer's
RECORD_OVERHEAD_BYTES = 4096  # a dead letter's key, headers and batch framing, generously
_HOST_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _broker_problem(entry: str) -> str | None:
    """What is wrong with one `bootstrap_servers` entry as kafka-python reads it (`host`,
    `host:port`, an IPv6 literal, `[ipv6]:port`; a `PROTOCOL://` prefix ignored), or None."""
    address = re.sub(r"^\w+://", "", entry.strip())
    port: str | None = None
    if not address:
        return "an empty entry"
    if address.startswith("["):
        host, bracket, rest = address[1:].partition("]")
        if not bracket or not _is_ipv6(host) or (rest and not rest.startswith(":")):
            return f"{address!r} is not [IPv6 address] or [IPv6 address]:port"
        port = rest[1:] if rest else None
    elif not _is_ipv6(address):
        host, colon, after = address.rpartition(":")
        host, port = (host, after) if colon else (address, None)
        if not _HOST_NAME.match(host):
            return f"{host!r} is not a host name or IP address"
    if port is not None and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        return f"port {port!r} of {address!r} is not a number from 1 to 65535"
    return None


class KafkaConfig(_Section):
    """Where the events live; `client` passes through to kafka-python (SASL/SSL etc.)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    impressions_topic: str = "nudge.impressions"
    outcomes_topic: str = "nudge.outcomes"
    dead_letter_topic: str = "nudge.dead-letters"
    group_id: str = "nudge-learner"
    topic_partitions: int = Field(
        1, ge=1, description="partitions when the simulator creates topics"
    )
    poll_timeout_ms: int = Field(500, ge=10)
    max_poll_records: int = Field(2000, ge=1)
    connect_timeout_s: float = Field(
        10.0, gt=0, le=600,
        description="give up reaching the brokers after this long (kafka-python's bootstrap)",
    )  # fmt: skip
    client: dict[str, Any] = Field(default_factory=dict)
    client_library: Literal["kafka-python", "confluent-kafka"] = Field(
        "kafka-python",
        description="what `nudge consume` reads records with; confluent-kafka (librdkafka, "
        "pip install 'nudgebandit[fast]') takes `client` by kafka-python's names",
    )
    dead_letter_max_bytes: int = Field(
        262_144, ge=4096,
        description="a dead letter's JSON body is at most this long (the original is truncated)",
    )  # fmt: skip
    dead_letter_attempts: int = Field(5, ge=1, le=100, description="tries of a dead letter")
    dead_letter_backoff_ms: int = Field(
        500, ge=0, le=60_000, description="wait before the 2nd try, doubling after each (≤ 30 s)"
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_bootstrap_servers(cls, servers: str) -> str:
        problems = [_broker_problem(entry) for entry in servers.split(",")]
        problem = "no broker" if not servers.strip() else next(filter(None, problems), None)
        if problem:
            raise ValueError(f"{problem}: give host:port[,host:port...], e.g. 127.0.0.1:9092")
        return servers

    @model_validator(mode="after")
    def _dead_letters_fit(self) -> KafkaConfig:
        limit = self.client.get("max_request_size", DEFAULT_MAX_REQUEST_BYTES)
        with suppress(TypeError, ValueError):
            limit = int(limit)
        if isinstance(limit, int) and self.dead_letter_max_bytes > limit - RECORD_OVERHEAD_BYTES:
            raise ValueError(
                f"dead_letter_max_bytes {self.dead_letter_max_bytes} leaves no room for the "
                f"record's key and headers under the producer's max_request_size {limit}: at "
                f"most {limit - RECORD_OVERHEAD_BYTES}"
            )
        return self

    @model_validator(mode="after")
    def _distinct_topics(self) -> KafkaConfig:
        topics = [self.impressions_topic, self.outcomes_topic, self.dead_letter_topic]
        if len(set(topics)) != 3:
            raise ValueError(f"impressions, outcomes and dead-letter topics must differ: {topics}")
        owned = {"bootstrap_servers", "group_id", "enable_auto_commit", "key_deserializer",
                 "value_deserializer", "auto_offset_reset", "bootstrap_timeout_ms",
                 "max_poll_records"}  # fmt: skip
        clash = sorted(owned & set(self.client))
        if clash:
            fields = sorted({_CLIENT_KEY_FIELDS.get(k, "") for k in clash} - {""})
            use = f" (use {', '.join(fields)})" if fields else ""
            raise ValueError(f"client must not set {clash}: they are set by nudgebandit{use}")
        return self


# kafka-python settings that have a field of their own in the kafka section.
_CLIENT_KEY_FIELDS = {
    "bootstrap_servers": "kafka.bootstrap_servers",
    "group_id": "kafka.group_id",
    "bootstrap_timeout_ms": "kafka.connect_timeout_s",
    "max_poll_records": "kafka.max_poll_records",
}


class RewardConfig(_Section):
    """Reward of each outcome label; `value_weight` scales the optional downstream value.

    Choosing `none_action` (send nothing) earns `send_nothing` whatever label arrives: nothing
    was shown, so there was nothing to find helpful; a downstream value still counts.
    """

    helpful: float = 1.0
    not_helpful: float = -1.0
    ignored: float = 0.0
    value_weight: float = 0.0
    none_action: Annotated[str, Field(min_length=1)] = "none"
    send_nothing: float = 0.0

    def of(self, label: OutcomeLabel, value: float | None, chosen: str | None = None) -> float:
        if chosen is not None and chosen == self.none_action:
            base = self.send_nothing
        elif label == OutcomeLabel.HELPFUL:
            base = self.helpful
        elif label == OutcomeLabel.NOT_HELPFUL:
            base = self.not_helpful
        elif label == OutcomeLabel.IGNORED:
            base = self.ignored
        else:
            raise KeyError(label)
        return base + self.value_weight * (value or 0.0)


class JoinConfig(_Section):
    """Event-time join of outcomes to impressions."""

    window_s: float = Field(300.0, gt=0)
    default_outcome: OutcomeLabel = OutcomeLabel.IGNORED
    mode: Literal["first", "combine"] = "first"
    allowed_lateness_s: float = Field(60.0, ge=0)
    unmatched_wait_s: float | None = Field(
        None, gt=0, description="how long an outcome waits for its impression; default window_s"
    )
    idle_partition_s: float = Field(
        5.0, ge=0, description="wall seconds without records before a caught-up partition "
        "stops holding the watermark back",
    )  # fmt: skip
    # Event-time plausibility (bandit.watermarks.EventTimeGuard) and learned-id memory.
    max_future_skew_s: float = Field(
        900.0, gt=0, description="an event this far ahead of the newest plausible event time "
        "is held until jump_confirm_records records of its partition agree",
    )  # fmt: skip
    jump_confirm_records: int = Field(
        3, ge=2, le=100, description="records of one partition that confirm a jump ahead "
        "(the held record and the later ones at or after it)",
    )  # fmt: skip
    max_event_age_s: float = Field(
        86_400.0, gt=0, description="an event this far behind the newest plausible event time "
        "is dead-lettered; learned impression ids are remembered this long",
    )  # fmt: skip
    max_ahead_of_wall_clock_s: float | None = Field(
        None, gt=0, description="off by default (replays and simulations run ahead of the "
        "wall clock); when set, an event this far ahead of the consumer's wall clock is "
        "dead-lettered",
    )  # fmt: skip
    max_read_ahead_s: float | None = Field(
        30.0, gt=0, description="while catching up, a partition this far ahead in event time "
        "of the slowest partition with records still to read is paused until that one catches "
        "up: outcomes do not wait by the thousand for impressions not read yet (null: off)",
    )  # fmt: skip
    max_learned_ids: int = Field(2_000_000, ge=1_000)
    max_pending_impressions: int = Field(20_000, ge=1)
    max_pending_bytes: int = Field(32 * 1024 * 1024, ge=65_536)
    max_waiting_outcomes: int = Field(20_000, ge=1)
    max_waiting_bytes: int = Field(8 * 1024 * 1024, ge=65_536)
    max_closed_windows: int = Field(
        20_000, ge=1_000, description="closed windows remembered to classify later outcomes "
        "(duplicate / late / closed early); past it the oldest are forgotten",
    )  # fmt: skip

    @model_validator(mode="after")
    def _age_covers_the_join(self) -> JoinConfig:
        used = self.window_s + self.allowed_lateness_s + (self.unmatched_wait_s or self.window_s)
        if self.max_event_age_s < used:
            raise ValueError(
                f"max_event_age_s ({self.max_event_age_s}) must cover what the join still uses: "
                f"window_s + allowed_lateness_s + unmatched_wait_s = {used}"
            )
        return self


class LowRankConfig(_Section):
    """Latent interactions (VW `--lrq` / `--lrqfa`): a rank-k factorization per namespace pair.

    `lrq` adds, for each pair, a learned k-dimensional embedding of each side (like
    theta_i . alpha_j in the student models); `lrqfa` is its field-aware variant over every
    namespace named in `pairs`.
    """

    kind: Literal["lrq", "lrqfa"] = "lrq"
    pairs: list[tuple[str, str]] = Field(default_factory=lambda: [("learner", "action")])
    rank: int = Field(4, ge=1, le=64)


class WarmStartConfig(_Section):
    """Start a fresh deployment's policies from an earlier snapshot's models.

    The snapshot's model keeps its reductions (exploration algorithm, cb_type, interactions,
    bits); `vw_args` runtime flags (learning rate...) and a new epsilon-greedy epsilon apply,
    another exploration algorithm is refused.
    `freeze: unlearned_weights` passes VW `--feature_mask`: only weights the snapshot had
    learned (non-zero) keep updating; every other weight stays frozen at zero. VW has no
    per-namespace freeze; this mask is the part of the model it can hold fixed.
    """

    snapshot: Path
    freeze: Literal["none", "unlearned_weights"] = "none"


def _flag_name(token: str) -> str:
    """The option a VW token sets: `--lrq=la4` -> `--lrq`, `-qla` -> `-q`."""
    if token.startswith("--"):
        return token.split("=", 1)[0]
    if token.startswith("-") and len(token) > 2:
        return token[:2]
    return token


class LearnerConfig(_Section):
    """Vowpal Wabbit `cb_explore_adf` policy settings.

    `namespaces` maps each context namespace of the events to its one-letter VW namespace;
    shared features only matter through `interactions` with the action namespace.
    """

    scope: Literal["global", "per_trigger"] = "global"
    exploration: Exploration = Field(default_factory=EpsilonGreedy)
    exploration_by_trigger: dict[str, Exploration] = Field(
        default_factory=dict,
        description="fnmatch pattern -> exploration, first match wins (scope per_trigger only)",
    )
    namespaces: dict[str, str] = Field(
        default_factory=lambda: {"learner": "l", "course": "c", "trigger": "t", "activity": "w"}
    )
    action_namespace: str = "a"
    interactions: list[tuple[str, str]] = Field(
        default_factory=lambda: [
            ("learner", "action"), ("course", "action"), ("trigger", "action"),
            ("activity", "action"),
        ]
    )  # fmt: skip
    vw_args: str = "--cb_type mtr -b 20 --learning_rate 0.1"
    low_rank: LowRankConfig | None = None
    outcome_model: bool = Field(
        False, description="also learn P(helpful/not helpful/ignored), for decision rule send_rule"
    )
    warm_start: WarmStartConfig | None = None
    separate_process: bool = Field(
        True, description="`nudge consume` runs Vowpal Wabbit in a child process on another "
        "core: the loop renders examples and ships them in batches (bandit.vw_worker)",
    )  # fmt: skip

    @field_validator("vw_args")
    @classmethod
    def _no_file_or_socket_flags(cls, vw_args: str) -> str:
        problem = io_problem(vw_args)  # --readable_model PATH, -p PATH, --daemon ...
        if problem is not None:
            raise ValueError(problem)
        return vw_args

    @model_validator(mode="before")
    @classmethod
    def _exploration_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "exploration" in data:
                data["exploration"] = with_default_algorithm(data["exploration"])
            by_trigger = data.get("exploration_by_trigger")
            if isinstance(by_trigger, dict):
                data["exploration_by_trigger"] = {
                    k: with_default_algorithm(v) for k, v in by_trigger.items()
                }
        return data

    @model_validator(mode="after")
    def _check_namespaces(self) -> LearnerConfig:
        letters = [*self.namespaces.values(), self.action_namespace]
        bad = [x for x in letters if len(x) != 1 or not x.isalpha()]
        if bad:
            raise ValueError(f"VW namespaces must be single letters, got {bad}")
        if len(set(letters)) != len(letters):
            raise ValueError(
                f"VW namespace letters must be distinct (namespaces={self.namespaces}, "
                f"action_namespace={self.action_namespace!r})"
            )
        known = {*self.namespaces, "action"}
        pairs = [*self.interactions, *(self.low_rank.pairs if self.low_rank else [])]
        for pair in pairs:
            unknown = [n for n in pair if n not in known]
            if unknown:
                raise ValueError(
                    f"interaction {list(pair)} names {unknown}; known: {sorted(known)}"
                )
        if self.exploration_by_trigger and self.scope != "per_trigger":
            raise ValueError(
                "exploration_by_trigger needs scope: per_trigger (one VW policy per trigger); "
                f"scope is {self.scope!r}"
            )
        reserved = sorted(
            {_flag_name(t) for t in self.vw_args.split()} & RESERVED_VW_FLAGS
        )
        if reserved:
            raise ValueError(
                f"vw_args must not contain {reserved}: set exploration, interactions and "
                "namespaces in their own fields"
            )
        return self

    def letter(self, name: str) -> str:
        return self.action_namespace if name == "action" else self.namespaces[name]

    def feature_flags(self) -> str:
        """Interaction and low-rank flags, shared by the policy and the outcome model."""
        flags = [f"-q {self.letter(a)}{self.letter(b)}" for a, b in self.interactions]
        if self.low_rank is not None:
            lr = self.low_rank
            if lr.kind == "lrq":
                flags += [f"--lrq {self.letter(a)}{self.letter(b)}{lr.rank}" for a, b in lr.pairs]
            else:
                letters = dict.fromkeys(self.letter(n) for pair in lr.pairs for n in pair)
                flags.append(f"--lrqfa {''.join(letters)}{lr.rank}")
        return " ".join(flags)

    def exploration_for(self, trigger: str | None) -> Exploration:
        """The exploration of `trigger`'s policy (the default for the global policy)."""
        if trigger is not None:
            for pattern, chosen in self.exploration_by_trigger.items():
                if fnmatch.fnmatchcase(trigger, pattern):
                    return chosen
        return self.exploration

    def vw_arguments(self, trigger: str | None = None) -> str:
        """The full VW command line for a fresh policy (of `trigger`, with per_trigger scope)."""
        explore = self.exploration_for(trigger).vw_flags()
        return f"--cb_explore_adf {explore} {self.feature_flags()} {self.vw_args} --quiet".strip()

    def outcome_model_arguments(self) -> str:
        """VW command line of the outcome model: P(helpful), P(not helpful), P(ignored)."""
        bits = self.vw_args.split()
        b = bits[bits.index("-b") + 1] if "-b" in bits[:-1] else "18"
        return f"--oaa 3 --probabilities --loss_function logistic {self.feature_flags()} -b {b} --quiet"


class DecisionRuleConfig(_Section):
    """How the decision service chooses at a trigger; every part is in the logged probability.

    p(a) = forced_share * U_messages(a) + (1 - forced_share) * q(a), where q is U_messages for
    a learner with fewer than `cold_start_outcomes` reactions, else the policy: the VW
    exploration pmf (`bandit`) or the outcome-probability send rule (`send_rule`: send the
    message with the highest P(helpful) if it beats P(not helpful) and P(ignored) by
    `send_margin`, else send nothing; mixed with `send_rule_epsilon` of uniform over all).
    `versions: best`: of `msg.v1`, `msg.v2`... the policy offers only the version it predicts
    best (forced and cold-start sends still draw every version, to keep learning about them).
    """

    policy: Literal["bandit", "send_rule"] = "bandit"
    forced_share: float = Field(0.1, ge=0, le=1)
    cold_start_outcomes: int = Field(1, ge=0)
    versions: Literal["all", "best"] = "best"
    send_margin: float = Field(0.0, ge=-1, le=1)
    send_rule_epsilon: float = Field(0.05, ge=0, le=1)


class DecisionRuleOverride(_Section):
    """A trigger pattern's changes to the default decision rule (unset fields inherit)."""

    policy: Literal["bandit", "send_rule"] | None = None
    forced_share: float | None = Field(None, ge=0, le=1)
    cold_start_outcomes: int | None = Field(None, ge=0)
    versions: Literal["all", "best"] | None = None
    send_margin: float | None = Field(None, ge=-1, le=1)
    send_rule_epsilon: float | None = Field(None, ge=0, le=1)


class DecisionsConfig(_Section):
    """Decision rules: a default, and overrides by trigger pattern (fnmatch, first match wins)."""

    policy_name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "nudge"
    default: DecisionRuleConfig = Field(default_factory=DecisionRuleConfig)
    triggers: dict[str, DecisionRuleOverride] = Field(default_factory=dict)

    def rule_for(self, trigger: str) -> DecisionRuleConfig:
        """The rule that applies at `trigger`."""
        for pattern, override in self.triggers.items():
            if fnmatch.fnmatchcase(trigger, pattern):
                return self._apply(override)
        return self.default

    def all_rules(self) -> list[DecisionRuleConfig]:
        """The default and every override, resolved."""
        return [self.default, *(self._apply(o) for o in self.triggers.values())]

    def _apply(self, override: DecisionRuleOverride) -> DecisionRuleConfig:
        return self.default.model_copy(update=override.model_dump(exclude_none=True))


class PruningConfig(_Section):
    """Per-trigger pruning: hold a message back at a trigger once the evidence shows it is bad.

    A message is pruned at a trigger when it has been shown `min_impressions` times and the
    `confidence` interval of its `metric` lies wholly below `threshold`; it comes back when its
    estimate is back at the threshold (hysteresis against flapping). `lift_vs_none`: value
    minus sending nothing; `reward`: value itself; `gap_vs_best`: value minus another message's
    (every other one, Bonferroni-corrected). Values are importance-weighted (unbiased under any
    logging mixture) with a half-life in impressions. Pruned messages still get `retest_share`
    of the decisions at their trigger, so evidence keeps coming.
    `overrides`: trigger pattern -> message -> `keep` (never pruned) or `hold` (never shown).
    """

    enabled: bool = True
    metric: Literal["lift_vs_none", "reward", "gap_vs_best"] = "lift_vs_none"
    threshold: float = -0.05
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    min_impressions: int = Field(200, ge=1)
    retest_share: float = Field(0.05, ge=0.0, le=0.5)
    half_life_impressions: float = Field(20_000.0, gt=0)
    evaluate_every_events: int = Field(500, ge=1)
    overrides: dict[str, dict[str, Literal["keep", "hold"]]] = Field(default_factory=dict)

    def override_for(self, trigger: str, action: str) -> Literal["keep", "hold"] | None:
        """The manual status of `action` at `trigger`, first matching pattern wins."""
        for pattern, actions in self.overrides.items():
            if fnmatch.fnmatchcase(trigger, pattern) and action in actions:
                return actions[action]
        return None


class SnapshotsConfig(_Section):
    """Policy snapshots the consumer publishes for decision services."""

    directory: Path = Path(".nudge/snapshots")
    every_events: int = Field(
        20_000, ge=1, description="publish after this many learned events (catching up)"
    )
    every_s: float = Field(10.0, gt=0, description="...or this long after the last, if any new")
    min_interval_s: float = Field(
        1.0, ge=0, description="when caught up, publish new data after at most this long"
    )
    keep: int = Field(5, ge=1)
    kafka_topic: str | None = Field(None, description="also publish to this compacted topic")
    signing_key_file: Path | None = Field(
        None, description="HMAC-SHA256 key to sign and verify snapshots (or NUDGE_SNAPSHOT_KEY)"
    )
    max_clock_skew_s: float = Field(
        300.0, gt=0, description="followers refuse snapshots created further ahead of their clock"
    )


class CheckpointConfig(_Section):
    """Where and how often the model, join state and offsets are saved together."""

    directory: Path = Path(".nudge/checkpoints")
    # A checkpoint costs O(state) (a few MB and an fsync): while catching up at ~10k messages/s
    # this is one every ~5 s, and a crash re-reads at most this many messages.
    every_events: int = Field(50_000, ge=1)
    every_s: float = Field(10.0, gt=0)
    keep: int = Field(3, ge=1)


class LimitsConfig(_Section):
    """Size limits of one event."""

    max_message_bytes: int = Field(65_536, ge=256)
    max_actions: int = Field(64, ge=1)
    max_features: int = Field(256, ge=1)


class ConsumerConfig(_Section):
    """Progress reporting of the long-running consumer."""

    progress_every_s: float = Field(5.0, gt=0)


class SimulatorConfig(_Section):
    """Size and timing of the synthetic world (see `bandit.simulation`)."""

    learners: int = Field(5000, ge=1)
    courses: int = Field(4, ge=1, le=26)
    mean_gap_s: float = Field(2.0, gt=0, description="mean event-time gap between impressions")
    median_delay_s: float = Field(30.0, gt=0, description="median outcome delay")
    max_transport_jitter_s: float = Field(20.0, ge=0)
    duplicate_fraction: float = Field(0.005, ge=0, le=0.5)
    start: str = "2026-01-05T08:00:00+00:00"


class PersonalizerConfig(_Section):
    """How Personalizer v1.0 Rank requests map onto the event contract (README: Personalizer)."""

    trigger_feature: str = Field(
        "trigger", description="a top-level contextFeatures text value naming the trigger"
    )
    default_trigger: str = Field(
        "personalizer", description="the trigger when contextFeatures names none"
    )
    learner_feature: str = Field(
        "learner_id", description="a top-level contextFeatures text value naming the learner"
    )
    default_learner: str = Field(
        "anonymous", description="the learner id when contextFeatures names none"
    )
    default_namespace: str = Field(
        "learner", description="namespace of top-level scalar contextFeatures (must be configured)"
    )


class ServeConfig(_Section):
    """`nudge serve`: the HTTP decision service (our API and Personalizer's v1.0)."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(2, ge=1, le=64, description="processes sharing the port (VW holds the GIL)")
    api_keys_file: Path | None = Field(
        None, description="one API key per line (or NUDGE_API_KEYS, comma-separated); none: open"
    )
    spool_directory: Path = Field(
        Path(".nudge/spool"), description="events wait here (SQLite) until Kafka has them"
    )
    spool_max_events: int = Field(200_000, ge=1, description="full spool: decisions get 503")
    spool_max_bytes: int = Field(512 * 1024 * 1024, ge=65_536)
    remember_s: float = Field(
        86_400.0, gt=0, description="event ids kept for outcomes, rewards and duplicate checks"
    )
    deferred_expiry_s: float = Field(
        3_600.0, gt=0, description="a deferred (not activated) decision is dropped after this"
    )
    reload_interval_s: float = Field(1.0, gt=0, description="how often LATEST is checked")
    produce_timeout_s: float = Field(
        10.0, gt=0, description="a spool batch Kafka has not acknowledged by then is retried"
    )
    personalizer: PersonalizerConfig = Field(default_factory=PersonalizerConfig)


class Config(_Section):
    """Everything `nudge` needs, one section per concern."""

    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    rewards: RewardConfig = Field(default_factory=RewardConfig)
    join: JoinConfig = Field(default_factory=JoinConfig)
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    consumer: ConsumerConfig = Field(default_factory=ConsumerConfig)
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)
    decisions: DecisionsConfig = Field(default_factory=DecisionsConfig)
    pruning: PruningConfig = Field(default_factory=PruningConfig)
    snapshots: SnapshotsConfig = Field(default_factory=SnapshotsConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    @model_validator(mode="after")
    def _check_send_rule(self) -> Config:
        uses = [r for r in self.decisions.all_rules() if r.policy == "send_rule"]
        if uses and not self.learner.outcome_model:
            raise ValueError(
                "decisions use policy send_rule, which needs learner.outcome_model: true "
                "(the model of P(helpful), P(not helpful), P(ignored))"
            )
        return self

    @model_validator(mode="after")
    def _check_lateness(self) -> Config:
        if self.join.allowed_lateness_s > self.join.window_s:
            raise ValueError(
                f"join.allowed_lateness_s ({self.join.allowed_lateness_s}) must not exceed "
                f"join.window_s ({self.join.window_s})"
            )
        return self

    def event_rules(self) -> EventRules:
        return EventRules(
            namespaces=frozenset(self.learner.namespaces),
            max_message_bytes=self.limits.max_message_bytes,
            max_actions=self.limits.max_actions,
            max_features=self.limits.max_features,
        )


_SECRET_KEY = re.compile(r"pass|secret|token|credential|private|jaas|(^|_)key($|_)", re.I)
# Free-form mappings handed to a library as they are: their values are never echoed.
_FREE_FORM = (("kafka", "client"),)


# Keys naming where a secret lives (a key file's path), not the secret itself.
_LOCATION_KEY = re.compile(r"(file|_path|_dir|_location)$", re.I)


def is_secret_key(name: str) -> bool:
    """Whether a config key names a secret (password, secret, token, key, credentials...); a
    key naming a file or path (`signing_key_file`, `ssl_keyfile`) holds a location, not one."""
    return bool(_SECRET_KEY.search(name)) and not _LOCATION_KEY.search(name)


def _secret_path(path: Sequence[str]) -> bool:
    parts = tuple(str(p) for p in path)
    return any(is_secret_key(p) for p in parts) or any(
        parts[: len(f)] == f for f in _FREE_FORM
    )


def secret_values(data: Any, under_secret: bool = False) -> set[str]:
    """Every non-empty text (or number) stored under a secret-looking key of `data`, at any depth:
    what must never appear in output."""
    found: set[str] = set()
    if isinstance(data, Mapping):
        for key, value in data.items():
            found |= secret_values(value, under_secret or is_secret_key(str(key)))
    elif isinstance(data, list | tuple):
        for value in data:
            found |= secret_values(value, under_secret)
    elif under_secret and isinstance(data, str | int | float) and not isinstance(data, bool):
        found.add(str(data))
    found.discard("")
    return found


def config_secrets(path: Path | str | None, environ: Mapping[str, str]) -> set[str]:
    """The secret values a config file and `NUDGE_*` variables hold, read without validating
    (so that even an invalid config's secrets can be masked)."""
    found: set[str] = set()
    for key, text in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        if any(is_secret_key(part) for part in key.split("__")):
            found.add(text)
        if text.lstrip().startswith(("{", "[")):  # a structured value may hold secrets
            with suppress(yaml.YAMLError):
                found |= secret_values(yaml.safe_load(text))
    if path is not None:
        with suppress(OSError, UnicodeDecodeError, yaml.YAMLError):  # the loader reports these
            found |= secret_values(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    found.discard("")
    return found


def mask_secrets(text: str, secrets: set[str]) -> str:
    """`text` with every secret value replaced by ***, longest first, also as it appears inside
    a repr of text or bytes (escaped quotes, non-ASCII as escapes)."""
    forms = {
        form
        for secret in secrets
        for form in (secret, repr(secret)[1:-1], repr(secret.encode())[2:-1])
        if form
    }
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def _field_types(annotation: Any, path: Sequence[str]) -> list[Any]:
    """The annotations the value at `path` below a value of type `annotation` may have
    (several through unions; none when `path` names no field)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _field_types(get_args(annotation)[0], path)
    if origin in (Union, types.UnionType):
        return [t for member in get_args(annotation) for t in _field_types(member, path)]
    if not path:
        return [annotation]
    head, rest = path[0], path[1:]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            if head in (name, field.alias):
                return _field_types(field.annotation, rest)
        return []
    if origin is dict:
        return _field_types(get_args(annotation)[1], rest)
    return [Any] if annotation is Any else []


def _is_structured(annotation: Any) -> bool:
    origin = get_origin(annotation) or annotation
    if origin in (list, tuple, dict, set, frozenset):
        return True
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_text(annotation: Any) -> bool:
    if annotation is Any or annotation is str or annotation is Path:
        return True
    if get_origin(annotation) is Literal:
        return all(isinstance(a, str) for a in get_args(annotation))
    return isinstance(annotation, type) and issubclass(annotation, str | Enum)


def _env_value(key: str, path: Sequence[str], text: str) -> Any:
    """The value of one `NUDGE_*` variable for the field at `path`, typed by the field:

    - a structured field (list, mapping, section: `learner.interactions`, `kafka.client`)
      parses the text as YAML (`[[learner, action]]`);
    - an optional field (`join.unmatched_wait_s`) is unset by an empty text, and a non-text
      optional field also by `null` or `~`;
    - every other field, and every key inside a free-form mapping (`kafka.client.*`), gets
      the text byte for byte: text fields keep it (`012345`, `yes`, `null` stay text) and
      pydantic converts it for number and boolean fields (`600`, `true`).
    """
    kinds = _field_types(Config, path)
    if any(_is_structured(t) for t in kinds):
        try:
            return yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None)
            why = f" ({problem})" if problem and not _secret_path(path) else ""
            dotted = ".".join(path)
            raise ConfigError(
                f"{key}: not valid YAML{at}{why}; {dotted} takes a YAML value such as "
                "[a, b] or {key: value}"
            ) from None
    if type(None) in kinds and (
        text == "" or (text.strip() in ("null", "~") and not any(_is_text(t) for t in kinds))
    ):
        return None
    return text


def _env_paths(environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Config path -> the `NUDGE_SECTION__FIELD` variable that sets it."""
    return {
        tuple(key[len(ENV_PREFIX) :].lower().split("__")): key
        for key in environ
        if key.startswith(ENV_PREFIX) and "__" in key
    }


def _spelled_path(words: Sequence[str], path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The config path that `words` (a variable's name split at single underscores) spell,
    longest field names first: `kafka bootstrap servers` -> ('kafka', 'bootstrap_servers')."""
    if not words:
        return path
    for end in range(len(words), 0, -1):
        name = "_".join(words[:end])
        if _field_types(Config, (*path, name)):
            found = _spelled_path(words[end:], (*path, name))
            if found is not None:
                return found
    return None


def _check_variable_names(environ: Mapping[str, str]) -> None:
    """Refuse a `NUDGE_*` variable that is neither `NUDGE_<SECTION>__<FIELD>` nor a standalone
    variable (a misspelling would otherwise be ignored), suggesting the right spelling."""
    problems = []
    for key in sorted(environ):
        if not key.startswith(ENV_PREFIX) or "__" in key or key in STANDALONE_VARIABLES:
            continue
        words = [w for w in key[len(ENV_PREFIX) :].lower().split("_") if w]
        path = _spelled_path(words) or ()
        if len(path) == 1:
            (section,) = _field_types(Config, path)
            example = f"{ENV_PREFIX}{path[0]}__{next(iter(section.model_fields))}".upper()
            problems.append(
                f"{key}: a whole section cannot be set from one variable; set each field as "
                f"{ENV_PREFIX}{path[0].upper()}__<FIELD>, e.g. {example}"
            )
        elif path:
            problems.append(
                f"{key}: not a nudge variable; did you mean {ENV_PREFIX}{'__'.join(path).upper()}"
                f"? (a config field is {ENV_PREFIX}<SECTION>__<FIELD>, two underscores)"
            )
        else:
            problems.append(
                f"{key}: not a nudge variable: a config field is {ENV_PREFIX}<SECTION>__<FIELD> "
                f"(sections: {', '.join(Config.model_fields)}); besides those nudge reads only "
                f"{', '.join(sorted(STANDALONE_VARIABLES))}"
            )
    if problems:
        raise ConfigError("\n".join(problems))


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Nested dict of the `NUDGE_SECTION__FIELD=value` variables, each value typed by its field
    (`_env_value`): text stays text unless the field's type needs parsing. Any other `NUDGE_*`
    variable but the standalone ones is a `ConfigError`."""
    _check_variable_names(environ)
    tree: dict[str, Any] = {}
    for path, key in sorted(_env_paths(environ).items()):
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: conflicts with another NUDGE_ variable")
        if isinstance(node.get(path[-1]), dict):
            raise ConfigError(f"{key}: conflicts with another NUDGE_ variable")
        node[path[-1]] = _env_value(key, path, environ[key])
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _format_errors(
    source: str, exc: ValidationError, env: Mapping[tuple[str, ...], str] | None = None
) -> str:
    """One line per error: the dotted field, pydantic's message, the value if it is a scalar
    that is not secret, and the `NUDGE_*` variables that set it."""
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors(include_url=False):
        loc = tuple(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        where = ".".join(loc)
        value = err.get("input")
        variables = sorted(
            key for path, key in (env or {}).items()
            if path[: len(loc)] == loc or loc[: len(path)] == path
        )  # fmt: skip
        # Only scalars are echoed (a section could hold credentials), never a secret's value.
        secret = _secret_path(loc) or any(_secret_path(p) for p, k in (env or {}).items()
                                          if k in variables)  # fmt: skip
        got = (
            f" (got {value!r})"
            if err["type"] != "missing" and not isinstance(value, dict | list) and not secret
            else ""
        )
        origin = f" [from {', '.join(variables)}]" if variables else ""
        lines.append(f"  {where or '<root>'}: {err['msg']}{got}{origin}")
    return "\n".join(lines)


def parse_config(
    data: Mapping[str, Any],
    source: str = "config",
    env: Mapping[tuple[str, ...], str] | None = None,
) -> Config:
    """Validate a config mapping; raise `ConfigError` naming every bad field (and the `NUDGE_*`
    variable behind it: `env` maps config paths to variable names)."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc, env)) from None


def load_config(path: Path | str | None, environ: Mapping[str, str] | None = None) -> Config:
    """Load `path` (or only defaults when None), apply `NUDGE_*` overrides, validate."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file (pass --config PATH)") from None
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(
                f"{path}: cannot read the config file ({why}); pass --config PATH"
            ) from None
        except yaml.YAMLError as exc:
            # No snippet of the file: the offending line may hold a password.
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "unparsable"
            raise ConfigError(f"{path}: not valid YAML{at}: {problem}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        data = loaded or {}
    environ = os.environ if environ is None else environ
    overrides = env_overrides(environ)
    if overrides:
        source += " + NUDGE_* environment"
    return parse_config(_merge(data, overrides), source, _env_paths(environ))
