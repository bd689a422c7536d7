"""The record source `kafka.client_library` selects for `nudge consume`: kafka-python's
`MessageSource` (the default) or librdkafka's `ConfluentSource` (the optional `fast` extra)."""

from __future__ import annotations

from collections.abc import Callable

from bandit.config import KafkaConfig
from bandit.errors import ConfigError
from bandit.ports import RecordSource

OpenSource = Callable[[KafkaConfig, list[str]], RecordSource]


def record_source_type(cfg: KafkaConfig) -> OpenSource:
    """The source class for `cfg.client_library`; a `ConfigError` now, before any broker is
    asked, if that library is not installed."""
    if cfg.client_library == "confluent-kafka":
        try:
            from streams.confluent_io import ConfluentSource, librdkafka_options
        except ImportError as exc:
            if (exc.name or "").partition(".")[0] != "confluent_kafka":
                raise
            raise ConfigError(
                "kafka.client_library is confluent-kafka, which is not installed: "
                "pip install 'nudgebandit[fast]'"
            ) from exc
        librdkafka_options(cfg)  # a `kafka.client` key it cannot take fails now too
        return ConfluentSource
    from streams.kafka_io import MessageSource

    return MessageSource
