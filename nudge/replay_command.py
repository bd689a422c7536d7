"""`nudge replay`: which policy would have earned most on what we logged, with intervals.

Reads one log (our events file, the Kafka topics, DSJSON or a table), builds the candidate
policies named by ``--policy`` specs (a default set when none is given), runs `evaluate` and
prints the table, JSON, or writes an HTML report.
"""

from __future__ import annotations

import argparse
import glob
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from bandit.config import Config, load_config
from bandit.errors import UsageError
from nudge.arguments import check_output, positive_int, seed
from replay.candidates import Candidate
from replay.evaluation import ESTIMATORS, Gain, evaluate
from replay.logged import LoggedData
from replay.policy_specs import PolicySpecError, build_policies
from replay.progress import Progress, ProgressPrinter
from replay.sources import OnError, check_on_error

if TYPE_CHECKING:
    from replay.results import ReplayResult
    from replay.tuning import Tuning

EPOCH_SECONDS_FROM = 1_000_000_000  # --from/--to: larger integers are times (2001 onwards)

POLICY_HELP = """candidate policies (--policy, repeatable; NAME=SPEC renames):
  logging                  the logging policy (needs the full logged pmf)
  uniform                  uniformly random over the candidates
  random-message           uniformly random over the messages (never sends nothing)
  never-send               always the send-nothing action
  best-uniform             the best single action, picked out of sample (2-fold cross-fit)
  best-message             the best single message (send nothing excluded), out of sample
  best-per-trigger         the best action at each trigger, out of sample
  crossfit[:greedy|pmf]    VW (the config's learner section) trained on the other fold
  tuned[:greedy|pmf]       crossfit with VW's learning settings searched on the other fold
                           (progressive validation; what --tune makes `personalized`)
  progressive[:pmf|greedy] VW trained on the log itself, predicting each decision before
                           learning it: "what if we had run this config"
  snapshot:DIR[:pmf|greedy|deployed]   a published policy snapshot (deployed = the whole
                           decision-service mixture: forced share, cold start, re-test)
  external:FILE            probabilities from a side file keyed by event id (JSON lines
                           {"event_id", "probabilities": {action: p}} or CSV event_id,action,probability)
  always-send:SPEC         SPEC with its send-nothing mass moved onto the messages

default: logging (if the full pmf was logged), uniform, random-message, never-send (if sending
nothing was always a candidate), best-uniform, best-per-trigger and, when the log has contexts,
personalized=crossfit:greedy and always-send:personalized, with the gains personalization
(personalized - best-uniform) and targeting (personalized - always-send(personalized)).
"""

EXAMPLES = """examples:
  nudge simulate --events 20000 --seed 7 --out logs.jsonl --no-kafka
  nudge replay --events logs.jsonl                        # default policies, console table
  nudge replay --events logs.jsonl --html replay.html --json > replay.json
  nudge replay --kafka --from 2026-01-05T08:00:00Z --to 2026-01-06T08:00:00Z
  nudge replay --dsjson decisions.dsjson --policy logging --policy new=snapshot:snaps/:greedy \
               --gain new_vs_logged new logging
  nudge replay --table logs.parquet --estimators IPS,SNIPS --bootstrap 500
  nudge replay --events logs.jsonl --write-dsjson logs.dsjson   # feed VW's own tools
"""


