"""`nudge serve` fails fast, in one line, on what it can check before any worker starts."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bandit.config import Config, parse_config
from bandit.errors import ConfigError, UsageError
from nudge.service.server import ServeOptions, check_serve_setup, load_api_keys

ROOT = Path(__file__).resolve().parents[2]
KEY = "k" * 24


def config(tmp_path: Path, **serve: object) -> Config:
    return parse_config({"serve": {"spool_directory": str(tmp_path / "spool"), **serve}})


def test_api_keys_come_from_the_environment_and_the_key_file_together(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# the platform team\n{'a' * 20}\n\n  {'b' * 20}  \n")
    cfg = config(tmp_path, api_keys_file=str(keys))
    got = load_api_keys(cfg, environ={"NUDGE_API_KEYS": f"{'c' * 20}, {'d' * 20}"})
    assert got == {c.encode() * 20 for c in "abcd"}


def test_no_key_anywhere_means_an_open_service(tmp_path: Path) -> None:
    assert load_api_keys(config(tmp_path), environ={}) == frozenset()


@pytest.mark.parametrize(
    ("content", "problem"),
    [("", "no key in it"), ("short\n", "shorter than 16")],
)
def test_a_key_file_without_a_usable_key_is_refused(
    tmp_path: Path, content: str, problem: str
) -> None:
    keys = tmp_path / "keys"
    keys.write_text(content)
    with pytest.raises(ConfigError, match=problem):
        load_api_keys(config(tmp_path, api_keys_file=str(keys)), environ={})


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"serve.api_keys_file .*cannot read"):
        load_api_keys(config(tmp_path, api_keys_file=str(tmp_path / "nope")), environ={})


def test_serving_beyond_localhost_without_a_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NUDGE_API_KEYS", raising=False)
    with pytest.raises(UsageError, match="no API key"):
        check_serve_setup(config(tmp_path, host="0.0.0.0", port=0), ServeOptions())  # noqa: S104


def test_a_taken_port_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_API_KEYS", KEY)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f"serve.port {port} on 127.0.0.1 is taken"):
            check_serve_setup(config(tmp_path), ServeOptions(port=port))


def test_an_unwritable_spool_directory_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NUDGE_API_KEYS", KEY)
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = parse_config({"serve": {"spool_directory": str(blocker / "spool")}})
    with pytest.raises(UsageError, match=r"serve\.spool_directory"):
        check_serve_setup(cfg, ServeOptions(port=0))


def test_the_command_line_exits_2_with_one_line_on_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = tmp_path / "config.yaml"
        cfg.write_text(f"serve: {{spool_directory: {tmp_path / 'spool'}}}\n")
        done = subprocess.run(
            [sys.executable, "-m", "nudge.cli", "serve", "--config", str(cfg), "--port", str(port)],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert f"serve.port {port}" in done.stderr
