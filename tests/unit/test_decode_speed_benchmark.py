"""The decode speed benchmark runs and prints one row per decoder (numbers are not checked)."""

from __future__ import annotations

import pytest

from benchmarks.decode_speed import main


def test_decode_speed_benchmark_prints_a_row_per_decoder(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["--impressions", "20", "--repeats", "1"])

    rows = capsys.readouterr().out.splitlines()

    for name in ("decode_event ", "decode_event_reference", "of which parse + key check"):
        assert any(row.strip().startswith(name.strip()) for row in rows), name
