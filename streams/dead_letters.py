"""Dead letters: every message that is not learned, bounded so Kafka always takes it, and sent
with retries; one that still cannot be written stops the consumer, never silently skipped.

A dead letter's JSON body carries the original once: as text (`original`) when it is valid
UTF-8, else as base64 (`original_base64`), cut to a prefix when the body would exceed
`kafka.dead_letter_max_bytes` (`original_truncated`), always with the original's length and
sha256. The cap sits below the producer's `max_request_size` (checked in the config), so a
poison message of any size the broker delivered gets a dead letter the producer takes.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from bandit.config import KafkaConfig
from bandit.envelopes import Rejected, Source
from bandit.errors import BrokerError, DeadLetterError, RecordRefused
from bandit.ports import MessageSink

log = logging.getLogger("nudge.consume")

DETAIL_MAX_BYTES = 2048
MAX_BACKOFF_S = 30.0
FLUSH_EVERY_BYTES = 8 * 1024 * 1024  # bounds what is held for a resend between checkpoints


def _json_len(text: str) -> int:
    return len(orjson.dumps(text))


def _fit(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` whose JSON string (quotes and escapes included) takes at
    most `max_bytes`; the length is monotonic in the prefix, so a binary search finds it."""
    if _json_len(text) <= max_bytes:
        return text
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if _json_len(text[:mid]) <= max_bytes:
            low = mid
        else:
            high = mid - 1
    return text[:low]


def dead_letter_body(rejected: Rejected, max_bytes: int, now: float) -> bytes:
    """The JSON body of a dead letter, at most `max_bytes` long (at least 4096).

    `{"reason", "detail", "source": {"topic", "partition", "offset"}, "original_bytes",
    "original_sha256", "original_truncated", "original" | "original_base64",
    "dead_lettered_at"}`: `original` is the text when the bytes are valid UTF-8, otherwise
    `original_base64` holds them; either is a prefix when `original_truncated`.
    """
    raw = rejected.raw
    try:
        text: str | None = raw.decode("utf-8")
        field = "original"
    except UnicodeDecodeError:
        text, field = None, "original_base64"
    body: dict[str, Any] = {
        "reason": rejected.reason,
        "detail": _fit(rejected.detail, DETAIL_MAX_BYTES),
        "source": {
            "topic": rejected.source.topic,
            "partition": rejected.source.partition,
            "offset": rejected.source.offset,
        },
        "original_bytes": len(raw),
        "original_sha256": hashlib.sha256(raw).hexdigest(),
        "original_truncated": False,  # longer than `true`: the budget below stays an upper bound
        field: "",
        "dead_lettered_at": now,
    }
    budget = max_bytes - len(orjson.dumps(body)) + 2  # the empty string's quotes are counted
    if text is not None:
        kept = _fit(text, budget)
        truncated = len(kept) < len(text)
    else:
        prefix = raw[: max(0, budget - 2) // 4 * 3]  # base64: 4 characters per 3 bytes
        kept = base64.b64encode(prefix).decode("ascii")
        truncated = len(prefix) < len(raw)
    body[field] = kept
    body["original_truncated"] = truncated
    return orjson.dumps(body)


class DeadLetterWriter:
    """Sends dead letters to one topic through a `MessageSink`, retrying what fails.

    A send or flush that fails is retried `attempts` times in all, waiting `backoff_s` before
    the second try and twice as long before each next (at most 30 s). Dead letters sent since
    the last good flush are kept and sent again after a failed flush (at least once: their
    key, the source coordinates, dedupes them). When every try failed it raises, naming the
    source topic, partition and offset, the dead-letter topic and the cause:
    `DeadLetterError` when Kafka refused the record for good (too large, not authorized),
    `BrokerError` when the broker could not be reached.
    """

    def __init__(
        self,
        sink: MessageSink,
        topic: str,
        *,
        max_bytes: int = 262_144,
        attempts: int = 5,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.time,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        self.sink = sink
        self.topic = topic
        self.max_bytes = max_bytes
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._now = now
        self._pending: list[tuple[Source, str, bytes]] = []  # sent since the last good flush
        self._pending_bytes = 0

    @classmethod
    def for_config(cls, sink: MessageSink, kafka: KafkaConfig) -> DeadLetterWriter:
        """A writer to `kafka.dead_letter_topic` with the config's cap and retry settings."""
        return cls(
            sink, kafka.dead_letter_topic,
            max_bytes=kafka.dead_letter_max_bytes,
            attempts=kafka.dead_letter_attempts,
            backoff_s=kafka.dead_letter_backoff_ms / 1000.0,
        )  # fmt: skip

    def send(self, item: Rejected) -> None:
        """Send the dead letter of `item` (durable after the next `flush`)."""
        value = dead_letter_body(item, self.max_bytes, self._now())
        self._pending.append((item.source, item.reason, value))
        self._pending_bytes += len(value)
        self._retrying(lambda _retry: self._send(item.source, item.reason, value), item.source)
        if self._pending_bytes >= FLUSH_EVERY_BYTES:
            self.flush()

    def flush(self) -> None:
        """Return once every dead letter sent so far is durable, or raise (see the class)."""
        if not self._pending:
            self.sink.flush()  # nothing of ours to resend; still the sink's own contract
            return
        self._retrying(self._flush_pending, None)
        self._pending.clear()
        self._pending_bytes = 0

    def _send(self, source: Source, reason: str, value: bytes) -> None:
        self.sink.send(
            self.topic, key=source.key.encode(), value=value, headers=[("reason", reason.encode())]
        )

    def _flush_pending(self, retry: bool) -> None:
        if retry:  # which of them failed is not known: send them all again
            for source, reason, value in self._pending:
                self._send(source, reason, value)
        self.sink.flush()

    def _retrying(self, action: Callable[[bool], None], source: Source | None) -> None:
        """Run `action(retry)` until it succeeds; after the last failed attempt raise the
        error naming the dead letter: `source`'s, or (a flush) the one the failure names."""
        for attempt in range(1, self.attempts + 1):
            try:
                action(attempt > 1)
                return
            except (RecordRefused, BrokerError) as exc:
                if attempt == self.attempts:
                    raise self._gave_up(exc, source) from exc
                wait = min(MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 1))
                log.warning(
                    "dead letter to %s failed (%s); try %d of %d in %.1fs",
                    self.topic, exc, attempt + 1, self.attempts, wait,
                )  # fmt: skip
                self._sleep(wait)

    def _gave_up(
        self, failure: RecordRefused | BrokerError, source: Source | None
    ) -> DeadLetterError | BrokerError:
        if source is None:
            source = self._source_of(failure)
        what = f"{source.topic} partition {source.partition} offset {source.offset}"
        reason = next((r for s, r, _ in self._pending if s == source), None)
        why = f" ({reason})" if reason else ""
        message = (
            f"cannot dead-letter {what}{why} to {self.topic} after {self.attempts} attempts: "
            f"{failure}"
        )
        if isinstance(failure, RecordRefused):
            return DeadLetterError(
                f"{message}; the consumer stopped before that offset rather than skip it: fix "
                "the topic (max.message.bytes above kafka.dead_letter_max_bytes, write ACLs) "
                "and restart"
            )
        return BrokerError(message)

    def _source_of(self, failure: RecordRefused | BrokerError) -> Source:
        """The pending dead letter the failure names (by key), else the oldest pending one."""
        key = failure.key if isinstance(failure, RecordRefused) else None
        for source, _, _ in self._pending:
            if key is not None and source.key.encode() == key:
                return source
        return self._pending[0][0]
