"""The `nudge` command line: composes the core (`bandit`), the Kafka side (`streams`) and the
offline side (`replay`) into commands; the one place where they meet."""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import logging
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from bandit.config import Config, PruningConfig, config_secrets, load_config, mask_secrets
from bandit.errors import BrokerError, NudgeError, UsageError
from bandit.events import timestamp_text
from nudge.arguments import (
    OneLineParser,
    check_output,
    fraction,
    non_negative_int,
    port,
    positive_int,
    seconds,
    seed,
)

if TYPE_CHECKING:
    from bandit.simulation.closed_loop import RoundReport
    from streams.checkpoints import Checkpoint
    from streams.metrics import MetricsEndpoint

WHY_ORDER = ("exploit", "explore", "forced", "cold_start", "retest")

EPILOG = """examples:
  scripts/kafka start                                   # local Apache Kafka on 127.0.0.1:9092
  nudge simulate --config config.yaml --events 20000 --seed 7 --invalid-fraction 0.02
  nudge consume  --config config.yaml --until-idle 5 --stats-json stats.json
  nudge score    --config config.yaml --seed 7
  nudge consume  --config config.yaml &                 # learn continuously, publish snapshots
  nudge loop     --config config.yaml --rounds 10       # closed loop: decide, log, learn, reload
  nudge decide   --trigger A/quiz-3/quiz-failed --learner u000042 --context '{"learner": {"novice": 1}}'
  nudge export   --config config.yaml --out snapshots/  # snapshot from the latest checkpoint
  NUDGE_API_KEYS=$(openssl rand -hex 24) nudge serve --config config.yaml   # HTTP decisions
  nudge replay   --events logs.jsonl --html replay.html  # counterfactual evaluation of policies

Every config field can be overridden from the environment, e.g.
  NUDGE_KAFKA__BOOTSTRAP_SERVERS=broker:9092 NUDGE_CHECKPOINT__DIRECTORY=/var/lib/nudge nudge consume
"""


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def _snapshot_key(cfg: Config) -> bytes | None:
    """The snapshot signing key (NUDGE_SNAPSHOT_KEY or snapshots.signing_key_file), if set."""
    from bandit.snapshots import signing_key

    return signing_key(cfg.snapshots.signing_key_file)


def cmd_simulate(args: argparse.Namespace) -> int:
    from bandit.simulation.publish import publish, written_jsonl
    from bandit.simulation.traffic import SimMessage, SimulationRun, stream_traffic
    from bandit.simulation.world import World

    if args.no_kafka and not args.out:
        raise UsageError("--no-kafka needs --out FILE: otherwise nothing is produced")
    check_output("--out", args.out)
    cfg = _config(args)
    started = time.monotonic()
    world = World(args.seed, cfg.simulator.learners, cfg.simulator.courses)
    # Streamed: messages go out as they are made, so memory does not grow with --events.
    run = SimulationRun(messages=[], keep_ids=False)
    messages: Iterable[SimMessage] = stream_traffic(
        world, cfg.simulator, cfg.join, args.events, args.seed, args.invalid_fraction, tally=run
    )
    if args.out:
        messages = written_jsonl(messages, Path(args.out))
    if args.no_kafka:
        for _ in messages:
            pass
    else:
        from streams.kafka_io import Producer, ensure_topics

        k = cfg.kafka
        ensure_topics(k, [k.impressions_topic, k.outcomes_topic, k.dead_letter_topic], k.topic_partitions)
        producer = Producer(k)
        try:
            publish(messages, producer, k.impressions_topic, k.outcomes_topic)
        finally:
            producer.close()
    summary = run.summary()
    if args.out:
        summary["out"] = str(args.out)
    if not args.no_kafka:
        summary["topics"] = [cfg.kafka.impressions_topic, cfg.kafka.outcomes_topic]
    summary["seed"] = args.seed
    summary["seconds"] = round(time.monotonic() - started, 2)
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    return 0


