"""The closed loop's decision port over HTTP: asks `nudge serve` instead of the library.

`HttpPort` implements `bandit.simulation.decision_port.DecisionPort` with `POST /v1/decide`
(the simulator's event time in `timestamp`), `POST /v1/outcomes` and `GET /v1/policy`, on one
keep-alive connection, as a production platform would call the service. It sends nothing to
Kafka: the service spools and produces every impression and outcome itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
import orjson

from bandit.decisions import Context
from bandit.errors import ServiceError
from bandit.events import OutcomeLabel, timestamp_text
from bandit.simulation.decision_port import PolicyView, ServedDecision

_RETRY_AFTER_CAP_S = 2.0  # poll a busy or not-yet-ready service at least this often


class HttpPort:
    """Decisions from `nudge serve` at `base_url` (e.g. http://127.0.0.1:8080).

    `wait_s`: how long a call keeps retrying while the service cannot be reached or answers
    503 (starting, no snapshot yet, spool full), honouring `Retry-After`. Any other refusal
    raises `ServiceError` at once: the loop sends only valid requests, so it is a bug or a
    misconfiguration (a wrong key gets 401). A request is retried only when it surely did not
    arrive (no connection) or was refused whole (503), so no decision is logged twice.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        wait_s: float = 60.0,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.wait_s = wait_s
        self._sleep = sleep
        self._clock = clock
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )  # fmt: skip

    def decide(
        self,
        trigger: str,
        learner_id: str,
        context: Context,
        candidates: Sequence[str],
        event_id: str,
        timestamp: float,
    ) -> ServedDecision:
        body = self._call(
            "POST", "/v1/decide", 200,
            {
                "trigger": trigger,
                "learner_id": learner_id,
                "context": {ns: dict(feats) for ns, feats in context.items()},
                "candidates": list(candidates),
                "event_id": event_id,
                "timestamp": timestamp_text(timestamp),
            },
        )  # fmt: skip
        return served_decision(body, candidates)

    def report_outcome(
        self,
        event_id: str,
        trigger: str,
        label: OutcomeLabel,
        value: float | None,
        timestamp: float,
    ) -> None:
        self._call(
            "POST", "/v1/outcomes", 202,
            {
                "event_id": event_id,
                "outcome": label.value,
                "value": value,
                "trigger": trigger,
                "timestamp": timestamp_text(timestamp),
            },
        )  # fmt: skip

    def policy(self) -> PolicyView:
        return policy_view(self._call("GET", "/v1/policy", 200))

    def flush(self) -> None:
        """Nothing to do: a 200/202 means the service has spooled the event durably (the loop
        waits for the topics to hold it before it waits for the learner)."""

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self, method: str, path: str, expected: int, payload: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """One request, retried while the service is unreachable or answers 503 (up to
        `wait_s`); the JSON body of the expected status, else `ServiceError`."""
        content = orjson.dumps(payload) if payload is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        url = f"{self.base_url}{path}"
        deadline = self._clock() + self.wait_s
        while True:
            try:
                resp = self._client.request(method, path, content=content, headers=headers)
            except httpx.ConnectError as exc:  # nothing was sent: safe to try again
                problem, pause = f"cannot connect ({exc})", 0.5
            except httpx.HTTPError as exc:
                raise ServiceError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
            else:
                if resp.status_code == expected:
                    return _json_object(resp, method, url)
                if resp.status_code != 503:
                    raise ServiceError(f"{method} {url}: {_refusal(resp)}")
                problem, pause = _refusal(resp), _retry_after_s(resp)
            left = deadline - self._clock()
            if left <= 0:
                raise ServiceError(f"{method} {url}: {problem}; gave up after {self.wait_s:g}s")
            self._sleep(min(pause, left))


def served_decision(body: Mapping[str, Any], candidates: Sequence[str]) -> ServedDecision:
    """A /v1/decide answer as the loop needs it: the pmf in the order of `candidates`."""
    try:
        by_action = {str(p["action"]): float(p["probability"]) for p in body["pmf"]}
        pmf = tuple(by_action[a] for a in candidates)
        return ServedDecision(
            action=str(body["action"]),
            probability=float(body["probability"]),
            pmf=pmf,
            why=str(body["why"]),
            policy_version=str(body["policy_version"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ServiceError(f"/v1/decide answered an unexpected body ({exc!r}): {body}") from exc


def policy_view(body: Mapping[str, Any]) -> PolicyView:
    """A /v1/policy answer: version, trained-through offsets and examples learned."""
    try:
        trained = {str(k): int(v) for k, v in body["trained_through"].items()}
        return PolicyView(str(body["version"]), trained, int(body["examples"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ServiceError(f"/v1/policy answered an unexpected body ({exc!r}): {body}") from exc


def _json_object(resp: httpx.Response, method: str, url: str) -> dict[str, Any]:
    if resp.status_code == 204 or not resp.content:
        return {}
    try:
        body = orjson.loads(resp.content)
    except orjson.JSONDecodeError as exc:
        raise ServiceError(f"{method} {url}: {resp.status_code} with a body not JSON") from exc
    if not isinstance(body, dict):
        raise ServiceError(f"{method} {url}: {resp.status_code} with a JSON body not an object")
    return body


def _refusal(resp: httpx.Response) -> str:
    """`STATUS code (field): message` from the service's error body (or the raw text)."""
    try:
        error = orjson.loads(resp.content)["error"]
        field = f" ({error['field']})" if error.get("field") else ""
        return f"{resp.status_code} {error['code']}{field}: {error['message']}"
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return f"{resp.status_code}: {resp.text[:200]}"


def _retry_after_s(resp: httpx.Response) -> float:
    """`Retry-After` in seconds (delta form), capped so a recovery is noticed soon."""
    try:
        seconds = float(resp.headers.get("Retry-After", "1"))
    except ValueError:
        seconds = 1.0
    if not math.isfinite(seconds) or seconds < 0:
        seconds = 1.0
    return min(seconds, _RETRY_AFTER_CAP_S)
