"""Our own events, from a JSON-lines file or records read from the Kafka topics, as `LoggedData`.

Each message is decoded with the consumer's rules (`Config.event_rules`) and the decoded events
go through the consumer's reward join: a file in its order (`bandit.join.join_events`: one
watermark, a file has no partitions), records of the topics partition by partition in the
consumer's reading order (`replay.reading_order`: per-partition watermarks), so replay
evaluates the decisions and rewards the learner learned. A message that breaks the contract is an error
naming its line (or topic/partition/offset) and field, or, with ``on_error="skip"``, a count
under its reason code. What the join rejects (duplicate impressions; late, unmatched, duplicate
or mismatched outcomes) is ordinary stream hygiene: always counted in ``skipped``, never an error.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from bandit.config import Config
from bandit.envelopes import Envelope, Rejected, Source
from bandit.errors import InvalidEvent, ReplayInputError
from bandit.events import EventRules, Reason, decode_event
from bandit.join import JoinedEvent, join_events
from bandit.ports import Record
from replay.logged import LoggedData, from_joined
from replay.progress import Progress
from replay.reading_order import join_as_read

OnError = Literal["raise", "skip"]
PROGRESS_EVERY = 10_000
LINE_HINT = "fix the line or pass --skip-invalid"
RECORD_HINT = "fix the producer or pass --skip-invalid"

# The field to name when the decoder's detail does not locate one.
_REASON_FIELDS: dict[str, str] = {
    Reason.UNDECODABLE: "json",
    Reason.NOT_AN_OBJECT: "json",
    Reason.TOO_LARGE: "size",
    Reason.UNKNOWN_EVENT_TYPE: "type",
    Reason.BAD_TIMESTAMP: "timestamp",
    Reason.EMPTY_ACTIONS: "actions",
    Reason.TOO_MANY_ACTIONS: "actions",
    Reason.DUPLICATE_ACTION_ID: "actions",
    Reason.CHOSEN_NOT_IN_ACTIONS: "chosen",
    Reason.PROBABILITY_OUT_OF_RANGE: "probability",
    Reason.PMF_INVALID: "pmf",
    Reason.UNKNOWN_NAMESPACE: "context",
    Reason.TOO_MANY_FEATURES: "context",
}
_EVENT_TYPES = frozenset({"impression", "outcome", "event"})


def check_on_error(on_error: str) -> None:
    """Refuse anything but "raise" or "skip" (a typo must not silently drop records)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f'on_error must be "raise" or "skip", got {on_error!r}')


def _invalid_event_field(exc: InvalidEvent) -> tuple[str, str]:
    """(field, problem) of a decoding failure: the field the detail locates, else the reason's."""
    loc, sep, message = exc.detail.partition(": ")
    if sep and loc and " " not in loc:  # pydantic detail: "impression.probability: message"
        parts = loc.split(".")
        if parts[0] in _EVENT_TYPES:
            parts = parts[1:]
        if parts:
            return ".".join(parts), message
        return _REASON_FIELDS.get(exc.reason, exc.reason), message
    return _REASON_FIELDS.get(exc.reason, exc.reason), exc.detail


def _invalid(where: str, exc: InvalidEvent, hint: str) -> ReplayInputError:
    field, problem = _invalid_event_field(exc)
    return ReplayInputError(where, field, f"{problem} [{exc.reason}]; {hint}")


def load_events(
    path: Path | str,
    config: Config,
    *,
    on_error: OnError = "raise",
    progress: Progress | None = None,
) -> LoggedData:
    """Decode and join a JSON-lines file of impressions and outcomes (file order = arrival
    order, as `nudge simulate --out` writes it); blank lines are ignored."""
    check_on_error(on_error)
    path = Path(path)
    rules = config.event_rules()
    skipped: Counter[str] = Counter()
    envelopes: list[Envelope[Any]] = []
    n = 0
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, start=1):
            if progress is not None and n % PROGRESS_EVERY == 0:
                progress("read", n, None)
            raw = line.rstrip(b"\r\n")
            if not raw.strip():
                continue
            envelope = _decoded(raw, Source(path.name, 0, n), rules)
            if isinstance(envelope, InvalidEvent):
                if on_error == "raise":
                    raise _invalid(f"{path.name} line {n}", envelope, LINE_HINT)
                skipped[envelope.reason] += 1
                continue
            envelopes.append(envelope)
    if progress is not None:
        progress("read", n, n)
    joined = join_events(envelopes, config.join, config.rewards)
    return _logged(joined, config, skipped, path.name, str(path))


def load_records(
    records: Sequence[Record],
    config: Config,
    *,
    where: str,
    on_error: OnError = "raise",
    progress: Progress | None = None,
) -> LoggedData:
    """Decode and join records read from the impressions and outcomes topics as the consumer
    reads and joins them (`replay.reading_order.join_as_read`): each partition in offset
    order, whatever order the records come in; partitions in the order they first appear.
    `where` names the input in errors (e.g. the topics)."""
    check_on_error(on_error)
    rules = config.event_rules()
    skipped: Counter[str] = Counter()
    partitions: dict[str, list[Envelope[Any]]] = {}
    for i, (source, raw) in enumerate(records, start=1):
        if progress is not None and i % PROGRESS_EVERY == 0:
            progress("decode", i, len(records))
        envelope = (
            InvalidEvent(Reason.UNDECODABLE, "message has no value (tombstone)")
            if raw is None
            else _decoded(raw, source, rules)
        )
        if isinstance(envelope, InvalidEvent):
            if on_error == "raise":
                raise _invalid(source.key, envelope, RECORD_HINT)
            skipped[envelope.reason] += 1
            continue
        partitions.setdefault(source.partition_key, []).append(envelope)
    if progress is not None:
        progress("decode", len(records), len(records))
    for envelopes in partitions.values():
        envelopes.sort(key=lambda e: e.source.offset)  # stable: already sorted costs one pass
    joined = join_as_read(partitions, config.join, config.rewards)
    return _logged(joined, config, skipped, where, where)


def _decoded(raw: bytes, source: Source, rules: EventRules) -> Envelope[Any] | InvalidEvent:
    try:
        return Envelope(decode_event(raw, rules), raw, source)
    except InvalidEvent as exc:
        return exc


def _logged(
    join: tuple[list[JoinedEvent], list[Rejected]],
    config: Config,
    skipped: Counter[str],
    where: str,
    source: str,
) -> LoggedData:
    """The joined decisions as columns; the join's rejections are counted, never raised."""
    joined, rejected = join
    skipped.update(r.reason for r in rejected)
    if not joined:
        raise ReplayInputError(
            where, "impressions", f"no decision could be joined (skipped: {dict(skipped)})"
        )
    return from_joined(
        joined, none_action=config.rewards.none_action, skipped=skipped, source=source
    )
