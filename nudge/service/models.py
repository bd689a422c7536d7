"""Request and response bodies of `nudge serve`: our API (`/v1/...`) and Personalizer v1.0.

Fields reuse the event contract's types (`bandit.events`), so a request the consumer would
dead-letter is refused at the door with the field named. Our models forbid unknown keys.
Personalizer's models take the camelCase names its official client sends (`contextFeatures`,
`excludedActions`, `eventId`, `deferActivation`) and forbid unknown keys too: a misspelled
`excludedActions` silently ignored could show an excluded action.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bandit.events import FeatureName, Features, Identifier, OutcomeLabel, Timestamp

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Why = Literal["exploit", "explore", "forced", "cold_start", "retest"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


# ---- our API ---------------------------------------------------------------------------------


class DecideRequest(_Request):
    """POST /v1/decide: who, where, in what context; candidates or the trigger's catalogue."""

    trigger: Identifier
    learner_id: Identifier
    context: dict[FeatureName, Features] = Field(default_factory=dict)
    candidates: list[Identifier] | None = None
    action_features: dict[Identifier, Features] | None = None
    event_id: Identifier | None = None
    timestamp: Timestamp | None = None  # RFC 3339; None: the server's clock


class PmfEntry(_Response):
    """One candidate's probability in a decision's pmf."""

    action: str
    probability: float


class DecideResponse(_Response):
    """The decision: the action shown, its probability, the whole pmf, policy and why."""

    event_id: str
    action: str
    probability: float
    pmf: list[PmfEntry]
    policy_version: str
    why: Why


class OutcomeRequest(_Request):
    """POST /v1/outcomes: the learner's reaction to a decision (trigger from the decision log
    when not given)."""

    event_id: Identifier
    outcome: OutcomeLabel
    value: FiniteFloat | None = None
    trigger: Identifier | None = None
    timestamp: Timestamp | None = None


class OutcomeResponse(_Response):
    """An accepted outcome."""

    event_id: str
    accepted: bool = True


class PolicyResponse(_Response):
    """GET /v1/policy: the snapshot this worker serves."""

    version: str
    created_at: str
    age_s: float | None
    trained_through: dict[str, int]
    examples: int  # events it learned (the closed loop over HTTP reports it per round)
    live_value: dict[str, Any] | None


class ErrorDetail(_Response):
    """What went wrong: a stable code (a `bandit.events.Reason` where one fits), the field."""

    code: str
    field: str | None
    message: str


class ErrorResponse(_Response):
    """Every 4xx/5xx body of our API."""

    error: ErrorDetail


# ---- Personalizer v1.0 -----------------------------------------------------------------------


class _PersonalizerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _PersonalizerResponse(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)


class RankableAction(_PersonalizerRequest):
    """One action to rank: its id and its features (a list of JSON objects)."""

    id: Identifier
    features: list[dict[str, Any]] = Field(default_factory=list)


class RankRequest(_PersonalizerRequest):
    """POST /personalizer/v1.0/rank."""

    context_features: list[dict[str, Any]] | None = Field(None, alias="contextFeatures")
    actions: list[RankableAction]
    excluded_actions: list[Identifier] | None = Field(None, alias="excludedActions")
    event_id: Identifier | None = Field(None, alias="eventId")
    defer_activation: bool | None = Field(False, alias="deferActivation")


class RankedAction(_PersonalizerResponse):
    """One action of the ranking and its probability (0 for an excluded action)."""

    id: str
    probability: float


class RankResponse(_PersonalizerResponse):
    """The ranking, the event id to reward, and the action to reward (the chosen one)."""

    ranking: list[RankedAction]
    event_id: str = Field(alias="eventId")
    reward_action_id: str = Field(alias="rewardActionId")


class RewardRequest(_PersonalizerRequest):
    """POST /personalizer/v1.0/events/{eventId}/reward."""

    value: FiniteFloat


PersonalizerCode = Literal[
    "BadRequest", "PermissionDenied", "ResourceNotFound", "ServiceUnavailable",
    "InternalServerError",
]  # fmt: skip


class PersonalizerError(_PersonalizerResponse):
    """Personalizer's error: a code, a message and the field (`target`)."""

    code: PersonalizerCode
    message: str
    target: str | None = None


class PersonalizerErrorResponse(_PersonalizerResponse):
    """Every 4xx/5xx body of the Personalizer API."""

    error: PersonalizerError
