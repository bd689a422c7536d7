"""Event-time watermark over partitions: idle ones stop holding it back, but only when idle."""

from __future__ import annotations

from bandit.watermarks import WatermarkTracker


def test_a_caught_up_partition_holds_the_watermark_until_it_has_been_quiet_for_idle_s() -> None:
    marks = WatermarkTracker({"imp/0": 1000.0, "out/0": 900.0}, idle_s=5.0)
    parts = ["imp/0", "out/0"]
    # Restored from a checkpoint: neither was read in this process yet; both caught up.
    assert marks.current(parts, {"imp/0", "out/0"}, now=100.0) == 900.0
    marks.observe("imp/0", 1010.0, now=101.0)
    assert marks.current(parts, {"imp/0", "out/0"}, now=104.9) == 900.0
    # out/0 quiet for 5 s (since first seen at 100): left out; imp/0 read at 101 still holds.
    assert marks.current(parts, {"imp/0", "out/0"}, now=105.0) == 1010.0
    assert marks.current(parts, {"imp/0"}, now=200.0) == 900.0  # out/0 has lag: it holds
