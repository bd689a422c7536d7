"""Messages as checkpoints save them: the exact bytes (base64) and the source, decoded again on
restore. The join's open windows and the event-time guard's held records are saved this way."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from bandit.envelopes import Envelope, Rejected, Source
from bandit.errors import InvalidEvent
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


def restore_envelope(
    item: dict[str, Any], decode: Callable[[bytes], Event]
) -> Envelope[Any] | Rejected:
    """A message saved by `envelope_state`, decoded again; a `Rejected` with the decoder's
    reason when the current rules refuse it (the config changed since it was saved: a lower
    limit, a namespace removed), to be dead-lettered as a fresh message would be."""
    raw = base64.b64decode(item["raw"])
    topic, partition, offset = item["source"]
    source = Source(topic, int(partition), int(offset))
    try:
        return Envelope(decode(raw), raw, source)
    except InvalidEvent as exc:
        detail = f"saved in a checkpoint, refused by the current config: {exc.detail}"
        return Rejected(exc.reason, detail, raw, source)
