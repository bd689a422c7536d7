"""Messages as checkpoints save them: the exact bytes (base64) and the source, decoded again on
restore. The join's open windows and the event-time guard's held records are saved this way."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from bandit.envelopes import Envelope, Source
from bandit.errors import CheckpointError, InvalidEvent
from bandit.events import Event


def message_state(raw: bytes, source: Source) -> dict[str, Any]:
    """JSON-ready: `{"raw": base64, "source": [topic, partition, offset]}`."""
    return {
        "raw": base64.b64encode(raw).decode("ascii"),
        "source": [source.topic, source.partition, source.offset],
    }


def envelope_state(env: Envelope[Any]) -> dict[str, Any]:
    """An envelope as saved: its bytes and source (the event is decoded again on restore)."""
    return message_state(env.raw, env.source)


def envelope_from_state(item: dict[str, Any], decode: Callable[[bytes], Event]) -> Envelope[Any]:
    """A message saved by `envelope_state`, decoded again (CheckpointError if it no longer is)."""
    raw = base64.b64decode(item["raw"])
    topic, partition, offset = item["source"]
    try:
        event = decode(raw)
    except InvalidEvent as exc:
        raise CheckpointError(
            f"saved message {topic}/{partition}/{offset} no longer decodes: {exc}"
        ) from exc
    return Envelope(event, raw, Source(topic, int(partition), int(offset)))
