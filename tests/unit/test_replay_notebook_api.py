"""Replay from a notebook: `from replay import evaluate`, its frames and plot, the public
policy-spec parser, and the README example run as written."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import orjson
import pandas as pd
import pytest
from test_cli_replay import ROOT, nudge

from bandit.config import load_config
from bandit.errors import UsageError
from bandit.vw_text import NamespaceLetters
from replay import (
    Gain,
    PolicySpec,
    PolicySpecError,
    ReplayResult,
    build_policies,
    evaluate,
    load_logs,
    parse_policy_spec,
)
from replay.dsjson import write_dsjson
from replay.tables import write_table

EVENTS = "2000"
TRIGGER_LEVEL = ["uniform", "best=best-per-trigger"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with config.yaml, simulated events (logs.jsonl) and the same decisions as
    a Parquet table, a CSV table, DSJSON and DSJSON named .json."""
    workdir = tmp_path_factory.mktemp("notebook")
    (workdir / "config.yaml").write_bytes((ROOT / "config.yaml").read_bytes())
    done = nudge(
        "simulate", "--events", EVENTS, "--seed", "5", "--out", "logs.jsonl", "--no-kafka",
        cwd=workdir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = load_config(workdir / "config.yaml")
    data = load_logs(workdir / "logs.jsonl", config=config)
    write_table(data, workdir / "decisions.parquet")
    write_table(data, workdir / "decisions.csv")
    letters = NamespaceLetters(config.learner.namespaces, config.learner.action_namespace)
    write_dsjson(data, workdir / "decisions.dsjson", letters)
    write_dsjson(data, workdir / "decisions.json", letters)
    return workdir


def cli_json(logs: Path, *args: str) -> dict[str, Any]:
    done = nudge("replay", *args, "--json", "--quiet", cwd=logs)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = orjson.loads(done.stdout)
    return result


def as_cli_prints(result: ReplayResult) -> dict[str, Any]:
    """`to_json()` as the CLI prints it (orjson: nan becomes null), without what differs
    between two runs of the same evaluation (timings) or names the input (source)."""
    return without_run_details(orjson.loads(orjson.dumps(result.to_json())))


def without_run_details(printed: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in printed.items() if k not in ("timings_s", "source")}


# ---- the acceptance test: DataFrame in, to_frame() out, the CLI's numbers -------------------


def test_a_dataframe_in_gives_frames_equal_to_the_cli_json_of_the_same_table(logs: Path) -> None:
    printed = cli_json(logs, "--table", "decisions.parquet")
    result = evaluate(pd.read_parquet(logs / "decisions.parquet"))
    frame = result.to_frame()
    expected = pd.DataFrame(printed["estimates"])
    assert list(frame.columns) == [
        "policy", "estimator", "trigger", "value", "low", "high", "se", "n", "method",
    ]  # fmt: skip
    assert len(frame) == len(expected) > 0
    pd.testing.assert_frame_equal(frame, expected[frame.columns], check_exact=True)
    pd.testing.assert_frame_equal(
        result.gains_frame(), pd.DataFrame(printed["contrasts"]), check_exact=True
    )
    assert result.policies == tuple(printed["policies"])  # the CLI's default set for a table


def test_a_path_of_our_events_gives_the_cli_json_with_default_policies_and_gains(
    logs: Path,
) -> None:
    printed = cli_json(logs, "--events", "logs.jsonl")
    result = evaluate(logs / "logs.jsonl", config=logs / "config.yaml")
    assert as_cli_prints(result) == without_run_details(printed)
    assert {"personalized", "always-send(personalized)"} <= set(result.policies)
    gains = result.gains_frame()
    assert {"personalization", "targeting"} <= set(gains.loc[gains.kind == "gain", "name"])


def test_specs_gains_and_bootstrap_match_the_cli_given_the_same_flags(logs: Path) -> None:
    printed = cli_json(
        logs, "--table", "decisions.csv", "--policy", "uniform", "--policy", "best=best-per-trigger",
        "--gain", "best_vs_uniform", "best", "uniform", "--estimators", "SNIPS,DR",
        "--bootstrap", "30", "--seed", "4", "--confidence", "0.9", "--no-effects",
    )  # fmt: skip
    result = evaluate(
        logs / "decisions.csv", TRIGGER_LEVEL, gains=[("best_vs_uniform", "best", "uniform")],
        estimators="SNIPS,DR", interval="bootstrap", n_boot=30, seed=4, confidence=0.9,
        effects=False,
    )  # fmt: skip
    assert as_cli_prints(result) == without_run_details(printed)
    assert set(result.to_frame().method) == {"poisson-bootstrap"}  # tables stream


@pytest.mark.parametrize(
    "name", ["decisions.parquet", "decisions.csv", "decisions.dsjson", "decisions.json"]
)
def test_every_file_format_is_read_as_the_cli_reads_it_and_gives_the_events_numbers(
    logs: Path, name: str
) -> None:
    direct = evaluate(logs / "logs.jsonl", TRIGGER_LEVEL, estimators=["IPS", "DR"])
    other = evaluate(logs / name, TRIGGER_LEVEL, estimators=["IPS", "DR"])
    assert other.n_events == direct.n_events
    assert other.to_frame().value.tolist() == pytest.approx(
        direct.to_frame().value.tolist(), abs=1e-12
    )


def test_a_json_file_of_dsjson_is_recognised_and_format_overrides_the_guess(logs: Path) -> None:
    assert load_logs(logs / "decisions.json").source.endswith("decisions.json")
    with pytest.raises(Exception, match=re.escape("decisions.json line 1")):
        load_logs(logs / "decisions.json", format="events")


def test_logged_data_is_evaluated_as_given(logs: Path) -> None:
    data = load_logs(logs / "decisions.parquet")
    assert load_logs(data) is data
    assert evaluate(data, "uniform").policies == ("uniform",)


# ---- frames and plot ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def table_result(logs: Path) -> ReplayResult:
    return evaluate(
        pd.read_parquet(logs / "decisions.parquet"), ["logging", *TRIGGER_LEVEL],
        gains=[Gain("best_vs_uniform", "best", "uniform")],
    )  # fmt: skip


def test_frames_hold_one_row_per_estimate_contrast_and_policy(table_result: ReplayResult) -> None:
    r = table_result
    frame = r.to_frame()
    assert len(frame) == len(r.policies) * len(r.estimators) * (1 + len(r.triggers))
    row = frame[(frame.policy == "best") & (frame.estimator == "DR") & (frame.trigger == "*")]
    assert row.value.item() == r.estimate("best", "DR").value
    gains = r.gains_frame()
    gain = gains[(gains.name == "best_vs_uniform") & (gains.trigger == "*")]
    assert list(gain.estimator) == list(r.estimators) and set(gain["first"]) == {"best"}
    assert set(gains.kind) == {"gain", "effect"}
    diagnostics = r.diagnostics_frame()
    assert list(diagnostics.policy) == list(r.policies) and (diagnostics.ess > 0).all()


def test_frames_of_a_result_without_rows_still_have_their_columns() -> None:
    empty = ReplayResult("x", 1, {}, ("a",), ("t",), (), (), 0.95, (), ())
    assert list(empty.to_frame().columns)[:6] == [
        "policy",
        "estimator",
        "trigger",
        "value",
        "low",
        "high",
    ]
    assert "first" in empty.gains_frame().columns and empty.gains_frame().empty


def test_plot_is_one_svg_of_values_then_gains_that_jupyter_shows(
    table_result: ReplayResult,
) -> None:
    figure = table_result.plot()
    svg = figure._repr_svg_()
    root = ElementTree.fromstring(svg)  # noqa: S314 - our own SVG; well-formed, one document
    assert root.tag.endswith("svg") and len(root.findall("{http://www.w3.org/2000/svg}svg")) == 2
    text = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    for label in ("uniform", "best", "logging (IPS)", "best_vs_uniform", "Policy values", "Gains"):
        assert label in text
    heights = [float(h) for h in re.findall(r'<svg y="\d+"[^>]*? height="([\d.]+)"', svg)]
    assert float(root.get("height", "0")) == pytest.approx(sum(heights), abs=1)


def test_plot_of_one_trigger_and_estimator_and_saved(
    table_result: ReplayResult, tmp_path: Path
) -> None:
    trigger = table_result.triggers[0]
    figure = table_result.plot(estimators=["DR"], trigger=trigger)
    assert f"trigger {trigger}" in figure.svg and ">SNIPS<" not in figure.svg
    assert figure.save(tmp_path / "p.svg").read_text() == figure.svg


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"estimators": ["FOO"]}, r"estimator\(s\) \['FOO'\] not in the result"),
        ({"trigger": "nowhere"}, "trigger 'nowhere' not in the result; use '\\*'"),
    ],
)
def test_plot_refuses_what_the_result_does_not_have(
    table_result: ReplayResult, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        table_result.plot(**kwargs)


# ---- the public policy-spec parser ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("uniform", PolicySpec("uniform", "uniform")),
        (
            "old=best-per-trigger",
            PolicySpec("old=best-per-trigger", "best-per-trigger", name="old"),
        ),
        ("crossfit", PolicySpec("crossfit", "crossfit", mode="greedy")),
        (
            "progressive:greedy",
            PolicySpec("progressive:greedy", "progressive", "greedy", mode="greedy"),
        ),
        (
            "snapshot:snaps",
            PolicySpec("snapshot:snaps", "snapshot", "snaps", mode="pmf", path="snaps"),
        ),
        (
            "new=snapshot:a=b/snaps:deployed",
            PolicySpec(
                "new=snapshot:a=b/snaps:deployed",
                "snapshot",
                "a=b/snaps:deployed",
                "new",
                "deployed",
                "a=b/snaps",
            ),
        ),
        ("external:p.csv", PolicySpec("external:p.csv", "external", "p.csv", path="p.csv")),
        (
            "always-send:personalized",
            PolicySpec("always-send:personalized", "always-send", "personalized"),
        ),
    ],
)
def test_parse_policy_spec_reads_name_kind_mode_and_path(text: str, expected: PolicySpec) -> None:
    assert parse_policy_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("magic", "policy spec 'magic': unknown policy spec 'magic'; the kinds are listed in "
                  "`nudge replay --help` and `replay.policy_specs`"),
        ("=uniform", "policy spec '=uniform': the name before '=' is empty"),
        ("uniform:x", "policy spec 'uniform:x': uniform takes no argument; got 'x'"),
        ("crossfit:bogus", "policy spec 'crossfit:bogus': crossfit mode must be greedy or pmf; "
                           "got 'bogus'"),
        ("snapshot", "policy spec 'snapshot': snapshot needs an argument: snapshot:DIR"),
        ("snapshot::pmf", "policy spec 'snapshot::pmf': snapshot needs a directory: "
                          "snapshot:DIR[:MODE]"),
        ("external:", "policy spec 'external:': external needs an argument: external:FILE"),
        ("always-send:crossfit:x", "policy spec 'always-send:crossfit:x': crossfit mode must "
                                   "be greedy or pmf; got 'x'"),
    ],
)  # fmt: skip
def test_parse_policy_spec_names_the_spec_and_the_problem(text: str, message: str) -> None:
    with pytest.raises(PolicySpecError) as caught:
        parse_policy_spec(text)
    assert str(caught.value) == message
    assert isinstance(caught.value, UsageError) and isinstance(caught.value, ValueError)


