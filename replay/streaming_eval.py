"""Replay over a log read in chunks: the numbers of `replay.evaluation.evaluate` in bounded memory.

Three passes over the chunks. Each is a pure function of one chunk whose result merges
associatively with the other chunks' (so a pass can run on many workers and be reduced):

1. scan (`replay.chunk_scan.scan_chunk`): vocabulary, triggers and the sums behind the tabular
   reward model and the best single actions; the candidates and the `Design` follow from it.
2. tune (`tune_chunk`): per unit (a target on a slice, see `replay.streaming_design`), the
   target's mass and DR's and DRos's summed corrections by (trigger, action), which the reward
   model's error term needs, DRos's lambda-tuning sums (`MeanVar`), and per policy the overlap
   diagnostics.
3. score (`score_chunk`): each estimator's per-event terms (`_Estimator.event_terms`: the
   in-memory formulas, with the model and sums of the whole log) as `CoMoments`, pairs of
   units for gains and effects, and with ``n_boot`` Poisson-bootstrap sums
   (`replay.poisson_bootstrap`).

Point estimates and analytic intervals equal the in-memory path's up to the order of summation
(tests: 1e-9). Intervals with ``interval="bootstrap"`` are a Poisson bootstrap, the reward
model refitted per resample and DRos's lambda fixed at the one tuned on the slice (the in-memory
multinomial bootstrap re-tunes it per resample).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from replay.candidates import Candidate
from replay.chunk_scan import LogPlan, ScanStats, scan_chunk
from replay.chunked import LogChunk
from replay.estimators import (
    DR,
    CoMoments,
    DRos,
    Estimate,
    LoggedFeedback,
    MeanVar,
    TabularFit,
    WeightSums,
    _Estimator,
    percentile_interval,
    pick_lambda,
    ratio_difference,
    ratio_estimate,
)
from replay.evaluation import Gain, Interval, build_estimators
from replay.poisson_bootstrap import (
    ResampledModel,
    ResampledTerms,
    grouped_sums,
    poisson_weights,
    resample_blocks,
    resampled_values,
)
from replay.progress import Progress
from replay.results import Contrast as ContrastRow
from replay.results import EstimateRow, PolicyDiagnostics, ReplayResult
from replay.streaming_design import ChunkFrame, Design, Slice, SliceModel, Target, Unit

ChunkSource = Callable[[], Iterable[LogChunk]]  # each call: a new pass over the log
# One pass: f of every chunk of the log, in log order, as (f(chunk), rows kept, rows skipped);
# in this process (`local_passes`) or on a cluster's workers (`replay.dask_passes`).
RunPass = Callable[[Callable[[LogChunk], Any]], Iterable[tuple[Any, int, int]]]
Policies = Callable[[LogPlan], Sequence[Candidate]]  # the candidates, once the log is scanned
BOOTSTRAP_METHOD = "poisson-bootstrap"


def _merge_maps(first: Mapping[Any, Any], second: Mapping[Any, Any]) -> dict[Any, Any]:
    out = dict(first)
    for key, value in second.items():
        out[key] = out[key].merge(value) if key in out else value
    return out


def _cells(feedback: LoggedFeedback) -> np.ndarray:
    """The trigger code of each event (streaming feedback always has them)."""
    if feedback.cells is None:
        raise ValueError("streaming replay needs feedback with cells")
    return feedback.cells


# ---- pass 2: tuning ------------------------------------------------------------------------


@dataclass(frozen=True)
class DRosTuning:
    """One unit's DRos sums at every lambda of its grid: the per-event terms without the
    model error (`MeanVar`), the summed bias bound and the summed shrunk weights by
    (trigger, logged action) (grid, cells * K)."""

    terms: MeanVar
    bias: np.ndarray
    summed: np.ndarray

    def merge(self, other: DRosTuning) -> DRosTuning:
        return DRosTuning(
            self.terms.merge(other.terms), self.bias + other.bias, self.summed + other.summed
        )


@dataclass(frozen=True)
class UnitTuning:
    """A unit's target mass M(c, a) and, per DR estimator, its summed corrections (cells * K)."""

    mass: np.ndarray
    corrections: Mapping[int, np.ndarray] = field(default_factory=dict)
    dros: Mapping[int, DRosTuning] = field(default_factory=dict)

    def merge(self, other: UnitTuning) -> UnitTuning:
        corrections = {e: c + other.corrections[e] for e, c in self.corrections.items()}
        return UnitTuning(self.mass + other.mass, corrections, _merge_maps(self.dros, other.dros))


