"""The report in words: which estimator to read, the headline sentences, and a glossary.

Shared by the console and the HTML report, so both say the same thing. Pure functions of a
`ReplayResult`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from replay.report_svg import ABOVE, BELOW, sign_mark
from replay.results import ALL_TRIGGERS, Contrast, EstimateRow, ReplayResult

LOGGING_POLICY = "logging"  # the policy whose value the headline quotes, if present
NOT_A_CANDIDATE = "n/a"
BEST = "★"
FLAG = "!"

# Read first: unbiased given the logged probabilities and narrowed by the reward model; then
# the self-normalized IPS the push-nudge study used; DM last (biased when a policy varies
# within a trigger, since its reward model sees only the trigger).
PREFERENCE = ("DR", "SNIPS", "DRos", "IPS", "DM")
ESTIMATOR_MEANING = {
    "IPS": "inverse propensity scoring: each logged reward reweighted by how much more often the "
    "policy picks the logged action; unbiased, but noisy",
    "SNIPS": "self-normalized IPS: steadier than IPS, unbiased as the log grows",
    "DM": "direct method: a reward model's predictions; the model sees only the trigger, so DM "
    "is biased for policies that choose per person",
    "DR": "doubly robust: DM corrected by IPS on what was logged; unbiased, and usually the "
    "narrowest unbiased interval",
    "DRos": "DR with its large weights shrunk (Su et al. 2020): a little bias for less noise",
}
_WHY = {
    "DR": "it is unbiased given the logged probabilities and its reward model narrows the "
    "intervals",
    "SNIPS": "it is unbiased as the log grows and steadier than IPS (DR was not run)",
    "DRos": "it trades a little bias for less noise (DR and SNIPS were not run)",
    "IPS": "it is unbiased given the logged probabilities (DR and SNIPS were not run)",
    "DM": "it was the only estimator run; DM is biased for policies that choose per person",
}
MARKERS = (
    (BEST, "the best policy by the estimator shown"),
    (ABOVE, "the interval lies above 0: a significant gain"),
    (BELOW, "the interval lies below 0: a significant loss"),
    (NOT_A_CANDIDATE, "no estimate: the message was not a candidate at that trigger"),
    (FLAG, "the policy has warnings (see the overlap diagnostics)"),
)
GAIN_MEANING = {
    "personalization": "what choosing per person earns over the best single action for everyone",
    "targeting": "what not nudging some people earns over nudging everyone",
}
_HALVES = "picked on part of the log and scored on the rest (cross-fitting)"
_POLICY_MEANING = {
    "logging": "the policy that made the logged decisions",
    "uniform": "every candidate action equally often, sending nothing included",
    "random-message": "a random message every time, never nothing",
    "never-send": "always sends nothing (the baseline of each message's effect)",
    "best-uniform": f"the single action (a message or nothing) that did best overall, for everyone; "
    f"{_HALVES}",
    "best-message": f"the single message that did best overall, for everyone; {_HALVES}",
    "best-per-trigger": f"the single action that did best at each trigger; {_HALVES}",
    "personalized": "Vowpal Wabbit (the config's learner) choosing per person from the context; "
    "trained on part of the log and scored on the rest (cross-fitting)",
}
_PATTERNS = (
    (
        re.compile(r"always-send\((?P<base>.+)\)"),
        "{base}, but sending a message wherever {base} would send nothing",
    ),
    (
        re.compile(r"crossfit-vw:(?P<mode>\w+)"),
        "Vowpal Wabbit (the config's learner) trained on part of the log and scored on the rest "
        "({mode})",
    ),
    (
        re.compile(r"progressive-vw:(?P<mode>\w+)"),
        "Vowpal Wabbit trained on the log itself, each decision predicted before it is learned "
        "({mode})",
    ),
    (
        re.compile(r"best-uniform-(?P<what>messages-per-trigger|messages|per-trigger)"),
        f"the single best action ({{what}}); {_HALVES}",
    ),
)
_OTHER = "a candidate named on the command line (--policy NAME=SPEC)"


@dataclass(frozen=True)
class Sentence:
    """A headline sentence: a short lead ("Best policy") and what follows it."""

    lead: str
    text: str


def recommended(result: ReplayResult) -> str:
    """The estimator the overview shows: the first of `PREFERENCE` that was run."""
    for name in PREFERENCE:
        if name in result.estimators:
            return name
    return result.estimators[0] if result.estimators else ""


def why(estimator: str) -> str:
    """Why the overview shows this estimator, in a clause."""
    return _WHY.get(estimator, "it was the first estimator run")


def policy_meaning(name: str) -> str:
    """What a candidate policy named ``name`` is, in a sentence (derived names included)."""
    if name in _POLICY_MEANING:
        return _POLICY_MEANING[name]
    for pattern, text in _PATTERNS:
        found = pattern.fullmatch(name)
        if found:
            return text.format(**found.groupdict())
    return _OTHER


Terms = tuple[tuple[str, str], ...]  # (term, meaning) pairs


def glossary(result: ReplayResult) -> tuple[tuple[str, Terms], ...]:
    """The terms of this result by group: policies, gains and effects, estimators, marks."""
    contrasts: list[tuple[str, str]] = []
    gains = {c.name: c for c in result.contrasts if c.kind == "gain"}
    for name, c in gains.items():
        meaning = f"{c.first} − {c.second}"
        contrasts.append(
            (name, meaning + (f": {GAIN_MEANING[name]}" if name in GAIN_MEANING else ""))
        )
    if any(c.kind == "effect" for c in result.contrasts):
        contrasts.append(
            ("effect", "always sending a message minus sending nothing, where both were candidates")
        )
    groups = (
        ("Policies", tuple((p, policy_meaning(p)) for p in result.policies)),
        ("Gains and effects", tuple(contrasts)),
        (
            "Estimators",
            tuple((e, ESTIMATOR_MEANING[e]) for e in result.estimators if e in ESTIMATOR_MEANING),
        ),
        ("Marks", _marks_used(result)),
    )
    return tuple((title, terms) for title, terms in groups if terms)


def _marks_used(result: ReplayResult) -> Terms:
    """The marks this result's tables can show."""
    used = {BEST}
    if result.contrasts:
        used |= {ABOVE, BELOW}
    if any(c.kind == "effect" for c in result.contrasts):
        used.add(NOT_A_CANDIDATE)
    if any(d.warnings for d in result.diagnostics):
        used.add(FLAG)
    return tuple((mark, meaning) for mark, meaning in MARKERS if mark in used)


