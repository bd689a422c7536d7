"""Dead letters always fit and are never skipped silently (issue 11, poison-pill crash loop).

The body carries the original once, cut to fit `kafka.dead_letter_max_bytes`, with its length
and sha256; a send or flush that fails is retried with backoff, then the consumer stops naming
the message, as `DeadLetterError` (refused for good) or `BrokerError` (broker unreachable).
"""

from __future__ import annotations

import base64
import hashlib
import random
from pathlib import Path

import orjson
import pytest
from consumer_fixtures import BOUNDED, make_stream

from bandit.config import parse_config
from bandit.envelopes import Rejected, Source
from bandit.errors import BrokerError, ConfigError, DeadLetterError, RecordRefused
from streams.checkpoints import CheckpointStore
from streams.dead_letters import DeadLetterWriter, dead_letter_body
from streams.memory import MemoryBroker, MemorySink

PRODUCER_LIMIT = 1_048_576  # kafka-python's default max_request_size
SOURCE = Source("nudge.impressions", 3, 1234)


def _random_bytes(n: int) -> bytes:
    return random.Random(n).randbytes(n)


ORIGINALS = {
    "ascii": b"x" * 450_000,
    "tabs (2 bytes each in JSON)": b"\t" * 300_000,
    "control characters (6 bytes each)": b"\x01" * 150_000,
    "two-byte letters": "ü".encode() * 200_000,
    "astral emoji": "😀".encode() * 100_000,
    "not UTF-8": _random_bytes(450_000),
    "a 1 MB record": b"{" * 1_000_000,
    "empty": b"",
    "small JSON": b'{"type": "impression", "event_id": "e1"}',
}


@pytest.mark.parametrize("cap", [4096, 65_536, 262_144])
@pytest.mark.parametrize("name", list(ORIGINALS))
def test_the_body_fits_the_cap_and_holds_the_original_once(name: str, cap: int) -> None:
    raw = ORIGINALS[name]
    value = dead_letter_body(Rejected("too_large", "big", raw, SOURCE), cap, 1.5)

    assert len(value) <= cap
    body = orjson.loads(value)
    assert body["original_bytes"] == len(raw)
    assert body["original_sha256"] == hashlib.sha256(raw).hexdigest()
    assert body["source"] == {"topic": SOURCE.topic, "partition": 3, "offset": 1234}
    assert (body["reason"], body["detail"], body["dead_lettered_at"]) == ("too_large", "big", 1.5)
    if name == "not UTF-8":
        assert "original" not in body
        kept = base64.b64decode(body["original_base64"])
    else:
        assert "original_base64" not in body
        kept = body["original"].encode()
    assert raw.startswith(kept)
    assert body["original_truncated"] is (len(kept) < len(raw))
    if body["original_truncated"]:  # the prefix uses the room there is (up to one escape)
        assert len(value) > cap - 12


def test_the_old_body_of_a_150_kb_message_did_not_fit_the_producer() -> None:
    # What issue 11 saw: text with replacement characters and escapes plus base64, 7.3x.
    raw = b"\x01" * 150_000
    old_size = len(orjson.dumps({"original": raw.decode(), "b64": base64.b64encode(raw).decode()}))
    assert old_size > PRODUCER_LIMIT
    assert len(dead_letter_body(Rejected("too_large", "", raw, SOURCE), 262_144, 0.0)) <= 262_144


def test_a_long_detail_is_cut_too() -> None:
    value = dead_letter_body(Rejected("invalid_value", "\x00" * 100_000, b"{}", SOURCE), 4096, 0)
    body = orjson.loads(value)
    assert len(value) <= 4096 and body["original"] == "{}" and body["original_truncated"] is False
    assert 0 < len(body["detail"]) < 100_000


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"dead_letter_max_bytes": 1_048_576}, r"at most 1044480"),
        ({"dead_letter_max_bytes": 500_000, "client": {"max_request_size": "400000"}},
         r"max_request_size 400000: at most 395904"),
        ({"dead_letter_max_bytes": 100}, r"greater than or equal to 4096"),
        ({"dead_letter_attempts": 0}, r"dead_letter_attempts"),
    ],
)  # fmt: skip
def test_a_cap_the_producer_cannot_take_is_refused_at_start(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"kafka": settings})


# ---- retries and stopping ----------------------------------------------------------------------


class FailingSink(MemorySink):
    """A sink whose first `failures` flushes (or sends) raise `error` and lose what was sent."""

    def __init__(self, error: Exception, failures: int, on: str = "flush") -> None:
        super().__init__(MemoryBroker())
        self.error, self.failures, self.on = error, failures, on
        self.calls = 0

    def send(self, topic, key, value, headers=None):  # type: ignore[no-untyped-def]
        if self.on == "send" and self.failures > 0:
            self.failures -= 1
            raise self.error
        super().send(topic, key, value, headers)

    def flush(self, timeout_s: float = 60.0) -> None:
        if self.on == "flush" and self.failures > 0:
            self.failures -= 1
            self._unflushed.clear()  # the broker never took them
            raise self.error
        super().flush(timeout_s)

    def close(self) -> None:  # as the Kafka producer's: failed deliveries raise from flush only
        self._closed = True


