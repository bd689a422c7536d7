"""The Dockerfile and compose.yaml, checked without Docker: every `nudge` command they run parses
with today's command line, every NUDGE_* override they set is a valid config field, and the
volumes they mount are the directories that config points at."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from bandit.config import Config, load_config
from nudge.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
NUDGE_SERVICES = ("first-snapshot", "consume", "serve")
_REQUIRED = re.compile(r"\$\{(\w+):\?[^}]*\}")  # ${VAR:?message}: compose refuses to start unset


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [
        (ln.split(None, 1)[0].upper(), ln.split(None, 1)[1].strip() if " " in ln.strip() else "")
        for ln in joined.splitlines()
        if ln.strip()
    ]


def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in _dockerfile():
        if instruction == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
    return env


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _nudge_args(service: dict[str, Any]) -> list[str]:
    """The arguments given to `nudge` (the image's entrypoint, or `exec nudge` in a shell)."""
    command = service["command"]
    if service.get("entrypoint") == ["sh", "-c"]:
        words = shlex.split(command[0])
        return words[words.index("nudge", words.index("exec")) + 1 :]
    assert "entrypoint" not in service
    return list(command)


def _service_env(service: dict[str, Any]) -> dict[str, str]:
    env = _image_env()
    for name, value in service.get("environment", {}).items():
        env[name] = _REQUIRED.sub("a-key-of-the-operator-0123456789", str(value))
    return env


def _service_config(service: dict[str, Any]) -> Config:
    return load_config(ROOT / "config.yaml", environ=_service_env(service))


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> named volume."""
    return {m.split(":")[1]: m.split(":")[0] for m in service.get("volumes", [])}


def test_the_image_is_python_3_11_slim_with_the_serve_extra_and_nudge_as_entrypoint() -> None:
    steps = _dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert ("ENTRYPOINT", '["nudge"]') in steps
    installs = [
        args for instruction, args in steps if instruction == "RUN" and "pip install" in args
    ]
    assert installs and '".[serve]"' in installs[0]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert {"fastapi", "uvicorn", "httpx"} <= {re.split(r"[\[<>=]", d)[0] for d in extras["serve"]}


def test_everything_the_dockerfile_copies_exists_and_is_not_docker_ignored() -> None:
    ignored = {
        ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    }  # fmt: skip
    sources = [
        src
        for instruction, args in _dockerfile()
        if instruction == "COPY"
        for src in args.split()[:-1]
    ]
    assert {"pyproject.toml", "config.yaml", "bandit", "streams", "replay", "nudge"} <= set(sources)
    for src in sources:
        assert (ROOT / src).exists(), src
        assert src not in ignored, src


@pytest.mark.parametrize("name", NUDGE_SERVICES)
def test_each_nudge_command_of_compose_parses_with_the_config_the_image_holds(name: str) -> None:
    service = _compose()["services"][name]
    args = build_parser().parse_args(_nudge_args(service))
    copied = [
        args_.split()[-1] for i, args_ in _dockerfile() if i == "COPY" and "config.yaml" in args_
    ]
    assert str(args.config) in copied
    assert service["image"] == "nudgebandit:local" and service["build"] == "."


@pytest.mark.parametrize("name", NUDGE_SERVICES)
def test_the_environment_overrides_of_each_service_are_valid_config(name: str) -> None:
    service = _compose()["services"][name]
    cfg = _service_config(service)
    assert cfg.kafka.bootstrap_servers == "kafka:9092"
    kafka = _compose()["services"]["kafka"]["environment"]
    assert f"PLAINTEXT://{cfg.kafka.bootstrap_servers}" in kafka["KAFKA_ADVERTISED_LISTENERS"]


def test_the_consumer_publishes_snapshots_into_the_volume_the_service_reads() -> None:
    services = _compose()["services"]
    consume, serve, first = services["consume"], services["serve"], services["first-snapshot"]
    snapshots = str(_service_config(serve).snapshots.directory)
    assert snapshots == str(_service_config(consume).snapshots.directory)
    assert _mounts(consume)[snapshots] == _mounts(serve)[snapshots] == _mounts(first)[snapshots]
    checkpoints = str(_service_config(consume).checkpoint.directory)
    assert _mounts(consume)[checkpoints] == _mounts(first)[checkpoints]
    spool = str(_service_config(serve).serve.spool_directory)
    assert spool in _mounts(serve)
    assert set(_compose()["volumes"]) >= {_mounts(serve)[spool], _mounts(consume)[snapshots]}
    # The bounded first run runs only while there is no snapshot (it would close open windows).
    assert f"test -e {snapshots}/LATEST ||" in first["command"][0]


def test_the_service_listens_on_all_interfaces_only_with_a_required_api_key() -> None:
    serve = _compose()["services"]["serve"]
    args = build_parser().parse_args(_nudge_args(serve))
    assert args.host == "0.0.0.0"  # noqa: S104 - published by Docker, behind the key
    assert _REQUIRED.fullmatch(serve["environment"]["NUDGE_API_KEYS"])
    published = [p for p in serve["ports"] if p.endswith(f":{args.port}")]
    assert published, serve["ports"]


def test_the_broker_is_the_apache_kafka_version_the_local_script_runs() -> None:
    pom = (ROOT / "scripts" / "kafka-pom" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>(.*)</kafka.version>", pom)
    assert version is not None
    kafka = _compose()["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{version.group(1)}"
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, one node
    healthy = {"condition": "service_healthy"}
    assert _compose()["services"]["serve"]["depends_on"] == {"kafka": healthy}
    assert _compose()["services"]["first-snapshot"]["depends_on"] == {"kafka": healthy}