def fmt_interval(row: EstimateRow | Contrast, *, signed: bool = False) -> str:
    """``value [low, high]`` with 4 decimals (signed for differences)."""
    f = "+.4f" if signed else ".4f"
    return f"{row.value:{f}} [{row.low:{f}}, {row.high:{f}}]"


def overall(result: ReplayResult, estimator: str) -> dict[str, EstimateRow]:
    """Every policy's overall row by ``estimator``."""
    return {
        r.policy: r
        for r in result.estimates
        if r.trigger == ALL_TRIGGERS and r.estimator == estimator
    }


def best_policies(rows: dict[str, EstimateRow]) -> list[str]:
    """The policies with the highest finite value (all of them on a tie), in row order."""
    values = {p: r.value for p, r in rows.items() if math.isfinite(r.value)}
    if not values:
        return []
    top = max(values.values())
    return [p for p, v in values.items() if v == top]


def headline(result: ReplayResult) -> tuple[Sentence, ...]:
    """What a reader needs first: the best policy, each gain with its interval and verdict,
    what each message does, which estimator this is and why, and whether to be cautious."""
    estimator = recommended(result)
    rows = overall(result, estimator)
    best = best_policies(rows)
    if not best:
        return (Sentence("No estimate", "no policy could be estimated on this log."),)
    out = [_best_sentence(rows, best, estimator)]
    out += [
        _gain_sentence(c, result.confidence)
        for c in result.contrasts
        if c.kind == "gain" and c.trigger == ALL_TRIGGERS and c.estimator == estimator
    ]
    effects = [
        c
        for c in result.contrasts
        if c.kind == "effect" and c.trigger == ALL_TRIGGERS and c.estimator == estimator
    ]
    if effects:
        out.append(_effects_sentence(effects))
    out.append(_estimator_sentence(result, estimator, best))
    warned = [d.policy for d in result.diagnostics if d.warnings]
    if warned:
        out.append(
            Sentence(
                "Caution",
                f"{_count(len(warned), 'policy', 'policies')} "
                f"{_verb(warned, 'carries', 'carry')} warnings "
                f"({_names(warned)}); see the overlap diagnostics.",
            )
        )
    return tuple(out)


