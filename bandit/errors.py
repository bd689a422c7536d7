"""The project's exceptions: one root, one sentence each."""

from __future__ import annotations


class NudgeError(Exception):
    """Base class of every error raised by nudgebandit."""

    retriable: bool = False


class ConfigError(NudgeError):
    """The configuration file or an environment override is invalid; the message names the field."""


class BrokerAuthError(ConfigError):
    """Kafka refused the configured credentials (SASL); retrying cannot help, `kafka.client` must
    change."""


class UsageError(NudgeError):
    """A command-line argument or an input file it names is missing, unreadable or unknown; the
    message names the flag or file."""


class InvalidEvent(NudgeError):
    """An event broke the contract; `reason` is a stable code from `bandit.events.Reason`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = str(reason)
        self.detail = detail


class LearnerError(NudgeError):
    """Vowpal Wabbit refused its arguments, an example or a model file."""


class CheckpointError(NudgeError):
    """A checkpoint could not be written or is unreadable or inconsistent."""


class CheckpointCorrupt(CheckpointError):
    """A checkpoint's files are missing, unreadable or differ from the sha256s its manifest
    lists, so an older checkpoint must be used instead."""


class StorageError(NudgeError):
    """A directory nudgebandit writes to refused a write (disk full, read-only, no permission);
    the message names the directory and the reason."""


class DirectoryInUse(NudgeError):
    """Another live process holds the lock of a directory only one writer may use; the message
    names its pid, host and start time."""


class SnapshotError(NudgeError):
    """A policy snapshot is missing, tampered with, or of a format this version cannot read."""


class SnapshotSignatureError(SnapshotError):
    """A snapshot is unsigned or its HMAC-SHA256 signature does not match the signing key set."""


class RecordRefused(NudgeError):
    """Kafka or the producer refused one record for good (too large, not authorized, invalid
    topic); resending it unchanged fails until the record, the topic or its ACLs change."""

    def __init__(self, message: str, topic: str, key: bytes | None) -> None:
        super().__init__(message)
        self.topic = topic
        self.key = key


class DeadLetterError(NudgeError):
    """A message could not be dead-lettered after every retry, so the consumer stops before it
    rather than skip it."""


class InvalidFeedback(NudgeError, ValueError):
    """Logged feedback for replay has a wrong shape or impossible values; the message names the
    array and the first bad row."""


class BrokerError(NudgeError):
    """Kafka could not be reached or refused a request (a refused login is `BrokerAuthError`)."""

    retriable = True


class ReplayInputError(NudgeError, ValueError):
    """A replay input (event log, DSJSON, table, side file) has a bad record; the message names
    the file, the line or row, and the field."""

    def __init__(self, where: str, field: str, problem: str) -> None:
        super().__init__(f"{where}: {field}: {problem}")
        self.where = where
        self.field = field
        self.problem = problem


class InvalidRequest(NudgeError):
    """A request to `nudge serve` breaks its API or the event contract; `field` names where (a
    dotted path, None for the whole body), `reason` is a `bandit.events.Reason` code."""

    def __init__(self, field: str | None, reason: str, detail: str) -> None:
        super().__init__(f"{field or 'request'}: {detail}")
        self.field = field
        self.reason = str(reason)
        self.detail = detail


class ServiceError(NudgeError):
    """`nudge serve` could not be reached, or refused a request; the message gives the URL, the
    status and the service's error code."""
