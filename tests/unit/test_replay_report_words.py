"""The report in words: the recommended estimator, the headline's sentences and verdicts, and
the glossary of policy names."""

from __future__ import annotations

from dataclasses import replace

import pytest

from replay.report import console_table, html_report
from replay.report_words import glossary, headline, policy_meaning, recommended
from replay.results import ALL_TRIGGERS, Contrast, ReplayResult
from tests.unit.replay_report_fixtures import replay_result


def _sentences(result: ReplayResult) -> dict[str, str]:
    return {s.lead: s.text for s in headline(result)}


def _with_gain(result: ReplayResult, low: float, high: float) -> ReplayResult:
    """``result`` whose overall DR personalization gain has the interval [low, high]."""
    contrasts = tuple(
        replace(c, value=(low + high) / 2, low=low, high=high)
        if (c.name, c.estimator, c.trigger) == ("personalization", "DR", ALL_TRIGGERS)
        else c
        for c in result.contrasts
    )
    return replace(result, contrasts=contrasts)


@pytest.mark.parametrize(
    ("estimators", "expected"),
    [
        (("IPS", "SNIPS", "DM", "DR", "DRos"), "DR"),
        (("IPS", "SNIPS", "DM"), "SNIPS"),
        (("DM", "DRos", "IPS"), "DRos"),
        (("DM", "IPS"), "IPS"),
        (("DM",), "DM"),
    ],
)
def test_the_overview_reads_dr_then_snips_then_dros_then_ips_then_dm(
    estimators: tuple[str, ...], expected: str
) -> None:
    assert recommended(replay_result(estimators=estimators)) == expected


def test_the_headline_comes_first_and_names_the_best_policy_with_its_interval() -> None:
    result = replay_result()
    text = console_table(result)
    assert text.splitlines()[2] == "Headline (DR, 95% intervals)"
    best = result.estimate("personalized", "DR")  # the fixture's best of the default policies
    assert _sentences(result)["Best policy"] == (
        f"personalized earns {best.value:.4f} [{best.low:.4f}, {best.high:.4f}] reward per "
        "decision by DR; runner-up always-send(personalized), 0.1360 [0.1160, 0.1560]; the "
        "logging policy earned -0.1740 [-0.1940, -0.1540]."
    )
    html = html_report(result)
    assert html.index('class="headline"') < html.index("<table")


def test_the_headline_says_why_this_estimator_and_which_others_disagree() -> None:
    result = replay_result(estimators=("IPS", "DM", "DR"))
    rows = tuple(
        replace(r, value=9.0) if (r.policy, r.estimator) == ("best-per-trigger", "DM") else r
        for r in result.estimates
    )
    text = _sentences(replace(result, estimates=rows))["Estimator"]
    assert text == (
        "DR, because it is unbiased given the logged probabilities and its reward model narrows "
        "the intervals. IPS also ranks personalized first. DM ranks best-per-trigger first (see "
        "the appendix)."
    )


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [
        (0.01, 0.05, "significant: personalized earns more than best-uniform."),
        (-0.05, -0.01, "a significant loss: personalized earns less than best-uniform."),
        (-0.01, 0.05, "not significant: the 95% interval includes 0."),
    ],
)
def test_each_gain_is_given_with_its_interval_and_whether_it_is_significant(
    low: float, high: float, verdict: str
) -> None:
    text = _sentences(_with_gain(replay_result(), low, high))["Personalization gain"]
    mid = (low + high) / 2
    assert text == (
        f"{mid:+.4f} [{low:+.4f}, {high:+.4f}] per decision (personalized − best-uniform), "
        + verdict
    )


def test_tied_best_policies_are_all_named() -> None:
    result = replay_result(policies=("never-send", "best-uniform", "uniform"))
    rows = tuple(
        replace(r, value=0.0, low=0.0, high=0.0) if r.policy != "uniform" else r
        for r in result.estimates
    )
    result = replace(result, estimates=rows)
    assert "Best policies" in _sentences(result)
    assert _sentences(result)["Best policies"].startswith("never-send and best-uniform (tied)")


def test_the_headline_sorts_messages_into_helping_hurting_and_not_significant() -> None:
    text = _sentences(replay_result())["Each message vs sending nothing"]
    assert text.startswith("next_item +0.2000, encourage +0.1300 and peer_norm +0.0600 help; ")
    assert "review_notes.v1 -0.0800 and review_notes.v2 -0.1500 hurt (significant)" in text
    assert text.endswith("not significant: hint -0.0100.")


def test_a_result_without_estimates_says_so_instead_of_a_headline() -> None:
    empty = replace(replay_result(), estimates=(), contrasts=())
    assert [(s.lead, s.text) for s in headline(empty)] == [
        ("No estimate", "no policy could be estimated on this log.")
    ]


@pytest.mark.parametrize(
    ("name", "starts"),
    [
        ("best-uniform", "the single action (a message or nothing) that did best overall"),
        ("always-send(personalized)", "personalized, but sending a message wherever personalized"),
        ("always-send(progressive-vw:pmf)", "progressive-vw:pmf, but sending a message wherever"),
        ("crossfit-vw:pmf", "Vowpal Wabbit (the config's learner) trained on part of the log"),
        ("best-uniform-messages-per-trigger", "the single best action (messages-per-trigger)"),
        ("my-policy", "a candidate named on the command line (--policy NAME=SPEC)"),
    ],
)
def test_the_glossary_explains_standard_and_derived_policy_names(name: str, starts: str) -> None:
    assert policy_meaning(name).startswith(starts)


def test_the_glossary_lists_the_result_s_policies_gains_estimators_and_marks() -> None:
    groups = dict(glossary(replay_result(estimators=("SNIPS", "DR"))))
    assert [t for t, _ in groups["Policies"]] == list(replay_result().policies)
    gains = dict(groups["Gains and effects"])
    assert gains["targeting"].startswith("personalized − always-send(personalized): what not")
    assert [t for t, _ in groups["Estimators"]] == ["SNIPS", "DR"]
    assert [t for t, _ in groups["Marks"]] == ["★", "▲", "▼", "n/a", "!"]


def test_the_glossary_explains_only_the_marks_the_tables_can_show() -> None:
    result = replay_result()
    bare = replace(result, contrasts=(), diagnostics=())
    assert [t for t, _ in dict(glossary(bare))["Marks"]] == ["★"]


def test_a_custom_gain_is_defined_by_its_two_policies() -> None:
    result = replay_result()
    extra = Contrast(
        "gain", "new_vs_logged", "personalized", "logging", ALL_TRIGGERS, "DR",
        0.2, 0.1, 0.3, 0.05, 20_000, "normal",
    )  # fmt: skip
    gains = dict(
        dict(glossary(replace(result, contrasts=(*result.contrasts, extra))))["Gains and effects"]
    )
    assert gains["new_vs_logged"] == "personalized − logging"
