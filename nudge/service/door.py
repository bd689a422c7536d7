"""The door of `nudge serve`: ASGI middleware that checks API keys and body size before any
routing or parsing, and counts every answer by route template and status.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from bandit.events import Reason
from nudge.service.errors import V1, ApiError, api_of, error_response
from nudge.service.service import ServiceParts

_PROTECTED = ("/v1/", "/personalizer/")
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def key_matches(presented: Sequence[bytes], keys: frozenset[bytes]) -> bool:
    """Whether any presented key is one of `keys`, comparing in constant time against every key
    (no early exit, so the time does not tell which key, or how much of one, matched)."""
    found = False
    for candidate in presented:
        for key in keys:
            found |= hmac.compare_digest(candidate, key)
    return found


def presented_keys(headers: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
    """The API keys a request carries: `Authorization: Bearer K`, `Ocp-Apim-Subscription-Key: K`."""
    found = []
    for name, value in headers:
        lower = name.lower()
        if lower == b"ocp-apim-subscription-key":
            found.append(value.strip())
        elif lower == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                found.append(token.strip())
    return found


class Door:
    """ASGI middleware run before routing: a request without a valid key gets 401, a body over
    `limits.max_message_bytes` 413 (by Content-Length, then by what arrives), before any
    parsing; every answer is counted by route template and status."""

    def __init__(self, app: ASGIApp, parts: ServiceParts, route_of: Callable[[Scope], str]) -> None:
        self.app = app
        self.keys = parts.api_keys
        self.limit = parts.config.limits.max_message_bytes
        self.metrics = parts.metrics
        self.route_of = route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response starts

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._answer(scope, receive, counted)
        finally:
            self.metrics.request(self.route_of(scope), status)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        api = api_of(path)
        if not self._authorized(path, scope["headers"]):
            refusal = ApiError(
                401, "unauthorized",
                "missing or wrong API key: send `Authorization: Bearer KEY` or "
                "`Ocp-Apim-Subscription-Key: KEY`",
                headers={"WWW-Authenticate": "Bearer"} if api == V1 else None,
            )  # fmt: skip
            await error_response(api, refusal)(scope, receive, send)
            return
        if scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        body = await self._body(scope, receive)
        if body is None:
            too_large = ApiError(
                413, Reason.TOO_LARGE,
                f"request body over {self.limit} bytes (limits.max_message_bytes)",
            )  # fmt: skip
            await error_response(api, too_large)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # http.disconnect when the client goes

        await self.app(scope, replay, send)

    def _authorized(self, path: str, headers: Sequence[tuple[bytes, bytes]]) -> bool:
        """Open paths, no keys configured, or a configured key presented."""
        if not self.keys or not path.startswith(_PROTECTED):
            return True
        return key_matches(presented_keys(headers), self.keys)

    async def _body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it is known to be over the limit."""
        for name, value in scope["headers"]:
            if name.lower() == b"content-length":
                try:
                    if int(value) > self.limit:
                        return None
                except ValueError:
                    pass
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)
