"""The domain vocabulary: frozen dataclasses shared by every room of the planner.

These types carry no validation magic and import no UI, HTTP or database code. Untrusted
input is validated at the edges (pydantic in config and protocol) and converted into these.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from planner.units import Unit

if TYPE_CHECKING:
    import numpy as np

DEFAULT_STUDY = "default"

# Substrings that mark a metric where lower is better (matched case-insensitively).
LOWER_IS_BETTER_MARKERS = ("loss", "ppl", "perplexity", "bpb", "error")
# Substrings that mark a perplexity: the exponential of a loss (matched case-insensitively).
PERPLEXITY_MARKERS = ("ppl", "perplexity")


#: the source name the control anneal's runs carry (it anneals on replay data only)
CONTROL_SOURCE = "control"
# what marks a run's source as the control anneal, after stripping and lower-casing
_CONTROL_NAMES = (CONTROL_SOURCE, "")


def is_control(source: str | None) -> bool:
    """True for the control anneal's runs (source None, empty or ``control``)."""
    return source is None or source.strip().lower() in _CONTROL_NAMES


def is_mixture(source: str | None) -> bool:
    """True for a mixed run's source: two or more sources joined by ``+`` (``a+b``,
    ``a@0.6+b@0.4``; see ``allocate.mixture.parse_mixture``). Such runs are never fitted
    as a source of their own."""
    return bool(source) and sum(1 for p in str(source).split("+") if p.strip()) >= 2


def lower_is_better(metric: str, overrides: Mapping[str, bool] | None = None) -> bool:
    """Direction of a metric: lower is better for loss/ppl/perplexity/bpb/error names.

    Args:
        metric: the metric's name.
        overrides: metric name → True (lower is better) or False (higher is better);
            wins over the name rule.
    """
    if overrides and metric in overrides:
        return bool(overrides[metric])
    name = metric.lower()
    return any(marker in name for marker in LOWER_IS_BETTER_MARKERS)


def is_perplexity(metric: str) -> bool:
    """True for a perplexity (``ppl`` or ``perplexity`` in the name): exp of a loss."""
    name = metric.lower()
    return any(marker in name for marker in PERPLEXITY_MARKERS)