@dataclass(frozen=True)
class Varies:
    """Whether a target varies within a trigger: the first row seen per cell (nan: none yet)
    and a flag per cell (rows differing from it by more than 1e-12)."""

    reference: np.ndarray  # (cells, K)
    varies: np.ndarray  # (cells,)

    @classmethod
    def of(cls, target: np.ndarray, cells: np.ndarray, n_cells: int) -> Varies:
        reference = np.full((n_cells, target.shape[1]), np.nan)
        present, first = np.unique(cells, return_index=True)
        reference[present] = target[first]
        changed = np.abs(target - reference[cells]).max(axis=1) > 1e-12
        return cls(reference, np.bincount(cells, weights=changed, minlength=n_cells) > 0)

    def merge(self, other: Varies) -> Varies:
        both = ~np.isnan(self.reference[:, 0]) & ~np.isnan(other.reference[:, 0])
        apart = np.abs(np.nan_to_num(self.reference - other.reference)).max(axis=1) > 1e-12
        return Varies(
            np.where(np.isnan(self.reference), other.reference, self.reference),
            self.varies | other.varies | (both & apart),
        )


@dataclass(frozen=True)
class PolicyChecks:
    """A policy's overlap diagnostics over all rows: weight sums, variation within triggers."""

    weights: WeightSums
    varies: Varies

    def merge(self, other: PolicyChecks) -> PolicyChecks:
        return PolicyChecks(self.weights.merge(other.weights), self.varies.merge(other.varies))


@dataclass(frozen=True)
class Tuning:
    """The second pass's sums: per unit (`UnitTuning`) and per policy index (`PolicyChecks`)."""

    units: Mapping[Unit, UnitTuning] = field(default_factory=dict)
    policies: Mapping[int, PolicyChecks] = field(default_factory=dict)

    def merge(self, other: Tuning) -> Tuning:
        return Tuning(
            _merge_maps(self.units, other.units), _merge_maps(self.policies, other.policies)
        )


def _lambdas(estimator: DRos) -> np.ndarray:
    return np.array(DRos.LAMBDA_GRID if estimator.lambda_ is None else (estimator.lambda_,))


def tune_chunk(design: Design, chunk: LogChunk) -> Tuning:
    """The second pass's sums over one chunk."""
    if chunk.n == 0:
        return Tuning()
    frame = ChunkFrame(design, chunk)
    policies = {}
    for j in range(len(design.candidates)):
        feedback = frame.feedback(Unit(Slice(), Target("policy", j)))
        if feedback is not None:
            policies[j] = PolicyChecks(
                WeightSums.of(feedback.weights()),
                Varies.of(feedback.target, frame.cells, len(design.plan.triggers)),
            )
    units = {}
    if any(e.uses_reward_model for e in design.estimators):
        for unit in design.units:
            feedback = frame.feedback(unit)
            if feedback is not None:
                units[unit] = _tune_unit(design, design.models[unit.slice], feedback)
            frame.forget(unit)
    return Tuning(units, policies)


def _tune_unit(design: Design, model: SliceModel, feedback: LoggedFeedback) -> UnitTuning:
    n_cells, k, n = model.q.shape[0], model.q.shape[1], feedback.n
    size = n_cells * k
    flat = _cells(feedback) * k + feedback.chosen
    mass = np.stack(
        [
            np.bincount(_cells(feedback), weights=feedback.target[:, a], minlength=n_cells)
            for a in range(k)
        ],
        axis=1,
    ).reshape(size)
    w = feedback.weights()
    ones = np.ones(n)
    corrections, dros = {}, {}
    for e, estimator in enumerate(design.estimators):
        if isinstance(estimator, DR):
            clipped = w if estimator.clip is None else np.minimum(w, estimator.clip)
            corrections[e] = np.bincount(flat, weights=ones * clipped, minlength=size)
        elif isinstance(estimator, DRos):
            dros[e] = _tune_dros(_lambdas(estimator), model, feedback, w, flat, size)
    return UnitTuning(mass, corrections, dros)


