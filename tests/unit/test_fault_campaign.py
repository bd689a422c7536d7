"""The pure helpers of the fault campaign and the soak (`benchmarks/`): how learned-twice and
lost are counted, the table, the fuzzer's determinism, the RSS slope and sampling."""

from __future__ import annotations

import random

import pytest

from bandit.config import JoinConfig
from bandit.learned_ids import MEMORY_BYTES_PER_ID, LearnedIds, event_hash
from benchmarks.fault_campaign import (
    FUZZ_KINDS,
    Check,
    Fuzzer,
    Pools,
    Row,
    caps_reached_at,
    counter_diff,
    format_table,
    growth_per_100k,
    linear_slope,
    recorded_hashes,
    tally,
)
from benchmarks.soak import Sample, evenly, last_progress, second_half_slope, until_done
from streams.stats import Ledger

IDS = [f"e{i}" for i in range(10)]


def ledger_of(ids: list[str]) -> tuple[int, int]:
    ledger = Ledger.of(ids)
    return ledger.count, ledger.digest


def hashes(ids: list[str]) -> frozenset[int]:
    return frozenset(event_hash(i) for i in ids)


# ---- tally --------------------------------------------------------------------------------------


def test_an_equal_ledger_means_nothing_twice_and_nothing_lost_without_reading_the_record():
    t = tally(IDS, *ledger_of(IDS), recorded=None)
    assert (t.twice, t.lost, t.unexpected, t.how, t.exact) == (0, 0, 0, "ledger", True)


def test_expected_ids_are_counted_once_even_if_listed_twice():
    t = tally([*IDS, IDS[0]], *ledger_of(IDS), recorded=None)
    assert t.exact and t.expected == len(IDS)


def test_a_lost_id_is_named_from_the_record():
    learned = IDS[:-1]
    t = tally(IDS, *ledger_of(learned), recorded=hashes(learned))
    assert (t.twice, t.lost, t.unexpected) == (0, 1, 0)
    assert t.lost_ids == ("e9",) and not t.exact


def test_an_id_learned_twice_is_named_from_the_digest_difference():
    t = tally(IDS, *ledger_of([*IDS, "e3"]), recorded=hashes(IDS))
    assert (t.twice, t.lost, t.unexpected) == (1, 0, 0)
    assert t.twice_ids == ("e3",)


def test_one_lost_and_one_twice_keep_the_count_but_not_the_digest():
    learned = [*IDS[:-1], "e0"]  # e9 lost, e0 twice: the same count
    t = tally(IDS, *ledger_of(learned), recorded=hashes(IDS[:-1]))
    assert (t.twice, t.lost) == (1, 1)
    assert t.lost_ids == ("e9",) and t.twice_ids == ("e0",)


def test_an_id_that_was_never_expected_is_unexpected_not_twice():
    learned = [*IDS, "poison"]
    t = tally(IDS, *ledger_of(learned), recorded=hashes(learned))
    assert (t.twice, t.lost, t.unexpected) == (0, 0, 1) and not t.exact


def test_without_an_exact_record_the_numbers_are_unknown():
    t = tally(IDS, *ledger_of(IDS[:-1]), recorded=None)
    assert (t.twice, t.lost, t.unexpected) == (None, None, None) and not t.exact
    assert "9 vs 10 expected" in t.describe()


def test_a_record_that_disagrees_with_its_ledger_is_not_trusted():
    # The record claims all ten ids, the ledger counts nine learns: someone's bookkeeping is off.
    t = tally(IDS, *ledger_of(IDS[:-1]), recorded=hashes(IDS))
    assert t.twice is None and "disagree" in t.how


# ---- the checkpoint's record of learned ids ------------------------------------------------------


def learned_state(ids: list[str], ts: float, horizon_s: float = 86_400) -> dict[str, object]:
    learned = LearnedIds(horizon_s, 1_000)
    for event_id in ids:
        learned.add(event_id, ts)
    learned.expire(ts + 100, keep_after=float("-inf"))
    return {"join": {"learned_ids": learned.state()}}


def test_the_record_of_learned_ids_reads_back_every_hash():
    assert recorded_hashes(learned_state(IDS, 1_000_000.0), earliest_ts=1_000_000.0) == hashes(IDS)


def test_a_record_that_forgot_ids_from_before_the_first_expected_event_is_not_exact():
    state = learned_state(IDS, 1_000_000.0, horizon_s=10)  # forgets everything 10 s old
    assert recorded_hashes(state, earliest_ts=1_000_000.0) is None