def add_replay_command(sub: Any, add: Any) -> None:
    """Register `nudge replay` on the `nudge` parser (`add` makes a subparser with --config)."""
    p = add(
        "replay",
        "evaluate candidate policies counterfactually on logged decisions",
        "Replay logged decisions through candidate policies and estimate what each would have\n"
        "earned (IPS, SNIPS, DM, DR, DRos with confidence intervals), overall and per trigger;\n"
        "the effect of each message vs sending nothing; the value of personalization and of\n"
        "targeting. Our events are joined into rewards with the consumer's own reward join.\n\n"
        + POLICY_HELP + "\n" + EXAMPLES,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--events", type=Path, metavar="FILE", help="our impression/outcome JSON lines")
    source.add_argument("--kafka", action="store_true", help="read the configured topics")
    source.add_argument("--dsjson", type=Path, metavar="FILE", help="VW / Personalizer DSJSON log")
    source.add_argument(
        "--table", type=Path, metavar="FILE|GLOB",
        help="CSV or Parquet (see README); read in chunks, in bounded memory, when every policy "
        "depends only on the trigger",
    )  # fmt: skip
    p.add_argument(
        "--from", dest="start", metavar="OFFSET|TIME",
        help="--kafka: first offset (every partition; an integer below 10^9) or a time "
        "(RFC 3339, or epoch seconds)",
    )  # fmt: skip
    p.add_argument("--to", dest="end", metavar="OFFSET|TIME", help="--kafka: end (exclusive)")
    p.add_argument(
        "--policy", action="append", default=[], metavar="[NAME=]SPEC",
        help="a candidate policy (repeatable; see below); default: the standard set",
    )  # fmt: skip
    p.add_argument(
        "--gain", action="append", default=[], nargs=3, metavar=("NAME", "FIRST", "SECOND"),
        help="a paired contrast: candidate FIRST minus candidate SECOND (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--estimators", default=",".join(ESTIMATORS),
        help="comma-separated subset of %(default)s",
    )  # fmt: skip
    p.add_argument("--clip", type=float, metavar="W", help="clip IPS and DR weights at W")
    p.add_argument("--confidence", type=float, default=0.95, help="interval level (%(default)s)")
    p.add_argument(
        "--bootstrap", type=positive_int, metavar="N",
        help="bootstrap intervals from N resamples (default: analytic normal intervals)",
    )  # fmt: skip
    p.add_argument("--seed", type=seed, default=0, help="bootstrap seed (default: %(default)s)")
    p.add_argument("--folds", type=int, default=2, help="cross-fitting folds (%(default)s)")
    p.add_argument("--no-triggers", action="store_true", help="skip the per-trigger rows")
    p.add_argument("--no-effects", action="store_true", help="skip effects vs no message")
    p.add_argument(
        "--skip-invalid", action="store_true",
        help="count and skip invalid records instead of stopping at the first one",
    )  # fmt: skip
    p.add_argument(
        "--none-action", metavar="ID",
        help="the id of the send-nothing action in the log (default: the config's "
        "rewards.none_action); for logs of other systems, without editing the config",
    )  # fmt: skip
    p.add_argument(
        "--tune", action="store_true",
        help="search VW's learning settings (learning rate, cb type, interactions, low rank, "
        "epsilon) by progressive validation on the log: prints the best with its DR value and "
        "the config snippet to deploy, and the default personalized policy uses settings "
        "searched on the other fold (personalized=tuned:greedy); needs contexts",
    )  # fmt: skip
    p.add_argument(
        "--dask", metavar="SCHEDULER",
        help="--table: run the chunk passes on a Dask cluster, a scheduler's address "
        "(tcp://host:8786) or local:N (N worker processes here); needs the cluster extra. "
        "--table may then be a glob of Parquet files ('logs/*.parquet'), one log in name order",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--out-json", type=Path, metavar="PATH", help="also write the JSON here")
    p.add_argument("--html", type=Path, metavar="PATH", help="write an HTML report with plots")
    p.add_argument("--write-dsjson", type=Path, metavar="PATH", help="write the log as DSJSON")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    config = _with_none_action(load_config(args.config), args.none_action)
    estimators = _check_arguments(args)
    progress = ProgressPrinter(quiet=args.quiet)
    # In chunks, in bounded memory: a table, or DSJSON given only trigger-level policies
    # (its default set has the personalized policy, which needs the contexts in memory).
    chunked = args.table is not None or (args.dsjson is not None and bool(args.policy))
    if chunked and not (args.write_dsjson or args.tune) and _streams(args.policy):
        return _report(args, _replay_table(args, config, estimators, progress), None)
    data = _load(args, config, progress)
    if args.none_action is not None and data.none_action is None:
        raise UsageError(
            f"--none-action {args.none_action}: no action of the log has this id; its actions "
            f"are {', '.join(data.actions[:20])}{', ...' if len(data.actions) > 20 else ''}"
        )
    if args.tune and data.impressions is None:
        raise UsageError(
            "--tune: this log has no contexts (a table without context columns); VW settings "
            "are searched on contexts: replay events, DSJSON or Kafka records"
        )
    if args.write_dsjson:
        from bandit.vw_text import NamespaceLetters
        from replay.dsjson import write_dsjson

        letters = NamespaceLetters(config.learner.namespaces, config.learner.action_namespace)
        write_dsjson(data, args.write_dsjson, letters)
    candidates, gains = _candidates(args, config, data, progress)
    names = [c.name for c in candidates]
    for name, first, second in args.gain:
        for missing in dict.fromkeys(n for n in (first, second) if n not in names):
            raise UsageError(
                f"--gain {name} {first} {second}: {missing!r} is not a candidate policy; "
                f"the candidates are {', '.join(names)}"
            )
        gains.append(Gain(name, first, second))
    result = evaluate(
        data, candidates,
        estimators=estimators,
        clip=args.clip, confidence=args.confidence,
        interval="bootstrap" if args.bootstrap else "normal", n_boot=args.bootstrap or 200,
        seed=args.seed, by_trigger=not args.no_triggers, gains=gains,
        effects=not args.no_effects, progress=progress,
    )  # fmt: skip
    tuning = _tune(config, data, progress) if args.tune else None
    return _report(args, result, tuning)


def _report(args: argparse.Namespace, result: ReplayResult, tuning: Tuning | None) -> int:
    """Write and print ``result`` as the output flags ask."""
    from replay.report import console_table, write_html, write_json

    if args.out_json:
        write_json(result, args.out_json)
    if args.html:
        write_html(result, args.html)
    if args.json:
        document = result.to_json()
        if tuning is not None:
            document["tuning"] = tuning.to_json()
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(console_table(result))
        if tuning is not None:
            print(tuning_text(tuning))
        for path in (args.out_json, args.html, args.write_dsjson):
            if path:
                print(f"wrote {path}")
    return 0


def _tune(config: Config, data: LoggedData, progress: ProgressPrinter) -> Tuning:
    """The search on the whole log: the settings to deploy (`replay.tuning`)."""
    from replay.tuning import tune

    return tune(config, data, progress=progress)


def tuning_text(tuning: Tuning) -> str:
    """The console lines of `--tune`: the winner, its value and the snippet to deploy."""
    best = tuning.best.estimate
    start = next(t for t in tuning.search.trials if t.setting == tuning.search.start).estimate
    lines = [
        "",
        f"Tuned VW settings ({len(tuning.search.trials)} tried by progressive validation; "
        "DR value of the policy each would have deployed):",
        f"  best   {tuning.best.setting.label()}: {best.value:+.4f} "
        f"[{best.low:+.4f}, {best.high:+.4f}]",
        f"  config {tuning.search.start.label()}: {start.value:+.4f} "
        f"[{start.low:+.4f}, {start.high:+.4f}]",
        "  (the best of many trials on one log is optimistic; the `personalized` row above "
        "was tuned on the other fold only)",
        "  to deploy, in config.yaml:",
        *("    " + line for line in tuning.snippet().splitlines()),
    ]
    return "\n".join(lines)


def _check_arguments(args: argparse.Namespace) -> tuple[str, ...]:
    """Refuse bad flags before any data is read; returns the estimator names."""
    estimators = tuple(e.strip() for e in args.estimators.split(",") if e.strip())
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown or not estimators:
        raise UsageError(
            f"--estimators: unknown estimator {unknown[0] if unknown else args.estimators!r}; "
            f"choose from {','.join(ESTIMATORS)}"
        )
    if args.clip is not None and not (math.isfinite(args.clip) and args.clip > 0):
        raise UsageError(f"--clip must be a finite number > 0, got {args.clip}")
    if not 0 < args.confidence < 1:
        raise UsageError(f"--confidence must be between 0 and 1, got {args.confidence}")
    if args.bootstrap is not None and args.bootstrap < 1:
        raise UsageError(f"--bootstrap needs at least 1 resample, got {args.bootstrap}")
    if args.folds < 2:
        raise UsageError(f"--folds must be at least 2, got {args.folds}")
    if not args.kafka and (args.start is not None or args.end is not None):
        raise UsageError("--from/--to only apply to --kafka")
    args.start, args.end = _position(args.start, "--from"), _position(args.end, "--to")
    for flag in ("events", "dsjson", "table"):
        path = getattr(args, flag)
        if path is not None and not (flag == "table" and glob.has_magic(str(path))):
            _readable(f"--{flag}", path)
    if args.dask is not None:
        if args.table is None:
            raise UsageError("--dask runs the passes of --table (Parquet files) on a cluster")
        if args.write_dsjson or args.tune or not _streams(args.policy):
            raise UsageError(
                "--dask streams trigger-level policies only (not crossfit, tuned, progressive, "
                "snapshot or external, nor --tune / --write-dsjson): drop --dask for those"
            )
    elif (
        args.table is not None
        and glob.has_magic(str(args.table))
        and (args.write_dsjson or args.tune or not _streams(args.policy))
    ):
        raise UsageError(
            f"--table {args.table}: a glob of Parquet files is read in chunks, for "
            "trigger-level policies only; name one file for the others"
        )
    for flag in ("out_json", "html", "write_dsjson"):
        check_output(f"--{flag.replace('_', '-')}", getattr(args, flag))
    return estimators


def _with_none_action(config: Config, none_action: str | None) -> Config:
    """`config` with ``--none-action`` as its send-nothing action (the reward join of our own
    events gives it `rewards.send_nothing`, as the consumer would)."""
    if none_action is None:
        return config
    if not none_action.strip():
        raise UsageError("--none-action needs an action id, got an empty one")
    rewards = config.rewards.model_copy(update={"none_action": none_action})
    return config.model_copy(update={"rewards": rewards})


def _readable(flag: str, path: Path) -> None:
    """A `UsageError` naming `flag` unless `path` is a readable file."""
    if not path.exists():
        raise UsageError(f"{flag} {path}: no such file")
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory, not a file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot read it ({exc.strerror})") from None


def _streams(specs: list[str]) -> bool:
    """``--table`` is read in chunks (bounded memory) when every candidate is trigger-level."""
    from replay.planned_candidates import streamable

    return streamable(specs)


def _replay_table(
    args: argparse.Namespace, config: Config, estimators: tuple[str, ...], progress: Progress
) -> ReplayResult:
    """``--table`` (or ``--dsjson`` with trigger-level policies) over chunks of the file, in
    bounded memory (`replay.table_stream`, `replay.dsjson_stream`)."""
    from replay.table_stream import evaluate_table

    chunks = None
    if args.dsjson is not None:
        from replay.dsjson_stream import dsjson_source

        chunks = dsjson_source(
            args.dsjson, none_action=config.rewards.none_action,
            on_error="skip" if args.skip_invalid else "raise",
        )  # fmt: skip
    try:
        return evaluate_table(
            args.table or args.dsjson, args.policy, args.gain, chunks=chunks,
            none_action=config.rewards.none_action, none_action_given=args.none_action is not None,
            on_error="skip" if args.skip_invalid else "raise", estimators=estimators,
            clip=args.clip, confidence=args.confidence,
            interval="bootstrap" if args.bootstrap else "normal", n_boot=args.bootstrap or 200,
            seed=args.seed, by_trigger=not args.no_triggers, effects=not args.no_effects,
            folds=args.folds, progress=progress, dask=args.dask,
        )  # fmt: skip
    except PolicySpecError as exc:
        raise UsageError(f"--policy {exc.spec}: {exc.problem}") from None


def _load(args: argparse.Namespace, config: Config, progress: ProgressPrinter) -> LoggedData:
    on_error: OnError = "skip" if args.skip_invalid else "raise"
    none_action = config.rewards.none_action
    if args.events:
        from replay.sources import load_events

        return load_events(args.events, config, on_error=on_error, progress=progress)
    if args.kafka:
        return load_kafka(
            config, start=args.start, end=args.end, on_error=on_error, progress=progress
        )
    if args.dsjson:
        from replay.dsjson import load_dsjson

        return load_dsjson(args.dsjson, none_action=none_action, on_error=on_error, progress=progress)
    from replay.tables import load_table

    return load_table(args.table, none_action=none_action, on_error=on_error)


Offset = int | float | None  # an offset for every partition, epoch seconds, or the end


def load_kafka(
    config: Config,
    *,
    start: Offset = None,
    end: Offset = None,
    on_error: OnError = "raise",
    progress: Progress | None = None,
) -> LoggedData:
    """The impressions and outcomes topics of `config.kafka` between two bounds, decoded and
    joined as the consumer joins them (`load_records`: each partition in offset order, the
    partitions read level in event time, per-partition watermarks). A range starts with an
    empty join: decisions whose outcomes straddle its edges may settle otherwise than live.

    `start` / `end`: None (the beginning / the end offsets when the read starts), an int offset
    applied to every partition (start inclusive, end exclusive), or a float epoch-seconds
    Kafka record timestamp (the produce time, via offsets_for_times).
    """
    from replay.sources import load_records
    from streams.kafka_io import read_range

    check_on_error(on_error)
    kafka = config.kafka
    records = read_range(kafka, [kafka.impressions_topic, kafka.outcomes_topic], start, end)
    where = f"kafka {kafka.bootstrap_servers} {kafka.impressions_topic} + {kafka.outcomes_topic}"
    return load_records(records, config, where=where, on_error=on_error, progress=progress)


def _position(text: str | None, flag: str = "--from/--to") -> int | float | None:
    """An offset (integer below 10^9), epoch seconds (a larger number, or one with a dot) or
    an RFC 3339 time."""
    if text is None:
        return None
    if text.isdigit() and int(text) < EPOCH_SECONDS_FROM:
        return int(text)
    try:
        return float(text)
    except ValueError:
        pass
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise UsageError(
            f"{flag} {text!r} is neither an offset, epoch seconds nor an RFC 3339 time"
        ) from None


def _candidates(
    args: argparse.Namespace, config: Config, data: LoggedData, progress: ProgressPrinter
) -> tuple[list[Candidate], list[Gain]]:
    """The candidates of ``--policy`` (the default set and its gains without any), built by
    the same parser as `replay.evaluate`; a bad spec is a `UsageError` naming it."""
    try:
        policies = build_policies(
            args.policy, data, config, folds=args.folds, progress=progress, tuned=args.tune
        )
    except PolicySpecError as exc:
        raise UsageError(f"--policy {exc.spec}: {exc.problem}") from None
    return list(policies.candidates), list(policies.gains)
