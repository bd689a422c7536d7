"""`NUDGE_*` overrides: text stays text byte for byte; only a field's type converts it; secrets
are never echoed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bandit.config import (
    Config,
    config_secrets,
    env_overrides,
    is_secret_key,
    load_config,
    mask_secrets,
)
from bandit.errors import ConfigError
from bandit.events import OutcomeLabel

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.yaml"

# Values YAML would turn into something else: an octal int (5349), True, a truncated comment,
# a parse error, None, None, a mapping, and text with surrounding spaces.
AWKWARD = ["012345", "yes", "p@ss #1", "[s3cr3t", "null", "~", "a: b", " padded ", "0x1F"]

TEXT_FIELDS = {
    "NUDGE_KAFKA__CLIENT__SASL_PLAIN_PASSWORD": lambda c: c.kafka.client["sasl_plain_password"],
    "NUDGE_KAFKA__GROUP_ID": lambda c: c.kafka.group_id,
    "NUDGE_KAFKA__BOOTSTRAP_SERVERS": lambda c: c.kafka.bootstrap_servers,
    "NUDGE_SNAPSHOTS__KAFKA_TOPIC": lambda c: c.snapshots.kafka_topic,  # optional text
    "NUDGE_LEARNER__VW_ARGS": lambda c: c.learner.vw_args,
}


@pytest.mark.parametrize("value", AWKWARD)
@pytest.mark.parametrize("variable", sorted(TEXT_FIELDS))
def test_text_fields_get_the_value_byte_for_byte(variable: str, value: str) -> None:
    if variable == "NUDGE_LEARNER__VW_ARGS" and value.strip().startswith("-"):
        pytest.skip("not a VW argument string")
    if variable == "NUDGE_KAFKA__BOOTSTRAP_SERVERS" and value in ("p@ss #1", "[s3cr3t", "a: b", "~"):
        pytest.skip("not host[:port] (test_config.py has the broker address rule)")

    cfg = load_config(REPO_CONFIG, environ={variable: value})

    assert TEXT_FIELDS[variable](cfg) == value


# variable, text, how to read the field, expected value
TYPED = [
    ("NUDGE_JOIN__WINDOW_S", "600", lambda c: c.join.window_s, 600.0),
    ("NUDGE_KAFKA__TOPIC_PARTITIONS", "3", lambda c: c.kafka.topic_partitions, 3),
    ("NUDGE_KAFKA__CONNECT_TIMEOUT_S", "2.5", lambda c: c.kafka.connect_timeout_s, 2.5),
    ("NUDGE_PRUNING__ENABLED", "no", lambda c: c.pruning.enabled, False),
    ("NUDGE_LEARNER__OUTCOME_MODEL", "true", lambda c: c.learner.outcome_model, True),
    ("NUDGE_LEARNER__EXPLORATION__EPSILON", "0.3", lambda c: c.learner.exploration.epsilon, 0.3),
    ("NUDGE_LEARNER__INTERACTIONS", "[[learner, action], [course, action]]",
     lambda c: c.learner.interactions, [("learner", "action"), ("course", "action")]),
    ("NUDGE_LEARNER__LOW_RANK", "{kind: lrq, rank: 3}", lambda c: c.learner.low_rank.rank, 3),
    ("NUDGE_LEARNER__LOW_RANK", "null", lambda c: c.learner.low_rank, None),
    ("NUDGE_LEARNER__NAMESPACES", "{learner: l, course: c, trigger: t, activity: w}",
     lambda c: c.learner.namespaces["activity"], "w"),
    ("NUDGE_JOIN__UNMATCHED_WAIT_S", "", lambda c: c.join.unmatched_wait_s, None),
    ("NUDGE_JOIN__UNMATCHED_WAIT_S", "null", lambda c: c.join.unmatched_wait_s, None),
    ("NUDGE_JOIN__UNMATCHED_WAIT_S", "~", lambda c: c.join.unmatched_wait_s, None),
    ("NUDGE_JOIN__UNMATCHED_WAIT_S", "45", lambda c: c.join.unmatched_wait_s, 45.0),
    ("NUDGE_SNAPSHOTS__KAFKA_TOPIC", "", lambda c: c.snapshots.kafka_topic, None),
    ("NUDGE_SNAPSHOTS__DIRECTORY", "/var/lib/nudge #1", lambda c: c.snapshots.directory,
     Path("/var/lib/nudge #1")),
    ("NUDGE_JOIN__DEFAULT_OUTCOME", "helpful", lambda c: c.join.default_outcome,
     OutcomeLabel.HELPFUL),
    ("NUDGE_KAFKA__CLIENT__REQUEST_TIMEOUT_MS", "30000",  # free-form: stays text; the Kafka
     lambda c: c.kafka.client["request_timeout_ms"], "30000"),  # adapter types it
    ("NUDGE_KAFKA__CLIENT", "{security_protocol: SASL_SSL, sasl_plain_password: '012345'}",
     lambda c: c.kafka.client["sasl_plain_password"], "012345"),
]  # fmt: skip


@pytest.mark.parametrize(("variable", "text", "read", "expected"), TYPED)
def test_the_field_type_decides_how_text_is_converted(
    variable: str, text: str, read: Any, expected: object
) -> None:
    cfg = load_config(REPO_CONFIG, environ={variable: text})

    assert read(cfg) == expected
    assert type(read(cfg)) is type(expected)


def test_softmax_from_the_environment_uses_its_yaml_name() -> None:
    # Without a file: config.yaml's epsilon would merge into the softmax section.
    cfg = load_config(
        None, environ={"NUDGE_LEARNER__EXPLORATION": "{algorithm: softmax, lambda: 5}"}
    )

    assert cfg.learner.vw_arguments().startswith("--cb_explore_adf --softmax --lambda 5")


# ---- errors name the variable and never echo a secret -----------------------------------------

BAD = [
    pytest.param({"NUDGE_JOIN__WINDOW_S": "soon"},
                 ["join.window_s", "(got 'soon')", "[from NUDGE_JOIN__WINDOW_S]"], id="not-a-number"),
    pytest.param({"NUDGE_PRUNING__ENABLED": "maybe"},
                 ["pruning.enabled", "NUDGE_PRUNING__ENABLED"], id="not-a-boolean"),
    pytest.param({"NUDGE_LEARNER__INTERACTIONS": "[[learner, action"},
                 ["NUDGE_LEARNER__INTERACTIONS: not valid YAML at column", "learner.interactions"],
                 id="structured-value-bad-yaml"),
    pytest.param({"NUDGE_KAFKA__CLIENT": "{sasl_plain_password: [hunter2"},
                 ["NUDGE_KAFKA__CLIENT: not valid YAML"], id="bad-yaml-holding-a-secret"),
    pytest.param({"NUDGE_KAFKA__CLIENT": "hunter2"},
                 ["kafka.client: Input should be a valid dictionary", "[from NUDGE_KAFKA__CLIENT]"],
                 id="free-form-section-value-is-never-echoed"),
    pytest.param({"NUDGE_KAFKA__CONNECT_TIMEOUT_S": "0"},
                 ["kafka.connect_timeout_s", "greater than 0"], id="connect-timeout-zero"),
    pytest.param({"NUDGE_JOIN__WINDOW_S": "5", "NUDGE_JOIN__WINDOW_S__X": "2"},
                 ["conflicts with another NUDGE_ variable"], id="conflicting-variables"),
    pytest.param({"NUDGE_KAFKA__OUTCOMES_TOPIC": "nudge.impressions"},
                 ["topics must differ", "[from NUDGE_KAFKA__OUTCOMES_TOPIC]"],
                 id="section-rule-names-the-variable"),
    pytest.param({"NUDGE_KAFKA_BOOTSTRAP_SERVERS": "b:1"},
                 ["NUDGE_KAFKA_BOOTSTRAP_SERVERS: not a nudge variable",
                  "did you mean NUDGE_KAFKA__BOOTSTRAP_SERVERS?"], id="single-underscores"),
    pytest.param({"NUDGE_LEARNER__EXPLORATION__EPSILON": "0.1",
                  "NUDGE_LEARNER_EXPLORATION_EPSILON": "0.2"},
                 ["did you mean NUDGE_LEARNER__EXPLORATION__EPSILON?"],
                 id="single-underscores-nested"),
    pytest.param({"NUDGE_DECISIONS_DEFAULT_FORCED_SHARE": "0.1"},
                 ["did you mean NUDGE_DECISIONS__DEFAULT__FORCED_SHARE?"],
                 id="single-underscores-longest-names-first"),
    pytest.param({"NUDGE_KAFKA_CLIENT_SASL_PLAIN_PASSWORD": "hunter2"},
                 ["did you mean NUDGE_KAFKA__CLIENT__SASL_PLAIN_PASSWORD?"],
                 id="single-underscores-into-a-free-form-mapping"),
    pytest.param({"NUDGE_JOIN": "{window_s: 10}"},
                 ["NUDGE_JOIN: a whole section cannot be set from one variable",
                  "e.g. NUDGE_JOIN__WINDOW_S"], id="whole-section"),
    pytest.param({"NUDGE_BOGUS": "1", "NUDGE_": "2"},
                 ["NUDGE_BOGUS: not a nudge variable", "NUDGE_: not a nudge variable",
                  "sections: kafka, rewards", "NUDGE_SNAPSHOT_KEY"], id="unknown-variables"),
    pytest.param({"NUDGE_KAFKA__BOOTSTRAP_SERVERS": ""},
                 ["kafka.bootstrap_servers", "no broker", "[from NUDGE_KAFKA__BOOTSTRAP_SERVERS]"],
                 id="empty-bootstrap-servers"),
]  # fmt: skip


@pytest.mark.parametrize(("environ", "mentions"), BAD)
def test_bad_override_is_a_config_error_naming_the_variable(
    environ: dict[str, str], mentions: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(REPO_CONFIG, environ=environ)

    message = str(caught.value)
    for text in mentions:
        assert text in message
    assert "hunter2" not in message


def test_yaml_error_in_the_config_file_quotes_no_line_of_it(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text('kafka:\n  client: {sasl_plain_password: "hunter2" [\n', encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})

    assert str(caught.value).startswith(f"{path}: not valid YAML at line 2")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("key", "secret"),
    [("sasl_plain_password", True), ("ssl_password", True), ("api_key", True),
     ("sasl_oauth_token_provider", True), ("client_secret", True), ("credentials", True),
     ("sasl_plain_username", False), ("ssl_keyfile", False), ("bootstrap_servers", False),
     ("group_id", False)],
)  # fmt: skip
def test_secret_looking_keys(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_config_secrets_come_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("kafka:\n  client:\n    ssl_password: from-file\n    sasl_plain_username: u\n")
    environ = {
        "NUDGE_KAFKA__CLIENT__SASL_PLAIN_PASSWORD": "012345",
        "NUDGE_KAFKA__GROUP_ID": "not-secret",
        "HOME_PASSWORD": "not-ours",
    }

    assert config_secrets(path, environ) == {"from-file", "012345"}
    assert config_secrets(tmp_path / "absent.yaml", {}) == set()


def test_mask_secrets_also_masks_reprs_of_text_and_bytes() -> None:
    secret = "pässw'ord"  # noqa: S105 (a fake)
    text = f"plain {secret} repr {secret!r} bytes {secret.encode()!r}"

    masked = mask_secrets(text, {secret})

    assert "ss" not in masked.replace("bytes", "")  # nothing of the secret is left
    assert masked.count("***") == 3


def test_overrides_are_returned_as_text_for_pydantic_to_convert() -> None:
    assert env_overrides({"NUDGE_JOIN__WINDOW_S": "60", "NUDGE_KAFKA__GROUP_ID": "0x1"}) == {
        "join": {"window_s": "60"},
        "kafka": {"group_id": "0x1"},
    }
    assert isinstance(load_config(None, environ={}), Config)