def _tune_dros(
    lambdas: np.ndarray,
    model: SliceModel,
    feedback: LoggedFeedback,
    w: np.ndarray,
    flat: np.ndarray,
    size: int,
) -> DRosTuning:
    """DRos's sums at every lambda. Events with weight 0 have the same term (the direct one)
    at every lambda and add nothing else, so they are summarised as one column."""
    q_hat = model.q[_cells(feedback)]
    direct = (feedback.target * q_hat).sum(axis=1)
    weighted = np.flatnonzero(w != 0)
    w, residual = (
        w[weighted],
        feedback.reward[weighted] - q_hat[weighted, feedback.chosen[weighted]],
    )
    shrunk = lambdas * w[:, None] / (w[:, None] ** 2 + lambdas)
    terms = MeanVar.of(direct[weighted, None] + shrunk * residual[:, None])
    unweighted = np.ones(feedback.n, dtype=bool)
    unweighted[weighted] = False
    flat_terms = MeanVar.of(direct[unweighted, None])
    terms = terms.merge(
        MeanVar(
            flat_terms.n,
            np.repeat(flat_terms.mean, len(lambdas)),
            np.repeat(flat_terms.m2, len(lambdas)),
        )
    )
    bias = (np.abs(w[:, None] - shrunk) * np.abs(residual)[:, None]).sum(axis=0)
    index = (np.arange(len(lambdas))[None, :] * size + flat[weighted, None]).ravel()
    summed = np.bincount(index, weights=shrunk.ravel(), minlength=len(lambdas) * size)
    return DRosTuning(terms, bias, summed.reshape(len(lambdas), size))


# ---- pass 3: scoring -----------------------------------------------------------------------


@dataclass(frozen=True)
class Scoring:
    """The third pass's inputs: per (unit, estimator) the estimator to run (DRos with its tuned
    lambda) and the whole log's summed corrections; per unit its target mass."""

    design: Design
    estimators: Mapping[tuple[Unit, int], _Estimator]
    mass: Mapping[Unit, np.ndarray]
    summed: Mapping[tuple[Unit, int], np.ndarray]

    @classmethod
    def of(cls, design: Design, tuning: Tuning) -> Scoring:
        estimators: dict[tuple[Unit, int], _Estimator] = {}
        summed: dict[tuple[Unit, int], np.ndarray] = {}
        mass: dict[Unit, np.ndarray] = {}
        for unit in design.units:
            tuned = tuning.units.get(unit)
            for e, estimator in enumerate(design.estimators):
                estimators[(unit, e)] = estimator
                if tuned is None or not estimator.uses_reward_model:
                    continue
                mass[unit] = tuned.mass
                summed[(unit, e)] = tuned.corrections.get(e, np.zeros_like(tuned.mass))
                if isinstance(estimator, DRos):
                    lambdas = _lambdas(estimator)
                    d = tuned.dros[e]
                    n = design.models[unit.slice].n
                    lam = pick_lambda(d.terms.variance() / n, d.bias / n)
                    estimators[(unit, e)] = DRos(lambda_=lam)
                    summed[(unit, e)] = d.summed[int(np.flatnonzero(lambdas == lam)[0])]
        return cls(design, estimators, mass, summed)

    def fit(self, unit: Unit, e: int, feedback: LoggedFeedback) -> TabularFit | None:
        """The slice's tabular model on these events, with the whole log's sums."""
        if not self.design.estimators[e].uses_reward_model:
            return None
        model = self.design.models[unit.slice]
        k = model.q.shape[1]
        return TabularFit(
            q_hat=model.q[_cells(feedback)],
            flat=_cells(feedback) * k + feedback.chosen,
            mass=self.mass[unit],
            logged=model.logged,
            multiplicity=np.ones(feedback.n),
            extrapolated_mass=0.0,
            summed=self.summed[(unit, e)],
        )

    def terms(self, unit: Unit, e: int, feedback: LoggedFeedback) -> np.ndarray:
        """(n, 2) each event's (num, den) for estimator ``e`` on ``unit``."""
        num, den = self.estimators[(unit, e)].event_terms(feedback, self.fit(unit, e, feedback))
        return np.column_stack([num, den])


