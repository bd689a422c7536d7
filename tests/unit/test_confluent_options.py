"""`kafka.client_library` and the `kafka.client` settings of the confluent-kafka record source:
the config field, kafka-python names renamed to librdkafka's, unmapped ones refused, and a
missing library named in one line with the install command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bandit.config import KafkaConfig, parse_config
from bandit.errors import ConfigError
from nudge.cli import main
from streams.sources import record_source_type

ROOT = Path(__file__).resolve().parents[2]
INSTALL = "pip install 'nudgebandit[fast]'"


def kafka(**fields: Any) -> KafkaConfig:
    return KafkaConfig(bootstrap_servers="127.0.0.1:9094", **fields)


def test_client_library_defaults_to_kafka_python() -> None:
    assert kafka().client_library == "kafka-python"
    assert kafka(client_library="confluent-kafka").client_library == "confluent-kafka"


def test_an_unknown_client_library_is_a_config_error_naming_the_field_and_the_choices() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"kafka": {"client_library": "aiokafka"}})

    message = str(caught.value)
    assert "kafka.client_library:" in message
    assert "'kafka-python' or 'confluent-kafka'" in message
    assert "'aiokafka'" in message


def test_the_source_type_follows_the_client_library() -> None:
    from streams.confluent_io import ConfluentSource
    from streams.kafka_io import MessageSource

    assert record_source_type(kafka()) is MessageSource
    assert record_source_type(kafka(client_library="confluent-kafka")) is ConfluentSource


@pytest.fixture
def confluent_kafka_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if confluent-kafka were not installed (None in sys.modules: its import fails)."""
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)
    monkeypatch.delitem(sys.modules, "streams.confluent_io", raising=False)


@pytest.mark.usefixtures("confluent_kafka_missing")
def test_a_missing_confluent_kafka_is_a_config_error_saying_how_to_install_it() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.client_library is confluent-kafka") as caught:
        record_source_type(kafka(client_library="confluent-kafka"))

    assert INSTALL in str(caught.value)


@pytest.mark.usefixtures("confluent_kafka_missing")
def test_consume_without_confluent_kafka_exits_2_with_one_line_before_asking_the_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["kafka"].update(bootstrap_servers="127.0.0.1:1", client_library="confluent-kafka")
    data["checkpoint"]["directory"] = str(tmp_path / "checkpoints")
    data["snapshots"]["directory"] = str(tmp_path / "snapshots")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))

    code = main(["consume", "--config", str(path)])

    (line,) = capsys.readouterr().err.splitlines()
    assert code == 2
    assert line.startswith("nudge: kafka.client_library is confluent-kafka")
    assert line.endswith(INSTALL)


# ---- kafka.client for librdkafka -------------------------------------------------------------

librdkafka_options = pytest.importorskip("streams.confluent_io").librdkafka_options

SASL_SSL = {
    "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_plain_username": "nudge", "sasl_plain_password": "s3cret", "ssl_cafile": "/tls/ca.pem",
}  # fmt: skip


def test_the_readmes_sasl_ssl_settings_get_librdkafkas_names() -> None:
    assert librdkafka_options(kafka(client=SASL_SSL)) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "nudge",
        "sasl.password": "s3cret",
        "ssl.ca.location": "/tls/ca.pem",
    }


# kafka.client, then the librdkafka properties it becomes
MAPPED = [
    pytest.param({"ssl_check_hostname": "false"},
                 {"ssl.endpoint.identification.algorithm": "none"}, id="hostname-check-off"),
    pytest.param({"ssl_check_hostname": True},
                 {"ssl.endpoint.identification.algorithm": "https"}, id="hostname-check-on"),
    pytest.param({"request_timeout_ms": "30000"}, {"socket.timeout.ms": "30000"},
                 id="text-typed-then-passed-as-text"),
    pytest.param({"check_crcs": "no"}, {"check.crcs": "false"}, id="boolean-as-librdkafka-text"),
    pytest.param({"fetch_max_bytes": 1048576}, {"fetch.max.bytes": "1048576"}, id="int"),
    pytest.param({"acks": "all", "linger_ms": "5", "client_id": "me"}, {"client.id": "me"},
                 id="producer-keys-left-to-kafka-python"),
]  # fmt: skip


@pytest.mark.parametrize(("client", "expected"), MAPPED)
def test_client_settings_are_renamed_for_librdkafka(
    client: dict[str, Any], expected: dict[str, str]
) -> None:
    assert librdkafka_options(kafka(client=client)) == expected


BAD = [
    pytest.param({"api_version": "3.0"},
                 "kafka.client.api_version: not mapped to confluent-kafka", id="unmapped-key"),
    pytest.param({"sasl_pasword": "x"}, "kafka.client: unknown key 'sasl_pasword'",
                 id="unknown-key-as-for-kafka-python"),
    pytest.param({"check_crcs": "maybe"}, "kafka.client.check_crcs: kafka-python takes true or",
                 id="bad-boolean"),
    pytest.param({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"},
                 "kafka.client: SASL PLAIN needs sasl_plain_username and sasl_plain_password",
                 id="sasl-without-credentials"),
]  # fmt: skip


@pytest.mark.parametrize(("client", "starts"), BAD)
def test_settings_it_cannot_take_are_one_line_config_errors(
    client: dict[str, Any], starts: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        librdkafka_options(kafka(client=client))

    message = str(caught.value)
    assert message.startswith(starts)
    assert "\n" not in message


def test_an_unmapped_key_fails_when_the_source_type_is_chosen_before_any_broker() -> None:
    cfg = kafka(client_library="confluent-kafka", client={"api_version": "3.0"})

    with pytest.raises(ConfigError, match=r"kafka\.client\.api_version"):
        record_source_type(cfg)


REFUSED = [
    pytest.param({"security_protocol": "TLS"}, 'Invalid value "TLS"', id="unknown-protocol"),
    pytest.param({"fetch_min_bytes": -5}, "outside allowed range", id="out-of-range"),
]  # fmt: skip


@pytest.mark.parametrize(("client", "why"), REFUSED)
def test_settings_librdkafka_refuses_are_one_line_config_errors_before_any_connection(
    client: dict[str, Any], why: str
) -> None:
    from streams.confluent_io import ConfluentSource

    with pytest.raises(ConfigError) as caught:
        ConfluentSource(kafka(client=client), ["unused"])

    message = str(caught.value)
    assert message.startswith("kafka.client: confluent-kafka refused the settings: _INVALID_ARG")
    assert why in message
    assert "\n" not in message
