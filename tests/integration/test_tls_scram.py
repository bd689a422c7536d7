"""Learning through the local broker's SASL_SSL listener (TLS with the local CA, SCRAM-SHA-512):
`nudge simulate` + `nudge consume --until-idle` learn every event, and a wrong password is exit 2
naming the refused login, within 10 s. Ports, user and CA file are found the way `scripts/kafka`
places them (KAFKA_PORT, KAFKA_SASL_SSL_PORT, KAFKA_DATA_DIR, KAFKA_SCRAM_USER/PASSWORD)."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

import orjson
import pytest

from tests.integration import cli_runs

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
PORT = int(os.environ.get("KAFKA_PORT", "9092"))
SASL_SSL_PORT = int(os.environ.get("KAFKA_SASL_SSL_PORT", str(PORT + 3)))
DATA_DIR = Path(os.environ.get("KAFKA_DATA_DIR", str(ROOT / ".local" / f"kafka-{PORT}")))
CA_FILE = DATA_DIR / "tls" / "ca.pem"
SCRAM_USER = os.environ.get("KAFKA_SCRAM_USER", "nudge")
SCRAM_PASSWORD = os.environ.get("KAFKA_SCRAM_PASSWORD", "nudge-scram-secret")
BOOTSTRAP = f"127.0.0.1:{SASL_SSL_PORT}"
CONNECT_TIMEOUT_S = 3
EVENTS = 300


@pytest.fixture(scope="module")
def sasl_ssl(broker: str) -> str:
    """The SASL_SSL listener's bootstrap address; skips only if the running broker has none."""
    try:
        socket.create_connection(("127.0.0.1", SASL_SSL_PORT), timeout=2).close()
    except OSError as exc:
        pytest.skip(
            f"no SASL_SSL listener on {BOOTSTRAP} ({exc}): the broker at {broker} was started "
            "by a scripts/kafka without it; `scripts/kafka restart` adds it"
        )
    assert CA_FILE.is_file(), f"listener on {BOOTSTRAP} but no CA file at {CA_FILE}"
    return BOOTSTRAP


def write_config(tmp_path: Path) -> Path:
    """config.yaml with fresh topics and the client settings of the README's SASL_SSL example."""
    client = {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": SCRAM_USER, "sasl_plain_password": SCRAM_PASSWORD,
        "ssl_cafile": str(CA_FILE),
    }  # fmt: skip
    return cli_runs.write_config(tmp_path, BOOTSTRAP, CONNECT_TIMEOUT_S, client)


nudge = cli_runs.nudge


def test_the_listener_serves_tls_for_127_0_0_1_with_a_certificate_of_the_local_ca(
    sasl_ssl: str,
) -> None:
    context = ssl.create_default_context(cafile=str(CA_FILE))  # verifies chain and host name
    with (
        socket.create_connection(("127.0.0.1", SASL_SSL_PORT), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in {"TLSv1.2", "TLSv1.3"}
        issuer = dict(pair[0] for pair in tls.getpeercert()["issuer"])
    assert issuer["commonName"] == "nudgebandit local Kafka CA"


def test_simulate_and_consume_learn_every_event_through_sasl_ssl_scram(
    sasl_ssl: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path)

    done, _ = nudge("simulate", "--events", str(EVENTS), "--seed", "5", config=config)
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stdout)
    assert summary["impressions"] > 0

    stats_path = tmp_path / "stats.json"
    done, _ = nudge("consume", "--until-idle", "3", "--stats-json", str(stats_path), config=config)
    assert done.returncode == 0, done.stderr
    stats = orjson.loads(stats_path.read_bytes())

    assert stats["consumed"] == summary["messages"]
    assert stats["learned"] == summary["expected"]["learned"]
    assert stats["dead_letters_by_reason"] == summary["expected"]["dead_letters_by_reason"]
    assert stats["pending"] == 0 and stats["lag"] == 0
    assert SCRAM_PASSWORD not in done.stdout + done.stderr


def test_a_wrong_scram_password_exits_2_naming_the_refused_login_within_10_s(
    sasl_ssl: str, tmp_path: Path
) -> None:
    wrong = "not-the-scram-secret-0123"
    config = write_config(tmp_path)  # the right password, overridden by the environment

    done, took = nudge(
        "simulate", "--events", "10", config=config,
        env={"NUDGE_KAFKA__CLIENT__SASL_PLAIN_PASSWORD": wrong},
    )  # fmt: skip

    assert done.returncode == 2, done.stderr
    assert wrong not in done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert line == (
        f"nudge: authentication to {BOOTSTRAP} failed for user '{SCRAM_USER}' "
        "(SASL SCRAM-SHA-512): check kafka.client.sasl_plain_username / sasl_plain_password"
    )
    assert took < 10, f"took {took:.1f}s"
