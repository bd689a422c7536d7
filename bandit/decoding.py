"""Kafka record bytes to an `Envelope` (valid event) or a `Rejected` (dead letter), never a crash."""

from __future__ import annotations

from typing import Any

from bandit.envelopes import Envelope, Rejected, Source
from bandit.errors import InvalidEvent
from bandit.events import EventRules, decode_event


def decode_message(
    raw: bytes | None, source: Source, rules: EventRules
) -> Envelope[Any] | Rejected:
    """Decode one message; a contract violation becomes a `Rejected` with its reason code."""
    if raw is None:
        return Rejected("undecodable", "message has no value (tombstone)", b"", source)
    try:
        return Envelope(decode_event(raw, rules), raw, source)
    except InvalidEvent as exc:
        return Rejected(exc.reason, exc.detail, raw, source)
