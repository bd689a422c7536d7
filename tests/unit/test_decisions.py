"""Acceptance tests of the decision library (`bandit.decisions`), on real Vowpal Wabbit models.

The central promise: the probability a decision logs is the probability with which it was
really drawn, under the whole mixture (forced share, cold start, versions, VW's exploration or
the send rule). The propensity tests check it by the frequencies of 100,000 decisions per rule.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from decision_fixtures import (
    FINAL_PASSED,
    LEARNER_ID,
    LECTURE_COMPLETED,
    QUIZ_FAILED,
    T0,
    WARM,
    WHYS,
    Draws,
    Rule,
    candidates,
    context,
    draw_decisions,
    joined_events,
    make_config,
    publish,
    train,
)
from propensity_checks import assert_binomial, assert_frequencies_match

from bandit.config import Config, DecisionRuleConfig, DecisionsConfig
from bandit.decisions import Decider, Decision
from bandit.errors import NudgeError, SnapshotError
from bandit.events import Impression, decode_event
from bandit.learning import OnlineLearner
from bandit.snapshots import LATEST, MANIFEST, load_snapshot

NONE = "none"
INACTIVE = "A/week-2/inactive-7d"
N_DECISIONS = 100_000

EPSILON = {"algorithm": "epsilon", "epsilon": 0.2}
SOFTMAX = {"algorithm": "softmax", "lambda": 5.0}

# One rule per VW exploration algorithm, plus the mixtures: forced share (epsilon, bag),
# versions all (epsilon) vs best (softmax), cold start, and the send rule.
# About 8 rules x 100,000 decisions at ~0.1 ms each: run on two worker processes.
RULES = [
    pytest.param(
        Rule("epsilon", EPSILON, {"forced_share": 0.1, "versions": "all"}, QUIZ_FAILED),
        id="epsilon-forced_share-versions_all",
    ),
    pytest.param(
        Rule("softmax", SOFTMAX, {"forced_share": 0.0, "versions": "best"}, QUIZ_FAILED),
        id="softmax-versions_best",
    ),
    pytest.param(
        Rule(
            "bag", {"algorithm": "bag", "bags": 4, "epsilon": 0.1}, {"forced_share": 0.05}, INACTIVE
        ),
        id="bag-forced_share",
    ),
    pytest.param(
        Rule(
            "cover",
            {"algorithm": "cover", "policies": 3, "psi": 1.0},
            {"forced_share": 0.0},
            LECTURE_COMPLETED,
        ),
        id="cover",
    ),
    pytest.param(
        Rule("squarecb", {"algorithm": "squarecb"}, {"forced_share": 0.0}, LECTURE_COMPLETED),
        id="squarecb",
    ),
    pytest.param(
        Rule(
            "rnd",
            {"algorithm": "rnd", "networks": 3, "alpha": 0.1, "epsilon": 0.05},
            {"forced_share": 0.0},
            FINAL_PASSED,
        ),
        id="rnd",
    ),
    pytest.param(
        Rule(
            "cold_start",
            EPSILON,
            {"forced_share": 0.1, "cold_start_outcomes": 3},
            QUIZ_FAILED,
            reactions=2,
        ),
        id="cold_start-forced_share",
    ),
    # The send rule predicts each candidate separately: a trigger with few candidates keeps
    # it fast; versions under the send rule are tested on quiz-failed further down.
    pytest.param(
        Rule(
            "send_rule",
            EPSILON,
            {
                "policy": "send_rule",
                "forced_share": 0.1,
                "send_rule_epsilon": 0.2,
                "send_margin": -0.2,
            },
            FINAL_PASSED,
            outcome_model=True,
        ),
        id="send_rule-forced_share",
    ),
]


# ---- the pmf each rule should give, written out from DecisionRuleConfig's docstring -------------


def group_of(action_id: str) -> str:
    return action_id.rsplit(".", 1)[0]


def onto_best_versions(pmf: np.ndarray, ids: Sequence[str], rank: np.ndarray) -> np.ndarray:
    """Each message's mass on its best-ranked version (the first listed of equals)."""
    out = np.zeros_like(pmf)
    for group in dict.fromkeys(group_of(a) for a in ids):
        members = [i for i, a in enumerate(ids) if group_of(a) == group]
        best = members[int(np.argmax(rank[members]))]
        out[best] = pmf[members].sum()
    return out


