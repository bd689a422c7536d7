"""The consumer's collector settings (`streams.collector`), on a stand-in for `gc`: the test
process's own collector is left alone (freezing it would change every test after this one)."""

from __future__ import annotations

from typing import Any

from streams.collector import THRESHOLDS, quiet_collector


class RecordingCollector:
    """Notes the calls `quiet_collector` makes, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def collect(self) -> int:
        self.calls.append(("collect", ()))
        return 0

    def freeze(self) -> None:
        self.calls.append(("freeze", ()))

    def set_threshold(self, threshold0: int, threshold1: int, threshold2: int) -> None:
        self.calls.append(("set_threshold", (threshold0, threshold1, threshold2)))


def test_quiet_collector_collects_freezes_what_is_left_then_raises_the_thresholds() -> None:
    collector = RecordingCollector()
    quiet_collector(collector=collector)
    assert collector.calls == [("collect", ()), ("freeze", ()), ("set_threshold", THRESHOLDS)]
