"""Candidate policies named by text specs (``nudge replay --policy`` and `replay.evaluate`).

A spec is ``[NAME=]KIND[:ARGUMENT]``; NAME renames the candidate::

    logging                  the logging policy (needs the full logged pmf)
    uniform                  uniformly random over the candidates
    random-message           uniformly random over the messages (never sends nothing)
    never-send               always the send-nothing action
    best-uniform             the best single action, picked out of sample (cross-fit)
    best-message             the best single message (send nothing excluded), out of sample
    best-per-trigger         the best action at each trigger, out of sample
    crossfit[:greedy|pmf]    VW (the config's learner section) trained on the other folds
    tuned[:greedy|pmf]       crossfit with VW's learning settings searched on the other folds
                             (progressive validation, `replay.tuning`)
    progressive[:pmf|greedy] VW trained on the log itself, predicting each decision first
    snapshot:DIR[:pmf|greedy|deployed]   a published policy snapshot
    external:FILE            probabilities from a side file keyed by event id
    always-send:SPEC         SPEC (or a candidate named before it) with its send-nothing
                             mass moved onto the messages

`parse_policy_spec` checks a spec's text without any data; `build_policies` turns specs into
candidates for one log (the default set, with its gains, when no spec is given). Modules that
run Vowpal Wabbit are imported only when a VW spec is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

from bandit.errors import NudgeError, UsageError
from replay.candidates import (
    AlwaysSend,
    BestUniform,
    Candidate,
    LoggingPolicy,
    NeverSend,
    Uniform,
    load_external,
)
from replay.evaluation import Gain
from replay.logged import LoggedData
from replay.progress import Progress

if TYPE_CHECKING:
    from bandit.config import Config

PERSONALIZED = "personalized"
KINDS = (
    "logging",
    "uniform",
    "random-message",
    "never-send",
    "best-uniform",
    "best-message",
    "best-per-trigger",
    "crossfit",
    "tuned",
    "progressive",
    "snapshot",
    "external",
    "always-send",
)
TRIGGER_LEVEL_KINDS = KINDS[:7]  # need neither an argument nor the log's contexts
_NO_ARGUMENT = TRIGGER_LEVEL_KINDS
_LEARNED_MODES = ("greedy", "pmf")
_SNAPSHOT_MODES = ("pmf", "greedy", "deployed")
_DEFAULT_MODE = {"crossfit": "greedy", "tuned": "greedy", "progressive": "pmf", "snapshot": "pmf"}
_HELP = "the kinds are listed in `nudge replay --help` and `replay.policy_specs`"


class PolicySpecError(UsageError, ValueError):
    """A policy spec is malformed, or cannot be built on this log; ``spec`` is the text given
    and ``problem`` says what is wrong with it."""

    def __init__(self, spec: str, problem: str) -> None:
        super().__init__(f"policy spec {spec!r}: {problem}")
        self.spec = spec
        self.problem = problem


@dataclass(frozen=True)
class PolicySpec:
    """One parsed spec: ``kind``; its ``argument`` as given (a mode, a directory or file, or
    the base of always-send; "" when none); the ``name`` given with ``NAME=`` (None otherwise);
    the ``mode`` of crossfit, progressive and snapshot (default filled in); and the ``path`` of
    snapshot (its directory) and external (its file)."""

    text: str
    kind: str
    argument: str = ""
    name: str | None = None
    mode: str | None = None
    path: str = ""


def parse_policy_spec(text: str) -> PolicySpec:
    """The parsed ``[NAME=]KIND[:ARGUMENT]`` (see the module docstring), or `PolicySpecError`
    naming the spec: unknown kinds and modes, missing or unexpected arguments, empty names."""
    if not isinstance(text, str):
        raise PolicySpecError(repr(text), "a policy spec is text, e.g. 'best-per-trigger'")
    spec = text.strip()
    # NAME= only before the first ":" (a snapshot directory or side file may contain "=").
    name, _, body = spec.partition("=") if "=" in spec.split(":")[0] else ("", "", spec)
    if "=" in spec.split(":")[0] and not name.strip():
        raise PolicySpecError(text, "the name before '=' is empty")
    kind, colon, argument = body.partition(":")
    if kind not in KINDS:
        raise PolicySpecError(text, f"unknown policy spec {body!r}; {_HELP}")
    if kind in _NO_ARGUMENT and colon:
        raise PolicySpecError(text, f"{kind} takes no argument; got {argument!r}")
    if kind in ("snapshot", "external", "always-send") and not argument:
        what = {"snapshot": "DIR", "external": "FILE", "always-send": "SPEC"}[kind]
        raise PolicySpecError(text, f"{kind} needs an argument: {kind}:{what}")
    mode, path = _mode_and_path(text, kind, argument)
    if kind == "always-send" and argument.split(":")[0] in KINDS:
        try:  # a spec (not a name): its errors show now, not after the log is read
            parse_policy_spec(argument)
        except PolicySpecError as exc:
            raise PolicySpecError(text, exc.problem) from None
    return PolicySpec(spec, kind, argument, name.strip() or None, mode, path)


def _mode_and_path(text: str, kind: str, argument: str) -> tuple[str | None, str]:
    """The mode of crossfit / progressive / snapshot (default filled in; None for the other
    kinds) and the path of snapshot / external ("" for the other kinds)."""
    if kind in ("crossfit", "tuned", "progressive"):
        mode = argument or _DEFAULT_MODE[kind]
        if mode not in _LEARNED_MODES:
            raise PolicySpecError(text, f"{kind} mode must be greedy or pmf; got {mode!r}")
        return mode, ""
    if kind == "snapshot":
        directory, colon, given = argument.rpartition(":")
        if not (colon and given in _SNAPSHOT_MODES):
            directory, given = argument, _DEFAULT_MODE[kind]
        if not directory:
            raise PolicySpecError(text, "snapshot needs a directory: snapshot:DIR[:MODE]")
        return given, directory
    return None, argument if kind == "external" else ""


def default_policy_specs(data: LoggedData, tuned: bool = False) -> list[str]:
    """The specs `nudge replay` evaluates without ``--policy``: each only where the log allows
    it (logging needs the full pmf; never-send a send-nothing action at every decision;
    the personalized pair needs contexts; ``tuned``: personalized with tuned settings)."""
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
        specs.append(f"{PERSONALIZED}={'tuned' if tuned else 'crossfit'}:greedy")
        if data.none_action is not None:  # without it there is nothing to target
            specs.append(f"always-send:{PERSONALIZED}")
    return specs


def default_gains(specs: Sequence[str]) -> list[Gain]:
    """The gains reported with the default specs: personalization (personalized minus
    best-uniform) and targeting (personalized minus always-send(personalized))."""
    gains: list[Gain] = []
    if {f"{PERSONALIZED}=crossfit:greedy", f"{PERSONALIZED}=tuned:greedy"} & set(specs):
        gains.append(Gain("personalization", PERSONALIZED, "best-uniform"))
    if f"always-send:{PERSONALIZED}" in specs:
        gains.append(Gain("targeting", PERSONALIZED, f"always-send({PERSONALIZED})"))
    return gains


@dataclass(frozen=True)
class Policies:
    """Built candidates, in spec order, and the gains that go with them."""

    candidates: tuple[Candidate, ...]
    gains: tuple[Gain, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.candidates)


def build_policies(
    specs: Sequence[str] | None,
    data: LoggedData,
    config: Config,
    *,
    folds: int = 2,
    progress: Progress | None = None,
    tuned: bool = False,
) -> Policies:
    """Candidates for ``data`` from ``specs`` (None or empty: `default_policy_specs`, with
    `default_gains`; ``tuned``: its personalized policy with tuned settings). ``config`` gives
    the VW kinds their learner and the snapshot signing key. Any problem is a
    `PolicySpecError` naming the spec."""
    given = list(specs or ())
    texts = given or default_policy_specs(data, tuned)
    parsed = [parse_policy_spec(t) for t in texts]  # every spec checked before any is built
    built: dict[str, Candidate] = {}
    for spec in parsed:
        try:
            candidate = _build(spec, config, data, built, folds, progress)
        except PolicySpecError:
            raise
        except (NudgeError, ValueError) as exc:  # the spec is named: it is what to fix
            raise PolicySpecError(spec.text, str(exc)) from None
        if candidate.name in built:
            raise PolicySpecError(
                spec.text,
                f"a candidate named {candidate.name!r} is already there; rename one (NAME=SPEC)",
            )
        built[candidate.name] = candidate
    gains = () if given else tuple(default_gains(texts))
    return Policies(tuple(built.values()), gains)


def _build(
    spec: PolicySpec,
    config: Config,
    data: LoggedData,
    built: dict[str, Candidate],
    folds: int,
    progress: Progress | None,
) -> Candidate:
    """One candidate; ``built`` holds the ones before it (always-send may name one)."""
    kind, name = spec.kind, spec.name
    if kind == "logging":
        return LoggingPolicy(name or "logging")
    if kind in ("uniform", "random-message"):
        return Uniform(name=name or kind, messages_only=kind == "random-message")
    if kind == "never-send":
        return NeverSend(name or kind)
    if kind in ("best-uniform", "best-message", "best-per-trigger"):
        return BestUniform(
            by_trigger=kind == "best-per-trigger", folds=folds,
            include_none=kind != "best-message", name=name or kind,
        )  # fmt: skip
    if kind == "external":
        problem = _unreadable(Path(spec.path))
        if problem:
            raise PolicySpecError(spec.text, f"{spec.path}: {problem}")
        return load_external(spec.path, data, name)
    if kind == "always-send":
        base = built.get(spec.argument)
        if base is None:
            if spec.argument.split(":")[0] not in KINDS:
                raise PolicySpecError(
                    spec.text,
                    f"{spec.argument!r} is neither a candidate listed before it "
                    f"({', '.join(built) or 'none'}) nor a policy spec",
                )
            base = _build(parse_policy_spec(spec.argument), config, data, built, folds, progress)
        return AlwaysSend(base, name=name or "")
    return _vw(spec, config, folds, progress)


def _vw(spec: PolicySpec, config: Config, folds: int, progress: Progress | None) -> Candidate:
    """crossfit, tuned, progressive and snapshot: imported here, as they load Vowpal Wabbit."""
    from replay.vw_candidates import CrossFitVW, ProgressiveVW, SnapshotPolicy

    named = {"name": spec.name} if spec.name else {}
    if spec.kind == "tuned":
        from replay.tuning import TunedCrossFitVW

        greedy = spec.mode == "greedy"
        name = spec.name or f"tuned-vw:{spec.mode}"
        return TunedCrossFitVW(config, folds=folds, greedy=greedy, name=name, progress=progress)
    if spec.kind == "crossfit":
        mode = cast(Literal["pmf", "greedy"], spec.mode)
        return CrossFitVW(config, folds=folds, mode=mode, progress=progress, **named)
    if spec.kind == "progressive":
        mode = cast(Literal["pmf", "greedy"], spec.mode)
        return ProgressiveVW(config, mode=mode, progress=progress, **named)
    from bandit.snapshots import signing_key

    key = signing_key(config.snapshots.signing_key_file)
    snapshot_mode = cast(Literal["pmf", "greedy", "deployed"], spec.mode)
    return SnapshotPolicy(spec.path, mode=snapshot_mode, key=key, **named)


def _unreadable(path: Path) -> str:
    """Why ``path`` cannot be read as a file ("" when it can)."""
    if not path.exists():
        return "no such file"
    if path.is_dir():
        return "is a directory, not a file"
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        return f"cannot read it ({exc.strerror})"
    return ""
