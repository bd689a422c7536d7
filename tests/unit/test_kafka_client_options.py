"""`kafka.client` at the Kafka adapter: keys checked against kafka-python, text typed like its
defaults, and a failed start told apart (refused login, unreachable) without a broker."""

from __future__ import annotations

from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import (
    KafkaConfigurationError,
    KafkaConnectionError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
)

from bandit.config import KafkaConfig
from bandit.errors import BrokerAuthError, BrokerError, ConfigError
from streams.kafka_io import _check_sasl, _start_error, client_options


def kafka(**client: Any) -> KafkaConfig:
    return KafkaConfig(bootstrap_servers="127.0.0.1:9094", connect_timeout_s=2, client=client)


# key, text, client class, expected value
TYPED = [
    ("request_timeout_ms", "30000", KafkaConsumer, 30000),
    ("ssl_check_hostname", "false", KafkaProducer, False),
    ("ssl_check_hostname", "Yes", KafkaAdminClient, True),
    ("acks", "all", KafkaProducer, "all"),
    ("acks", "1", KafkaProducer, 1),
    ("retries", "5", KafkaProducer, 5),
    ("receive_buffer_bytes", "65536", KafkaConsumer, 65536),
    ("sasl_plain_password", "012345", KafkaConsumer, "012345"),
    ("sasl_plain_password", "yes", KafkaConsumer, "yes"),
    ("security_protocol", "SASL_SSL", KafkaAdminClient, "SASL_SSL"),
    ("request_timeout_ms", 40000, KafkaConsumer, 40000),  # already typed (YAML file)
]


@pytest.mark.parametrize(("key", "text", "client", "expected"), TYPED)
def test_text_values_are_typed_like_kafka_pythons_defaults(
    key: str, text: object, client: type, expected: object
) -> None:
    value = client_options(kafka(**{key: text}), client)[key]

    assert value == expected
    assert type(value) is type(expected)


def test_each_client_gets_only_the_keys_it_takes() -> None:
    cfg = kafka(acks="all", fetch_max_bytes="1000", request_timeout_ms="30000")

    assert set(client_options(cfg, KafkaProducer)) == {"acks", "request_timeout_ms"}
    assert set(client_options(cfg, KafkaConsumer)) == {"fetch_max_bytes", "request_timeout_ms"}
    assert set(client_options(cfg, KafkaAdminClient)) == {"request_timeout_ms"}


BAD = [
    pytest.param({"sasl_pasword": "x"},
                 ["kafka.client: unknown key 'sasl_pasword'", "'sasl_plain_password'", "README"],
                 id="unknown-key-with-suggestion"),
    pytest.param({"request_timeout_ms": "soon"},
                 ["kafka.client.request_timeout_ms", "a number", "'soon'"], id="not-a-number"),
    pytest.param({"ssl_check_hostname": "maybe"},
                 ["kafka.client.ssl_check_hostname", "true or false"], id="not-a-boolean"),
]  # fmt: skip


@pytest.mark.parametrize(("client", "mentions"), BAD)
def test_bad_client_settings_are_config_errors(client: dict[str, Any], mentions: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        client_options(kafka(**client), KafkaConsumer)

    for text in mentions:
        assert text in str(caught.value)


SASL = [
    pytest.param({"security_protocol": "SASL_SSL"}, "needs one of", id="no-mechanism"),
    pytest.param({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAINX"},
                 "got 'PLAINX'", id="unknown-mechanism"),
    pytest.param({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                  "sasl_plain_username": "nudge"}, "needs sasl_plain_password",
                 id="plain-without-password"),
]  # fmt: skip


@pytest.mark.parametrize(("options", "message"), SASL)
def test_incomplete_sasl_settings_fail_before_connecting(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _check_sasl(options)


def test_kafka_python_itself_rejects_unknown_keys_before_connecting() -> None:
    # What the adapter pre-empts (with a suggestion): the consumer and admin raise
    # KafkaConfigurationError, the producer a bare ValueError; none of them connects first.
    with pytest.raises(KafkaConfigurationError, match="Unrecognized configs"):
        KafkaConsumer(bootstrap_servers="127.0.0.1:1", sasl_pasword="x")  # noqa: S106
    with pytest.raises(KafkaConfigurationError, match="Unrecognized configs"):
        KafkaAdminClient(bootstrap_servers="127.0.0.1:1", sasl_pasword="x")  # noqa: S106
    with pytest.raises(ValueError, match="Unrecognized configs"):
        KafkaProducer(bootstrap_servers="127.0.0.1:1", sasl_pasword="x")  # noqa: S106


def test_a_refused_login_logged_during_bootstrap_is_an_auth_error_not_retriable() -> None:
    options = {"sasl_mechanism": "PLAIN", "sasl_plain_username": "nudge"}
    seen: list[BaseException] = [
        KafkaConnectionError("socket disconnected"),
        SaslAuthenticationFailedError("Authentication failed: Invalid username or password"),
    ]

    error = _start_error(kafka(), options, "admin", KafkaTimeoutError("Unable to bootstrap"), seen)

    assert isinstance(error, BrokerAuthError) and isinstance(error, ConfigError)
    assert not error.retriable
    assert str(error) == (
        "authentication to 127.0.0.1:9094 failed for user 'nudge' (SASL PLAIN): check "
        "kafka.client.sasl_plain_username / sasl_plain_password"
    )


def test_a_bootstrap_timeout_is_an_unreachable_broker_with_its_last_cause() -> None:
    seen: list[BaseException] = [KafkaConnectionError("111 ECONNREFUSED")]

    error = _start_error(kafka(), {}, "admin", KafkaTimeoutError("Unable to bootstrap"), seen)

    assert type(error) is BrokerError and error.retriable
    assert str(error) == (
        "cannot reach Kafka at 127.0.0.1:9094 within 2 s (kafka.connect_timeout_s) "
        "(last: KafkaConnectionError: 111 ECONNREFUSED)"
    )