def test_build_policies_without_specs_is_the_default_set_and_gains_of_the_log(logs: Path) -> None:
    config = load_config(None)
    table = build_policies(None, load_logs(logs / "decisions.parquet"), config)
    assert table.names == (
        "logging", "uniform", "random-message", "never-send", "best-uniform", "best-per-trigger",
    )  # fmt: skip
    assert table.gains == ()  # no contexts, so no personalized policy to gain from
    events = build_policies([], load_logs(logs / "logs.jsonl"), config)
    assert events.names[-2:] == ("personalized", "always-send(personalized)")
    assert [g.name for g in events.gains] == ["personalization", "targeting"]


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["uniform", "uniform"], "policy spec 'uniform': a candidate named 'uniform' is already "
                                 "there; rename one (NAME=SPEC)"),
        (["always-send:mine"], "policy spec 'always-send:mine': 'mine' is neither a candidate "
                               "listed before it (none) nor a policy spec"),
        (["external:nowhere.jsonl"], "policy spec 'external:nowhere.jsonl': nowhere.jsonl: no "
                                     "such file"),
    ],
)  # fmt: skip
def test_build_policies_names_the_spec_that_cannot_be_built(
    logs: Path, specs: list[str], message: str
) -> None:
    with pytest.raises(PolicySpecError) as caught:
        build_policies(specs, load_logs(logs / "decisions.parquet"), load_config(None))
    assert str(caught.value).startswith(message)


