"""The learned-id record: exact membership, forgetting by event-time horizon, the cap, its state."""

from __future__ import annotations

import orjson
import pytest

from bandit.learned_ids import BUCKETS_PER_HORIZON, LearnedIds, event_hash
from streams.stats import event_hash as ledger_hash

H = 3_200.0  # 32 buckets of 100 s
T0 = 1_767_600_000.0  # a multiple of 100


def test_ids_are_remembered_before_and_after_merging() -> None:
    ids = LearnedIds(H, max_ids=100_000)
    for i in range(20_000):  # past the merge threshold: most end up in the sorted arrays
        ids.add(f"e{i}", T0)
    ids.add("last", T0)
    assert len(ids) == 20_001
    assert all(f"e{i}" in ids for i in range(0, 20_000, 997)) and "last" in ids
    assert "e20000" not in ids and "never" not in ids and 42 not in ids


def test_a_bucket_is_forgotten_once_the_watermark_is_the_horizon_past_its_end() -> None:
    ids = LearnedIds(H, max_ids=1_000)
    ids.add("old", T0)  # bucket [T0, T0 + 100)
    ids.add("new", T0 + 100)
    ids.expire(T0 + 100 + H - 1, keep_after=float("-inf"))
    assert "old" in ids and ids.floor == T0  # whole buckets: all from T0 on is still known
    ids.expire(T0 + 100 + H, keep_after=float("-inf"))
    assert "old" not in ids and "new" in ids
    assert ids.floor == T0 + 100  # impressions before this may have been learned: refused


def test_over_the_cap_the_oldest_buckets_go_first_but_not_those_still_needed() -> None:
    ids = LearnedIds(H, max_ids=1_000)
    for bucket in range(4):
        for i in range(400):
            ids.add(f"b{bucket}-{i}", T0 + 100 * bucket)
    ids.expire(T0 + 400, keep_after=T0 + 200)  # buckets 0 and 1 may go, 2 and 3 are needed
    assert len(ids) == 800 and ids.evicted == 800
    assert "b1-0" not in ids and "b2-0" in ids and ids.floor == T0 + 200
    for i in range(400):
        ids.add(f"b4-{i}", T0 + 400)
    ids.expire(T0 + 500, keep_after=T0 + 200)
    assert len(ids) == 1_200  # over the cap: what is still needed stays


def test_state_round_trip_and_its_size_per_id() -> None:
    ids = LearnedIds(H, max_ids=1_000_000)
    for i in range(10_000):
        ids.add(f"e{i}", T0 + i * 0.1)
    state = ids.state()
    restored = LearnedIds.from_state(orjson.loads(orjson.dumps(state)), H, 1_000_000)
    assert len(restored) == 10_000 and all(f"e{i}" in restored for i in range(0, 10_000, 101))
    assert restored.state() == state
    size = len(orjson.dumps(state))
    assert 10.6 * 10_000 < size < 11 * 10_000  # 8 bytes per id in base64, plus little else


def test_a_record_saved_under_another_horizon_is_refiled_never_forgotten_early() -> None:
    ids = LearnedIds(H, max_ids=1_000)
    ids.add("e", T0 + 99)  # bucket of 100 s: [T0, T0 + 100)
    wider = LearnedIds.from_state(ids.state(), 2 * H, 1_000)  # buckets of 200 s
    wider.expire(T0 + 2 * H + 99, keep_after=float("-inf"))
    assert "e" in wider


def test_the_hash_is_the_ledgers() -> None:
    assert event_hash("dec-1") == ledger_hash("dec-1") and BUCKETS_PER_HORIZON == 32


@pytest.mark.parametrize(("horizon", "cap"), [(0.0, 10), (10.0, 0)])
def test_bad_settings_are_refused(horizon: float, cap: int) -> None:
    with pytest.raises(ValueError, match="horizon_s > 0 and max_ids >= 1"):
        LearnedIds(horizon, cap)