def stable_id(prefix: str, *parts: object) -> str:
    """A short deterministic id from JSON-able parts (same parts → same id)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return f"{prefix}-{hashlib.sha256(blob).hexdigest()[:16]}"


@dataclass(frozen=True, slots=True)
class CostSpec:
    """How a source's curation cost is modelled.

    Attributes:
        model: the registered cost-model name (``linear``, ``generation``, ``filtering``…).
        params: the cost model's parameters, JSON-able.
        unit: the unit the cost model returns.
    """

    model: str
    params: Mapping[str, Any]
    unit: Unit


@dataclass(frozen=True, slots=True)
class Source:
    """A candidate data source a user may pay for.

    Attributes:
        name: the user's name for it, unique in a project.
        kind: the registered source kind (``files``, ``synthetic``…).
        config: the kind's validated configuration, JSON-able.
        cost: its curation cost model, or None when curation is free.
        cap_tokens: how many tokens it can supply at most (None: unbounded).
        plugin: the plugin that provides the kind; ``plugin_version`` its version.
    """

    name: str
    kind: str
    config: Mapping[str, Any]
    cost: CostSpec | None = None
    cap_tokens: float | None = None
    plugin: str = ""
    plugin_version: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class AnnealSpec:
    """One planned annealing run.

    Attributes:
        job_id: client-chosen id; deterministic from the rest so re-planning reuses jobs.
        experiment: the experiment (sweep) it belongs to.
        source: the source annealed on, or None for the control anneal (replay only).
        tokens: tokens of the source (total tokens for a control run).
        replay_fraction: share of replay data in the mixture.
        seed: training and sampling seed.
    """

    job_id: str
    experiment: str
    source: str | None
    tokens: float
    replay_fraction: float = 0.7
    seed: int = 0

    @property
    def is_control(self) -> bool:
        return self.source is None

    @property
    def run_source(self) -> str:
        """The source its run is recorded under (:data:`CONTROL_SOURCE` for the control)."""
        return self.source or CONTROL_SOURCE


@dataclass(frozen=True, slots=True)
class Run:
    """A measured run: one source at one compute, in one study.

    ``compute`` is any quantity that grows with cost (FLOPs, GPU-hours, tokens…); runs are
    compared only within one (study, metric).
    """

    run_id: str
    source: str
    compute: float
    study: str = DEFAULT_STUDY
    params: float | None = None
    tokens: float | None = None
    seed: int | None = None
    cost_curation: float | None = None
    cost_training: float | None = None
    origin: str = "import"


@dataclass(frozen=True, slots=True)
class Metric:
    """One measured value of one run.

    Attributes:
        n_items: the evaluation's size (items scored), when known: an accuracy's binomial
            noise is p(1-p)/n_items.
        chance: the metric's value by chance (e.g. 0.25 for four choices), when known.
    """

    run_id: str
    name: str
    value: float
    n_items: float | None = None
    chance: float | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """A flattened (run, metric) pair: what fitting and backtests consume."""

    study: str
    metric: str
    source: str
    compute: float
    value: float
    run_id: str = ""
    seed: int | None = None
    n_items: float | None = None
    chance: float | None = None


@dataclass(frozen=True, slots=True)
class LeaveLastOut:
    """How well a law extrapolated its held-out points: each source's largest-compute
    point, predicted by the law fitted without it.

    Attributes:
        rmse: root mean square of the held-out errors, in the metric's units.
        n: how many held-out errors (one per source).
        log_dist: mean log-distance of the held-out points beyond the largest compute kept.
        noise_rmse: rms observation noise inside those errors (NaN when unknown).
    """

    rmse: float
    n: int
    log_dist: float
    noise_rmse: float = math.nan

    def to_json(self) -> dict[str, Any]:
        return {
            "rmse": self.rmse,
            "n": self.n,
            "log_dist": self.log_dist,
            "noise_rmse": self.noise_rmse,
        }

    @staticmethod
    def from_json(body: Mapping[str, Any]) -> LeaveLastOut:
        return LeaveLastOut(
            float(body["rmse"]),
            int(body["n"]),
            float(body["log_dist"]),
            _float(body.get("noise_rmse")),
        )


@dataclass(frozen=True, slots=True)
class AveragedLaw:
    """One law of a model average: its weight, parameters and draws.

    Attributes:
        candidate: the candidate's name (family and shared parameters, ``power[E]``).
        family: the law family's name.
        weight: its share of the average (the members' weights sum to 1).
        params: its fitted parameters.
        boot: its bootstrap parameter samples, shape (B, len(params)), or None.
        noise_sd_boot: its observation-noise scale per bootstrap sample, or None.
        llo: its own leave-last-out errors.
    """

    candidate: str
    family: str
    weight: float
    params: Mapping[str, float]
    boot: np.ndarray | None = None
    noise_sd_boot: np.ndarray | None = None
    llo: LeaveLastOut | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "family": self.family,
            "weight": self.weight,
            "params": dict(self.params),
            "boot": self.boot,
            "noise_sd_boot": self.noise_sd_boot,
            "llo": None if self.llo is None else self.llo.to_json(),
        }

    @staticmethod
    def from_json(body: Mapping[str, Any]) -> AveragedLaw:
        if "llo" not in body:  # written before the typed form: the member's own dict
            body = {**body, "llo": _legacy_llo(body)}
        return AveragedLaw(
            candidate=str(body.get("candidate") or body["family"]),
            family=str(body["family"]),
            weight=float(body["weight"]),
            params=dict(body["params"]),
            boot=_array(body.get("boot")),
            noise_sd_boot=_array(body.get("noise_sd_boot")),
            llo=None if body.get("llo") is None else LeaveLastOut.from_json(body["llo"]),
        )


@dataclass(frozen=True, slots=True)
class ModelAverage:
    """Several laws whose predictions are averaged: one predictor (see
    ``planner.laws.predict``); the fit that carries it shows its dominant member."""

    members: tuple[AveragedLaw, ...]

    @property
    def weights(self) -> dict[str, float]:
        """Candidate name → weight."""
        return {m.candidate: m.weight for m in self.members}

    def to_json(self) -> dict[str, Any]:
        return {"members": [m.to_json() for m in self.members]}

    @staticmethod
    def from_json(body: Mapping[str, Any]) -> ModelAverage:
        return ModelAverage(tuple(AveragedLaw.from_json(m) for m in body["members"]))


@dataclass(frozen=True, slots=True)
class LawFit:
    """A fitted scaling law of one metric against compute for one source.

    Mirrors scipy's ``OptimizeResult``: a fit that failed is data (``success=False`` and a
    ``message`` shown verbatim), not an exception.

    Attributes:
        study, metric, source: what was fitted.
        family: the law family's name (``power``, ``loglinear``, ``logistic``…).
        method: how (``independent``, ``joint``…).
        params: fitted parameters in the family's own parametrisation.
        x_ref: the compute the family's x is scaled by (x_scaled = compute / x_ref);
            ``x_refs`` one scale per input of a multi-variable law (empty: ``(x_ref,)``).
        covariance: parameter covariance, or None when it cannot be estimated.
        boot: bootstrap parameter samples, shape (B, len(params)), columns in params order.
        loss: final robust loss.
        success, message, nfev: as in scipy.
        n_points: observations used; x_max: largest compute fitted.
        lower_is_better: the metric's direction.
        noise_sd, dof, f_scale: the residual noise scale, the degrees of freedom it rests
            on, and the robust loss's scale (in units of the metric's spread).
        noise_sd_boot: the noise scale drawn for each bootstrap sample, or None.
        candidate: the candidate law chosen (``power[E,alpha]``: family and shared
            parameters); empty for a fit of one family (then :attr:`law` is the family).
        llo_scores: every candidate's leave-last-out score (mean absolute held-out error
            over the metric's spread; ``inf``: could not be held out).
        llo: the leave-last-out errors of the predictor (of the average when there is one).
        average: the laws averaged into this fit's predictions, or None for one law.
        compute_unit: the unit of the fitted compute, when known.
    """

    study: str
    metric: str
    source: str
    family: str
    method: str
    params: Mapping[str, float]
    x_ref: float = 1.0
    y_ref: float = 1.0
    covariance: np.ndarray | None = None
    boot: np.ndarray | None = None
    loss: float = float("nan")
    success: bool = True
    message: str = ""
    nfev: int = 0
    n_points: int = 0
    x_max: float = float("nan")
    lower_is_better: bool = False
    x_refs: tuple[float, ...] = ()
    noise_sd: float = float("nan")
    dof: int = 0
    f_scale: float = float("nan")
    noise_sd_boot: np.ndarray | None = None
    candidate: str = ""
    llo_scores: Mapping[str, float] = field(default_factory=dict)
    llo: LeaveLastOut | None = None
    average: ModelAverage | None = None
    compute_unit: str | None = None

    @property
    def law(self) -> str:
        """The law's name as tables show it: the candidate, else the family."""
        return self.candidate or self.family

    @property
    def llo_error(self) -> float:
        """The chosen candidate's leave-last-out score (NaN when none was scored)."""
        return self.llo_scores.get(self.candidate, math.nan)

    def to_json(self) -> dict[str, Any]:
        """The fit's fields as JSON values; numpy arrays are left for the writer to encode."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["params"] = dict(self.params)
        out["x_refs"] = list(self.x_refs)
        out["llo_scores"] = dict(self.llo_scores)
        out["llo"] = None if self.llo is None else self.llo.to_json()
        out["average"] = None if self.average is None else self.average.to_json()
        return out

    @staticmethod
    def from_json(body: Mapping[str, Any], **fields_: Any) -> LawFit:
        """A fit from :meth:`to_json`'s values (arrays as arrays or lists), or from a body
        written before the typed fields (their values in one ``extra`` mapping); unknown
        keys are left out. ``fields_`` override the body's values (e.g. ``boot``)."""
        names = {f.name for f in fields(LawFit)}
        legacy = body.get("extra")
        body = {k: v for k, v in body.items() if k in names}
        if isinstance(legacy, Mapping):
            body.update(_legacy_fields(legacy))
        body.update(fields_)
        for name in ("covariance", "boot", "noise_sd_boot"):
            body[name] = _array(body.get(name))
        if body.get("x_refs") is not None:
            body["x_refs"] = tuple(float(v) for v in body["x_refs"])
        if isinstance(body.get("llo"), Mapping):
            body["llo"] = LeaveLastOut.from_json(body["llo"])
        if isinstance(body.get("average"), Mapping):
            body["average"] = ModelAverage.from_json(body["average"])
        return LawFit(**body)