def test_no_learned_ids_saved_means_an_empty_record():
    assert recorded_hashes({"join": {}}, earliest_ts=0.0) == frozenset()


def test_evicted_ids_make_the_record_inexact():
    state = learned_state(IDS, 1_000_000.0)
    state["join"]["learned_ids"]["evicted"] = 3  # type: ignore[index]
    assert recorded_hashes(state, earliest_ts=1_000_000.0) is None


# ---- table ----------------------------------------------------------------------------------------


def test_counter_diff_names_what_was_added_and_missing():
    assert counter_diff({"a": 2, "b": 1}, {"a": 3, "c": 1}) == "+1 a, -1 b, +1 c"
    assert counter_diff({"a": 1}, {"a": 1}) == "none"


def test_the_table_has_one_line_per_scenario_and_says_why_a_row_failed():
    good = Row("baseline", produced=28_213, expected=19_584, learned=19_584, twice=0, lost=0,
               dead_lettered=993, checks=[Check("learned exactly once", True)])  # fmt: skip
    bad = Row("kill-broker", produced=100, expected=70, learned=69, recovery_s=12.34,
              checks=[Check("learned exactly once", False, "ledger differs")])  # fmt: skip
    skipped = Row("disk-full", skipped="needs root")
    lines = format_table([good, bad, skipped]).splitlines()
    assert lines[0].split() == ["scenario", "produced", "expected", "learned", "twice", "lost",
                                "dead-lettered", "recovery", "s", "result"]  # fmt: skip
    assert lines[2].split() == [
        "baseline",
        "28,213",
        "19,584",
        "19,584",
        "0",
        "0",
        "993",
        "-",
        "pass",
    ]
    assert lines[3].split() == ["kill-broker", "100", "70", "69", "?", "?", "0", "12.3", "FAIL"]
    assert lines[4].split()[-1] == "skip"
    assert lines[5] == "1 of 3 passed, 1 skipped"
    assert "  kill-broker: FAILED learned exactly once: ledger differs" in lines
    assert "  disk-full: skipped: needs root" in lines


def test_a_row_without_checks_fails():
    assert Row("x").status == "FAIL"


# ---- the fuzzer ------------------------------------------------------------------------------------

POOLS = Pools(
    json_values=[None, 1, -2.5, "x", [1, {"a": None}], {"k": [True]}],
    texts=["", "é", "\u202e", "a b"],
    numbers=[0, 10**30, -1e308],
    blobs=[b"", b"\x00\xff", b'{"type":'],
    keys=["", "type", "k"],
)
IMPRESSION = {
    "type": "impression", "event_id": "sim-1", "timestamp": "2026-01-05T08:00:00.000+00:00",
    "trigger": "B/quiz-3/quiz-failed", "learner_id": "u1",
    "context": {"learner": {"country": "PE", "prior_ctr": 0.12}},
    "actions": [{"id": "hint", "features": {"kind": "hint"}}, {"id": "none", "features": {}}],
    "chosen": "hint", "probability": 0.5, "pmf": [0.5, 0.5], "policy_version": "p",
}  # fmt: skip
OUTCOME = {"type": "outcome", "event_id": "sim-1", "timestamp": "2026-01-05T08:00:30.000+00:00",
           "trigger": "B/quiz-3/quiz-failed", "outcome": "helpful", "value": 2.0}  # fmt: skip


def fuzzed(seed: int, n: int = 300, without: tuple[str, ...] = ()) -> list[tuple[str, str, bytes]]:
    fuzzer = Fuzzer(POOLS, random.Random(seed), 1_000, without)
    return [fuzzer.message(i, IMPRESSION, OUTCOME) for i in range(n)]


def test_the_fuzzer_is_reproducible_under_a_seed_and_leaves_its_templates_alone():
    before = repr(IMPRESSION)
    assert fuzzed(3) == fuzzed(3) != fuzzed(4)
    assert repr(IMPRESSION) == before


@pytest.mark.parametrize("kind", sorted(FUZZ_KINDS))
def test_every_fuzz_kind_makes_bytes(kind: str):
    only = tuple(k for k in FUZZ_KINDS if k != kind)
    messages = fuzzed(1, 30, without=only)
    assert {k for k, _, _ in messages} == {kind}
    assert all(isinstance(v, bytes) and t in ("impressions", "outcomes") for _, t, v in messages)