def send_rule_component(
    ids: Sequence[str], outcomes: np.ndarray, rule: DecisionRuleConfig
) -> np.ndarray:
    """Send the most helpful message iff P(helpful) beats both others by the margin."""
    messages = [i for i, a in enumerate(ids) if a != NONE]
    best = max(messages, key=lambda i: outcomes[i, 0])
    helpful, not_helpful, ignored = outcomes[best]
    send = NONE not in ids or helpful - max(not_helpful, ignored) > rule.send_margin
    choice = best if send else ids.index(NONE)
    q = np.full(len(ids), rule.send_rule_epsilon / len(ids))
    q[choice] += 1.0 - rule.send_rule_epsilon
    if rule.versions == "best":
        q = onto_best_versions(q, ids, np.where([a != NONE for a in ids], outcomes[:, 0], -1.0))
    return q


def expected_pmf(
    ids: Sequence[str],
    rule: DecisionRuleConfig,
    *,
    cold: bool,
    policy_pmf: np.ndarray | None = None,
    outcomes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(q, p): the policy component and p = f * U_messages + (1 - f) * q.

    VW's float32 pmf may miss 1 by ~1e-7, so p is renormalised after mixing, as documented.
    """
    messages = np.array([a != NONE for a in ids], dtype=float)
    uniform = messages / messages.sum()
    if cold:
        q = uniform
    elif rule.policy == "send_rule":
        assert outcomes is not None
        q = send_rule_component(ids, outcomes, rule)
    else:
        assert policy_pmf is not None
        q = policy_pmf
        if rule.versions == "best":
            q = onto_best_versions(q, ids, q)
    f = rule.forced_share
    p = f * uniform + (1.0 - f) * q
    return q / q.sum(), p / p.sum()


# ---- a. propensities: observed frequencies match the logged pmf ---------------------------------


@pytest.fixture(scope="module")
def draws(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Draws]]]:
    """The selected rules' decisions, all started at once on two worker processes.

    8 rules x 100,000 decisions at ~0.1 ms each is ~80 s of CPU: two fresh interpreters
    (spawn: no VW state or threads inherited) halve the wall time on two cores.
    """
    wanted = {
        item.callspec.params["rule"].name
        for item in request.session.items
        if getattr(item, "module", None) is request.module
        and getattr(item, "originalname", "")
        == "test_logged_probabilities_are_the_real_sampling_frequencies"
    }
    rules = [p.values[0] for p in RULES if p.values[0].name in wanted]
    root = tmp_path_factory.mktemp("propensity")
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool:
        yield {
            r.name: pool.submit(draw_decisions, r, str(root / r.name), N_DECISIONS) for r in rules
        }


@pytest.mark.parametrize("rule", RULES)
def test_logged_probabilities_are_the_real_sampling_frequencies(
    rule: Rule, draws: dict[str, Future[Draws]]
) -> None:
    d = draws[rule.name].result()
    config = make_config(rule.exploration, outcome_model=rule.outcome_model, rule=rule.rule)
    decision_rule = config.decisions.rule_for(rule.trigger)
    cold = rule.reactions < decision_rule.cold_start_outcomes
    counts = d.counts.sum(axis=1)
    assert counts.sum() == N_DECISIONS

    # every call reports one pmf, and each decision's probability is its action's entry
    assert len(d.pmfs) == 1
    (pmf_tuple,) = d.pmfs
    pmf = np.array(pmf_tuple)
    assert d.mismatched_probabilities == 0
    assert pmf.sum() == pytest.approx(1.0, abs=1e-12)

    # ...which is the documented mixture of what the trained models predict
    q, p = expected_pmf(
        d.actions, decision_rule, cold=cold, policy_pmf=d.policy_pmf, outcomes=d.outcomes
    )
    np.testing.assert_allclose(pmf, p, rtol=0, atol=1e-12)

    # the actions are drawn with exactly those probabilities
    assert_frequencies_match(counts, pmf)

    # the reason each decision gives is right, and so is how often it is given
    by_why = dict(zip(WHYS, d.counts.sum(axis=0).tolist(), strict=True))
    f = decision_rule.forced_share
    assert_binomial(by_why["forced"], N_DECISIONS, f)
    if cold:
        assert by_why["exploit"] == by_why["explore"] == 0
        assert by_why["cold_start"] == N_DECISIONS - by_why["forced"]
    else:
        assert by_why["cold_start"] == 0
        best = int(np.argmax(q))
        assert_binomial(by_why["exploit"], N_DECISIONS, (1.0 - f) * q[best])
        exploit = d.counts[:, WHYS.index("exploit")]
        assert exploit[best] == exploit.sum()  # "exploit" only ever names the policy's best

    # forced decisions are uniform over the messages, never "send nothing"
    forced = d.counts[:, WHYS.index("forced")]
    if f > 0.0:
        messages = np.array([a != NONE for a in d.actions], dtype=float)
        assert_frequencies_match(forced, messages / messages.sum())


def test_the_propensity_rules_cover_every_exploration_algorithm_and_mixture() -> None:
    rules = [p.values[0] for p in RULES]
    algorithms = {r.exploration["algorithm"] for r in rules}
    assert algorithms == {"epsilon", "softmax", "bag", "cover", "squarecb", "rnd"}
    assert any(r.rule.get("forced_share", 0.1) > 0 for r in rules)
    assert any(r.rule.get("cold_start_outcomes", 0) > r.reactions for r in rules)
    assert any(r.rule.get("policy") == "send_rule" for r in rules)
    used = {(r.rule.get("versions", "best"), r.trigger) for r in rules}
    assert {("all", QUIZ_FAILED), ("best", QUIZ_FAILED)} <= used  # the trigger with versions


# ---- shared policies of the other tests ---------------------------------------------------------


@pytest.fixture(scope="module")
def softmax_config() -> Config:
    return make_config(SOFTMAX, rule={"forced_share": 0.1, "cold_start_outcomes": 1})


@pytest.fixture(scope="module")
def softmax_learner(softmax_config: Config) -> Iterator[OnlineLearner]:
    learner = train(softmax_config, joined_events())
    yield learner
    learner.close()


@pytest.fixture(scope="module")
def softmax_snapshots(
    tmp_path_factory: pytest.TempPathFactory, softmax_config: Config, softmax_learner: OnlineLearner
) -> Path:
    directory = tmp_path_factory.mktemp("softmax")
    publish(softmax_config, softmax_learner, directory)
    return directory


def no_mixture(**changes: Any) -> DecisionsConfig:
    """Rules under which a warm decision's pmf is the policy's own: no forced share, all versions."""
    rule = DecisionRuleConfig.model_validate({"forced_share": 0.0, "versions": "all", **changes})
    return DecisionsConfig(default=rule)


# ---- b. round trip: the decider serves exactly what the learner learned -------------------------

PROBES = [
    (learner, trigger)
    for learner in (3, 11, 4000)
    for trigger in (QUIZ_FAILED, LECTURE_COMPLETED, INACTIVE, FINAL_PASSED, "C/quiz-3/quiz-failed")
]


@pytest.mark.parametrize("scope", ["global", "per_trigger"])
@pytest.mark.parametrize("exploration", [SOFTMAX, EPSILON], ids=["softmax", "epsilon"])
def test_decider_serves_exactly_the_pmf_of_the_learner_that_wrote_the_snapshot(
    tmp_path: Path, scope: str, exploration: dict[str, Any]
) -> None:
    config = make_config(exploration, scope=scope)
    learner = train(config, joined_events())
    try:
        publish(config, learner, tmp_path)
        with Decider(tmp_path, seed=1, rules=no_mixture()) as decider:
            assert decider.policy.scope == scope
            seen = set()
            for who, trigger in PROBES:
                ids, feats = candidates(learner, trigger)
                ctx = context(who, trigger)
                expected = learner.predict(trigger, ctx, ids, feats)

                served = decider.policy.policy_pmf(trigger, ctx, ids, feats)
                np.testing.assert_allclose(served, expected, rtol=0, atol=1e-9)
                decision = decider.decide(trigger, LEARNER_ID, ctx, reactions=WARM)
                assert decision.actions == ids
                # VW's float32 pmf can miss 1 by ~1e-7; the logged pmf is it renormalised
                np.testing.assert_allclose(
                    decision.pmf, expected / expected.sum(), rtol=0, atol=1e-9
                )
                np.testing.assert_allclose(decision.pmf, expected, rtol=0, atol=1e-6)
                seen.add(tuple(np.round(expected, 6)))
    finally:
        learner.close()
    # the probes see different pmfs, so agreeing on each of them means something
    assert len(seen) >= len(PROBES) // 2


def test_per_trigger_decider_is_uniform_where_no_policy_was_trained(tmp_path: Path) -> None:
    config = make_config(SOFTMAX, scope="per_trigger")
    learner = train(config, joined_events()[:500])
    try:
        publish(config, learner, tmp_path)
        ids = ("hint", "encourage", NONE)
        feats = ({"kind": "hint"}, {"kind": "encourage"}, {"kind": "none"})
        ctx = context(3, QUIZ_FAILED)
        expected = learner.predict("Z/new/trigger", ctx, ids, feats)
        with Decider(tmp_path, seed=1, rules=no_mixture()) as decider:
            decision = decider.decide("Z/new/trigger", LEARNER_ID, ctx, ids, reactions=WARM)
            served = decider.policy.policy_pmf("Z/new/trigger", ctx, ids, feats)
    finally:
        learner.close()
    np.testing.assert_array_equal(expected, [1 / 3] * 3)
    np.testing.assert_array_equal(served, expected)
    np.testing.assert_allclose(decision.pmf, expected, rtol=0, atol=1e-15)


def test_versions_best_moves_the_policys_mass_of_a_message_onto_its_best_version(
    softmax_snapshots: Path, softmax_learner: OnlineLearner
) -> None:
    ids, feats = candidates(softmax_learner, QUIZ_FAILED)
    v1, v2 = ids.index("review_notes.v1"), ids.index("review_notes.v2")
    ctx = context(11, QUIZ_FAILED)
    vw = softmax_learner.predict(QUIZ_FAILED, ctx, ids, feats)
    assert vw[v1] > 0.01 and vw[v2] > 0.01  # softmax: both versions have mass to move
    best, other = (v1, v2) if vw[v1] >= vw[v2] else (v2, v1)
    with (
        Decider(softmax_snapshots, seed=1, rules=no_mixture()) as all_versions,
        Decider(softmax_snapshots, seed=1, rules=no_mixture(versions="best")) as best_version,
    ):
        pmf_all = np.array(all_versions.decide(QUIZ_FAILED, "x", ctx, reactions=WARM).pmf)
        pmf_best = np.array(best_version.decide(QUIZ_FAILED, "x", ctx, reactions=WARM).pmf)

    np.testing.assert_allclose(pmf_all, vw / vw.sum(), rtol=0, atol=1e-9)
    assert pmf_best[other] == 0.0
    assert pmf_best[best] == pytest.approx(pmf_all[v1] + pmf_all[v2], abs=1e-12)
    others = [i for i in range(len(ids)) if i not in (v1, v2)]
    np.testing.assert_allclose(pmf_best[others], pmf_all[others], rtol=0, atol=1e-12)


def test_cold_start_uses_the_snapshots_reaction_counts(
    softmax_snapshots: Path, softmax_learner: OnlineLearner
) -> None:
    reactions = softmax_learner.reactions.to_json()
    warm_learner = next(who for who, count in reactions.items() if count >= 1)
    assert "u-never-seen" not in reactions
    ids, _ = candidates(softmax_learner, QUIZ_FAILED)
    ctx = context(11, QUIZ_FAILED)
    uniform = [0.0 if a == NONE else 1 / (len(ids) - 1) for a in ids]
    with Decider(softmax_snapshots, seed=5) as decider:  # cold_start_outcomes 1
        cold = [decider.decide(QUIZ_FAILED, "u-never-seen", ctx) for _ in range(200)]
        warm = decider.decide(QUIZ_FAILED, warm_learner, ctx)
        overridden = decider.decide(QUIZ_FAILED, "u-never-seen", ctx, reactions=1)

    assert {d.why for d in cold} <= {"cold_start", "forced"}
    assert all(d.action != NONE for d in cold)
    np.testing.assert_allclose(cold[0].pmf, uniform, rtol=0, atol=1e-15)
    assert warm.why != "cold_start"
    assert warm.pmf == overridden.pmf != cold[0].pmf


def test_explicit_candidates_and_features_are_used_and_logged(
    softmax_snapshots: Path, softmax_learner: OnlineLearner
) -> None:
    ctx = context(11, QUIZ_FAILED)
    ids = ("hint", "review_notes.v2", NONE)
    features = {"hint": {"kind": "hint", "tone": "terse"}}
    catalogue = softmax_learner.catalogue.actions
    feats = (features["hint"], catalogue["review_notes.v2"], catalogue[NONE])
    expected = softmax_learner.predict(QUIZ_FAILED, ctx, ids, feats)
    with Decider(softmax_snapshots, seed=1, rules=no_mixture()) as decider:
        decision = decider.decide(
            QUIZ_FAILED, LEARNER_ID, ctx, ids, action_features=features, reactions=WARM
        )

    assert decision.actions == ids
    np.testing.assert_allclose(decision.pmf, expected / expected.sum(), rtol=0, atol=1e-9)
    logged = {a["id"]: a["features"] for a in decision.impression["actions"]}
    assert logged == dict(zip(ids, feats, strict=True))


def test_same_seed_gives_the_same_decisions(softmax_snapshots: Path) -> None:
    ctx = context(11, QUIZ_FAILED)

    def run(seed: int) -> list[tuple[str, str]]:
        with Decider(softmax_snapshots, seed=seed) as decider:
            decisions = [decider.decide(QUIZ_FAILED, "x", ctx, reactions=WARM) for _ in range(300)]
        return [(d.action, d.why) for d in decisions]

    assert run(9) == run(9)
    assert run(9) != run(10)


# ---- c. the impression a decision logs ----------------------------------------------------------


def decode(decision: Decision, config: Config) -> Impression:
    event = decode_event(decision.impression_json(), config.event_rules())
    assert isinstance(event, Impression)
    return event


@pytest.mark.parametrize("reactions", [WARM, 0], ids=["warm", "cold"])
def test_impression_decodes_to_the_decision_it_logs(
    softmax_snapshots: Path, softmax_config: Config, reactions: int
) -> None:
    ctx = context(11, QUIZ_FAILED)
    with Decider(softmax_snapshots, seed=3) as decider:
        catalogue = decider.policy.actions
        decisions = [
            decider.decide(
                QUIZ_FAILED,
                LEARNER_ID,
                ctx,
                reactions=reactions,
                event_id=f"d{i}",
                timestamp=T0 + i,
            )
            for i in range(400)
        ]

    whys = {d.why for d in decisions}
    assert whys == (
        {"forced", "cold_start"} if reactions == 0 else {"forced", "exploit", "explore"}
    )
    assert len({d.action for d in decisions}) >= 4
    for i, decision in enumerate(decisions):
        imp = decode(decision, softmax_config)
        assert imp.event_id == f"d{i}"
        assert imp.ts == T0 + i
        assert imp.trigger == QUIZ_FAILED
        assert imp.learner_id == LEARNER_ID
        assert imp.context == ctx
        assert imp.action_ids == decision.actions
        assert imp.action_features == tuple(catalogue[a] for a in decision.actions)
        assert imp.chosen == decision.action
        assert imp.chosen_index == decision.index
        assert imp.probability == decision.probability
        assert imp.policy_version == decision.policy_version == "nudge-000001"
        assert decision.impression["why"] == decision.why
        assert decision.impression["pmf"] == list(decision.pmf)
        assert sum(decision.impression["pmf"]) == pytest.approx(1.0, abs=1e-12)
        assert decision.impression["pmf"][decision.index] == decision.probability > 0.0


def test_impression_gets_a_fresh_event_id_and_the_current_time_by_default(
    softmax_snapshots: Path, softmax_config: Config
) -> None:
    ctx = context(11, QUIZ_FAILED)
    with Decider(softmax_snapshots, seed=3) as decider:
        before = time.time()
        decisions = [decider.decide(QUIZ_FAILED, LEARNER_ID, ctx) for _ in range(50)]
        after = time.time()

    impressions = [decode(d, softmax_config) for d in decisions]
    assert len({imp.event_id for imp in impressions}) == 50
    assert all(before - 0.001 <= imp.ts <= after + 0.001 for imp in impressions)


# ---- d. hot reload ------------------------------------------------------------------------------


class DecidingThread(threading.Thread):
    """Decides continuously until stopped, recording (policy version, pmf) and any exception."""

    def __init__(self, decider: Decider, ctx: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.decider = decider
        self.ctx = ctx
        self.stop = threading.Event()
        self.served: list[tuple[str, tuple[float, ...]]] = []
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                d = self.decider.decide(QUIZ_FAILED, LEARNER_ID, self.ctx, reactions=WARM)
                self.served.append((d.policy_version, d.pmf))
                # Let the main thread's file I/O have the GIL back promptly (no convoy).
                time.sleep(0)
        except BaseException as exc:  # recorded for the main thread to assert on
            self.errors.append(exc)

    def wait_for(self, decisions: int, version: str | None = None, timeout_s: float = 10.0) -> None:
        """Wait until `decisions` more decisions were made (on `version`, when given)."""
        start = len(self.served)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.errors:
            recent = self.served[start:]
            if len([v for v, _ in recent if version is None or v == version]) >= decisions:
                return
            time.sleep(0.002)
        raise AssertionError(f"the deciding thread stalled: {self.errors or 'no decisions'}")


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def version_of(directory: Path, name: str) -> str:
    return load_snapshot(directory / name).manifest.policy_id


def test_hot_reload_never_serves_a_half_loaded_or_tampered_policy(tmp_path: Path) -> None:
    config = make_config(SOFTMAX, rule={"forced_share": 0.1, "versions": "all"})
    events = joined_events()
    learners = {"A": train(config, events[:1500]), "B": train(config, events[1500:])}
    ctx = context(11, QUIZ_FAILED)
    snaps = tmp_path / "snaps"
    try:
        # The pmf each model must give, from a decider that never reloads.
        reference: dict[str, tuple[float, ...]] = {}
        for key, learner in learners.items():
            name = publish(config, learner, tmp_path / f"reference-{key}")
            with Decider.from_snapshot(tmp_path / f"reference-{key}" / name) as ref:
                reference[key] = ref.decide(QUIZ_FAILED, "x", ctx, reactions=WARM).pmf
        assert not np.allclose(reference["A"], reference["B"], atol=1e-3)

        model_of: dict[str, str] = {}  # policy version -> "A" or "B"
        name = publish(config, learners["A"], snaps)
        model_of[version_of(snaps, name)] = "A"
        decider = Decider(snaps, seed=7)
        thread = DecidingThread(decider, ctx)
        thread.start()
        try:
            thread.wait_for(50)
            refused: list[str] = []
            for step, key in enumerate("BABABA"):
                name = publish(config, learners[key], snaps)
                version = version_of(snaps, name)
                if step in (1, 4):
                    # tampered after publishing: one model byte changed, LATEST unchanged
                    model = snaps / name / "models" / "policy-0000.vw"
                    flip_a_byte(model)
                    serving, refused_before = decider.version, decider.refused
                    assert decider.reload() is False
                    assert decider.refused == refused_before + 1
                    assert decider.last_error is not None
                    assert "sha256 mismatch" in decider.last_error
                    assert decider.version == serving
                    refused.append(version)
                    thread.wait_for(50, serving)  # the previous policy keeps serving
                    continue
                model_of[version] = key
                assert decider.reload() is True
                assert decider.version == version
                assert decider.last_error is None
                thread.wait_for(50, version)
            # LATEST pointing at a snapshot whose manifest does not match it is refused too
            name = publish(config, learners["B"], snaps)
            manifest = snaps / name / MANIFEST
            manifest.write_bytes(manifest.read_bytes().replace(b'"examples"', b'"examples" '))
            serving = decider.version
            assert decider.reload() is False
            assert "does not match LATEST" in (decider.last_error or "")
            refused.append(version_of(snaps, name))
            thread.wait_for(50, serving)
        finally:
            thread.stop.set()
            thread.join(timeout=10)
            decider.close()
    finally:
        for learner in learners.values():
            learner.close()

    assert not thread.is_alive()
    assert thread.errors == []
    assert decider.reloads == 1 + 4
    assert decider.refused == 3
    served_versions = {v for v, _ in thread.served}
    assert served_versions == set(model_of)  # every good version served, nothing else
    assert not served_versions & set(refused)
    wrong = [(v, pmf) for v, pmf in thread.served if pmf != reference[model_of[v]]]
    assert wrong == [], f"{len(wrong)} of {len(thread.served)} decisions had another pmf"


def test_a_call_holding_a_replaced_policy_is_served_by_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(SOFTMAX, rule={"forced_share": 0.0, "versions": "all"})
    events = joined_events()
    ctx = context(11, QUIZ_FAILED)
    learners = [train(config, events[:1000]), train(config, events[1000:])]
    try:
        publish(config, learners[0], tmp_path)
        decider = Decider(tmp_path, seed=1)
        old = decider.policy
        publish(config, learners[1], tmp_path)
        assert decider.reload() is True  # closes the old policy's models
        new = decider.policy
        ids, feats = candidates(learners[1], QUIZ_FAILED)
        expected = learners[1].predict(QUIZ_FAILED, ctx, ids, feats)
    finally:
        for learner in learners:
            learner.close()
    # The race, made deterministic: the call picked up `old` just before the swap.
    handed_out = iter([old])
    monkeypatch.setattr(
        Decider, "policy", property(lambda self: next(handed_out, None) or self._current)
    )

    with decider:
        decision = decider.decide(QUIZ_FAILED, LEARNER_ID, ctx, reactions=WARM)

    assert old is not new
    assert decision.policy_version == new.version != old.version
    np.testing.assert_allclose(decision.pmf, expected / expected.sum(), rtol=0, atol=1e-9)


def test_reload_without_a_new_latest_changes_nothing(softmax_snapshots: Path) -> None:
    with Decider(softmax_snapshots, seed=1) as decider:
        version = decider.version
        assert decider.reload() is False
        assert decider.reloads == 1
        assert decider.refused == 0
        assert decider.version == version


def test_watch_picks_up_a_new_latest(
    tmp_path: Path, softmax_config: Config, softmax_learner: OnlineLearner
) -> None:
    publish(softmax_config, softmax_learner, tmp_path)
    with Decider(tmp_path, seed=1) as decider:
        first = decider.version
        decider.watch(interval_s=0.02)
        name = publish(softmax_config, softmax_learner, tmp_path)
        deadline = time.monotonic() + 10.0
        while decider.version == first and time.monotonic() < deadline:
            time.sleep(0.01)

        assert decider.version == version_of(tmp_path, name) != first
        assert decider.reloads == 2
        decision = decider.decide(QUIZ_FAILED, LEARNER_ID, context(11, QUIZ_FAILED))
        assert decision.policy_version == decider.version
    assert decider._watcher is None  # close() stopped the watcher


def test_decider_refuses_a_tampered_first_snapshot(
    tmp_path: Path, softmax_config: Config, softmax_learner: OnlineLearner
) -> None:
    name = publish(softmax_config, softmax_learner, tmp_path)
    flip_a_byte(tmp_path / name / "reactions.json")

    with pytest.raises(SnapshotError, match=r"reactions\.json: sha256 mismatch"):
        Decider(tmp_path)


# ---- e. errors ----------------------------------------------------------------------------------


def test_unknown_trigger_without_candidates_is_an_error_naming_it(softmax_snapshots: Path) -> None:
    with (
        Decider(softmax_snapshots, seed=1) as decider,
        pytest.raises(NudgeError, match=r"trigger 'Z/nowhere' is not in snapshot nudge-000001"),
    ):
        decider.decide("Z/nowhere", LEARNER_ID, {})


def test_unknown_trigger_with_candidates_is_decided(softmax_snapshots: Path) -> None:
    with Decider(softmax_snapshots, seed=1) as decider:
        decision = decider.decide("Z/nowhere", LEARNER_ID, {}, ("hint", NONE), reactions=WARM)

    assert decision.actions == ("hint", NONE)
    assert sum(decision.pmf) == pytest.approx(1.0, abs=1e-12)


def test_no_candidates_is_an_error(softmax_snapshots: Path) -> None:
    with (
        Decider(softmax_snapshots, seed=1) as decider,
        pytest.raises(NudgeError, match="no candidate actions at trigger"),
    ):
        decider.decide(QUIZ_FAILED, LEARNER_ID, {}, ())


@pytest.mark.parametrize("directory", ["empty", "missing"])
def test_decider_without_a_snapshot_says_what_to_run(tmp_path: Path, directory: str) -> None:
    if directory == "empty":
        (tmp_path / directory).mkdir()

    with pytest.raises(
        SnapshotError, match=r"no snapshot yet.*run `nudge consume` or `nudge export`"
    ):
        Decider(tmp_path / directory)


def test_send_rule_on_a_snapshot_without_outcome_model_is_refused(softmax_snapshots: Path) -> None:
    rules = DecisionsConfig(triggers={"*/final-passed": {"policy": "send_rule"}})

    with pytest.raises(SnapshotError, match=r"send_rule but the snapshot has no outcome model"):
        Decider(softmax_snapshots, rules=rules)


def test_decider_refuses_to_decide_once_closed(softmax_snapshots: Path) -> None:
    decider = Decider(softmax_snapshots, seed=1)
    decider.close()
    decider.close()

    with pytest.raises(SnapshotError, match="closed"):
        decider.decide(QUIZ_FAILED, LEARNER_ID, {})


def test_from_snapshot_decides_from_one_snapshot_directory(
    softmax_snapshots: Path, softmax_learner: OnlineLearner
) -> None:
    (name,) = [p.name for p in softmax_snapshots.glob("snap-*")]
    ctx = context(11, QUIZ_FAILED)
    ids, feats = candidates(softmax_learner, QUIZ_FAILED)

    with Decider.from_snapshot(softmax_snapshots / name, rules=no_mixture()) as decider:
        decision = decider.decide(QUIZ_FAILED, LEARNER_ID, ctx, reactions=WARM)

    expected = softmax_learner.predict(QUIZ_FAILED, ctx, ids, feats)
    np.testing.assert_allclose(decision.pmf, expected / expected.sum(), rtol=0, atol=1e-9)
    assert (softmax_snapshots / LATEST).exists()


# ---- the send rule on a real outcome model --------------------------------------------------------


@pytest.fixture(scope="module")
def outcome_snapshots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    config = make_config(EPSILON, outcome_model=True, rule={"policy": "send_rule"})
    learner = train(config, joined_events())
    directory = tmp_path_factory.mktemp("outcomes")
    publish(config, learner, directory)
    learner.close()
    yield directory


@pytest.mark.parametrize(
    ("margin", "above_lead"),
    [(-1.0, None), (1.0, None), (None, -0.01), (None, 0.01)],
    ids=["margin-1", "margin+1", "just_below_the_lead", "just_above_the_lead"],
)
def test_send_rule_sends_the_most_helpful_message_only_when_it_clears_the_margin(
    outcome_snapshots: Path, margin: float | None, above_lead: float | None
) -> None:
    ctx = context(11, QUIZ_FAILED)
    with Decider(outcome_snapshots, seed=1) as probe:
        ids = probe.policy.triggers[QUIZ_FAILED]
        feats = [probe.policy.actions[a] for a in ids]
        outcomes = np.asarray(probe.policy.outcome_probabilities(ctx, ids, feats))
    assert outcomes.shape == (len(ids), 3)
    np.testing.assert_allclose(outcomes.sum(axis=1), 1.0, atol=1e-5)
    best = max((i for i, a in enumerate(ids) if a != NONE), key=lambda i: outcomes[i, 0])
    # how far P(helpful) of the most helpful message beats the more likely of the others
    lead = outcomes[best, 0] - max(outcomes[best, 1], outcomes[best, 2])
    if margin is None:
        assert above_lead is not None
        margin = lead + above_lead
    rule = DecisionRuleConfig(
        policy="send_rule", forced_share=0.0, versions="all", send_margin=margin,
        send_rule_epsilon=0.1,
    )  # fmt: skip
    with Decider(outcome_snapshots, seed=1, rules=DecisionsConfig(default=rule)) as decider:
        decision = decider.decide(QUIZ_FAILED, LEARNER_ID, ctx, reactions=WARM)

    send = lead > margin
    choice = best if send else list(ids).index(NONE)
    expected = np.full(len(ids), 0.1 / len(ids))
    expected[choice] += 0.9
    np.testing.assert_allclose(decision.pmf, expected, rtol=0, atol=1e-12)


def test_send_rule_with_versions_best_offers_only_the_most_helpful_version(
    outcome_snapshots: Path,
) -> None:
    ctx = context(11, QUIZ_FAILED)
    rule = DecisionRuleConfig(policy="send_rule", forced_share=0.0, versions="best")
    with Decider(outcome_snapshots, seed=1, rules=DecisionsConfig(default=rule)) as decider:
        ids = decider.policy.triggers[QUIZ_FAILED]
        feats = [decider.policy.actions[a] for a in ids]
        outcomes = np.asarray(decider.policy.outcome_probabilities(ctx, ids, feats))
        helpful = outcomes[:, 0]
        decision = decider.decide(QUIZ_FAILED, LEARNER_ID, ctx, reactions=WARM)

    v1, v2 = ids.index("review_notes.v1"), ids.index("review_notes.v2")
    worse = v2 if helpful[v1] >= helpful[v2] else v1
    assert decision.pmf[worse] == 0.0
    _, expected = expected_pmf(ids, rule, cold=False, outcomes=outcomes)
    np.testing.assert_allclose(decision.pmf, expected, rtol=0, atol=1e-12)
