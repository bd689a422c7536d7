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


class SnapshotError(NudgeError):
    """A policy snapshot is missing, tampered with, or of a format this version cannot read."""


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
