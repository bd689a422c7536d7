"""The `nudge` error boundary against brokers: unreachable (exit 3, one line, within
`kafka.connect_timeout_s`) for every command that talks to Kafka, and a login the local broker's
SASL_PLAINTEXT listener refuses (exit 2, one line, the password nowhere in the output)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration import cli_runs

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 2.0
MARGIN_S = 6.0  # interpreter start and imports on a busy 2-core machine
SASL_USER = os.environ.get("KAFKA_SASL_USER", "nudge")
SASL_PASSWORD = os.environ.get("KAFKA_SASL_PASSWORD", "nudge-secret")


def sasl_port() -> int:
    port = int(os.environ.get("KAFKA_PORT", "9092"))
    return int(os.environ.get("KAFKA_SASL_PORT", str(port + 2)))


def write_config(tmp_path: Path, bootstrap: str, **client: str) -> Path:
    return cli_runs.write_config(tmp_path, bootstrap, TIMEOUT_S, client)


def nudge(
    *args: str, config: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    return cli_runs.nudge(*args, config=config, env=env, timeout_s=120)


KAFKA_COMMANDS = [
    pytest.param(("simulate", "--events", "10"), id="simulate"),
    pytest.param(("consume", "--until-idle", "1"), id="consume"),
    pytest.param(("loop", "--rounds", "1", "--decisions", "10"), id="loop"),
    pytest.param(("follow-snapshots", "--out", "{tmp}/mirror", "--until-idle", "1"),
                 id="follow-snapshots"),
    pytest.param(("replay", "--kafka", "--quiet"), id="replay-kafka"),
]  # fmt: skip


@pytest.mark.parametrize("args", KAFKA_COMMANDS)
def test_an_unreachable_broker_exits_3_within_the_connect_timeout_with_one_line(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    config = write_config(tmp_path, "127.0.0.1:1")  # nothing listens on port 1

    done, took = nudge(*(a.format(tmp=tmp_path) for a in args), config=config)

    assert done.returncode == 3, done.stderr
    (line,) = done.stderr.splitlines()  # no kafka-python log lines, no traceback
    assert line.startswith("nudge: cannot reach Kafka at 127.0.0.1:1 within 2 s")
    assert "kafka.connect_timeout_s" in line and "is the broker up?" in line
    assert took < TIMEOUT_S + MARGIN_S, f"took {took:.1f}s"


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_a_refused_sasl_login_exits_2_naming_the_user_and_never_prints_the_password(
    broker: str, tmp_path: Path, verbose: bool
) -> None:
    wrong = "p@ss #1-wrong-012345"
    config = write_config(
        tmp_path, f"127.0.0.1:{sasl_port()}",
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_plain_username=SASL_USER,
    )  # fmt: skip

    done, took = nudge(
        *(["-v"] if verbose else []), "simulate", "--events", "10",
        config=config, env={"NUDGE_KAFKA__CLIENT__SASL_PLAIN_PASSWORD": wrong},
    )  # fmt: skip

    assert done.returncode == 2, done.stderr
    assert wrong not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.splitlines()[-1]
    assert last == (
        f"nudge: authentication to 127.0.0.1:{sasl_port()} failed for user '{SASL_USER}' "
        "(SASL PLAIN): check kafka.client.sasl_plain_username / sasl_plain_password"
    )
    if verbose:  # kafka-python logs its whole configuration at debug level: masked
        assert "'sasl_plain_password': '***'" in done.stderr
    else:
        assert len(done.stderr.splitlines()) == 1
    assert took < TIMEOUT_S + MARGIN_S, f"took {took:.1f}s"


def test_the_right_sasl_password_produces_through_the_sasl_listener(
    broker: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path, f"127.0.0.1:{sasl_port()}",
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_plain_username=SASL_USER,
    )  # fmt: skip

    done, _ = nudge(
        "simulate", "--events", "20", config=config,
        env={"NUDGE_KAFKA__CLIENT__SASL_PLAIN_PASSWORD": SASL_PASSWORD},
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert SASL_PASSWORD not in done.stdout + done.stderr
