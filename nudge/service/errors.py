"""Refusals of `nudge serve` (`ApiError`) and their bodies in our API's or Personalizer's shape:
one place renders every refusal (ours, FastAPI's validation, Starlette's 404/405, a crash).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from bandit.config import Config
from bandit.errors import InvalidRequest, NudgeError
from bandit.events import Reason, reason_of
from nudge.service.models import (
    ErrorDetail,
    ErrorResponse,
    PersonalizerError,
    PersonalizerErrorResponse,
)

V1, PERSONALIZER = "v1", "personalizer"
SPOOL_RETRY_AFTER_S = 1
_PERSONALIZER_CODES = {
    400: "BadRequest", 401: "PermissionDenied", 404: "ResourceNotFound", 405: "BadRequest",
    409: "BadRequest", 413: "BadRequest", 503: "ServiceUnavailable", 500: "InternalServerError",
}  # fmt: skip


class ApiError(NudgeError):
    """A refusal with its HTTP status, stable code and field, rendered in the caller's API's
    error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})


def api_of(path: str) -> str:
    """Which API a path belongs to (its errors take that API's shape)."""
    return PERSONALIZER if path.startswith("/personalizer/") else V1


def error_response(api: str, error: ApiError) -> Response:
    """`error` as our API's or Personalizer's error body."""
    status = error.status
    body: BaseModel
    if api == PERSONALIZER:
        if status == 409:  # Personalizer knows no 409: a reused event id is a bad request
            status = 400
        code = _PERSONALIZER_CODES.get(
            status, "BadRequest" if status < 500 else "InternalServerError"
        )
        body = PersonalizerErrorResponse(
            error=PersonalizerError(code=code, message=error.message, target=error.field)  # type: ignore[arg-type]
        )
    else:
        body = ErrorResponse(
            error=ErrorDetail(code=error.code, field=error.field, message=error.message)
        )
    return Response(
        body.model_dump_json(by_alias=True), status, error.headers, media_type="application/json"
    )


# What a Decider's refusal is about, by how its message starts: (prefix, topic, reason).
_DECIDER_REFUSALS = (
    ("trigger ", "trigger", Reason.INVALID_VALUE),
    ("learner_id ", "learner_id", Reason.INVALID_VALUE),
    ("event_id ", "event_id", Reason.INVALID_VALUE),
    ("candidate actions repeat", "candidates", Reason.DUPLICATE_ACTION_ID),
    ("candidate action", "candidates", Reason.INVALID_VALUE),
    ("no candidate actions", "candidates", Reason.EMPTY_ACTIONS),
    ("context namespace", "context", Reason.UNKNOWN_NAMESPACE),
    ("context[", "context", Reason.INVALID_VALUE),
)
# Our API's name and Personalizer's for each topic a refusal can be about.
FIELDS = {
    V1: {"trigger": "trigger", "learner_id": "learner_id", "event_id": "event_id",
         "candidates": "candidates", "context": "context"},
    PERSONALIZER: {"trigger": "contextFeatures", "learner_id": "contextFeatures",
                   "event_id": "eventId", "candidates": "actions", "context": "contextFeatures"},
}  # fmt: skip


def decider_refusal(api: str, message: str) -> ApiError:
    for prefix, topic, reason in _DECIDER_REFUSALS:
        if message.startswith(prefix):
            return ApiError(400, reason, message, FIELDS[api][topic])
    return ApiError(400, Reason.INVALID_VALUE, message)


def no_snapshot(config: Config, why: str | None = None) -> ApiError:
    retry = max(1, round(config.serve.reload_interval_s))
    return ApiError(
        503, "no_snapshot",
        why or f"no verified policy snapshot loaded yet from {config.snapshots.directory}",
        headers={"Retry-After": str(retry)},
    )  # fmt: skip


def spool_full() -> ApiError:
    return ApiError(
        503, "spool_full",
        "the spool of events waiting for Kafka is full; nothing was logged, retry later",
        headers={"Retry-After": str(SPOOL_RETRY_AFTER_S)},
    )  # fmt: skip


def unknown_event(api: str, event_id: str) -> ApiError:
    field = "eventId" if api == PERSONALIZER else "event_id"
    return ApiError(404, "not_found", f"no decision with event id {event_id!r} is known", field)


# The member of a union (a feature is a number or text) pydantic appends to an error's place.
_UNION_MEMBER = re.compile(r"^(float|int|str|bool|constrained-str|[a-z-]+\[.*\])$")

_TYPE_MISMATCH = re.compile(r"_(type|parsing)$")


def field_of(loc: Sequence[str | int]) -> str | None:
    """A pydantic error location as the request spells the field (`actions[0].id`)."""
    parts = list(loc)
    if parts and parts[0] in ("body", "path", "query", "header"):
        parts = parts[1:]
    if len(parts) > 1 and isinstance(parts[-1], str) and _UNION_MEMBER.match(parts[-1]):
        parts = parts[:-1]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part != "[key]":
            text += f".{part}" if text else str(part)
    return text or None


def validation_error(exc: RequestValidationError) -> ApiError:
    """The first problem FastAPI found in a request, as a 400 naming the field."""
    errors = list(exc.errors())
    if not errors:
        return ApiError(400, Reason.UNDECODABLE, "the request could not be read")
    field = field_of(errors[0].get("loc", ()))
    # A union (number or text) fails once per member: report the member the input was meant
    # for (text too long, not "not a number"), i.e. the one failing on more than its type.
    same = [e for e in errors if field_of(e.get("loc", ())) == field]
    first = next((e for e in same if not _TYPE_MISMATCH.search(str(e.get("type")))), same[0])
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        return ApiError(400, Reason.UNDECODABLE, f"the body is not JSON: {first.get('msg')}")
    code = Reason.MISSING_FIELD if kind == "missing" else reason_of(first)
    if kind == "missing" and field is None:
        return ApiError(400, code, "the request has no JSON body")
    return ApiError(400, code, f"{field or 'body'}: {first.get('msg')}", field)


def add_error_handlers(app: FastAPI) -> None:
    def render(request: Request, error: ApiError) -> Response:
        return error_response(api_of(request.url.path), error)

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)  # noqa: S101 - registered for ApiError only
        return render(request, exc)

    async def on_invalid_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, InvalidRequest)  # noqa: S101 - registered for InvalidRequest only
        return render(request, ApiError(400, exc.reason, exc.detail, exc.field))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it only
        return render(request, validation_error(exc))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for it only
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return render(request, ApiError(exc.status_code, code, str(exc.detail), None))

    async def on_crash(request: Request, exc: Exception) -> Response:
        return render(request, ApiError(500, "internal", f"internal error: {type(exc).__name__}"))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(InvalidRequest, on_invalid_request)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)