def _letters(sink: MemorySink, topic: str = "dlq") -> list[tuple[bytes | None, str]]:
    return [(r.key, orjson.loads(r.value or b"")["reason"]) for r in sink.broker.records(topic)]


def _writer(sink: MemorySink, sleeps: list[float], attempts: int = 4) -> DeadLetterWriter:
    return DeadLetterWriter(sink, "dlq", max_bytes=4096, attempts=attempts, backoff_s=0.5,
                            sleep=sleeps.append, now=lambda: 0.0)  # fmt: skip


REFUSED = RecordRefused("Kafka refused a record for dlq: MessageSizeTooLargeError (record too "
                        "large for the topic's max.message.bytes)", "dlq", None)  # fmt: skip


@pytest.mark.parametrize("on", ["send", "flush"])
def test_a_failed_dead_letter_is_retried_with_backoff_until_it_is_durable(on: str) -> None:
    sink, sleeps = FailingSink(REFUSED, failures=2, on=on), []
    writer = _writer(sink, sleeps)

    writer.send(Rejected("too_large", "", b"x" * 10_000, SOURCE))
    writer.send(Rejected("not_an_object", "", b"[]", Source("nudge.outcomes", 0, 7)))
    writer.flush()

    assert sleeps == [0.5, 1.0]
    letters = _letters(sink)
    assert set(letters) == {(b"nudge.impressions/3/1234", "too_large"),
                            (b"nudge.outcomes/0/7", "not_an_object")}  # fmt: skip


def test_a_dead_letter_refused_on_every_try_stops_naming_the_message_and_the_cause() -> None:
    refused = RecordRefused(str(REFUSED), "dlq", b"nudge.outcomes/0/7")
    sink, sleeps = FailingSink(refused, failures=99), []
    writer = _writer(sink, sleeps)
    writer.send(Rejected("too_large", "", b"x", SOURCE))
    writer.send(Rejected("not_an_object", "", b"[]", Source("nudge.outcomes", 0, 7)))

    with pytest.raises(DeadLetterError) as caught:
        writer.flush()

    text = str(caught.value)
    assert "cannot dead-letter nudge.outcomes partition 0 offset 7 (not_an_object) to dlq" in text
    assert "after 4 attempts" in text and "record too large" in text
    assert not isinstance(caught.value, BrokerError)  # exit 2, never "is the broker up?"
    assert sleeps == [0.5, 1.0, 2.0]


def test_an_unreachable_broker_stays_a_broker_error_naming_the_message() -> None:
    sink, sleeps = FailingSink(BrokerError("Kafka flush failed: KafkaTimeoutError"), 99), []
    writer = _writer(sink, sleeps, attempts=2)
    writer.send(Rejected("too_large", "", b"x", SOURCE))

    with pytest.raises(BrokerError, match=r"nudge.impressions partition 3 offset 1234 \(too_large"):
        writer.flush()


def test_the_backoff_doubles_up_to_30_seconds() -> None:
    sink, sleeps = FailingSink(REFUSED, failures=99, on="send"), []
    writer = DeadLetterWriter(sink, "dlq", attempts=10, backoff_s=1.0, sleep=sleeps.append)
    with pytest.raises(DeadLetterError, match="offset 1234"):
        writer.send(Rejected("too_large", "", b"x", SOURCE))
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


# ---- through the consumer ---------------------------------------------------------------------


class ProducerLimitSink(MemorySink):
    """Refuses what kafka-python's producer refuses: a record over max_request_size."""

    def send(self, topic, key, value, headers=None):  # type: ignore[no-untyped-def]
        if len(value) + len(key or b"") > PRODUCER_LIMIT:
            raise RecordRefused(f"Kafka refused a record for {topic}: too large", topic, key)
        super().send(topic, key, value, headers)


def test_the_consumer_dead_letters_a_400_kb_message_and_learns_the_rest(tmp_path: Path) -> None:
    stream = make_stream(tmp_path)
    poison = b'{"type": "impression", "padding": "' + b"\t" * 400_000 + b'"}'
    stream.broker.append(stream.config.kafka.impressions_topic, None, poison)

    stats = stream.consumer(producer=ProducerLimitSink(stream.broker)).run(BOUNDED)

    assert stats.learned == stream.truth.impressions
    assert stats.dead_letters_by_reason["too_large"] == 1
    (letter,) = [
        r for r in stream.broker.records(stream.config.kafka.dead_letter_topic)
        if r.value and orjson.loads(r.value)["reason"] == "too_large"
    ]  # fmt: skip
    assert letter.value is not None and len(letter.value) <= 262_144
    assert orjson.loads(letter.value)["original_sha256"] == hashlib.sha256(poison).hexdigest()


def test_the_consumer_stops_before_a_message_it_cannot_dead_letter(tmp_path: Path) -> None:
    stream = make_stream(tmp_path, kafka={"dead_letter_backoff_ms": 0})
    sink = FailingSink(RecordRefused("Kafka refused a record for x: not authorized", "x", None), 99)
    sink.broker = stream.broker

    with pytest.raises(DeadLetterError, match=r"cannot dead-letter nudge\.\w+ partition \d offset"):
        stream.consumer(producer=sink).run(BOUNDED)

    # No checkpoint counts a dead letter that is not durable: a restart meets it again.
    assert CheckpointStore(stream.config.checkpoint.directory).latest() is None
