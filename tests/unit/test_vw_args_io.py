"""`learner.vw_args` never makes Vowpal Wabbit read or write files or open sockets (issue 11):
`--readable_model PATH` and its kind used to be accepted, and VW wrote wherever they said.

The whole list is tried through the config (file and environment) and the command line, and
the installed VW's own option table is read again: an option that looks like I/O must be
refused or be in the reviewed list below, so a VW upgrade cannot add one unnoticed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bandit.config import load_config, parse_config
from bandit.errors import ConfigError
from bandit.vw_io_flags import IO_FLAGS

ROOT = Path(__file__).resolve().parents[2]

W, R, RW, S = "writes files", "reads files", "reads and writes files", "opens network sockets"

# Every VW 9 option (each alias too) that reads or writes files or opens sockets.
REFUSED: dict[str, str] = {
    "--readable_model": W, "-f": W, "--final_regressor": W, "--invert_hash": W,
    "--dump_json_weights_experimental": W, "--output_feature_regularizer_binary": W,
    "--output_feature_regularizer_text": W, "--save_per_pass": W,
    "--search_save_every_k_runs": W, "-p": W, "--predictions": W, "-r": W,
    "--raw_predictions": W, "--audit_regressor": W, "--extra_metrics": W,
    "--epsilon_decay_audit": W, "--pid_file": W, "--port_file": W,
    "-c": RW, "--cache": RW, "--cache_file": RW, "-k": RW, "--kill_cache": RW,
    "-i": R, "--initial_regressor": R, "--input_feature_regularizer": R, "--feature_mask": R,
    "-d": R, "--data": R, "--dictionary": R, "--dictionary_path": R,
    "--search_allowed_transitions": R,
    "--daemon": S, "--port": S, "--foreground": S, "--num_children": S, "--active": S,
    "--span_server": S, "--span_server_port": S, "--unique_id": S, "--total": S, "--node": S,
    "--sendto": S,
}  # fmt: skip


def _message(vw_args: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config({"learner": {"vw_args": vw_args}})
    return str(caught.value)


@pytest.mark.parametrize("flag", REFUSED)
def test_every_vw_flag_that_reads_or_writes_files_or_opens_sockets_is_refused(flag: str) -> None:
    message = _message(f"--cb_type mtr {flag} /tmp/elsewhere/out.txt -b 18")

    assert f"learner.vw_args: Value error, vw_args must not contain ['{flag}']" in message
    assert f"{flag} {REFUSED[flag]}; nudgebandit owns model files" in message


def test_the_table_is_exactly_the_tested_list() -> None:
    assert IO_FLAGS == REFUSED


@pytest.mark.parametrize(
    ("vw_args", "flags"),
    [
        ("--readable_model=/tmp/x.txt", ["--readable_model"]),
        ("-p/tmp/predictions.txt", ["-p"]),
        ("-fmodel.vw --cb_type dr", ["-f"]),
        ("--invert_hash a.txt -b 18 --readable_model b.txt --invert_hash c.txt",
         ["--invert_hash", "--readable_model"]),
        ("--port 0 --daemon", ["--port", "--daemon"]),
    ],
)  # fmt: skip
def test_every_spelling_is_refused_and_every_flag_named_once(
    vw_args: str, flags: list[str]
) -> None:
    assert f"vw_args must not contain {flags}" in _message(vw_args)


@pytest.mark.parametrize(
    "vw_args",
    ["--cb_type dr -b 18", "--learning_rate 0.5 --power_t 0", "--l2 1e-6 --id nudge",
     "--cb_type mtr --hash all --random_seed 3 --holdout_off"],
)  # fmt: skip
def test_flags_without_io_are_still_accepted(vw_args: str) -> None:
    assert parse_config({"learner": {"vw_args": vw_args}}).learner.vw_args == vw_args


def test_an_environment_override_is_refused_naming_its_variable(tmp_path: Path) -> None:
    environ = {"NUDGE_LEARNER__VW_ARGS": "--cb_type mtr --readable_model /etc/motd"}

    with pytest.raises(ConfigError) as caught:
        load_config(None, environ=environ)

    assert "--readable_model writes files" in str(caught.value)
    assert "[from NUDGE_LEARNER__VW_ARGS]" in str(caught.value)


def test_the_command_line_exits_2_with_one_line_naming_the_flag(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["learner"]["vw_args"] = f"--cb_type mtr -b 18 --readable_model {tmp_path / 'r.txt'}"
    data["checkpoint"]["directory"] = str(tmp_path / "checkpoints")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))

    done = subprocess.run(
        [sys.executable, "-m", "nudge.cli", "score", "--config", "config.yaml", "--seed", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("nudge: config.yaml")
    assert "learner.vw_args: Value error, vw_args must not contain ['--readable_model']" in lines[0]
    assert not (tmp_path / "r.txt").exists()


# ---- the list, read again from the installed VW ---------------------------------------------

LOOKS_LIKE_IO = re.compile(
    r"file|path|director|port\b|daemon|server|host|socket|send|dictionar|cache|regressor|write|"
    r"save|dump|pid|\bnode\b|cluster|children|foreground|\bdata\b|stdin|stream|load|output|audit",
    re.IGNORECASE,
)

# Options whose name or help looks like I/O, read and found harmless: why.
REVIEWED: dict[str, str] = {
    "action_cache_slack": "an in-memory cache", "all_slots_loss": "what loss is reported",
    "alpha": "a tree routing parameter", "audit": "prints to stdout (off with --quiet)",
    "binary": "what loss is reported", "compressed": "the format of refused cache/data files",
    "cs_absolute_loss": "what loss is reported", "csv": "the format of refused data files",
    "csv_header": "the format of refused data files",
    "csv_no_file_header": "the format of refused data files",
    "dont_output_best_constant": "a statistic", "driver_output": "stdout or stderr only",
    "driver_output_off": "less output",
    "dump_json_weights_include_extra_online_state_experimental": "modifies a refused option",
    "dump_json_weights_include_feature_names_experimental": "modifies a refused option",
    "flatbuffer": "the format of refused data files",
    "hexfloat_weights": "modifies a refused option", "holdout_off": "no holdout",
    "id": "a string stored in the model", "ldf_override": "an example format",
    "limit_output": "less output", "log_level": "a log level",
    "log_output": "stdout, stderr or compat only", "loss_report": "what loss is reported",
    "max_prediction": "a bound", "min_prediction": "a bound",
    "no_daemon": "prevents daemon mode", "no_stdin": "prevents reading stdin",
    "node_only": "a tree feature choice", "overwrite_label": "a warm_cb parameter",
    "per_model_save_load": "what a model holds", "plt_force_load_legacy_model": "a model format",
    "predict_only_model": "what a model holds", "preserve_performance_counters": "counters",
    "project": "a FreeGrad parameter", "quiet": "less output",
    "save_resume": "deprecated, the default", "scores": "a prediction type",
    "search_alpha": "a search parameter", "search_metatask": "a search task",
    "search_trained_nb_policies": "a search parameter", "sort_features": "feature order",
    "svrg": "a learning algorithm",
}  # fmt: skip


def _vw_options() -> dict[str, tuple[str, str]]:
    """Every option of every reduction of the installed VW: name -> (short name, help)."""
    from vowpalwabbit import Workspace

    workspace = Workspace("--quiet")
    try:
        table = workspace.get_config(filtered_enabled_reductions_only=False)
    finally:
        workspace.finish()
    return {
        option.name: (option.short_name, option.help_str or "")
        for groups in table.values() for _, options in groups for option in options
    }  # fmt: skip


def test_every_installed_vw_option_that_looks_like_io_is_refused_or_reviewed() -> None:
    options = _vw_options()
    assert len(options) > 400  # the whole table, not the enabled reductions only

    looks = {
        n for n, (_, h) in options.items() if LOOKS_LIKE_IO.search(n) or LOOKS_LIKE_IO.search(h)
    }
    unreviewed = sorted(looks - {f.removeprefix("--") for f in REFUSED} - set(REVIEWED))

    assert unreviewed == [], "refuse these in bandit/vw_io_flags.py or review them here"


def test_every_refused_flag_is_a_real_vw_option_with_its_real_short_name() -> None:
    options = _vw_options()
    shorts = {f"-{short}": f"--{name}" for name, (short, _) in options.items() if short}

    for flag in REFUSED:
        if flag.startswith("--"):
            assert flag.removeprefix("--") in options, flag
        else:
            assert REFUSED[flag] == REFUSED[shorts[flag]], flag  # an alias, refused alike
    assert {s for s, long in shorts.items() if long in REFUSED} <= set(REFUSED)
