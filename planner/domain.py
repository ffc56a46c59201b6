"""The domain vocabulary: frozen dataclasses shared by every room of the planner.

These types carry no validation magic and import no UI, HTTP or database code. Untrusted
input is validated at the edges (pydantic in config and protocol) and converted into these.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from planner.units import Unit

if TYPE_CHECKING:
    import numpy as np

DEFAULT_STUDY = "default"

# Substrings that mark a metric where lower is better (matched case-insensitively).
LOWER_IS_BETTER_MARKERS = ("loss", "ppl", "perplexity", "bpb", "error")
# Substrings that mark a perplexity: the exponential of a loss (matched case-insensitively).
PERPLEXITY_MARKERS = ("ppl", "perplexity")


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
class LawFit:
    """A fitted scaling law of one metric against compute for one source.

    Mirrors scipy's ``OptimizeResult``: a fit that failed is data (``success=False`` and a
    ``message`` shown verbatim), not an exception.

    Attributes:
        study, metric, source: what was fitted.
        family: the law family's name (``power``, ``loglinear``, ``logistic``…).
        method: how (``independent``, ``joint``…).
        params: fitted parameters in the family's own parametrisation.
        x_ref: the compute the family's x is scaled by (x_scaled = compute / x_ref).
        covariance: parameter covariance, or None when it cannot be estimated.
        boot: bootstrap parameter samples, shape (B, len(params)), columns in params order.
        loss: final robust loss.
        success, message, nfev: as in scipy.
        n_points: observations used; x_max: largest compute fitted.
        lower_is_better: the metric's direction.
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
    extra: Mapping[str, Any] = field(default_factory=dict)


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
    extra: Mapping[str, Any] = field(default_factory=dict)
