"""The `nudge` error boundary: every bad input exits 2 with one line on stderr naming it.

Each row runs `python -m nudge.cli` as a user would, with a secret in the environment (and,
for some rows, in the config file); the secret must appear in no output. Broker cases (an
unreachable broker, a refused login) are in tests/integration/test_cli_broker_errors.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bandit.config import Config
from bandit.snapshots import SnapshotStore
from bandit.state import LearnerState

ROOT = Path(__file__).resolve().parents[2]
SECRET = "p@ss #1-s3cr3t"  # noqa: S105 (a fake, set as kafka.client.sasl_plain_password)
FILE_SECRET = "hunter2-in-the-file"  # noqa: S105 (a fake)
TRIGGER = "A/quiz-3/quiz-failed"
BASE_ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}


def nudge(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nudge.cli", *args], cwd=cwd, capture_output=True, text=True,
        timeout=120, env={**BASE_ENV, **(env or {})},
    )  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config (closed broker port, local directories), a small event log, a snapshot, broken
    config files and a directory to pass where a file belongs."""
    work = tmp_path_factory.mktemp("cli-errors")
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["kafka"].update(bootstrap_servers="127.0.0.1:1", connect_timeout_s=1)
    data["checkpoint"]["directory"] = str(work / "checkpoints")
    data["snapshots"]["directory"] = str(work / "snapshots")
    (work / "config.yaml").write_text(yaml.safe_dump(data))
    done = nudge(
        "simulate", "--events", "300", "--seed", "3", "--out", "logs.jsonl", "--no-kafka",
        cwd=work,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    catalogue = {
        "actions": {"hint": {"kind": "hint"}, "peer": {"kind": "peer"}, "none": {}},
        "triggers": {TRIGGER: ["hint", "peer", "none"]},
    }
    SnapshotStore(work / "snap").publish(Config(), LearnerState(catalogue=catalogue), {}, 0)
    (work / "subdir").mkdir()
    (work / "utf16.csv").write_bytes(b"\xff\xfee\x00v\x00\n\x00")  # Excel's "Unicode text"
    (work / "corrupt.parquet").write_bytes(b"PAR1garbagePAR1")
    (work / "broken.yaml").write_text(
        f'kafka:\n  client:\n    sasl_plain_password: "{FILE_SECRET}" [oops\n'
    )
    (work / "bad-field.yaml").write_text(
        f"join:\n  window_s: -5\nkafka:\n  client:\n    sasl_plain_password: {FILE_SECRET}\n"
    )
    return work


DECIDE = ("decide", "--snapshots", "snap", "--trigger", TRIGGER, "--learner", "u1")
REPLAY = ("replay", "--events", "logs.jsonl", "--quiet")
SIMULATE = ("simulate", "--events", "5")

# id, arguments, extra environment, text the one line must contain. Every row exits 2.
BAD_INPUTS = [
    pytest.param(("replay", "--events", "missing.jsonl", "--quiet"), {},
                 ["--events missing.jsonl", "no such file"], id="replay-events-missing"),
    pytest.param(("replay", "--table", "missing.parquet", "--quiet"), {},
                 ["--table missing.parquet", "no such file"], id="replay-table-missing"),
    pytest.param(("replay", "--dsjson", "missing.dsjson", "--quiet"), {},
                 ["--dsjson missing.dsjson", "no such file"], id="replay-dsjson-missing"),
    pytest.param(("replay", "--events", "subdir", "--quiet"), {},
                 ["--events subdir", "is a directory"], id="replay-events-unreadable-directory"),
    pytest.param((*REPLAY, "--policy", "external:missing.jsonl"), {},
                 ["--policy external:", "missing.jsonl", "no such file"],
                 id="replay-external-side-file-missing"),
    pytest.param((*REPLAY, "--policy", "thompson"), {},
                 ["--policy", "'thompson'", "nudge replay --help"], id="replay-unknown-policy"),
    pytest.param((*REPLAY, "--policy", "crossfit:bogus"), {},
                 ["--policy crossfit:bogus", "'bogus'"], id="replay-unknown-policy-mode"),
    pytest.param((*REPLAY, "--estimators", "IPS,FOO"), {},
                 ["--estimators", "'FOO'", "IPS,SNIPS,DM,DR,DRos"],
                 id="replay-unknown-estimator"),
    pytest.param((*REPLAY, "--policy", "uniform", "--gain", "g", "uniform", "nope"), {},
                 ["--gain g uniform nope", "'nope'", "uniform"],
                 id="replay-gain-names-unknown-policy"),
    pytest.param(("replay", "--kafka", "--from", "yesterday", "--quiet"), {},
                 ["--from", "'yesterday'"], id="replay-unparsable-from"),
    pytest.param((*REPLAY, "--to", "5"), {}, ["--from/--to", "--kafka"],
                 id="replay-to-without-kafka"),
    pytest.param((*REPLAY, "--confidence", "2"), {}, ["--confidence", "2"],
                 id="replay-confidence-above-one"),
    pytest.param((*DECIDE, "--candidates", "hint", "bogus"), {},
                 ["--candidates", "'bogus'", "hint, none, peer"], id="decide-unknown-action"),
    pytest.param(("decide", "--snapshots", "no-snaps", "--trigger", TRIGGER, "--learner", "u1"),
                 {}, ["no-snaps", "no snapshot"], id="decide-no-snapshot"),
    pytest.param(("decide", "--snapshots", "logs.jsonl", "--trigger", TRIGGER, "--learner", "u1"),
                 {}, ["logs.jsonl"], id="decide-snapshots-is-a-file"),
    pytest.param((*DECIDE, "--context", "[1"), {}, ["--context"], id="decide-bad-context"),
    pytest.param((*DECIDE, "--repeat", "0"), {}, ["--repeat"], id="decide-no-repeats"),
    pytest.param((*DECIDE, "--config", "absent.yaml"), {},
                 ["absent.yaml", "no such config file", "--config"], id="config-missing"),
    pytest.param((*DECIDE, "--config", "subdir"), {},
                 ["subdir", "cannot read the config file"], id="config-is-a-directory"),
    pytest.param((*DECIDE, "--config", "broken.yaml"), {},
                 ["broken.yaml", "not valid YAML at line 3"], id="config-bad-yaml-with-secret"),
    pytest.param((*DECIDE, "--config", "bad-field.yaml"), {},
                 ["bad-field.yaml", "join.window_s", "-5"], id="config-invalid-field"),
    pytest.param(DECIDE, {"NUDGE_JOIN__WINDOW_S": "soon"},
                 ["join.window_s", "'soon'", "NUDGE_JOIN__WINDOW_S"], id="env-not-a-number"),
    pytest.param(DECIDE, {"NUDGE_LEARNER__INTERACTIONS": "[[learner, action"},
                 ["NUDGE_LEARNER__INTERACTIONS", "not valid YAML"], id="env-bad-yaml-list"),
    pytest.param(DECIDE, {"NUDGE_KAFKA__BOGUS": "1"}, ["kafka.bogus", "NUDGE_KAFKA__BOGUS"],
                 id="env-unknown-field"),
    pytest.param(DECIDE, {"NUDGE_KAFKA__CLIENT": f"{{sasl_plain_password: [{SECRET}"},
                 ["NUDGE_KAFKA__CLIENT", "not valid YAML"], id="env-bad-yaml-holding-a-secret"),
    pytest.param(DECIDE, {"NUDGE_KAFKA__CLIENT": f"sasl_plain_password={SECRET}"},
                 ["kafka.client", "NUDGE_KAFKA__CLIENT"], id="env-client-not-a-mapping"),
    pytest.param(SIMULATE, {"NUDGE_KAFKA__CLIENT__SASL_PASWORD": SECRET},
                 ["kafka.client", "'sasl_pasword'", "'sasl_plain_password'"],
                 id="kafka-client-unknown-key"),
    pytest.param(SIMULATE, {"NUDGE_KAFKA__CLIENT__REQUEST_TIMEOUT_MS": "soon"},
                 ["kafka.client.request_timeout_ms", "'soon'"], id="kafka-client-not-a-number"),
    pytest.param(SIMULATE, {"NUDGE_KAFKA__CLIENT__SECURITY_PROTOCOL": "SASL_PLAINTEXT"},
                 ["kafka.client.sasl_mechanism", "SASL_PLAINTEXT"],
                 id="kafka-sasl-without-mechanism"),
    pytest.param(SIMULATE, {"NUDGE_KAFKA__CLIENT__GROUP_ID": "other"},
                 ["client must not set ['group_id']", "kafka.group_id"],
                 id="kafka-client-sets-an-owned-key"),
    pytest.param(SIMULATE, {"NUDGE_KAFKA__CLIENT__BOOTSTRAP_TIMEOUT_MS": "5"},
                 ["bootstrap_timeout_ms", "kafka.connect_timeout_s"],
                 id="kafka-client-sets-the-connect-timeout"),
    # An id the event contract refuses would be logged, then dead-lettered by the consumer.
    pytest.param((*DECIDE, "--learner", ""), {}, ["--learner ''", "event contract"],
                 id="decide-empty-learner"),
    pytest.param((*DECIDE, "--learner", " "), {}, ["--learner ' '", "event contract"],
                 id="decide-blank-learner"),
    pytest.param((*DECIDE, "--learner", "a:b"), {}, ["--learner 'a:b'", "event contract"],
                 id="decide-learner-with-colon"),
    pytest.param((*DECIDE, "--learner", "a|b"), {}, ["--learner 'a|b'", "event contract"],
                 id="decide-learner-with-bar"),
    pytest.param((*DECIDE, "--trigger", "A/quiz 3"), {}, ["--trigger 'A/quiz 3'"],
                 id="decide-trigger-with-space"),
    # A NUDGE_ variable that is not NUDGE_<SECTION>__<FIELD> would otherwise be ignored.
    pytest.param(DECIDE, {"NUDGE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
                 ["NUDGE_KAFKA_BOOTSTRAP_SERVERS", "did you mean NUDGE_KAFKA__BOOTSTRAP_SERVERS"],
                 id="env-single-underscore"),
    pytest.param(DECIDE, {"NUDGE_KAFKA_CLIENT_SASL_PLAIN_PASSWORD": SECRET},
                 ["did you mean NUDGE_KAFKA__CLIENT__SASL_PLAIN_PASSWORD"],
                 id="env-single-underscore-holding-a-secret"),
    pytest.param(DECIDE, {"NUDGE_JOIN": "{window_s: 10}"},
                 ["NUDGE_JOIN:", "a whole section", "NUDGE_JOIN__WINDOW_S"], id="env-whole-section"),
    pytest.param(DECIDE, {"NUDGE_BOGUS": "1"},
                 ["NUDGE_BOGUS", "NUDGE_<SECTION>__<FIELD>", "NUDGE_SNAPSHOT_KEY"],
                 id="env-unknown-variable"),
    # An empty or malformed broker list is a config error, not an unreachable broker (exit 3).
    pytest.param(SIMULATE, {"NUDGE_KAFKA__BOOTSTRAP_SERVERS": ""},
                 ["kafka.bootstrap_servers", "no broker", "NUDGE_KAFKA__BOOTSTRAP_SERVERS"],
                 id="kafka-empty-bootstrap-servers"),
    pytest.param(SIMULATE, {"NUDGE_KAFKA__BOOTSTRAP_SERVERS": "  "},
                 ["kafka.bootstrap_servers", "no broker"], id="kafka-blank-bootstrap-servers"),
    pytest.param(SIMULATE, {"NUDGE_KAFKA__BOOTSTRAP_SERVERS": "host:notaport"},
                 ["kafka.bootstrap_servers", "port 'notaport'"],
                 id="kafka-bootstrap-servers-bad-port"),
    # Unreadable tables, and values argparse refuses (one line too), not tracebacks.
    pytest.param(("replay", "--table", "utf16.csv", "--quiet"), {},
                 ["utf16.csv", "not UTF-8"], id="replay-table-not-utf8"),
    pytest.param(("replay", "--table", "corrupt.parquet", "--quiet"), {},
                 ["corrupt.parquet", "not a readable Parquet file"],
                 id="replay-table-corrupt-parquet"),
    pytest.param(("score", "--seed", "3", "--decisions", "0"), {}, ["--decisions", "'0'"],
                 id="score-no-decisions"),
    pytest.param(("score", "--decisions", "-5"), {}, ["--decisions", "'-5'"],
                 id="score-negative-decisions"),
    pytest.param(("score", "--seed", "-1"), {}, ["--seed", "'-1'", "nudge score --help"],
                 id="score-negative-seed"),
    pytest.param((*SIMULATE, "--invalid-fraction", "2"), {}, ["--invalid-fraction", "'2'"],
                 id="simulate-fraction-above-one"),
    pytest.param((*SIMULATE, "--invalid-fraction", "nan"), {}, ["--invalid-fraction", "'nan'"],
                 id="simulate-fraction-nan"),
    pytest.param(("simulate", "--events", "-5"), {}, ["--events", "'-5'"],
                 id="simulate-negative-events"),
    pytest.param(("simulate", "--events", "many"), {}, ["--events", "'many'"],
                 id="simulate-events-not-a-number"),
    pytest.param(("consume", "--until-idle", "-1"), {}, ["--until-idle", "'-1'"],
                 id="consume-negative-idle"),
    pytest.param(("follow-snapshots", "--out", "mirror", "--until-idle", "inf"), {},
                 ["--until-idle", "'inf'"], id="follow-infinite-idle"),
    pytest.param((*DECIDE, "--reactions", "-1"), {}, ["--reactions", "'-1'"],
                 id="decide-negative-reactions"),
    pytest.param(("loop", "--rounds", "0"), {}, ["--rounds", "'0'"], id="loop-no-rounds"),
    pytest.param((*REPLAY, "--bootstrap", "0"), {}, ["--bootstrap", "'0'"],
                 id="replay-no-resamples"),
    pytest.param(("decide", "--trigger", TRIGGER), {}, ["--learner", "required"],
                 id="argparse-missing-flag"),
    pytest.param((*SIMULATE, "--no-kafka"), {}, ["--no-kafka", "--out"],
                 id="simulate-no-kafka-without-out"),
    # An output under a missing directory whose parent is missing too: refused before any work.
    pytest.param((*SIMULATE, "--no-kafka", "--out", "missing/deeper/x.jsonl"), {},
                 ["--out missing/deeper/x.jsonl", "no directory missing"],
                 id="simulate-out-under-missing-directories"),
    pytest.param((*REPLAY, "--html", "missing/deeper/r.html"), {},
                 ["--html missing/deeper/r.html", "no directory missing"],
                 id="replay-html-under-missing-directories"),
    pytest.param((*REPLAY, "--write-dsjson", "missing/deeper/x.dsjson"), {},
                 ["--write-dsjson missing/deeper/x.dsjson", "no directory missing"],
                 id="replay-dsjson-under-missing-directories"),
    pytest.param((*REPLAY, "--out-json", "subdir"), {}, ["--out-json subdir", "is a directory"],
                 id="replay-out-json-is-a-directory"),
    pytest.param((*REPLAY, "--out-json", "logs.jsonl/r.json"), {},
                 ["--out-json logs.jsonl/r.json", "logs.jsonl is not a directory"],
                 id="replay-out-json-under-a-file"),
    pytest.param(("consume", "--stats-json", "missing/deeper/s.json"), {},
                 ["--stats-json missing/deeper/s.json", "no directory missing"],
                 id="consume-stats-under-missing-directories"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "env", "mentions"), BAD_INPUTS)
def test_bad_input_exits_2_with_one_line_naming_it_and_no_secret(
    workdir: Path, args: tuple[str, ...], env: dict[str, str], mentions: list[str]
) -> None:
    secret_env = {} if "NUDGE_KAFKA__CLIENT" in env else {
        "NUDGE_KAFKA__CLIENT__SASL_PLAIN_PASSWORD": SECRET
    }  # fmt: skip
    done = nudge(*args, cwd=workdir, env={**secret_env, **env})

    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("nudge: ")
    for text in mentions:
        assert text in lines[0]
    for secret in (SECRET, FILE_SECRET, "s3cr3t", "hunter2"):
        assert secret not in done.stdout + done.stderr


def test_an_output_files_own_missing_directory_is_created(workdir: Path) -> None:
    done = nudge(
        *SIMULATE, "--no-kafka", "--out", "fresh/x.jsonl", cwd=workdir
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert (workdir / "fresh" / "x.jsonl").stat().st_size > 0


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("simulate", "--events", "3000", "--no-kafka", "--out", "/dev/stdout"),
                     id="simulate-out-dev-stdout"),
        pytest.param((*DECIDE, "--repeat", "3000"), id="decide-printing"),
    ],
)  # fmt: skip
def test_a_reader_that_goes_away_ends_nudge_quietly(
    workdir: Path, args: tuple[str, ...]
) -> None:
    # `nudge ... | head -1`: the Python docs' way, exit 1 and no traceback.
    with subprocess.Popen(
        [sys.executable, "-m", "nudge.cli", *args], cwd=workdir, env=BASE_ENV,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline()
        proc.stdout.close()
        stderr = proc.stderr.read()
        code = proc.wait(timeout=120)

    assert code == 1, stderr
    assert stderr == b""


def test_version_prints_the_installed_package_version(workdir: Path) -> None:
    from importlib.metadata import version

    done = nudge("--version", cwd=workdir)

    assert done.returncode == 0
    assert done.stdout.strip() == f"nudge {version('nudgebandit')}"


def test_several_config_errors_still_make_one_line(workdir: Path) -> None:
    env = {"NUDGE_JOIN__WINDOW_S": "-1", "NUDGE_CHECKPOINT__KEEP": "0"}

    done = nudge(*DECIDE, cwd=workdir, env=env)

    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert "join.window_s" in line and "checkpoint.keep" in line
