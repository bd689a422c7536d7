"""The consumer's collector settings (`streams.collector`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streams.collector import THRESHOLDS, quiet_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_collector")
def test_quiet_collector_raises_the_thresholds_and_freezes_what_exists() -> None:
    quiet_collector()
    assert gc.get_threshold() == THRESHOLDS
    assert gc.get_freeze_count() > 0
