"""`nudge replay`: which policy would have earned most on what we logged, with intervals.

Reads one log (our events file, the Kafka topics, DSJSON or a table), builds the candidate
policies named by ``--policy`` specs (a default set when none is given), runs `evaluate` and
prints the table, JSON, or writes an HTML report.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Literal, cast

import orjson

from bandit.config import Config, load_config
from bandit.errors import NudgeError, UsageError
from bandit.snapshots import signing_key
from nudge.arguments import check_output, positive_int, seed
from replay.candidates import (
    AlwaysSend,
    BestUniform,
    Candidate,
    LoggingPolicy,
    NeverSend,
    Uniform,
    load_external,
)
from replay.evaluation import ESTIMATORS, Gain, evaluate
from replay.logged import LoggedData
from replay.progress import Progress, ProgressPrinter
from replay.sources import OnError, check_on_error
from replay.vw_candidates import CrossFitVW, ProgressiveVW, SnapshotPolicy

PERSONALIZED = "personalized"
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
    source.add_argument("--table", type=Path, metavar="FILE", help="CSV or Parquet (see README)")
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
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--out-json", type=Path, metavar="PATH", help="also write the JSON here")
    p.add_argument("--html", type=Path, metavar="PATH", help="write an HTML report with plots")
    p.add_argument("--write-dsjson", type=Path, metavar="PATH", help="write the log as DSJSON")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    from replay.report import console_table, write_html, write_json

    config = load_config(args.config)
    estimators = _check_arguments(args)
    progress = ProgressPrinter(quiet=args.quiet)
    data = _load(args, config, progress)
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
    if args.out_json:
        write_json(result, args.out_json)
    if args.html:
        write_html(result, args.html)
    if args.json:
        sys.stdout.write(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(console_table(result))
        for path in (args.out_json, args.html, args.write_dsjson):
            if path:
                print(f"wrote {path}")
    return 0


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
        if path is not None:
            _readable(f"--{flag}", path)
    for flag in ("out_json", "html", "write_dsjson"):
        check_output(f"--{flag.replace('_', '-')}", getattr(args, flag))
    return estimators


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
    joined as replay's `load_records` does.

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
    specs: list[str] = list(args.policy)
    gains: list[Gain] = []
    if not specs:
        specs = _default_specs(data)
        if f"{PERSONALIZED}=crossfit:greedy" in specs:
            gains = [Gain("personalization", PERSONALIZED, "best-uniform")]
        if f"always-send:{PERSONALIZED}" in specs:
            gains.append(Gain("targeting", PERSONALIZED, f"always-send({PERSONALIZED})"))
    built: dict[str, Candidate] = {}
    for spec in specs:
        name, _, body = spec.partition("=") if "=" in spec.split(":")[0] else ("", "", spec)
        try:
            candidate = _build(body, name or None, config, data, args, built, progress)
        except UsageError:
            raise
        except (NudgeError, ValueError) as exc:  # the spec is named: it is what to fix
            raise UsageError(f"--policy {spec}: {exc}") from None
        built[candidate.name] = candidate
    return list(built.values()), gains


def _default_specs(data: LoggedData) -> list[str]:
    specs = ["uniform"]
    if data.logging_pmf is not None:
        specs.insert(0, "logging")
    if data.none_action is not None:
        specs.append("random-message")
        # Never sending is a policy only where sending nothing was always a candidate.
        if data.mask[:, data.action_index(data.none_action)].all():
            specs.append("never-send")
    specs += ["best-uniform", "best-per-trigger"]
    if data.impressions is not None:
        specs.append(f"{PERSONALIZED}=crossfit:greedy")
        if data.none_action is not None:  # without it there is nothing to target
            specs.append(f"always-send:{PERSONALIZED}")
    return specs


def _build(
    spec: str,
    name: str | None,
    config: Config,
    data: LoggedData,
    args: argparse.Namespace,
    built: dict[str, Candidate],
    progress: ProgressPrinter,
) -> Candidate:
    kind, _, rest = spec.partition(":")
    named: dict[str, Any] = {"name": name} if name else {}
    if kind == "logging":
        return LoggingPolicy(**named)
    if kind == "uniform":
        return Uniform(**named)
    if kind == "random-message":
        return Uniform(name=name or "random-message", messages_only=True)
    if kind == "never-send":
        return NeverSend(**named)
    if kind in ("best-uniform", "best-message", "best-per-trigger"):
        return BestUniform(
            by_trigger=kind == "best-per-trigger", folds=args.folds,
            include_none=kind != "best-message", name=name or kind,
        )  # fmt: skip
    if kind == "crossfit":
        # Modes are checked by the candidates themselves (a ValueError naming the choices).
        mode = cast(_VWMode, rest or "greedy")
        return CrossFitVW(config, folds=args.folds, mode=mode, progress=progress, **named)
    if kind == "progressive":
        return ProgressiveVW(config, mode=cast(_VWMode, rest or "pmf"), progress=progress, **named)
    if kind == "snapshot":
        directory, _, given = rest.rpartition(":") if rest.endswith(_MODES) else (rest, "", "pmf")
        key = signing_key(config.snapshots.signing_key_file)
        return SnapshotPolicy(directory, mode=cast(_SnapshotMode, given or "pmf"), key=key, **named)
    if kind == "external":
        _readable("--policy external:", Path(rest))
        return load_external(rest, data, name)
    if kind == "always-send":
        base = built.get(rest) or _build(rest, None, config, data, args, built, progress)
        return AlwaysSend(base, **named)
    raise UsageError(f"--policy: unknown policy spec {spec!r}; see `nudge replay --help` for the list")


_MODES = (":pmf", ":greedy", ":deployed")
_VWMode = Literal["pmf", "greedy"]
_SnapshotMode = Literal["pmf", "greedy", "deployed"]