def test_always_send_takes_a_candidate_listed_before_it_or_a_spec(logs: Path) -> None:
    data = load_logs(logs / "decisions.parquet")
    built = build_policies(["mine=best-message", "always-send:mine", "always-send:uniform"],
                           data, load_config(None))  # fmt: skip
    assert built.names == ("mine", "always-send(mine)", "always-send(uniform)")


# ---- bad arguments, and nothing loaded at import ----------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"estimators": "IPS,FOO"}, ValueError, r"unknown estimator\(s\) \['FOO'\]"),
        ({"confidence": 2.0}, ValueError, "confidence must be between 0 and 1, got 2.0"),
        ({"clip": -1.0}, ValueError, "clip must be a finite number > 0, got -1.0"),
        ({"folds": 1}, ValueError, "folds must be at least 2, got 1"),
        ({"n_boot": 0}, ValueError, "n_boot must be at least 1, got 0"),
        ({"policies": ["thompson"]}, PolicySpecError, "unknown policy spec 'thompson'"),
    ],
)
def test_evaluate_refuses_bad_arguments_naming_them(
    logs: Path, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        evaluate(logs / "decisions.parquet", **kwargs)


def test_evaluate_of_a_missing_file_or_a_directory_says_so(logs: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape("nowhere.parquet: no such file")):
        evaluate(logs / "nowhere.parquet")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        evaluate(logs)


def test_importing_a_replay_module_loads_neither_the_notebook_api_nor_pandas() -> None:
    code = (
        "import sys, replay.estimators; print(sorted({'replay.api', 'pandas'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- the README example, run as written ----------------------------------------------------


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Replay in a notebook", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "README: no python block under 'Replay in a notebook'"
    return match.group(1)


def test_the_readme_notebook_example_runs_as_written(
    logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(logs)
    namespace: dict[str, Any] = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)  # noqa: S102 - our README
    result, table = namespace["result"], namespace["table"]
    assert isinstance(result, ReplayResult) and "personalized" in result.policies
    assert {"personalization", "targeting"} <= set(result.gains_frame().name)
    assert table.policies == ("uniform", "best") and table.estimators == ("SNIPS", "DR")
    assert all(math.isfinite(v) for v in table.to_frame().value)
