"""`nudge replay --tune` on another system's log of the push-nudge study (foreign namespace
names, no `_id`s, its own send-nothing id): the settings search runs without config edits,
the personalized policy it tunes out of sample is not estimated below the best single message
(the study's truth: personalization gains +0.059 logins per push), and the snippet it prints
configures the winning settings."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import yaml
from foreign_push_logs import FOREIGN_NONE, write_push_logs
from test_cli_replay import nudge

from bandit.config import parse_config
from replay.tuning import config_setting

PUSHES, SEED = 10_000, 5  # the study at a size where VW can learn who each message suits


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`nudge replay --tune --json` on the study as another system logged it."""
    workdir = write_push_logs(tmp_path_factory.mktemp("tune"), PUSHES, SEED)
    done = nudge(
        "replay", "--dsjson", "foreign.dsjson", "--none-action", FOREIGN_NONE, "--tune",
        "--no-triggers", "--json", "--quiet", cwd=workdir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = orjson.loads(done.stdout)
    return result


def _dr(result: dict[str, Any], policy: str) -> float:
    (value,) = (
        r["value"]
        for r in result["estimates"]
        if r["policy"] == policy and r["estimator"] == "DR" and r["trigger"] == "*"
    )
    return float(value)


def test_the_tuned_personalized_policy_is_not_estimated_below_the_best_single_message(
    tuned: dict[str, Any],
) -> None:
    assert _dr(tuned, "personalized") >= _dr(tuned, "best-uniform")
    (gain,) = (
        c
        for c in tuned["contrasts"]
        if c["name"] == "personalization" and c["estimator"] == "DR" and c["trigger"] == "*"
    )
    assert gain["low"] > 0  # significant, as the truth says


def test_tune_reports_every_trial_and_the_best_with_its_interval(tuned: dict[str, Any]) -> None:
    tuning = tuned["tuning"]
    values = [t["value"] for t in tuning["trials"]]
    assert len(values) >= 8 and tuning["best"]["value"] == max(values)
    best = tuning["best"]
    assert best["low"] < best["value"] < best["high"]
    assert tuning["start"] in {t["setting"] for t in tuning["trials"]}


def test_the_printed_snippet_configures_the_winning_settings_for_the_logs_namespaces(
    tuned: dict[str, Any],
) -> None:
    learner = yaml.safe_load(tuned["tuning"]["config_snippet"])["learner"]
    deployed = parse_config({"learner": learner}).learner
    assert set(deployed.namespaces) == {"Parent", "Request"}
    assert config_setting(deployed).label() == tuned["tuning"]["best"]["setting"]
