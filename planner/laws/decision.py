"""Decisions between sources from fitted laws: P(a beats b) and the draws behind it.

A group's joint fit is bootstrapped as one problem: replicate i of every source comes from
the same refit, so replicate i's values keep the correlation between sources (what they
share cancels in a difference). An averaged fit is several laws weighted by how well each
extrapolated held-out runs; which law is right is itself uncertain, so a draw here first
picks a law with its weight, then takes that law's replicate. The draws' spread then holds
the model-averaging uncertainty as well as the parameters' (averaging the members' curves
draw by draw, as the averaged point prediction does, would hide the laws' disagreement).

:func:`member_draws` says which draw uses which law, for callers that evaluate the laws
themselves (the allocation's P(in optimal plan) solves each draw's plan with its law);
:func:`value_draws` gives the values; :func:`pair_beliefs` P(a beats b) at a compute.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from planner.domain import LawFit
from planner.errors import FitError

#: a pair whose P(a beats b) lies within these bounds is undecided: measure more
UNDECIDED = (0.4, 0.6)
#: draws used when a fit has no bootstrap of its own (its point curve, repeated)
DEFAULT_DRAWS = 400


def undecided(p: float) -> bool:
    """Whether a pair with P(a beats b) = ``p`` is undecided (0.4 ≤ p ≤ 0.6)."""
    return UNDECIDED[0] <= p <= UNDECIDED[1]


# --- the one place that reads an averaged fit's members and noise from a LawFit ---------


def _members(fit: LawFit) -> list[tuple[float, LawFit]]:
    """The averaged laws behind a fit as (weight, fit) pairs; the fit itself when single."""
    from planner.laws.predict import _members as members

    return members(fit)


def _candidate(fit: LawFit) -> str:
    return fit.law


def _noise_sd(fit: LawFit) -> float:
    """A fitted point's residual noise (the fit's estimate; NaN when it has none)."""
    return float(fit.noise_sd)


# -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberDraws:
    """One averaged law's share of a group's draws.

    Attributes:
        candidate: the law's name (``power[E,alpha]``…); family: its family.
        weight: its model-averaging weight.
        rows: the draws (indices into 0..n-1) that use this law; draw i uses the law's
            bootstrap replicate i (replicate i of every source is one joint refit).
        fits: per source, this law's fit (its params and bootstrap samples).
    """

    candidate: str
    family: str
    weight: float
    rows: np.ndarray
    fits: Mapping[str, LawFit]


def _choice(weights: Sequence[float], n: int, seed: int) -> np.ndarray:
    """Which member each of n draws uses: shares as close to the weights as n allows
    (largest remainders), in a fixed shuffled order."""
    w = np.asarray(weights, dtype=float)
    w = w / w.sum()
    counts = np.floor(w * n).astype(int)
    rest = n - int(counts.sum())
    if rest:
        counts[np.argsort(-(w * n - counts), kind="stable")[:rest]] += 1
    out = np.repeat(np.arange(w.size), counts)
    np.random.default_rng(seed).shuffle(out)
    return out


def member_draws(fits: Sequence[LawFit], *, seed: int = 0) -> tuple[int, list[MemberDraws]]:
    """Split a group's draws among its averaged laws.

    Args:
        fits: the successful fits of one (study, metric), one per source, from one joint
            fit (they share the laws and weights).
        seed: fixes which draws go to which law.

    Returns:
        (n, members): the number of draws (the fewest bootstrap replicates of any law,
        :data:`DEFAULT_DRAWS` when none has any) and each law's share.

    Raises:
        FitError: no fits, fits of several groups, or a failed fit.
    """
    if not fits:
        raise FitError("No fits to draw from: fit the group first (annealplan fit).")
    if len({(f.study, f.metric) for f in fits}) > 1:
        raise FitError("Draws compare the sources of one study and metric.")
    for f in fits:
        if not f.success:
            raise FitError(f"The fit for {f.source} failed ({f.message}); refit with more runs.")
    per_source = {f.source: _members(f) for f in fits}
    first = next(iter(per_source.values()))
    names = [_candidate(m) for _, m in first]
    weights = [w for w, _ in first]
    sizes = [
        len(m.boot)
        for ms in per_source.values()
        for _, m in ms
        if m.boot is not None and len(m.boot)
    ]
    n = min(sizes) if sizes else DEFAULT_DRAWS
    if any([_candidate(m) for _, m in ms] != names for ms in per_source.values()):
        raise FitError(
            "These fits were not fitted together (their laws differ by source): draws that "
            "keep the sources' correlation need one joint fit of the group (annealplan fit "
            "--method joint)."
        )
    choice = _choice(weights, n, seed)
    out = []
    for j, name in enumerate(names):
        law_fits = {}
        for source, ms in per_source.items():
            match = [m for _, m in ms if _candidate(m) == name]
            law_fits[source] = match[0] if match else ms[0][1]
        out.append(
            MemberDraws(
                candidate=name,
                family=next(iter(law_fits.values())).family,
                weight=float(weights[j]),
                rows=np.flatnonzero(choice == j),
                fits=law_fits,
            )
        )
    return n, out


@dataclass(frozen=True)
class ValueDraws:
    """Joint draws of every source's value of one group at some computes.

    Attributes:
        sources: source names, in the order of the draws' second axis.
        compute: the computes, shape (k,).
        point: the averaged point prediction, shape (S, k).
        draws: shape (n, S, k): draw i of every source comes from one joint refit and one
            law (see :func:`member_draws`).
        lower_is_better: the metric's direction.
    """

    sources: tuple[str, ...]
    compute: np.ndarray
    point: np.ndarray
    draws: np.ndarray
    lower_is_better: bool


def value_draws(fits: Sequence[LawFit], compute: object, *, seed: int = 0) -> ValueDraws:
    """Draws of a group's values at ``compute`` with the model-averaging uncertainty.

    Raises:
        FitError: as :func:`member_draws`.
    """
    from planner.laws.predict import predict, predict_boot

    c = np.atleast_1d(np.asarray(compute, dtype=float))
    sources = tuple(f.source for f in fits)
    names = {tuple(_candidate(m) for _, m in _members(f)) for f in fits}
    if len(names) == 1 or len({f.method for f in fits} - {"independent"}):
        parts = [(tuple(range(len(fits))), *member_draws(fits, seed=seed))]
    else:
        # fits of each source on its own (``--method independent``): nothing ties their
        # replicates together, so each source draws its laws on its own
        parts = [((s,), *member_draws([f], seed=seed + s)) for s, f in enumerate(fits)]
    n = min(p[1] for p in parts)
    draws = np.empty((n, len(sources), c.size))
    for idx, _, members in parts:
        for m in members:
            rows = m.rows[m.rows < n]
            if rows.size == 0:
                continue
            for s in idx:
                f = m.fits[sources[s]]
                if f.boot is not None and len(f.boot) >= n:
                    curves = predict_boot(replace(f, boot=np.asarray(f.boot)[:n]), c)
                    draws[rows, s, :] = curves[rows]
                else:
                    draws[rows, s, :] = np.atleast_1d(predict(f, c))[None, :]
    point = np.stack([np.atleast_1d(predict(f, c)) for f in fits])
    return ValueDraws(sources, c, point, draws, bool(fits[0].lower_is_better))


@dataclass(frozen=True, slots=True)
class PairBelief:
    """How sure the fits are that source ``a`` beats source ``b`` at a compute.

    Attributes:
        a, b: the sources; compute: where.
        p: P(a beats b) (a's value better, direction-aware).
        difference: a's predicted value minus b's (the averaged point predictions).
    """

    a: str
    b: str
    compute: float
    p: float
    difference: float

    @property
    def undecided(self) -> bool:
        return undecided(self.p)

    @property
    def leader(self) -> str:
        """The source more likely to win."""
        return self.a if self.p >= 0.5 else self.b

    @property
    def p_leader(self) -> float:
        return self.p if self.p >= 0.5 else 1.0 - self.p

    def describe(self, where: str) -> str:
        """``web beats textbook at $40k with P = 0.71`` (or ``undecided: measure more``)."""
        other = self.b if self.leader == self.a else self.a
        text = f"{self.leader} beats {other} at {where} with P = {self.p_leader:.2f}"
        return text + " (undecided: measure more)" if self.undecided else text


def pair_beliefs(
    fits: Sequence[LawFit],
    compute: float,
    *,
    measurement_var: Mapping[str, float] | None = None,
    seed: int = 0,
) -> list[PairBelief]:
    """P(a beats b) at ``compute`` for every pair of a group's sources.

    The probability is of the values a measurement at ``compute`` would give (the runs'
    own noise is added to each draw: ``measurement_var`` per source where the runs say it,
    else each fit's residual noise), from the joint draws with model averaging.

    Args:
        fits: the successful fits of one group, one per source.
        compute: where to compare, in the fits' compute unit.
        measurement_var: per source, the variance of one measurement there.
        seed: fixes the draws and the noise.

    Raises:
        FitError: as :func:`member_draws`.
    """
    vd = value_draws(fits, [compute], seed=seed)
    rng = np.random.default_rng(seed + 1)
    vals = vd.draws[:, :, 0].copy()
    for s, f in enumerate(fits):
        var = (measurement_var or {}).get(f.source, math.nan)
        if not (math.isfinite(var) and var > 0):
            sd = _noise_sd(f)
            var = sd * sd if math.isfinite(sd) else 0.0
        vals[:, s] += math.sqrt(var) * rng.standard_normal(vals.shape[0])
    out = []
    for i, j in itertools.combinations(range(len(fits)), 2):
        d = vals[:, i] - vals[:, j]
        if vd.lower_is_better:
            d = -d
        ok = np.isfinite(d)
        p = float((np.sum(d[ok] > 0) + 0.5 * np.sum(d[ok] == 0)) / ok.sum()) if ok.any() else 0.5
        diff = float(vd.point[i, 0] - vd.point[j, 0])
        out.append(PairBelief(vd.sources[i], vd.sources[j], float(compute), p, diff))
    return out
