"""Configuration: the shipped file loads, overrides apply, bad settings name their field."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from bandit.config import Config, env_overrides, load_config, parse_config
from bandit.errors import ConfigError
from bandit.policies import VowpalPolicy
from bandit.vw_text import NamespaceLetters, example_lines

REPO_CONFIG = Path(__file__).parents[2] / "config.yaml"


@pytest.fixture(scope="module")
def repo_config() -> Config:
    return load_config(REPO_CONFIG, environ={})


# ---- the shipped config.yaml ------------------------------------------------------------------


def test_repo_config_yaml_loads_without_environment(repo_config: Config) -> None:
    assert repo_config.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert repo_config.join.window_s == 300
    assert repo_config.learner.namespaces == {
        "learner": "l",
        "course": "c",
        "trigger": "t",
        "activity": "w",
    }


def test_repo_config_vw_arguments_use_cb_explore_adf_interactions_and_epsilon(
    repo_config: Config,
) -> None:
    args = repo_config.learner.vw_arguments()
    tokens = args.split()

    assert tokens[0] == "--cb_explore_adf"
    assert "--epsilon 0.1" in args
    for pair in ("la", "ca", "ta", "wa"):
        assert f"-q {pair}" in args
    assert "--quiet" in tokens
    assert "--cb_type mtr" in args


def test_repo_config_matches_builtin_defaults(repo_config: Config) -> None:
    assert repo_config == load_config(None, environ={})


def test_repo_config_event_rules_follow_namespaces_and_limits(repo_config: Config) -> None:
    rules = repo_config.event_rules()

    assert rules.namespaces == frozenset({"learner", "course", "trigger", "activity"})
    assert rules.max_message_bytes == 65_536
    assert rules.max_actions == 64
    assert rules.max_features == 256


# ---- environment overrides --------------------------------------------------------------------


def test_environment_overrides_file_values() -> None:
    environ = {"NUDGE_KAFKA__BOOTSTRAP_SERVERS": "b:1", "NUDGE_JOIN__WINDOW_S": "60"}

    cfg = load_config(REPO_CONFIG, environ=environ)

    assert cfg.kafka.bootstrap_servers == "b:1"
    assert cfg.join.window_s == 60.0
    assert isinstance(cfg.join.window_s, float)
    assert cfg.kafka.group_id == "nudge-learner"  # untouched fields keep the file's value


def test_env_overrides_keep_scalars_as_text_and_ignore_other_variables() -> None:
    # Numbers stay text here; pydantic converts them by the field's type (tests/unit/
    # test_config_env.py has the whole typing rule).
    environ = {
        "NUDGE_JOIN__WINDOW_S": "60",
        "NUDGE_LEARNER__EXPLORATION__EPSILON": "0.25",
        "NUDGE_KAFKA__BOOTSTRAP_SERVERS": "b:1",
        "NUDGE_SNAPSHOT_KEY": "x",  # a standalone variable, not an override
        "HOME": "/root",
    }

    assert env_overrides(environ) == {
        "join": {"window_s": "60"},
        "learner": {"exploration": {"epsilon": "0.25"}},
        "kafka": {"bootstrap_servers": "b:1"},
    }


def test_nested_environment_override_merges_into_file_section() -> None:
    cfg = load_config(REPO_CONFIG, environ={"NUDGE_LEARNER__EXPLORATION__EPSILON": "0.3"})

    assert cfg.learner.exploration.algorithm == "epsilon"
    assert cfg.learner.exploration.epsilon == 0.3
    assert "--epsilon 0.3" in cfg.learner.vw_arguments()


def test_invalid_environment_override_is_a_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(REPO_CONFIG, environ={"NUDGE_JOIN__WINDOW_S": "soon"})

    assert "join.window_s" in str(caught.value)
    assert "NUDGE_* environment" in str(caught.value)


# ---- bad configurations -----------------------------------------------------------------------

# Each row: the config mapping, then text the message must contain. The first text is the
# location pydantic reports (the dotted path it knows); model-level checks report only their
# section, so their rows also require the field names in the message body.
BAD_CONFIGS = [
    pytest.param({"metrics": {"port": 9100}}, ["  metrics:", "Extra inputs are not permitted"],
                 id="unknown-top-level-section"),
    pytest.param({"kafka": {"bootstrap_server": "x:1"}},
                 ["kafka.bootstrap_server:", "Extra inputs are not permitted"],
                 id="unknown-key-in-section"),
    pytest.param({"join": {"window_s": -5}}, ["join.window_s:", "greater than 0", "-5"],
                 id="negative-window"),
    pytest.param({"join": {"window_s": 30, "allowed_lateness_s": 45}},
                 ["join.allowed_lateness_s (45.0)", "join.window_s (30.0)"],
                 id="lateness-exceeds-window"),
    pytest.param({"kafka": {"outcomes_topic": "nudge.impressions"}},
                 ["  kafka:", "topics must differ", "nudge.impressions"],
                 id="same-topic-twice"),
    pytest.param({"learner": {"namespaces": {"learner": "l", "course": "l"}}},
                 ["  learner:", "letters must be distinct", "namespaces="],
                 id="duplicated-namespace-letters"),
    pytest.param({"learner": {"namespaces": {"learner": "a"}, "interactions": []}},
                 ["  learner:", "letters must be distinct", "action_namespace='a'"],
                 id="namespace-letter-clashes-with-action"),
    pytest.param({"learner": {"namespaces": {"learner": "lx"}, "interactions": []}},
                 ["  learner:", "single letters", "'lx'"],
                 id="namespace-letter-not-single"),
    pytest.param({"learner": {"interactions": [["learner", "planet"]]}},
                 ["  learner:", "interaction ['learner', 'planet']", "names ['planet']"],
                 id="interaction-names-unknown-namespace"),
    pytest.param({"learner": {"vw_args": "--cb_type mtr --epsilon 0.3"}},
                 ["  learner:", "vw_args must not contain ['--epsilon']"],
                 id="vw-args-reserved-epsilon"),
    pytest.param({"learner": {"vw_args": "-q la"}},
                 ["  learner:", "vw_args must not contain ['-q']"],
                 id="vw-args-reserved-interactions"),
    pytest.param({"learner": {"exploration": {"algorithm": "thompson"}}},
                 ["learner.exploration:", "'thompson'"],
                 id="unknown-exploration-algorithm"),
    pytest.param({"learner": {"exploration": {"algorithm": "epsilon", "epsilon": 1.5}}},
                 ["learner.exploration.epsilon.epsilon:", "1.5"],
                 id="epsilon-above-one"),
    pytest.param({"learner": {"exploration": {"algorithm": "softmax", "lambda_": 5}}},
                 ["learner.exploration.softmax.lambda_:", "Extra inputs"],
                 id="softmax-lambda-must-use-yaml-name"),
    pytest.param({"kafka": {"client": {"group_id": "other"}}},
                 ["  kafka:", "client must not set ['group_id']"],
                 id="kafka-client-sets-group-id"),
    pytest.param({"kafka": {"topic_partitions": 0}}, ["kafka.topic_partitions:"],
                 id="zero-partitions"),
    pytest.param({"join": {"mode": "last"}}, ["join.mode:", "'last'"], id="unknown-join-mode"),
    pytest.param({"join": {"default_outcome": "great"}}, ["join.default_outcome:", "'great'"],
                 id="unknown-default-outcome"),
    pytest.param({"limits": {"max_message_bytes": 100}}, ["limits.max_message_bytes:"],
                 id="message-limit-too-small"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "mentions"), BAD_CONFIGS)
def test_bad_config_raises_config_error_naming_the_field(
    data: dict[str, Any], mentions: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)

    message = str(caught.value)
    assert message.startswith("config: invalid configuration")
    for text in mentions:
        assert text in message


def test_config_error_lists_every_bad_field() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"kafka": {"poll_timeout_ms": 1}, "checkpoint": {"keep": 0}})

    message = str(caught.value)
    assert "kafka.poll_timeout_ms:" in message
    assert "checkpoint.keep:" in message


def test_file_error_message_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("kafka:\n  unknown_key: 1\n", encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})

    assert str(caught.value).startswith(f"{path}: invalid configuration")
    assert "kafka.unknown_key" in str(caught.value)


# ---- unreadable files -------------------------------------------------------------------------


def test_missing_config_file_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})

    assert str(path) in str(caught.value)
    assert "no such config file" in str(caught.value)


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("kafka: [unclosed\n  bootstrap_servers: x\n", encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})

    assert str(path) in str(caught.value)
    assert "not valid YAML" in str(caught.value)


def test_top_level_list_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- kafka\n- join\n", encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})

    assert str(path) in str(caught.value)
    assert "mapping of sections" in str(caught.value)


def test_empty_config_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here\n", encoding="utf-8")

    assert load_config(path, environ={}) == load_config(None, environ={})


# ---- exploration algorithms, rendered and run by real Vowpal Wabbit ---------------------------

EXPLORATIONS = [
    pytest.param({"algorithm": "epsilon", "epsilon": 0.2}, "--epsilon 0.2", id="epsilon"),
    pytest.param({"algorithm": "softmax", "lambda": 5}, "--softmax --lambda 5.0", id="softmax"),
    pytest.param({"algorithm": "bag", "bags": 3, "epsilon": 0.05}, "--bag 3 --epsilon 0.05",
                 id="bag"),
    pytest.param({"algorithm": "cover", "policies": 3, "psi": 0.5}, "--cover 3 --psi 0.5",
                 id="cover"),
    pytest.param({"algorithm": "squarecb", "gamma_scale": 20, "gamma_exponent": 0.25},
                 "--squarecb --gamma_scale 20.0 --gamma_exponent 0.25", id="squarecb"),
    pytest.param({"algorithm": "rnd", "networks": 2, "alpha": 0.2, "epsilon": 0.01},
                 "--rnd 2 --rnd_alpha 0.2 --epsilon 0.01", id="rnd"),
]  # fmt: skip


def _config_with(exploration: dict[str, Any]) -> Config:
    return parse_config({"learner": {"exploration": exploration}})


@pytest.mark.parametrize(("exploration", "flags"), EXPLORATIONS)
def test_exploration_algorithm_renders_its_vw_flags(
    exploration: dict[str, Any], flags: str
) -> None:
    args = _config_with(exploration).learner.vw_arguments()

    assert args.startswith(f"--cb_explore_adf {flags} -q la ")
    assert args.endswith("--quiet")


@pytest.mark.parametrize(("exploration", "flags"), EXPLORATIONS)
def test_vowpal_wabbit_accepts_exploration_flags_and_predicts_a_pmf(
    exploration: dict[str, Any], flags: str
) -> None:
    learner = _config_with(exploration).learner
    letters = NamespaceLetters(context=learner.namespaces, action=learner.action_namespace)
    context = {"learner": {"level": 3.0, "track": "algebra"}, "course": {"week": 2.0}}
    action_ids = ["hint", "peer", "none"]
    action_features: list[dict[str, float | str]] = [{"length": 2.0}, {"length": 5.0}, {}]

    with VowpalPolicy(learner.vw_arguments()) as policy:
        labelled = example_lines(context, action_ids, action_features, letters, (0, -1.0, 1 / 3))
        policy.learn(labelled)
        pmf = policy.predict(example_lines(context, action_ids, action_features, letters))

    assert pmf.shape == (3,)
    assert math.isclose(float(pmf.sum()), 1.0, abs_tol=1e-5)
    assert (pmf >= 0).all()


# ---- kafka.bootstrap_servers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "servers",
    ["127.0.0.1:9092", "a:1,b:2", "broker", "kafka-1.internal:9093", " padded:9092 ",
     "SASL_SSL://k:9093", "[::1]:9092", "::1", "[fe80::1]"],
)  # fmt: skip
def test_bootstrap_servers_take_what_kafka_python_reads(servers: str) -> None:
    assert Config.model_validate({"kafka": {"bootstrap_servers": servers}})


@pytest.mark.parametrize(
    ("servers", "problem"),
    [("", "no broker"), ("  ", "no broker"), ("host:notaport", "port 'notaport'"),
     ("h:0", "port '0'"), ("h:70000", "port '70000'"), ("a:1,", "an empty entry"),
     ("a:1,,b:2", "an empty entry"), ("bad host:9092", "'bad host' is not a host name"),
     ("[::1", "is not [IPv6 address]"), ("[nothex]:1", "is not [IPv6 address]")],
)  # fmt: skip
def test_an_empty_or_malformed_broker_list_is_a_config_error(servers: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"kafka\.bootstrap_servers") as caught:
        parse_config({"kafka": {"bootstrap_servers": servers}})

    assert problem in str(caught.value)


def test_the_standalone_variables_include_the_snapshot_signing_key() -> None:
    from bandit.config import STANDALONE_VARIABLES
    from bandit.snapshots import SIGNING_KEY_ENV

    assert SIGNING_KEY_ENV in STANDALONE_VARIABLES
    assert load_config(REPO_CONFIG, environ={SIGNING_KEY_ENV: "k" * 32})