def _metrics_endpoint(args: argparse.Namespace) -> MetricsEndpoint | None:
    """`--metrics-port`: the consumer's Prometheus endpoint, bound before the broker is asked
    so that a taken port fails at once."""
    if args.metrics_port is None:
        if args.metrics_host is not None:
            raise UsageError("--metrics-host needs --metrics-port")
        return None
    from streams.metrics import MetricsEndpoint

    endpoint = MetricsEndpoint(args.metrics_host or "127.0.0.1", args.metrics_port)
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    logging.getLogger("nudge.consume").info("metrics at http://%s:%d/metrics", host, endpoint.port)
    return endpoint


def cmd_consume(args: argparse.Namespace) -> int:
    from streams.allocator import pin_mmap_threshold
    from streams.collector import quiet_collector
    from streams.consumer import RunOptions, StreamLearner, install_signal_handlers
    from streams.kafka_io import (
        SNAPSHOT_MESSAGE_BYTES,
        Producer,
        ensure_snapshot_topic,
        ensure_topics,
    )
    from streams.sources import record_source_type

    check_output("--stats-json", args.stats_json)
    cfg = _config(args)
    _snapshot_key(cfg)  # a bad signing key fails now, not at the first snapshot
    open_source = record_source_type(cfg.kafka)  # so does a client library not installed
    pin_mmap_threshold()  # checkpoint-sized buffers stay out of the heap (streams.allocator)
    endpoint = _metrics_endpoint(args)
    try:
        k = cfg.kafka
        topics = [k.impressions_topic, k.outcomes_topic]
        ensure_topics(k, [*topics, k.dead_letter_topic], k.topic_partitions)
        snapshot_sink = None
        if cfg.snapshots.kafka_topic is not None:
            ensure_snapshot_topic(k, cfg.snapshots.kafka_topic)
            snapshot_sink = Producer(k, max_request_size=SNAPSHOT_MESSAGE_BYTES)
        learner = StreamLearner(
            cfg, open_source(k, topics), Producer(k), snapshot_sink=snapshot_sink
        )
        install_signal_handlers(learner)
        if endpoint is not None:
            endpoint.watch(learner)
        quiet_collector()  # the loop allocates per message, leaks no cycles (streams.collector)
        learner.run(RunOptions(until_idle_s=args.until_idle))
    finally:
        if endpoint is not None:
            endpoint.close()
    summary = learner.summary()
    text = orjson.dumps(summary, option=orjson.OPT_INDENT_2)
    if args.stats_json:
        args.stats_json.parent.mkdir(exist_ok=True)  # check_output allowed this one level
        args.stats_json.write_bytes(text)
    logging.getLogger("nudge.consume").info(
        "done: learned=%d dead_lettered=%d pending=%d checkpoints=%d",
        summary["learned"], summary["dead_lettered"], summary["pending"], summary["checkpoints"],
    )  # fmt: skip
    return 0


def _latest_checkpoint(cfg: Config, alternative: str = "") -> Checkpoint:
    """The newest whole checkpoint of `cfg`, or an error saying how to make one."""
    from streams.checkpoints import CheckpointStore

    ckpt = CheckpointStore(cfg.checkpoint.directory).latest()
    if ckpt is None:
        raise NudgeError(
            f"no checkpoint in {cfg.checkpoint.directory}: run `nudge consume` first{alternative}"
        )
    return ckpt