@dataclass(frozen=True)
class Scores:
    """The third pass's sums: `CoMoments` of (num, den) per (unit, estimator) for the policy
    units, of (num1, den1, num2, den2) per (contrast, estimator); bootstrap sums."""

    units: Mapping[tuple[Unit, int], CoMoments] = field(default_factory=dict)
    contrasts: Mapping[tuple[int, int], CoMoments] = field(default_factory=dict)
    resampled: Mapping[tuple[Unit, int], ResampledTerms] = field(default_factory=dict)
    models: Mapping[Slice, ResampledModel] = field(default_factory=dict)

    def merge(self, other: Scores) -> Scores:
        return Scores(
            _merge_maps(self.units, other.units),
            _merge_maps(self.contrasts, other.contrasts),
            _merge_maps(self.resampled, other.resampled),
            _merge_maps(self.models, other.models),
        )


def score_chunk(scoring: Scoring, chunk: LogChunk) -> Scores:
    """The third pass's sums over one chunk."""
    if chunk.n == 0:
        return Scores()
    design = scoring.design
    frame = ChunkFrame(design, chunk)
    # A unit's feedback is dropped after its last use: the chunk's slices stay out of memory.
    uses = Counter(u for c in design.contrasts for u in (c.first, c.second))
    units: dict[tuple[Unit, int], CoMoments] = {}
    for unit in design.units:
        if unit.target.kind != "policy":
            continue
        feedback = frame.feedback(unit)
        if feedback is not None:
            for e in range(len(design.estimators)):
                units[(unit, e)] = CoMoments.of(scoring.terms(unit, e, feedback))
        if not uses[unit]:
            frame.forget(unit)
    contrasts: dict[tuple[int, int], CoMoments] = {}
    for c, contrast in enumerate(design.contrasts):
        first, second = frame.feedback(contrast.first), frame.feedback(contrast.second)
        if first is not None and second is not None:
            for e in range(len(design.estimators)):
                pair = np.hstack(
                    [
                        scoring.terms(contrast.first, e, first),
                        scoring.terms(contrast.second, e, second),
                    ]
                )
                contrasts[(c, e)] = CoMoments.of(pair)
        for unit in (contrast.first, contrast.second):
            uses[unit] -= 1
            if not uses[unit]:
                frame.forget(unit)
    scores = Scores(units, contrasts)
    if design.n_boot:
        scores = scores.merge(_resample_chunk(scoring, frame))
    return scores


def _resample_chunk(scoring: Scoring, frame: ChunkFrame) -> Scores:
    """Poisson-bootstrap sums of every unit and slice over one chunk."""
    design = scoring.design
    k = design.plan.k
    keys = frame.chunk.keys()
    terms: dict[tuple[Unit, int], ResampledTerms] = {}
    models: dict[Slice, ResampledModel] = {}
    for block in resample_blocks(design.n_boot, frame.chunk.n):
        weights = poisson_weights(keys, design.seed, block)
        part_terms: dict[tuple[Unit, int], ResampledTerms] = {}
        part_models: dict[Slice, ResampledModel] = {}
        for unit in design.units:
            feedback = frame.feedback(unit)
            if feedback is None:
                continue
            rows = frame.rows(unit.slice)
            w = weights if rows is None else weights[:, rows]
            model = design.models[unit.slice]
            local = np.full(len(design.plan.triggers), -1, dtype=np.int64)
            local[model.cells] = np.arange(model.cells.size)
            groups = local[_cells(feedback)] * k + feedback.chosen
            n_groups = model.cells.size * k
            if unit.slice not in part_models:
                inverse = 1.0 / feedback.pscore
                sums = grouped_sums(
                    w, np.column_stack([inverse, inverse * feedback.reward]), groups, n_groups
                )
                shape = (len(block), model.cells.size, k)
                part_models[unit.slice] = ResampledModel(
                    sums[..., 0].reshape(shape), sums[..., 1].reshape(shape)
                )
            part_terms.update(_resample_unit(scoring, unit, feedback, w, groups, n_groups, k))
            frame.forget(unit)
        placed_terms = {key: v.placed(block, design.n_boot) for key, v in part_terms.items()}
        placed_models = {key: v.placed(block, design.n_boot) for key, v in part_models.items()}
        terms = _merge_maps(terms, placed_terms)
        models = _merge_maps(models, placed_models)
    return Scores(resampled=terms, models=models)