def test_a_valid_fuzzed_message_is_the_template_with_a_fresh_id():
    only = tuple(k for k in FUZZ_KINDS if k != "valid")
    _, _, value = fuzzed(1, 1, without=only)[0]
    assert b'"event_id":"fz0"' in value


# ---- soak: slope and sampling ----------------------------------------------------------------------


def test_linear_slope_of_a_line_and_of_too_few_points():
    assert linear_slope([(0, 1), (1, 3), (2, 5), (3, 7)]) == pytest.approx(2.0)
    assert linear_slope([(0, 1), (1, 3)]) is None


# ---- push-100k: RSS growth once the join's structures are capped ---------------------------------

FIRST, CAP = 2_811, 20_000  # the first chunk's messages; pending and closed-window caps


def push_rss(consumed: int) -> float:
    """VmRSS of a push as measured in memory: +30 MB while the closed windows fill (after the
    pending cap), then only the learned ids (16 B per message)."""
    pending_cap, closed_cap = FIRST + CAP, FIRST + 2 * CAP
    if consumed <= closed_cap:
        return 150.0 + 30.0 * (consumed - pending_cap) / CAP
    return 180.0 + (consumed - closed_cap) * MEMORY_BYTES_PER_ID / 2**20


PUSH = [(n / 2_000, n, push_rss(n)) for n in range(FIRST + CAP, FIRST + 100_001, 2_000)]


def test_both_caps_are_reached_a_pending_cap_and_a_closed_window_cap_into_the_push() -> None:
    join = JoinConfig(max_pending_impressions=CAP, max_closed_windows=CAP)
    assert caps_reached_at(FIRST, join) == FIRST + 2 * CAP


def test_past_both_caps_only_the_learned_ids_grow_and_net_of_them_rss_is_flat() -> None:
    growth = growth_per_100k(PUSH, FIRST + 2 * CAP, FIRST + 100_000, MEMORY_BYTES_PER_ID)
    assert growth is not None
    measured, net = growth
    assert measured == pytest.approx(100_000 * 16 / 2**20)  # 1.5 MB per 100k: the learned ids
    assert net == pytest.approx(0.0, abs=1e-9)


def test_from_the_pending_cap_the_closed_windows_filling_looks_like_a_leak() -> None:
    # What the campaign measured before (+32 MB per 100k): the window began at the pending cap.
    growth = growth_per_100k(PUSH, FIRST + CAP, FIRST + 100_000, MEMORY_BYTES_PER_ID)
    assert growth is not None and growth[1] > 10.0


def test_growth_needs_three_samples_in_the_window() -> None:
    assert growth_per_100k(PUSH, FIRST + 98_000, FIRST + 100_000, MEMORY_BYTES_PER_ID) is None


def samples(rss: list[float], per_step: int = 100_000) -> list[Sample]:
    return [Sample(float(i), i * per_step, int(i * per_step * 0.7), r) for i, r in enumerate(rss)]


def test_the_slope_is_taken_over_the_second_half_only_in_mb_per_million_events():
    # Warm-up from 50 to 100 MB, then +7 MB per million learned events (70,000 per step).
    run = samples([50, 80, 100, 100.49, 100.98, 101.47, 101.96])
    assert second_half_slope(run) == pytest.approx(7.0, abs=1e-6)


def test_startup_and_the_idle_tail_are_left_out():
    run = [Sample(0.0, 0, 0, 8.0), *samples([90, 95, 96])[1:], Sample(9.0, 200_000, 140_000, 50.0)]
    kept = until_done(run)
    assert [s.consumed for s in kept] == [100_000, 200_000]


def test_evenly_spreads_by_messages_consumed_and_keeps_both_ends():
    run = samples([float(i) for i in range(101)], per_step=1)
    picked = evenly(run, 11)
    assert [s.consumed for s in picked] == list(range(0, 101, 10))


def test_last_progress_reads_the_consumers_last_progress_line():
    log = (
        "2026-11-30 05:18:47,156 INFO nudge.consume: consumed=28 (0/s) impressions=19 outcomes=7 "
        "learned=12 (0/s) dead_lettered=9\n"
        "2026-11-30 05:18:48,160 INFO nudge.consume: consumed=2821 (0/s) impressions=1970 outcomes=79 "
        "learned=1958 (0/s) dead_lettered=99\n"
    )
    assert last_progress(log) == (2821, 1958)
    assert last_progress("nothing yet") == (0, 0)
