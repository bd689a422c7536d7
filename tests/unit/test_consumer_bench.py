"""The consumer benchmark's own parts: stage accounting that adds up, the consumer's busy time
from its log, the report, and that VW's driver gets exactly what the learner learns."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from consumer_fixtures import BOUNDED, make_stream

import bandit.policies
from bandit.config import Config, load_config
from bandit.events import Impression, OutcomeLabel, decode_event
from bandit.join import JoinedEvent
from bandit.learning import OnlineLearner
from bandit.simulation.traffic import simulate_traffic
from bandit.simulation.world import World
from benchmarks.consumer_bench import (
    BASELINE_SRC,
    BENCH,
    FIXED_ACTIONS,
    FIXED_FEATURES,
    IDLE,
    OTHER,
    BenchError,
    GrowthPoint,
    Recorder,
    Result,
    StageClock,
    _crc32c_hider,
    _original,
    _stage_map,
    best_of,
    consume_busy_seconds,
    dead_letter_surprises,
    e2e_schedule,
    extension_speed,
    extract_baseline,
    growth_svg,
    instrumented,
    joined_from_json,
    joined_json,
    learner_speed,
    main,
    native_speed,
    scratch_directories,
    stage_rows,
    synthetic_events,
    table,
    vw_example_text,
    write_vw_data,
)
from streams.consumer import StreamLearner


class Ticks:
    """A clock that reads the next scripted time (ns) at each call."""

    def __init__(self, *times: int) -> None:
        self._times: Iterator[int] = iter(times)

    def __call__(self) -> int:
        return next(self._times)


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(Path(__file__).resolve().parents[2] / "config.yaml", environ={})


# ---- stage accounting --------------------------------------------------------------------------


def test_a_nested_stage_is_charged_only_its_own_time() -> None:
    # start 0; learn 10..50 with render 20..35 inside; stop 60
    clock = StageClock(Ticks(0, 10, 20, 35, 50, 60))
    clock.start()
    clock.enter("learn")
    clock.enter("render")
    clock.leave()
    clock.leave()
    clock.stop()

    assert clock.ns == {"learn": 25, "render": 15}
    assert clock.calls == {"learn": 1, "render": 1}
    assert clock.wall_ns == 60


def test_the_stages_other_and_idle_add_up_to_the_wall_time() -> None:
    # fetch 0..5 (records), idle poll 5..105, join 110..130, checkpoint 140..170, stop at 200
    clock = StageClock(Ticks(0, 0, 5, 5, 105, 110, 130, 140, 170, 200))
    fetch = clock.timed("fetch", lambda: [1], idle_when_empty=True)
    empty = clock.timed("fetch", lambda: [], idle_when_empty=True)
    clock.start()
    fetch()
    empty()
    clock.enter("join")
    clock.leave()
    clock.enter("checkpoint")
    clock.leave()
    clock.stop()

    rows = stage_rows(clock.ns, clock.calls, clock.wall_ns, learned=4)

    by_name = {r.stage: r for r in rows}
    assert clock.ns[IDLE] == 100
    assert IDLE not in by_name  # polls that return nothing are not work
    assert by_name["total"].seconds == pytest.approx(100e-9)  # wall 200 minus idle 100
    assert by_name[OTHER].seconds == pytest.approx((100 - 5 - 20 - 30) * 1e-9)
    assert sum(r.seconds for r in rows[:-1]) == pytest.approx(by_name["total"].seconds)
    assert sum(r.share for r in rows[:-1]) == pytest.approx(1.0)
    assert by_name["join"].us_per_event == pytest.approx(20 / 1e3 / 4)
    assert [r.stage for r in rows] == ["fetch", "join", "checkpoint", OTHER, "total"]


def test_a_stage_that_raises_is_still_charged() -> None:
    clock = StageClock(Ticks(0, 3, 9))

    def fails() -> None:
        raise ValueError("broker gone")

    clock.start()
    with pytest.raises(ValueError, match="broker gone"):
        clock.timed("fetch", fails)()

    assert clock.ns == {"fetch": 6}


def test_a_stage_the_consumer_no_longer_has_fails_loudly() -> None:
    with pytest.raises(BenchError, match=r"StreamLearner\._no_such_stage is gone"):
        _original(StreamLearner, "_no_such_stage")


def test_instrumenting_restores_every_original_function() -> None:
    before = [(owner, name, vars(owner)[name]) for owner, name, _ in _stage_map()]

    with instrumented(StageClock(), Recorder()):
        assert (
            vars(StreamLearner)["checkpoint"]
            is not dict(((o, n), f) for o, n, f in before)[(StreamLearner, "checkpoint")]
        )

    assert all(vars(owner)[name] is fn for owner, name, fn in before)


def test_an_instrumented_consumer_times_every_stage_and_records_what_it_learned(
    tmp_path: Path,
) -> None:
    stream = make_stream(tmp_path)
    clock, recorder = StageClock(), Recorder()

    with instrumented(clock, recorder):
        consumer = stream.consumer()
        clock.start()
        stats = consumer.run(BOUNDED)
        clock.stop()

    assert len(recorder.learned) == stats.learned == stream.truth.impressions
    assert clock.ns[BENCH] > 0  # the notes are timed apart, not as work
    assert len(recorder.checkpoint_bytes) == stats.checkpoints
    assert min(recorder.checkpoint_bytes) > 0
    for stage in ("decode", "join", "render", "learn", "checkpoint", "snapshot", "dead_letter"):
        assert clock.ns.get(stage, 0) > 0, stage
    rows = stage_rows(clock.ns, clock.calls, clock.wall_ns, stats.learned)
    busy_ns = clock.wall_ns - clock.ns.get(IDLE, 0) - clock.ns[BENCH]
    assert rows[-1].seconds == pytest.approx(busy_ns / 1e9)
    assert sum(r.seconds for r in rows[:-1]) == pytest.approx(rows[-1].seconds)


# ---- the consumer's own time -------------------------------------------------------------------

LOG = """\
2026-01-05 10:00:00,100 INFO nudge.consume: consuming ['b.impressions', 'b.outcomes'] from x
2026-01-05 10:00:05,000 INFO nudge.consume: consumed=9000 (1800/s) impressions=6000 learned=5000
2026-01-05 10:00:53,000 INFO nudge.consume: idle for 3.0s after 52.5s: finishing
2026-01-05 10:00:53,500 INFO nudge.consume: published snapshot snap-000000012 (learned=100000)
2026-01-05 10:00:54,250 INFO nudge.consume: done: learned=100000 dead_lettered=0 pending=0
"""


def test_the_consumers_busy_time_leaves_out_the_idle_wait_and_keeps_the_final_checkpoint() -> None:
    assert consume_busy_seconds(LOG) == pytest.approx(52.5 - 3.0 + 1.25)


def test_a_log_without_the_finishing_lines_is_an_error() -> None:
    with pytest.raises(BenchError, match="idle for"):
        consume_busy_seconds(LOG.splitlines()[0])


# ---- what VW's driver learns -------------------------------------------------------------------


def test_the_data_file_holds_exactly_the_lines_the_learner_gives_vw(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = synthetic_events(20, 4, 12, list(config.learner.namespaces), "none", seed=3)
    given: list[list[str]] = []
    original = bandit.policies.VowpalPolicy.learn_text

    def spy(self: bandit.policies.VowpalPolicy, text: str) -> None:
        given.append(text.split("\n"))
        original(self, text)

    monkeypatch.setattr(bandit.policies.VowpalPolicy, "learn_text", spy)
    learner = OnlineLearner(config.learner, none_action="none")
    for event in events:
        learner.learn(event)
    learner.close()

    assert ["\n".join(lines) + "\n\n" for lines in given] == [
        vw_example_text(e, learner.letters) for e in events
    ]


def test_vw_driver_its_extension_and_the_learner_end_with_the_same_loss(
    config: Config, tmp_path: Path
) -> None:
    events = synthetic_events(300, 5, 10, list(config.learner.namespaces), "none", seed=1)
    data = tmp_path / "learned.vw"
    write_vw_data(events, OnlineLearner(config.learner).letters, data)

    native = native_speed(config.learner.vw_arguments(), data, len(events), repeats=1)
    extension = extension_speed(config.learner.vw_arguments(), data)
    learner = learner_speed(config, events)

    assert native["average_loss"] == pytest.approx(learner["average_loss"], rel=1e-9)
    assert extension["average_loss"] == pytest.approx(learner["average_loss"], rel=1e-9)
    assert native["eps"] > 0 and learner["eps"] > 0


def test_a_learned_event_comes_back_equal_from_its_json(config: Config) -> None:
    run = simulate_traffic(World(3, 50, 2), config.simulator, config.join, 30, 3, 0.0)
    impressions = [
        decode_event(m.value, config.event_rules()) for m in run.messages if m.kind == "impression"
    ]
    events = [
        JoinedEvent(imp, OutcomeLabel("helpful"), 2.5, 1.0, False, closed_early=True)
        for imp in impressions
        if isinstance(imp, Impression)
    ]
    events += synthetic_events(3, 4, 8, ["learner"], "none", seed=4)

    assert len(events) > 30
    for event in events:
        assert joined_from_json(joined_json(event)) == event


def test_synthetic_events_have_the_asked_shape(config: Config) -> None:
    namespaces = list(config.learner.namespaces)
    events = synthetic_events(5, 20, 50, namespaces, "none", seed=2)

    for event in events:
        imp = event.impression
        assert len(imp.action_ids) == 20 and imp.action_ids[-1] == "none"
        assert sum(len(f) for f in imp.context.values()) == 50
        assert all(len(f) == 2 for f in imp.action_features)
        assert imp.probability == pytest.approx(1 / 20)
        assert event.reward in (-1.0, 0.0, 1.0)


# ---- the report --------------------------------------------------------------------------------


def _result() -> Result:
    rows = stage_rows({"fetch": 3_000_000, "learn": 5_000_000}, {"fetch": 2, "learn": 4}, 10_000_000, 100)  # fmt: skip
    growth = [
        GrowthPoint(a, FIXED_FEATURES, 1000, 20_000.0 / a, 200_000.0 / a) for a in (2, 5, 20, 50)
    ] + [GrowthPoint(FIXED_ACTIONS, f, 1000, 8000.0, 80_000.0) for f in (50, 200)]
    return Result(
        events=1000, messages=1400, expected_learned=1000,
        native_vw_eps=80_000.0, learner_eps=16_000.0, e2e_eps=2_000.0,
        e2e={"seconds": 0.5, "learned": 1000, "peak_rss_mb": 150.0,
             "dead_letters_by_reason": {"late_outcome": 3, "join_state_full": 40},
             "expected_dead_letters_by_reason": {"late_outcome": 3}},
        profiled={"seconds": 0.01, "learned": 100, "consumed": 140, "eps": 10_000.0,
                  "idle_s": 3.0, "checkpoints": 2, "checkpoint_bytes_max": 2_500_000,
                  "checkpoint_bytes_last": 1_000_000, "peak_waiting": 30, "peak_pending": 7},
        stages=rows, native={"examples": 1000}, learner={}, growth=growth,
    )  # fmt: skip


def test_the_json_report_leads_with_the_ratio_of_end_to_end_to_native() -> None:
    report = _result().to_json()

    assert report["ratio"] == pytest.approx(2_000 / 80_000)
    assert report["learner_ratio"] == pytest.approx(0.2)
    assert report["stages_us_per_event"] == {
        "fetch": 30.0,
        "learn": 50.0,
        OTHER: 20.0,
        "total": 100.0,
    }
    assert report["checkpoint_bytes"] == 2_500_000
    assert report["peak_rss_mb"] == 150.0
    assert len(report["growth"]) == 6


def test_the_table_shows_the_headline_numbers_and_a_row_per_stage() -> None:
    text = table(_result())

    assert (
        "| native_vw_eps (VW's driver, 1,000 examples from a file; best of 1, median 0) | 80,000 |"
        in text
    )
    assert "| 16,000 (0.20× native) |" in text
    assert "| ratio = e2e_eps / native_vw_eps | 0.025 |" in text
    assert "| fetch | 0.00 | 30.0 | 30.0% | 2 |" in text
    assert "| other | 0.00 | 20.0 | 20.0% |  |" in text
    assert "| total | 0.01 | 100.0 | 100.0% |  |" in text
    assert "| 50 | 10 | 1,000 | 400 | 4,000 | 0.10 |" in text
    assert "| 43 (3); join_state_full 40 (expected 0) |" in text


def test_dead_letters_the_simulator_did_not_expect_are_named_by_reason() -> None:
    got = {"late_outcome": 263, "join_state_full": 17_002, "duplicate_outcome": 99}
    expected = {"late_outcome": 263, "duplicate_outcome": 100}

    assert dead_letter_surprises(got, expected) == [
        "duplicate_outcome 99 (expected 100)",
        "join_state_full 17,002 (expected 0)",
    ]
    assert dead_letter_surprises(expected, expected) == []


def test_the_growth_plot_is_svg_with_a_line_per_speed_in_each_panel() -> None:
    root = ET.fromstring(growth_svg(_result().growth))  # noqa: S314 (our own output)

    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 4  # learner and VW driver, by actions and by features
    assert [len(p.attrib["points"].split()) for p in lines] == [4, 4, 3, 3]


def test_hiding_the_native_crc_makes_kafka_python_check_crcs_in_python(tmp_path: Path) -> None:
    probe = "from kafka.record import util; print(util.crc32c_c is None)"

    def kafka_uses_python_crc(env: dict[str, str]) -> str:
        return subprocess.run(
            [sys.executable, "-c", probe], env={**os.environ, **env}, capture_output=True,
            text=True, check=True,
        ).stdout.strip()  # fmt: skip

    assert kafka_uses_python_crc({"PYTHONPATH": str(_crc32c_hider(tmp_path))}) == "True"
    assert kafka_uses_python_crc({}) == "False"  # crc32c is a dependency


# ---- repeats and the baseline ------------------------------------------------------------------


def test_each_round_runs_every_consumer_once_the_baseline_first() -> None:
    assert e2e_schedule(["baseline", "kafka-python", "confluent-kafka"], 2) == [
        ("baseline", 0), ("kafka-python", 0), ("confluent-kafka", 0),
        ("baseline", 1), ("kafka-python", 1), ("confluent-kafka", 1),
    ]  # fmt: skip
    assert e2e_schedule(["kafka-python"], 3) == [("kafka-python", i) for i in range(3)]


def test_the_fastest_run_is_the_headline_and_every_runs_speed_is_kept() -> None:
    runs = [{"eps": 900.0, "learned": 10}, {"eps": 1200.0, "learned": 11}, {"eps": 1000.0, "learned": 12}]  # fmt: skip

    summary = best_of(runs)

    assert summary["eps"] == 1200.0 and summary["learned"] == 11  # the fastest run's numbers
    assert summary["runs_eps"] == [900.0, 1200.0, 1000.0]  # in run order
    assert summary["median_eps"] == 1000.0
    assert summary["repeats"] == 3
    assert best_of(runs[:2])["median_eps"] == 1050.0


def test_no_run_is_an_error_not_a_zero() -> None:
    with pytest.raises(BenchError, match="no e2e run"):
        best_of([])


def _with_baseline() -> Result:
    result = _result()
    result.e2e.update(runs_eps=[1_600.0, 2_000.0, 1_800.0], median_eps=1_800.0, repeats=3)
    baseline_runs = [
        {
            "eps": e,
            "seconds": 1.0,
            "learned": 950,
            "dead_letters_by_reason": {"join_state_full": 50},
        }
        for e in (1_000.0, 800.0, 1_250.0)
    ]
    result.baseline = {
        "ref": "9c4d1c6", "commit": "9c4d1c6", "native_crc": False,
        **best_of(baseline_runs), "runs": baseline_runs,
    }  # fmt: skip
    return result


def test_the_speedup_is_best_over_best_and_median_over_median() -> None:
    report = _with_baseline().to_json()

    assert report["baseline_eps"] == 1_250.0
    assert report["baseline_median_eps"] == 1_000.0
    assert report["speedup"] == pytest.approx(2_000 / 1_250)
    assert report["speedup_median"] == pytest.approx(1_800 / 1_000)
    assert report["baseline_ref"] == "9c4d1c6"
    assert report["e2e_median_eps"] == 1_800.0
    assert [r["eps"] for r in report["baseline"]["runs"]] == [1_000.0, 800.0, 1_250.0]
    assert report["baseline"]["learned"] == 950  # recorded, not checked against the simulator
    assert report["baseline"]["dead_letters_by_reason"] == {"join_state_full": 50}


def test_without_a_baseline_the_report_has_no_speedup() -> None:
    report = _result().to_json()

    assert report["baseline_eps"] is None and report["speedup"] is None
    assert report["speedup_median"] is None and report["baseline_ref"] is None
    assert "baseline" not in table(_result())


def test_the_table_shows_the_baseline_and_the_speedup_under_the_e2e_rows() -> None:
    lines = table(_with_baseline()).splitlines()

    e2e = next(i for i, line in enumerate(lines) if line.startswith("| e2e_eps ("))
    assert "best of 3, median 1,800) | 2,000 |" in lines[e2e]
    assert lines[e2e + 2] == (
        "| baseline_eps (`nudge consume` of 9c4d1c6 (9c4d1c6), crc32c hidden, 950 learned in "
        "1.0 s; best of 3, median 1,000) | 1,250 |"
    )
    assert lines[e2e + 3] == (
        "| speedup = e2e_eps / baseline_eps: best / best; median / median | 1.60×; 1.80× |"
    )
    assert lines[e2e + 4] == (
        "| baseline's best run: learned (the simulator expects); dead letters | "
        "950 (1,000); 50 (join_state_full 50) |"
    )


def test_an_unknown_baseline_ref_fails_naming_the_flag(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=r"^--baseline no-such-ref-13: "):
        extract_baseline("no-such-ref-13", tmp_path / BASELINE_SRC)


def test_the_bench_stops_at_an_unknown_baseline_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--baseline", "no-such-ref-13", "--workdir", str(tmp_path), "--bootstrap", "0:1"])

    assert code == 2
    assert "--baseline no-such-ref-13" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.yaml"))  # not a config written, no broker asked


def test_the_baseline_tree_is_the_commits_and_shadows_the_installed_packages(
    tmp_path: Path,
) -> None:
    root = Path(__file__).resolve().parents[2]
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip

    commit = extract_baseline("HEAD", tmp_path / BASELINE_SRC)

    assert commit == head
    assert (tmp_path / BASELINE_SRC / "streams" / "consumer.py").is_file()
    assert (tmp_path / BASELINE_SRC / "config.yaml").is_file()


def test_cleanup_covers_every_runs_directories_and_the_baseline_tree(tmp_path: Path) -> None:
    for name in ("timed", "e2e-kafka-python-0", "e2e-kafka-python-1", "baseline-0", BASELINE_SRC):
        (tmp_path / name).mkdir()
    (tmp_path / "e2e-kafka-python-0.yaml").write_text("")

    scratch = {str(p.relative_to(tmp_path)) for p in scratch_directories(tmp_path)}

    runs = ("timed", "e2e-kafka-python-0", "e2e-kafka-python-1", "baseline-0")
    assert scratch == {
        f"{run}/{sub}" for run in runs for sub in ("checkpoints", "snapshots", "spool")
    } | {BASELINE_SRC}