def _resample_unit(
    scoring: Scoring,
    unit: Unit,
    feedback: LoggedFeedback,
    weights: np.ndarray,
    groups: np.ndarray,
    n_groups: int,
    k: int,
) -> dict[tuple[Unit, int], ResampledTerms]:
    """One unit's weighted sums for every estimator: target mass by (cell, action) and each
    estimator's linear parts (`replay.estimators.Linear`) by (cell, logged action)."""
    columns = [feedback.target]
    layout = []
    for e in range(len(scoring.design.estimators)):
        linear = scoring.estimators[(unit, e)].linear_terms(feedback)
        layout.append((e, linear.correction is not None))
        columns += [linear.plain[:, None], linear.den[:, None]]
        if linear.correction is not None:
            columns.append(linear.correction[:, None])
    sums = grouped_sums(weights, np.hstack(columns), groups, n_groups)  # (B, groups, m)
    b = weights.shape[0]
    cells = n_groups // k
    by_cell = sums.reshape(b, cells, k, -1)
    mass = by_cell[..., :k].sum(axis=2)  # (B, cells, K): summed over the logged action
    out = {}
    col = k
    for e, has_correction in layout:
        estimator = scoring.design.estimators[e]
        plain, den = sums[..., col].sum(axis=1), sums[..., col + 1].sum(axis=1)
        col += 2
        correction = None
        if has_correction:
            correction = by_cell[..., col]
            col += 1
        out[(unit, e)] = ResampledTerms(
            plain, den, mass if estimator.uses_reward_model else None, correction
        )
    return out


# ---- the driver and the result -------------------------------------------------------------


def evaluate_stream(
    source: ChunkSource,
    policies: Policies,
    *,
    none_action: str | None,
    actions: tuple[str, ...] | None = None,
    estimators: Sequence[str] = ("IPS", "SNIPS", "DM", "DR", "DRos"),
    clip: float | None = None,
    confidence: float = 0.95,
    interval: Interval = "normal",
    n_boot: int = 200,
    seed: int = 0,
    by_trigger: bool = True,
    gains: Sequence[Gain] = (),
    effects: bool = True,
    folds: int = 2,
    total_rows: int | None = None,
    progress: Progress | None = None,
    source_name: str = "",
    run_pass: RunPass | None = None,
) -> ReplayResult:
    """`replay.evaluation.evaluate` over the chunks of ``source`` (see the module docstring);
    ``policies`` builds the candidates from the scanned log, ``actions`` fixes the vocabulary's
    order, ``total_rows`` (if known) sizes the progress reports; ``run_pass`` runs each pass
    elsewhere (default: over ``source`` in this process)."""
    if interval not in ("normal", "bootstrap"):
        raise ValueError(f"interval must be 'normal' or 'bootstrap'; got {interval!r}")
    if interval == "bootstrap" and n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2; got {n_boot!r}")
    built = build_estimators(estimators, clip)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    run = run_pass or local_passes(source)
    stats = ScanStats(folds)
    for scanned in _reported(run(partial(scan_chunk, folds=folds)), "scan", total_rows, progress):
        stats = stats.merge(scanned)
    plan = LogPlan.of(stats, none_action=none_action, source=source_name, actions=actions)
    design = Design.of(
        plan, policies(plan), built, by_trigger=by_trigger, gains=gains, effects=effects,
        confidence=confidence, n_boot=n_boot if interval == "bootstrap" else 0, seed=seed,
    )  # fmt: skip
    timings["scan"] = time.perf_counter() - started
    started = time.perf_counter()
    tuning = Tuning()
    for tuned in _reported(run(partial(tune_chunk, design)), "tune", plan.n, progress):
        tuning = tuning.merge(tuned)
    scoring = Scoring.of(design, tuning)
    timings["tune"] = time.perf_counter() - started
    started = time.perf_counter()
    scores = Scores()
    for scored in _reported(run(partial(score_chunk, scoring)), "score", plan.n, progress):
        scores = scores.merge(scored)
    timings["score"] = time.perf_counter() - started
    return replay_result(scoring, tuning, scores, timings)


def local_passes(source: ChunkSource) -> RunPass:
    """`RunPass` in this process, over a new read of ``source`` each pass."""

    def run(f: Callable[[LogChunk], Any]) -> Iterator[tuple[Any, int, int]]:
        for chunk in source():
            yield f(chunk), chunk.n, sum(chunk.skipped.values())

    return run