def cmd_score(args: argparse.Namespace) -> int:
    from bandit.learning import OnlineLearner
    from bandit.simulation.scoring import score_decider, score_learner
    from bandit.simulation.world import World
    from bandit.snapshots import SnapshotStore

    cfg = _config(args)
    ckpt = _latest_checkpoint(cfg)
    learner = OnlineLearner(cfg.learner, state=ckpt.learner)
    world = World(args.seed, cfg.simulator.learners, cfg.simulator.courses)
    learner_scores = score_learner(world, learner, cfg, args.decisions, args.seed + 1000)
    scores = learner_scores.as_dict()
    learner.close()
    scores["checkpoint"] = ckpt.sequence
    scores["learned"] = ckpt.stats.get("learned")
    if SnapshotStore(cfg.snapshots.directory).latest_pointer() is not None:
        from bandit.decisions import Decider

        with Decider(cfg.snapshots.directory, seed=args.seed, key=_snapshot_key(cfg)) as decider:
            service = score_decider(world, decider, cfg, args.decisions, args.seed + 1000)
            scores["decision_service"] = {"snapshot": decider.version, **service.as_dict()}
    if args.json:
        print(orjson.dumps(scores, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(
        f"True expected reward per decision ({args.decisions} fresh decisions, simulator seed {args.seed},"
    )
    print(f"policy from checkpoint {ckpt.sequence} after {scores['learned']} learned events):")
    rows = [
        ("learned policy, greedy", "greedy"),
        ("learned policy, with VW exploration", "exploration"),
        ("best single message per trigger", "best_per_trigger"),
        ("uniform random (logging policy)", "uniform"),
        ("send to all (random message)", "send_to_all"),
        ("never send", "never_send"),
        ("oracle (knows the truth)", "oracle"),
    ]
    for label, key in rows:
        print(f"  {label:<40} {scores[key]:+.4f}")
    service_scores = scores.get("decision_service")
    if isinstance(service_scores, dict):
        label = f"decision service, {service_scores['snapshot']}"
        print(f"  {label:<40} {service_scores['exploration']:+.4f}  (whole mixture: forced share,")
        print(f"  {'':<40} {'':>7}  cold start, versions, exploration)")
    print(f"  greedy gain over uniform random          {scores['greedy_minus_uniform']:+.4f}")
    print(
        f"  'none' is truly best in {scores['none_best_share']:.0%} of decisions; "
        f"the policy holds back there {scores['none_chosen_where_best']:.0%} of the time"
    )
    greedy = learner_scores.greedy_actions
    print("  greedy choices: " + ", ".join(f"{a}={n}" for a, n in greedy.most_common()))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from bandit.snapshots import SnapshotStore

    cfg = _config(args)
    ckpt = _latest_checkpoint(cfg)
    out = args.out or cfg.snapshots.directory
    store = SnapshotStore(out, cfg.snapshots.keep)
    name = store.publish(cfg, ckpt.learner, ckpt.offsets, int(ckpt.stats["learned"]))
    print(f"{out}/{name}  (checkpoint {ckpt.sequence}, {ckpt.stats['learned']} learned events)")
    return 0


def cmd_follow(args: argparse.Namespace) -> int:
    import signal
    import threading

    from streams.snapshot_feed import follow_snapshots

    cfg = _config(args)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stats = follow_snapshots(cfg, args.out, args.until_idle, stop)
    print(f"{args.out}: {stats.summary()}")
    return 0


def _arms_rows(
    state_arms: dict, state_pruning: dict, rule: PruningConfig, none_action: str
) -> list[dict[str, object]]:
    from bandit.arms import ArmStats
    from bandit.pruning import PruningState, metric_interval

    arms = ArmStats.from_json(state_arms, rule.half_life_impressions, none_action)
    statuses = PruningState.from_json(state_pruning).statuses
    rows: list[dict[str, object]] = []
    for e in arms.all_estimates():
        value, low, high = metric_interval(e, rule)
        status = statuses.get(e.trigger, {}).get(e.action)
        shown = max(e.shown, 1)
        rows.append(
            {
                "trigger": e.trigger,
                "action": e.action,
                "shown": e.shown,
                "helpful_rate": e.helpful / shown,
                "not_helpful_rate": e.not_helpful / shown,
                "ignored_rate": e.ignored / shown,
                "value": e.value,
                "metric": rule.metric,
                "metric_value": value,
                "low": low,
                "high": high,
                "status": "send-nothing" if e.action == none_action
                else (status.status if status else "active"),
                "since": timestamp_text(status.since) if status else None,
            }
        )  # fmt: skip
    return rows


def cmd_arms(args: argparse.Namespace) -> int:

    cfg = _config(args)
    rule, none_action = cfg.pruning, cfg.rewards.none_action
    if args.snapshots:
        from bandit.snapshots import SnapshotStore

        snapshot = SnapshotStore(args.snapshots, key=_snapshot_key(cfg)).load_latest()
        arms, pruning, source = (
            snapshot.state.arms,
            snapshot.state.pruning,
            snapshot.manifest.policy_id,
        )
    else:
        ckpt = _latest_checkpoint(cfg, " (or pass --snapshots DIR)")
        arms, pruning = ckpt.learner.arms, ckpt.learner.pruning
        source = f"checkpoint {ckpt.sequence}"
    rows = _arms_rows(arms, pruning, rule, none_action)
    if args.trigger:
        rows = [r for r in rows if fnmatch.fnmatchcase(str(r["trigger"]), args.trigger)]
    changes = list((pruning or {}).get("changes", []))
    if args.trigger:
        changes = [c for c in changes if fnmatch.fnmatchcase(c["trigger"], args.trigger)]
    if args.json:
        body = {"source": source, "arms": rows, "changes": changes}
        print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return 0
    if args.changes:
        for c in changes:
            e = c["evidence"]
            interval = f"[{e['low']:+.3f}, {e['high']:+.3f}]" if e["low"] is not None else "n/a"
            print(
                f"{timestamp_text(c['ts'])}  {c['trigger']:<30} {c['action']:<18} "
                f"{c['before']:>11} -> {c['after']:<11} {e['metric']} {interval} shown {e['shown']}"
            )
        return 0
    print(
        f"arms from {source}; pruning {'on' if rule.enabled else 'off'}: {rule.metric} interval "
        f"({rule.confidence:.0%}) wholly below {rule.threshold:+g} after {rule.min_impressions} "
        f"shown; re-test share {rule.retest_share:.0%}"
    )
    trigger = None
    for r in rows:
        if r["trigger"] != trigger:
            trigger = r["trigger"]
            print(f"\n{trigger}")
            print(
                f"  {'message':<18}{'shown':>7}{'helpful':>9}{'not':>7}{'ignored':>9}"
                f"{'value':>9}  {r['metric']:<13}{'interval':<19}{'status':<13}since"
            )
        interval = f"[{r['low']:+.3f}, {r['high']:+.3f}]" if r["low"] is not None else "n/a"
        metric = f"{r['metric_value']:+.3f}" if r["metric_value"] is not None else "n/a"
        print(
            f"  {r['action']:<18}{r['shown']:>7}{r['helpful_rate']:>9.1%}"
            f"{r['not_helpful_rate']:>7.1%}{r['ignored_rate']:>9.1%}{r['value']:>+9.3f}  "
            f"{metric:<13}{interval:<19}{r['status']:<13}{r['since'] or ''}"
        )
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    from bandit.decisions import Decider, check_identifier

    cfg = _config(args)
    directory = args.snapshots or cfg.snapshots.directory
    check_identifier("--trigger", args.trigger)  # the event contract's rule, named by flag
    check_identifier("--learner", args.learner)
    for action in args.candidates or ():
        check_identifier("--candidates", action)
    try:
        context = orjson.loads(args.context)
    except orjson.JSONDecodeError as exc:
        raise NudgeError(f"--context must be a JSON object of namespaces: {exc}") from None
    if not isinstance(context, dict):
        raise NudgeError('--context must be a JSON object, e.g. \'{"learner": {"novice": 1}}\'')
    decide_log = logging.getLogger("nudge.decide")
    level = decide_log.level
    if not args.verbose:  # a refused snapshot is the error raised: one line, not two
        decide_log.setLevel(logging.CRITICAL)
    try:
        decider = Decider(directory, seed=args.seed, key=_snapshot_key(cfg))
    finally:
        decide_log.setLevel(level)
    with decider:
        known = decider.policy.actions
        unknown = [a for a in args.candidates or [] if a not in known]
        if unknown:
            raise UsageError(
                f"--candidates: unknown action {unknown[0]!r}: snapshot {decider.version} knows "
                f"{', '.join(sorted(known))} (a new message needs its features: use the decision "
                "library's action_features)"
            )
        decisions = [
            decider.decide(
                args.trigger, args.learner, context, args.candidates, reactions=args.reactions
            )
            for _ in range(args.repeat)
        ]
    for decision in decisions:
        print(decision.impression_json().decode())
    return 0


def _round_line(r: RoundReport) -> str:
    why = r.why
    total = sum(why.values()) or 1
    shares = " ".join(f"{k}={why.get(k, 0) / total:.0%}" for k in WHY_ORDER)
    return (
        f"round {r.round:>3}  {r.policy:<14} learned {r.learned:>7,}  "
        f"reward/decision {r.deployed:+.3f}  (random {r.uniform:+.3f}, send-to-all "
        f"{r.send_to_all:+.3f}, oracle {r.oracle:+.3f})  sends nothing {r.held_back:.0%} "
        f"(where best {r.none_mass_where_best:.0%})  helpful:unhelpful "
        f"{r.helpful / max(r.not_helpful, 1e-9):.2f}  [{shares}]"
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from nudge.service.server import ServeOptions, serve

    cfg = _config(args)
    serve(
        args.config,
        cfg,
        ServeOptions(
            host=args.host, port=args.port, workers=args.workers, access_log=args.access_log
        ),
    )
    return 0


def cmd_loop(args: argparse.Namespace) -> int:
    from bandit.simulation.closed_loop import ClosedLoop, LoopOptions, ensure_snapshot
    from bandit.simulation.decision_port import LibraryPort
    from nudge.charts import ascii_chart, write_svg_chart
    from streams.kafka_io import Producer, end_offsets, ensure_topics

    check_output("--plot", args.plot)
    check_output("--report-json", args.report_json)
    if args.api_key and not args.http:
        raise UsageError("--api-key is for the service: give --http URL too")
    cfg = _config(args)
    if not args.verbose:
        logging.getLogger("nudge.decide").setLevel(logging.WARNING)  # one line per reload
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request (--http)
    options = LoopOptions(
        rounds=args.rounds,
        decisions_per_round=args.decisions,
        seed=args.seed,
        snapshot_wait_s=args.wait,
    )
    source = f"`nudge serve` at {args.http}" if args.http else "the decision library"
    print(
        f"closed loop: {args.rounds} rounds x {args.decisions} decisions, seed {args.seed}; "
        f"decisions from {source} (snapshots in {cfg.snapshots.directory}), learned by "
        "`nudge consume`"
    )
    k = cfg.kafka
    topics = [k.impressions_topic, k.outcomes_topic]
    ensure_topics(k, [*topics, k.dead_letter_topic], k.topic_partitions)
    ensure_snapshot(cfg, args.seed)
    with contextlib.ExitStack() as stack:
        if args.http:  # the service logs to Kafka; the loop only reads how far the topics go
            from nudge.service.client import HttpPort

            port: LibraryPort | HttpPort = HttpPort(args.http, args.api_key, wait_s=args.wait)
        else:
            producer = Producer(k)
            stack.callback(producer.close)
            port = LibraryPort.open(cfg, producer, args.seed, options.watch_interval_s)
        stack.callback(port.close)
        loop = ClosedLoop(cfg, options, port, lambda: end_offsets(k, topics))
        reports = loop.run(lambda r: print(_round_line(r), flush=True))
    series = {
        "policy": [r.deployed for r in reports],
        "random": [r.uniform for r in reports],
        "send-to-all": [r.send_to_all for r in reports],
        "oracle": [r.oracle for r in reports],
    }
    print()
    print("true expected reward per decision, by round:")
    print(ascii_chart(series))
    if args.plot:
        write_svg_chart(series, args.plot, "True expected reward per decision, by round")
        print(f"chart: {args.plot}")
    if args.report_json:
        args.report_json.parent.mkdir(exist_ok=True)  # check_output allowed this one level
        args.report_json.write_bytes(
            orjson.dumps([r.as_dict() for r in reports], option=orjson.OPT_INDENT_2)
        )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """`nudge bench`: benchmarks/consumer_bench.py of the source checkout `nudge` runs from
    (the benchmarks are not part of the installed packages)."""
    import importlib

    root = Path(__file__).resolve().parents[1]
    if not (root / "benchmarks" / "consumer_bench.py").is_file():
        raise UsageError(
            f"nudge bench runs benchmarks/consumer_bench.py of a source checkout; none at {root}"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return int(importlib.import_module("benchmarks.consumer_bench").main(args.rest))


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="nudge",
        description="nudgebandit: learn online which nudge to send to whom, and whether to send one.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"nudge {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str, description: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_,
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument(
            "--config",
            type=Path,
            default=Path("config.yaml"),
            help="config file (default: %(default)s)",
        )
        return p

    sim = add(
        "simulate",
        "produce simulated impressions and outcomes (known truth) to Kafka or a file",
        "Simulate a nudge platform logging uniform-random decisions with exact propensities, and\n"
        "produce its impressions and outcomes to the configured topics in arrival order.\n"
        "Prints a JSON summary: impressions, outcomes, invalid, duplicates and what a correct\n"
        "consumer must end with (learned count, dead letters by reason).",
    )
    sim.add_argument(
        "--events", type=positive_int, default=20_000,
        help="impressions to log (default: %(default)s)",
    )  # fmt: skip
    sim.add_argument(
        "--seed", type=seed, default=7, help="world and traffic seed (default: %(default)s)"
    )
    sim.add_argument(
        "--invalid-fraction", type=fraction, default=0.0, metavar="F",
        help="share of messages corrupted on purpose, each with a known reason (default: %(default)s)",
    )  # fmt: skip
    sim.add_argument("--out", type=Path, help="also write the messages as JSON lines to this file")
    sim.add_argument(
        "--no-kafka", action="store_true", help="only write --out (required then), produce nothing"
    )
    sim.set_defaults(func=cmd_simulate)

    con = add(
        "consume",
        "join impressions with outcomes and train the Vowpal Wabbit policy online",
        "Consume the impression and outcome topics, join them into rewards in event time, learn\n"
        "with Vowpal Wabbit, dead-letter what is invalid, late or duplicate, and checkpoint the\n"
        "model, join state and offsets together. Resumes from the last checkpoint. Runs until\n"
        "SIGTERM/SIGINT (which checkpoint first) unless --until-idle is given.",
    )
    con.add_argument(
        "--until-idle", type=seconds, metavar="SECONDS",
        help="exit after this many seconds without new messages; the input is then treated as "
        "finished: open windows close with the default outcome, a final checkpoint is written",
    )  # fmt: skip
    con.add_argument("--stats-json", type=Path, metavar="PATH", help="write the final stats here")
    con.add_argument(
        "--metrics-port", type=port, metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics while consuming (0: a free "
        "port, logged); README \"Metrics\"",
    )  # fmt: skip
    con.add_argument(
        "--metrics-host", metavar="HOST", help="metrics endpoint address (default: 127.0.0.1)"
    )
    con.set_defaults(func=cmd_consume)

    score = add(
        "score",
        "score the checkpoint's policy against the simulator's truth",
        "Sample fresh decisions from the simulated world and compute, exactly, the expected\n"
        "reward of the learned policy and of the baselines (uniform, send-to-all, never-send,\n"
        "best single message per trigger, oracle). Use the --seed the traffic was simulated with.",
    )
    score.add_argument(
        "--seed", type=seed, default=7, help="the simulator seed (default: %(default)s)"
    )
    score.add_argument(
        "--decisions", type=positive_int, default=5000,
        help="decisions to sample (default: %(default)s)",
    )  # fmt: skip
    score.add_argument("--json", action="store_true", help="print JSON instead of a table")
    score.set_defaults(func=cmd_score)

    export = add(
        "export",
        "write a policy snapshot for decision services from the latest checkpoint",
        "Export the latest checkpoint as a policy snapshot: manifest (policy id, VW arguments,\n"
        "action catalogue per trigger, exploration and decision rules, rewards, trained-through\n"
        "offsets, sha256 of every file) plus the VW models, published atomically with LATEST.\n"
        "`nudge consume` publishes snapshots by itself (snapshots.every_events / every_s).",
    )
    export.add_argument(
        "--out", type=Path, metavar="DIR",
        help="snapshot directory (default: snapshots.directory from the config)",
    )  # fmt: skip
    export.set_defaults(func=cmd_export)

    follow = add(
        "follow-snapshots",
        "mirror the compacted snapshot topic into a local directory for a decision service",
        "Read snapshots.kafka_topic (where `nudge consume` publishes every snapshot when it is\n"
        "set) and write each newer snapshot, verified, into --out with its LATEST pointer; a\n"
        "Decider watching that directory hot-reloads. Runs until SIGTERM unless --until-idle.",
    )
    follow.add_argument("--out", type=Path, required=True, metavar="DIR", help="local snapshot dir")
    follow.add_argument(
        "--until-idle", type=seconds, metavar="SECONDS",
        help="exit after this many seconds without a new message",
    )  # fmt: skip
    follow.set_defaults(func=cmd_follow)

    arms = add(
        "arms",
        "per trigger, every message's evidence and pruning status",
        "For every trigger and message: times shown, outcome rates, the importance-weighted value\n"
        "of always showing it, the pruning metric with its interval, status (active / pruned /\n"
        "forced_keep / forced_hold; pruned messages still get the re-test share) and since when\n"
        "(event time). From the latest checkpoint, or a snapshot directory with --snapshots.",
    )
    arms.add_argument("--snapshots", type=Path, metavar="DIR", help="read a snapshot directory")
    arms.add_argument("--trigger", metavar="PATTERN", help="only triggers matching (fnmatch)")
    arms.add_argument("--json", action="store_true", help="print JSON instead of a table")
    arms.add_argument(
        "--changes", action="store_true",
        help="print the pruning change log (status changes with their evidence and event time)",
    )  # fmt: skip
    arms.set_defaults(func=cmd_arms)

    decide = add(
        "decide",
        "ask the latest snapshot what to show (prints the impression to log)",
        "Load the newest snapshot and decide for one learner at one trigger, exactly as the\n"
        "decision library does in a service: prints the impression event (chosen action, its\n"
        "probability under the whole mixture, the pmf, policy version and why).",
    )
    decide.add_argument(
        "--trigger", required=True, help="course-item-state, e.g. A/quiz-3/quiz-failed"
    )
    decide.add_argument("--learner", required=True, help="learner id")
    decide.add_argument(
        "--context", default="{}", help='context JSON, e.g. \'{"learner": {"novice": 1}}\''
    )
    decide.add_argument(
        "--candidates", nargs="+", metavar="ACTION",
        help="candidate action ids (default: those the snapshot saw at the trigger)",
    )  # fmt: skip
    decide.add_argument(
        "--reactions", type=non_negative_int,
        help="the learner's logged outcomes, for cold start (default: the snapshot's count)",
    )  # fmt: skip
    decide.add_argument("--snapshots", type=Path, metavar="DIR", help="snapshot directory")
    decide.add_argument("--seed", type=seed, help="seed of the exploration draws")
    decide.add_argument("--repeat", type=positive_int, default=1, help="decide this many times")
    decide.set_defaults(func=cmd_decide)

    loop = add(
        "loop",
        "run the closed loop: simulated platform <-> decision library <-> Kafka <-> learner",
        "The simulated platform asks the decision library (newest snapshot, hot-reloaded) what\n"
        "to show, logs impressions and outcomes to Kafka; `nudge consume`, running alongside,\n"
        "learns and publishes snapshots. After each round it prints the true expected reward\n"
        "of the decisions made against random and send-to-all on the same decisions.",
    )
    loop.add_argument(
        "--rounds", type=positive_int, default=10, help="rounds (default: %(default)s)"
    )
    loop.add_argument(
        "--decisions", type=positive_int, default=2000,
        help="decisions per round (default: %(default)s)",
    )  # fmt: skip
    loop.add_argument("--seed", type=seed, default=7, help="world seed (default: %(default)s)")
    loop.add_argument(
        "--wait", type=seconds, default=60.0, metavar="SECONDS",
        help="longest wait for a snapshot covering a round (default: %(default)s)",
    )  # fmt: skip
    loop.add_argument("--plot", type=Path, metavar="SVG", help="also draw the curves as SVG")
    loop.add_argument("--report-json", type=Path, metavar="PATH", help="per-round numbers")
    loop.add_argument(
        "--http", metavar="URL",
        help="decide through `nudge serve` at URL (e.g. http://127.0.0.1:8080), which logs the "
        "events, instead of the library; it must read the same snapshot directory",
    )  # fmt: skip
    loop.add_argument("--api-key", metavar="KEY", help="API key of the service (with --http)")
    loop.set_defaults(func=cmd_loop)

    srv = add(
        "serve",
        "the HTTP decision service: our API and Personalizer's v1.0, logging to Kafka",
        "Serve decisions over HTTP from the newest snapshot (hot-reloaded): POST /v1/decide and\n"
        "/v1/outcomes; Personalizer v1.0 rank / reward / activate; GET /healthz, /readyz,\n"
        "/metrics (Prometheus) and / (status page). Every impression and outcome is written to\n"
        "an on-disk spool first and produced to Kafka from there, in order, so nothing is lost\n"
        "while the broker is down (a full spool answers 503). API keys: NUDGE_API_KEYS=k1,k2 or\n"
        "serve.api_keys_file. Runs serve.workers processes on one port until SIGTERM/SIGINT.\n"
        "README: \"Decision service\" (curl examples, the Personalizer mapping).",
    )
    srv.add_argument("--host", metavar="HOST", help="bind address (default: serve.host)")
    srv.add_argument("--port", type=port, metavar="PORT", help="port (default: serve.port)")
    srv.add_argument(
        "--workers", type=positive_int, metavar="N",
        help="worker processes sharing the port (default: serve.workers)",
    )  # fmt: skip
    srv.add_argument("--access-log", action="store_true", help="log every request")
    srv.set_defaults(func=cmd_serve)

    from nudge.replay_command import add_replay_command

    add_replay_command(sub, add)
    bench = sub.add_parser(
        "bench",
        help="the consumer against Vowpal Wabbit's own driver (a source checkout; not in CI)",
        description="Runs benchmarks/consumer_bench.py (`nudge bench --help` shows its flags).",
        add_help=False,  # --help and every flag go to the benchmark's own parser
    )
    bench.set_defaults(func=cmd_bench, passes_arguments_on=True)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nudgebandit")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _RedactSecrets(logging.Filter):
    """Masks secret config values in log records (kafka-python logs its whole configuration,
    password included, at debug level)."""

    def __init__(self, secrets: set[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            masked = mask_secrets(message, self.secrets)
            if masked != message:
                record.msg, record.args = masked, None
        return True


def _fail(message: str, secrets: set[str], code: int) -> int:
    """Print one line on stderr: the message with its lines joined and secrets masked."""
    line = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    print(f"nudge: {mask_secrets(line, secrets)}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """The error boundary: bad input of any kind exits 2 and an unreachable broker 3, each with
    one line on stderr (argparse's own errors too: `OneLineParser`); a closed stdout exits 1
    quietly."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "passes_arguments_on", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        logging.getLogger("kafka").setLevel(logging.ERROR)
    secrets = config_secrets(getattr(args, "config", None), os.environ)
    redact = _RedactSecrets(secrets)
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(redact)
    try:
        return int(args.func(args))
    except BrokerError as exc:
        return _fail(
            f"{exc}; is the broker up? `scripts/kafka start` runs one locally; set "
            "kafka.bootstrap_servers (or NUDGE_KAFKA__BOOTSTRAP_SERVERS) for another",
            secrets, 3,
        )  # fmt: skip
    except NudgeError as exc:
        return _fail(str(exc), secrets, 2)
    except BrokenPipeError:
        # The reader went away (`nudge ... | head`): stop quietly, as the Python docs advise
        # (signal module, "Note on SIGPIPE"): output still buffered goes to devnull, exit 1.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:
        if exc.filename is None:  # not about a path the user gave: a bug or the system's
            raise
        return _fail(f"{exc.filename}: {exc.strerror}", secrets, 2)
    finally:
        for handler in handlers:
            handler.removeFilter(redact)


if __name__ == "__main__":
    sys.exit(main())