def _float(v: Any) -> float:
    """A stored number; None (not recorded) as NaN."""
    return math.nan if v is None else float(v)


def _array(v: object) -> np.ndarray | None:
    """A stored array (as an array or as nested lists) as a float array; None stays None."""
    if v is None:
        return None
    import numpy as np

    return np.asarray(v, dtype=float)


def _legacy_llo(extra: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``llo_*`` keys of a body written before the typed fields, or None."""
    if extra.get("llo_rmse") is None:
        return None
    # a missing distance or count meant "no shape error", as 0 does
    return {
        "rmse": extra["llo_rmse"],
        "n": int(extra.get("llo_n", 0) or 0),
        "log_dist": extra.get("llo_log_dist") or 0.0,
        "noise_rmse": extra.get("llo_noise_rmse"),
    }


def _legacy_fields(extra: Mapping[str, Any]) -> dict[str, Any]:
    """The typed fields of a fit body written with one ``extra`` mapping."""
    out: dict[str, Any] = {
        k: extra[k]
        for k in ("x_refs", "noise_sd", "dof", "f_scale", "noise_sd_boot", "compute_unit")
        if extra.get(k) is not None
    }
    if extra.get("candidate"):
        out["candidate"] = str(extra["candidate"])
    if extra.get("llo_scores"):
        out["llo_scores"] = dict(extra["llo_scores"])
    out["llo"] = _legacy_llo(extra)
    if extra.get("members"):
        out["average"] = {"members": list(extra["members"])}
    return out


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``data`` that name a field of the dataclass ``cls`` (others dropped)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True, slots=True)
class SourceAllocation:
    """One source's share of a plan."""

    source: str
    tokens: float
    cost: float
    gain: float
    gain_low: float = float("nan")
    gain_high: float = float("nan")
    p_in_optimal: float = float("nan")
    capped: bool = False
    tokens_low: float = float("nan")
    tokens_high: float = float("nan")
    trust_tokens: float | None = None
    """The trust region's limit for this source: the trust multiple × its largest measured
    budget (None: no trust region, or no measured budget)."""


@dataclass(frozen=True, slots=True)
class ProblemOptions:
    """The options the allocation verbs share, as typed (see ``annealplan allocate --help``).

    A plan keeps the options it was solved with, so whoever shows a stored plan later (its
    frontier, a report) rebuilds the same problem.

    Attributes:
        metric: metric to maximise (None: the only fitted one).
        weights: a weighted objective, ``metric=w[,metric=w…]``.
        guards: guard-rails on the summed change over control, ``general_acc>=-0.01``.
        model_params: the annealing model's size N, ``135M`` (None: from the runs).
        control: the control anneal's value when no control run is stored.
        study: the study whose fits to use (None: the only one).
        sources: comma-separated sources to consider (None: every fitted one).
        replay_fraction: replay share trained alongside a source's tokens.
        eval_cost: evaluation cost of the final plan, ``5gpuh``.
        max_extrapolation: the trust region: no source is bought past this multiple of its
            largest measured budget (None: the project's setting, default 10).
        combination: how single-source gains combine in the mixed anneal, ``coverage``
            (bounded by the metric's headroom) or ``additive``.
        p_in_optimal_from: what P(in optimal plan) counts: the laws' bootstrap rows as
            solved (``laws``), or those rows recalibrated to the difference model's
            pairwise view of the runs (``difference``; see
            ``planner.allocate.pairwise_view``).
    """

    metric: str | None = None
    weights: str | None = None
    guards: Sequence[str] = ()
    model_params: str | None = None
    control: float | None = None
    study: str | None = None
    sources: str | None = None
    replay_fraction: float = 0.0
    eval_cost: str | None = None
    max_extrapolation: float | None = None
    combination: str = "coverage"
    p_in_optimal_from: str = "laws"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProblemOptions:
        kept = _known(cls, data)
        kept["guards"] = tuple(kept.get("guards") or ())
        return cls(**kept)


@dataclass(frozen=True, slots=True)
class GuardCheck:
    """A guard-rail as the plan meets it.

    Attributes:
        guard: the guard-rail as written, ``general_acc>=-0.01``.
        value: the plan's signed summed change of the guarded metric over control.
        multiplier: the Lagrange multiplier that enforced it (0: it did not bind).
    """

    guard: str
    value: float
    multiplier: float


@dataclass(frozen=True, slots=True)
class BestSingle:
    """The best plan that spends the whole budget on one source.

    Attributes:
        source, tokens, gain: that source, its tokens and its predicted gain.
        gain_by_source: every source's predicted gain when it alone gets the budget (the
            laws' ranking at the target budget).
    """

    source: str
    tokens: float
    gain: float
    gain_by_source: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class PointEstimate:
    """What one micro-anneal would have chosen: the laws read at a small budget.

    Attributes:
        micro_budget: the budget the micro-anneal spends.
        choice: the source that gains most at the micro budget.
        predicted_gain_at_micro: every source's predicted gain at the micro budget.
        gain_if_followed: the predicted gain of spending the whole budget on ``choice``.
        gain_lost: the plan's predicted gain minus ``gain_if_followed``.
        differs_from_best_single: ``choice`` is not the best single source at the budget.
        gain_lost_low, gain_lost_high: the 90% interval of the loss over the bootstrap
            samples (None without samples).
    """

    micro_budget: float
    choice: str
    predicted_gain_at_micro: Mapping[str, float]
    gain_if_followed: float
    gain_lost: float
    differs_from_best_single: bool
    gain_lost_low: float | None = None
    gain_lost_high: float | None = None


@dataclass(frozen=True, slots=True)
class GainRange:
    """A gain over the bootstrap samples: median and the 90% interval."""

    median: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class PlanUncertainty:
    """The plan under every bootstrap sample of the laws.

    Attributes:
        samples: bootstrap samples solved.
        optimal_gain: the gain of each sample's own optimal plan.
        p_plan_near_optimal: share of samples where the plan loses less than 5% of the
            sample's optimal gain.
        p_beats_best_single, p_beats_point_estimate_choice: share of samples where the plan
            gains more than the best single source or the micro-anneal's choice.
        p_in_optimal: per source, the share of samples whose optimal plan uses it.
        quantiles: the percentiles the intervals are drawn at.
    """

    samples: int
    optimal_gain: GainRange
    p_plan_near_optimal: float
    p_beats_best_single: float
    p_beats_point_estimate_choice: float
    p_in_optimal: Mapping[str, float]
    quantiles: tuple[float, float]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanUncertainty:
        kept = _known(cls, data)
        kept["optimal_gain"] = GainRange(**_known(GainRange, kept["optimal_gain"]))
        kept["quantiles"] = tuple(kept["quantiles"])
        return cls(**kept)


@dataclass(frozen=True, slots=True)
class Confirmation:
    """One mixed anneal of the chosen mix, scaled down, that tests the combination rule.

    Attributes:
        source: the mixture's name, ``a@0.6+b@0.4`` (see ``allocate.mixture.parse_mixture``).
        tokens: its source tokens in all; ``tokens_per_source`` split by source.
        predicted_gain: the gain the plan's combination rule predicts for it;
            ``predicted_low``/``predicted_high`` its 90% interval over the bootstrap.
        additive_gain: the gain if single-source gains simply added; ``additive_low`` and
            ``additive_high`` its interval.
        measured_gain: the gain the anneal measured over the control (None: not run yet);
            ``run_id`` the stored run it comes from.
        note: what to do with it.
    """

    source: str
    tokens: float
    tokens_per_source: Mapping[str, float]
    predicted_gain: float
    note: str = "run it as one anneal; compare its measured gain with the prediction"
    predicted_low: float | None = None
    predicted_high: float | None = None
    additive_gain: float | None = None
    additive_low: float | None = None
    additive_high: float | None = None
    measured_gain: float | None = None
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class CertificateEntry:
    """One source's line of a plan's KKT certificate.

    At a cost-optimal plan every source bought strictly between zero and its cap
    (``interior``) has the same marginal utility per unit of cost, the multiplier λ; a source
    left at zero (``zero``) has a lower one, a source held at its cap or trust limit
    (``capped``) a higher one.

    Attributes:
        source: the source.
        status: ``interior``, ``zero`` or ``capped``.
        marginal_utility: d(combined gain)/d(cost) of this source at the plan (per unit of
            the budget's unit).
        tokens: the plan's tokens of it.
        limit: what caps it (``supply`` or ``trust``), empty unless capped.
    """

    source: str
    status: str
    marginal_utility: float
    tokens: float
    limit: str = ""


@dataclass(frozen=True, slots=True)
class Combination:
    """How a plan combines single-source gains into the one mixed anneal's gain.

    Attributes:
        rule: ``coverage`` (H·(1 − Π(1 − g_i/H)), generalised by ``interaction``) or
            ``additive`` (the plain sum).
        headroom: H, the largest gain the metric allows over the control (1 − control for
            an accuracy; control − best asymptote for a loss).
        interaction: the rule's interaction θ (0: independent coverage; above 0 the
            sources overlap, below 0 they complement each other); fitted from measured
            mixtures when there are any (see ``planner.allocate.combine``).
        interaction_low, interaction_high: its 90% interval (None: not fitted).
        mixtures: measured mixed runs the interaction was fitted from.
    """

    rule: str = "coverage"
    headroom: float = float("nan")
    interaction: float = 0.0
    interaction_low: float | None = None
    interaction_high: float | None = None
    mixtures: int = 0


@dataclass(frozen=True, slots=True)
class MixedRunCheck:
    """A measured mixed run beside the gain the laws predict for it (the separability check).

    Attributes:
        source: the run's mixture name (``a+b``, ``a@0.7+b@0.3``).
        tokens: its source tokens.
        measured_gain, predicted_gain: over the control; ``difference`` measured − predicted.
        skipped: why it was not compared (empty when it was; the numbers are then None).
    """

    source: str
    tokens: float | None = None
    measured_gain: float | None = None
    predicted_gain: float | None = None
    difference: float | None = None
    skipped: str = ""


@dataclass(frozen=True, slots=True)
class MeasuredMixture:
    """A stored run that annealed on several sources at once (a plan's confirmation).

    Its metric values are the run's, like any run's (``store.observations``); this says
    what it trained on, so a fit can learn how single-source gains combine.

    Attributes:
        run_id, study, source: the run; ``source`` is the mixture's name (``a@0.6+b@0.4``).
        tokens_per_source: the tokens of each source it trained on (replay excluded).
        compute: the run's compute, in its study's unit.
    """

    run_id: str
    study: str
    source: str
    tokens_per_source: Mapping[str, float]
    compute: float

    @property
    def tokens(self) -> float:
        """Its source tokens in all."""
        return float(sum(self.tokens_per_source.values()))


def _optional(cls: type, data: Mapping[str, Any] | None) -> Any:
    """``cls`` from its JSON data, or None for none (or an empty mapping)."""
    if not data:
        return None
    reader = getattr(cls, "from_json", None)
    return reader(data) if reader is not None else cls(**_known(cls, data))


@dataclass(frozen=True, slots=True)
class Plan:
    """A cost-optimal allocation for a budget, with what it rests on.

    Attributes:
        budget, unit: the budget and its unit.
        allocations: per source tokens, cost and predicted gain.
        gain: predicted total gain over the control anneal; gain_low/high its interval.
        success, message: a degenerate or infeasible problem is data, explained in message.
        notes: caveats shown with the plan (separability, extrapolation…).
        fit_ids: the fits the plan came from.
        marginal_utility: the KKT certificate λ: the gain per unit of cost of the last unit
            spent, which every funded source below its cap reaches at the optimum (0 when
            the budget does not bind; NaN when the plan is the best single source taken
            whole instead of the water-filling one; None: not solved).
        eval_cost: the evaluation cost taken off the budget, in ``unit``.
        guards: each guard-rail's value in the plan and its multiplier.
        best_single: the best one-source plan; point_estimate: what one micro-anneal
            would have chosen; uncertainty: the plan under the bootstrap samples.
        confirmation: the mixed anneal that tests the plan's separability assumption.
        mixed_runs: measured mixed runs against their predicted gain.
        options: the options the plan was solved with (None: not recorded).
        certificate: the KKT certificate, one entry per source (see
            :class:`CertificateEntry`).
        combination: how single-source gains were combined into ``gain``.
        additive_gain, additive_low, additive_high: the plan's gain and interval had the
            gains simply added (shown beside the combined prediction).
        trust_multiple: no source is bought past this multiple of its largest measured
            budget (None: no trust region).
        trust_limited: sources the trust region held back (the budget could buy more).
    """

    budget: float
    unit: Unit
    metric: str
    allocations: tuple[SourceAllocation, ...]
    gain: float
    gain_low: float = float("nan")
    gain_high: float = float("nan")
    success: bool = True
    message: str = ""
    notes: tuple[str, ...] = ()
    fit_ids: tuple[str, ...] = ()
    marginal_utility: float | None = None
    eval_cost: float = 0.0
    guards: tuple[GuardCheck, ...] = ()
    best_single: BestSingle | None = None
    point_estimate: PointEstimate | None = None
    uncertainty: PlanUncertainty | None = None
    confirmation: Confirmation | None = None
    mixed_runs: tuple[MixedRunCheck, ...] = ()
    options: ProblemOptions | None = None
    certificate: tuple[CertificateEntry, ...] = ()
    combination: Combination | None = None
    additive_gain: float | None = None
    additive_low: float | None = None
    additive_high: float | None = None
    trust_multiple: float | None = None
    trust_limited: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON-able data (what the store keeps; :meth:`from_json` reads it)."""
        data = asdict(self)
        data["unit"] = self.unit.value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        """Rebuild a plan from :meth:`to_json`'s data.

        A plan stored before its details were typed kept them in one ``extra`` mapping
        (with the multiplier under ``lambda``); such a body reads the same way. Unknown
        keys are dropped.
        """
        old = dict(data.get("extra") or {})
        if "lambda" in old:
            old["marginal_utility"] = old.pop("lambda")
        flat = {**old, **{k: v for k, v in data.items() if k != "extra"}}
        kw = _known(cls, flat)
        kw["unit"] = Unit(kw["unit"])
        kw["allocations"] = tuple(
            SourceAllocation(**_known(SourceAllocation, a)) for a in flat.get("allocations", ())
        )
        for key in ("notes", "fit_ids"):
            kw[key] = tuple(flat.get(key) or ())
        kw["guards"] = tuple(GuardCheck(**_known(GuardCheck, g)) for g in flat.get("guards") or ())
        kw["mixed_runs"] = tuple(
            MixedRunCheck(**_known(MixedRunCheck, m)) for m in flat.get("mixed_runs") or ()
        )
        kw["certificate"] = tuple(
            CertificateEntry(**_known(CertificateEntry, c)) for c in flat.get("certificate") or ()
        )
        kw["trust_limited"] = tuple(flat.get("trust_limited") or ())
        for key, typ in (
            ("best_single", BestSingle),
            ("point_estimate", PointEstimate),
            ("uncertainty", PlanUncertainty),
            ("confirmation", Confirmation),
            ("options", ProblemOptions),
            ("combination", Combination),
        ):
            kw[key] = _optional(typ, flat.get(key))
        return cls(**kw)


@dataclass(frozen=True, slots=True)
class FrontierPoint:
    """The optimal plan at one budget of a frontier.

    Attributes:
        budget: in the problem's unit.
        gain: the optimal plan's predicted gain; gain_low/high its 90% interval over the
            bootstrap samples (NaN without samples).
        tokens: per source, the optimal plan's tokens.
        best_single: the source that gains most with the whole budget (None: none can be
            bought); best_single_gain its gain.
        success: the plan is feasible, beats the control and meets its guard-rails.
    """

    budget: float
    gain: float
    gain_low: float
    gain_high: float
    tokens: Mapping[str, float]
    best_single: str | None
    best_single_gain: float
    success: bool


@dataclass(frozen=True, slots=True)
class BudgetCrossover:
    """A budget at which the best single source changes.

    Attributes:
        budget: where the point laws' best source changes (evaluation cost included).
        before, after: the best source below and above it (None: nothing beats control).
        probability: share of bootstrap samples that change between the same two sources
            in the range (None without samples).
        budget_low, budget_high: the 5th and 95th percentiles of where those samples
            change (None when none does).
    """

    budget: float
    before: str | None
    after: str | None
    probability: float | None = None
    budget_low: float | None = None
    budget_high: float | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"budget", "from", "to"}`` plus the probability and range when known."""
        out: dict[str, Any] = {"budget": self.budget, "from": self.before, "to": self.after}
        for key in ("probability", "budget_low", "budget_high"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class CrossoverScan:
    """The best single source across a range of budgets, and where it changes.

    Attributes:
        budgets: the budgets scanned, ascending.
        best: the best single source at each (None: nothing beats the control).
        crossovers: where the best source changes.
        p_best: per source, the share of bootstrap samples in which it is best at each budget
            (None without samples); samples: how many samples (0 without).
    """

    budgets: tuple[float, ...]
    best: tuple[str | None, ...]
    crossovers: tuple[BudgetCrossover, ...]
    p_best: Mapping[str, tuple[float, ...]] | None = None
    samples: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "budgets": list(self.budgets),
            "best": list(self.best),
            "crossovers": [c.to_json() for c in self.crossovers],
        }
        if self.p_best is not None:
            out["p_best"] = {k: list(v) for k, v in self.p_best.items()}
            out["samples"] = self.samples
        return out