def _reported(
    results: Iterable[tuple[Any, int, int]], stage: str, total: int | None,
    progress: Progress | None,
) -> Iterator[Any]:  # fmt: skip
    done = 0
    for result, kept, skipped in results:
        yield result
        done += kept + skipped if stage == "scan" else kept
        if progress:
            progress(stage, done, total)
    if progress:
        progress(stage, done, done)


def replay_result(
    scoring: Scoring, tuning: Tuning, scores: Scores, timings: Mapping[str, float]
) -> ReplayResult:
    """The `ReplayResult` of the merged passes, rows in `evaluate`'s order."""
    design = scoring.design
    plan = design.plan
    rows = []
    for j, candidate in enumerate(design.candidates):
        for s in design.policy_slices:
            unit = Unit(s, Target("policy", j))
            for e, estimator in enumerate(design.estimators):
                moments = scores.units[(unit, e)]
                est = ratio_estimate(estimator.name, moments, confidence=design.confidence)
                if design.n_boot:
                    est = _bootstrapped(design, est, scores, [unit], e)
                rows.append(
                    EstimateRow(
                        candidate.name,
                        est.estimator,
                        s.trigger,
                        est.value,
                        est.low,
                        est.high,
                        est.se,
                        design.models[s].n,
                        est.method,
                    )
                )
    contrasts = []
    for c, contrast in enumerate(design.contrasts):
        for e, estimator in enumerate(design.estimators):
            est = ratio_difference(
                estimator.name, scores.contrasts[(c, e)], confidence=design.confidence
            )
            if design.n_boot:
                est = _bootstrapped(design, est, scores, [contrast.first, contrast.second], e)
            contrasts.append(
                ContrastRow(
                    contrast.kind,
                    contrast.name,
                    contrast.first_name,
                    contrast.second_name,
                    contrast.first.slice.trigger,
                    est.estimator,
                    est.value,
                    est.low,
                    est.high,
                    est.se,
                    design.models[contrast.first.slice].n,
                    est.method,
                )
            )
    diagnostics = [
        _diagnostics(design, j, tuning.policies[j]) for j in range(len(design.candidates))
    ]
    notes = []
    if design.effects and plan.none_action is None:
        notes.append("no send-nothing action in the log: effects vs no message not estimated")
    if any(d.ess < 0.01 * d.n for d in diagnostics):
        notes.append("some policies rest on very few effective events; see their warnings")
    return ReplayResult(
        source=plan.source,
        n_events=plan.n,
        skipped=dict(plan.skipped),
        actions=plan.actions,
        triggers=plan.triggers,
        policies=tuple(c.name for c in design.candidates),
        estimators=tuple(e.name for e in design.estimators),
        confidence=design.confidence,
        estimates=tuple(rows),
        diagnostics=tuple(diagnostics),
        contrasts=tuple(contrasts),
        notes=tuple(notes),
        timings_s={k: round(v, 4) for k, v in timings.items()},
    )


def _bootstrapped(
    design: Design, est: Estimate, scores: Scores, units: list[Unit], e: int
) -> Estimate:
    """The percentile interval of the unit's (or the pair's difference of) resampled values."""
    values = [resampled_values(scores.resampled[(u, e)], scores.models.get(u.slice)) for u in units]
    boot = values[0] - values[1] if len(values) == 2 else values[0]
    return percentile_interval(
        est.estimator, est.value, boot, confidence=design.confidence, method=BOOTSTRAP_METHOD
    )


def _diagnostics(design: Design, j: int, checks: PolicyChecks) -> PolicyDiagnostics:
    diag = checks.weights.diagnostics()
    warnings = diag.warnings()
    if any(e.name == "DM" for e in design.estimators) and bool(checks.varies.varies.any()):
        warnings.append(
            "DM's tabular reward model sees only the trigger: for this policy, which varies "
            "within triggers, DM is biased (it misses what personalization earns); trust DR"
        )
    return PolicyDiagnostics(
        design.candidates[j].name, diag.n, diag.ess, diag.min_weight, diag.max_weight,
        diag.zero_support_share, tuple(warnings),
    )  # fmt: skip
