"""Event-time watermark edge cases: every partition idle, partitions never read, late records."""

from __future__ import annotations

from bandit.watermarks import WatermarkTracker

NEG_INF = float("-inf")


def test_when_every_partition_is_idle_the_highest_time_seen_is_the_watermark() -> None:
    marks = WatermarkTracker({"imp/0": 1000.0, "out/0": 900.0}, idle_s=5.0)
    parts = ["imp/0", "out/0"]
    assert marks.current(parts, set(parts), now=100.0) == 900.0  # first seen: not idle yet
    # 5 s later both are idle: the slowest (900) no longer holds; the highest anywhere wins.
    assert marks.current(parts, set(parts), now=105.0) == 1000.0


def test_when_every_partition_is_idle_and_none_was_ever_read_the_watermark_is_unknown() -> None:
    marks = WatermarkTracker(idle_s=0.0)
    assert marks.current(["imp/0", "out/0"], {"imp/0", "out/0"}, now=50.0) == NEG_INF


def test_a_partition_not_read_yet_holds_the_watermark_at_unknown() -> None:
    marks = WatermarkTracker({"imp/0": 1000.0}, idle_s=5.0)
    # out/0 has lag and no record yet: its first records may be arbitrarily old.
    assert marks.current(["imp/0", "out/0"], {"imp/0"}, now=0.0) == NEG_INF


def test_without_idle_s_a_caught_up_partition_is_left_out_at_once() -> None:
    marks = WatermarkTracker({"imp/0": 1000.0, "out/0": 900.0})
    assert marks.current(["imp/0", "out/0"], {"out/0"}, now=0.0) == 1000.0


def test_a_late_record_does_not_move_its_partition_back() -> None:
    marks = WatermarkTracker()
    marks.observe("imp/0", 1000.0, now=1.0)  # the first record of a partition
    marks.observe("imp/0", 400.0, now=2.0)  # out of order
    assert marks.highest == {"imp/0": 1000.0}
    assert marks.current(["imp/0"], set(), now=2.0) == 1000.0


def test_a_new_record_restarts_the_idle_wait_of_a_caught_up_partition() -> None:
    marks = WatermarkTracker({"imp/0": 1000.0, "out/0": 900.0}, idle_s=5.0)
    parts = ["imp/0", "out/0"]
    marks.current(parts, set(parts), now=0.0)
    marks.observe("out/0", 950.0, now=4.0)
    # imp/0 quiet since 0 (idle at 5), out/0 read at 4: it holds until 9.
    assert marks.current(parts, set(parts), now=8.9) == 950.0
    assert marks.current(parts, set(parts), now=9.0) == 1000.0


def test_a_record_whose_time_does_not_count_restarts_the_idle_wait_but_not_the_time() -> None:
    marks = WatermarkTracker({"imp/0": 1000.0, "out/0": 900.0}, idle_s=5.0)
    parts = ["imp/0", "out/0"]
    marks.current(parts, set(parts), now=0.0)
    marks.seen("out/0", now=4.0)  # e.g. held by the event-time guard
    assert marks.highest == {"imp/0": 1000.0, "out/0": 900.0}
    assert marks.current(parts, set(parts), now=8.9) == 900.0  # out/0 busy until 9
    assert marks.current(parts, set(parts), now=9.0) == 1000.0