def _best_sentence(rows: dict[str, EstimateRow], best: list[str], estimator: str) -> Sentence:
    top = rows[best[0]]
    who = best[0] if len(best) == 1 else f"{_names(best)} (tied)"
    text = f"{who} earns {fmt_interval(top)} reward per decision by {estimator}"
    others = sorted(
        (r for p, r in rows.items() if p not in best and math.isfinite(r.value)),
        key=lambda r: -r.value,
    )
    if others:
        text += f"; runner-up {others[0].policy}, {fmt_interval(others[0])}"
    logged = rows.get(LOGGING_POLICY)
    runner_up = others[0].policy if others else ""
    if logged is not None and LOGGING_POLICY not in best and runner_up != LOGGING_POLICY:
        text += f"; the logging policy earned {fmt_interval(logged)}"
    lead = "Best policy" if len(best) == 1 else "Best policies"
    return Sentence(lead, text + ".")


def _gain_sentence(c: Contrast, confidence: float) -> Sentence:
    mark = sign_mark(c.low, c.high)
    if mark == ABOVE:
        verdict = f"significant: {c.first} earns more than {c.second}"
    elif mark == BELOW:
        verdict = f"a significant loss: {c.first} earns less than {c.second}"
    else:
        verdict = f"not significant: the {confidence:.0%} interval includes 0"
    text = f"{fmt_interval(c, signed=True)} per decision ({c.first} − {c.second}), {verdict}."
    return Sentence(f"{c.name[:1].upper()}{c.name[1:]} gain", text)


def _effects_sentence(effects: Sequence[Contrast]) -> Sentence:
    groups: dict[str, list[str]] = {ABOVE: [], BELOW: [], "": []}
    for c in effects:
        groups[sign_mark(c.low, c.high)].append(f"{c.first} {c.value:+.4f}")
    parts = []
    if groups[ABOVE]:
        parts.append(f"{_names(groups[ABOVE])} {_verb(groups[ABOVE], 'helps', 'help')}")
    if groups[BELOW]:
        parts.append(f"{_names(groups[BELOW])} {_verb(groups[BELOW], 'hurts', 'hurt')}")
    text = "; ".join(parts) + " (significant)" if parts else "no message differs significantly"
    if groups[""]:
        text += f"; not significant: {_names(groups[''])}"
    return Sentence("Each message vs sending nothing", text + ".")


def _estimator_sentence(result: ReplayResult, estimator: str, best: list[str]) -> Sentence:
    text = f"{estimator}, because {why(estimator)}."
    agree, differ = [], []
    for other in result.estimators:
        if other == estimator:
            continue
        theirs = best_policies(overall(result, other))
        if theirs[:1] == best[:1]:
            agree.append(other)
        elif theirs:
            differ.append(f"{other} ranks {theirs[0]} first")
    if agree:
        text += f" {_names(agree)} also {_verb(agree, 'ranks', 'rank')} {best[0]} first."
    if differ:
        text += f" {'; '.join(differ)} (see the appendix)."
    return Sentence("Estimator", text)


def _names(items: Sequence[str]) -> str:
    """a; a and b; a, b and c."""
    if len(items) <= 2:
        return " and ".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def _verb(items: Sequence[str], one: str, many: str) -> str:
    return one if len(items) == 1 else many


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"
