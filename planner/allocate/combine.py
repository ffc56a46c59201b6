"""How single-source gains combine into the gain of the one mixed anneal a plan proposes.

Each source's law predicts the gain of an anneal on that source alone. The plan is one anneal
on a mixture, and its gain is not the sum: two sources that teach the same facts do not
teach them twice, and no mixture can gain more than the metric has room for. The rule used
here is the *independent-coverage* rule with the metric's headroom ``H`` (1 − control for
an accuracy, control − best asymptote for a loss)::

    G = H · (1 − Π_k (1 − g_k / H))

Each source covers a share ``g_k / H`` of what is left to learn, independently of the others.
It reduces to ``Σ g_k`` for small gains, equals ``g_k`` for one source alone, and never
exceeds ``H``.

Sources may overlap more (or less) than independently. One interaction parameter θ widens
the rule to a Clayton copula on the shares not covered, ``s_k = 1 − g_k / H``::

    G_θ = H · (1 − (1 + Σ_k (s_k^(−θ) − 1))^(−1/θ))

θ = 0 is the independent rule (its limit), θ > 0 means the sources overlap (the mixture
gains less), θ < 0 that they complement each other; every θ keeps one source's gain and the
bound. θ is fitted from measured mixtures (:func:`fit_interaction`) once a study has any,
so later plans learn from their own confirmation anneals.

The rule, its gradient (the marginal utilities the allocation's KKT conditions use) and
both limits are derived with sympy (:func:`rule_expressions`) and lambdified once per
number of sources. The additive rule ``Σ g_k`` stays available as an option.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy
from scipy import optimize

#: the fitted interaction is kept in this range (a copula's θ beyond it says nothing more)
THETA_BOUNDS = (-0.9, 20.0)
#: below this |θ| the independent rule (θ's limit at 0) is evaluated instead
_THETA_ZERO = 1e-6
#: a source's share of the headroom is kept below 1 (a law run past the metric's bound)
_SHARE_MAX = 1.0 - 1e-9

COVERAGE = "coverage"
ADDITIVE = "additive"
RULES = (COVERAGE, ADDITIVE)


@functools.cache
def rule_expressions(k: int) -> dict[str, Any]:
    """The rules for ``k`` sources as sympy expressions in gains ``g0…`` and ``H``, ``theta``.

    Returns:
        ``{"g": symbols, "H", "theta", "independent", "clayton", "additive"}`` and each
        rule's gradient ``d_independent``, ``d_clayton``, ``d_additive`` (lists, one
        derivative per gain).
    """
    g = sympy.symbols(f"g0:{k}", real=True)
    h = sympy.Symbol("H", positive=True)
    theta = sympy.Symbol("theta", real=True)
    s = [1 - gi / h for gi in g]
    independent = h * (1 - sympy.Mul(*s))
    clayton = h * (1 - (1 + sum(si ** (-theta) - 1 for si in s)) ** (-1 / theta))
    additive = sympy.Add(*g)
    return {
        "g": g,
        "H": h,
        "theta": theta,
        "independent": independent,
        "clayton": clayton,
        "additive": additive,
        "d_independent": [sympy.diff(independent, gi) for gi in g],
        "d_clayton": [sympy.diff(clayton, gi) for gi in g],
        "d_additive": [sympy.diff(additive, gi) for gi in g],
    }


@functools.cache
def _compiled(k: int) -> dict[str, Callable[..., Any]]:
    e = rule_expressions(k)
    args = (*e["g"], e["H"], e["theta"])

    def lam(expr: Any) -> Callable[..., Any]:
        return sympy.lambdify(args, expr, modules="numpy", cse=True)

    return {
        "independent": lam(e["independent"]),
        "clayton": lam(e["clayton"]),
        "d_independent": lam(list(e["d_independent"])),
        "d_clayton": lam(list(e["d_clayton"])),
    }


@dataclass(frozen=True, slots=True)
class CombinationRule:
    """A rule that combines single-source gains ``g`` (…, K) into the mixture's gain.

    Attributes:
        rule: ``coverage`` or ``additive``.
        headroom: H in the objective's units (None: the metric has no known bound, and
            the rule is additive).
        theta: the interaction (0: independent coverage).
        theta_low, theta_high: its 90% interval when fitted from mixtures.
        mixtures: how many measured mixtures θ was fitted from.
        why_additive: why a coverage rule fell back to adding (empty otherwise).
    """

    rule: str = COVERAGE
    headroom: float | None = None
    theta: float = 0.0
    theta_low: float | None = None
    theta_high: float | None = None
    mixtures: int = 0
    why_additive: str = ""

    @property
    def bounded(self) -> bool:
        return (
            self.rule == COVERAGE
            and self.headroom is not None
            and math.isfinite(self.headroom)
            and self.headroom > 0
        )

    def with_theta(self, theta: float) -> CombinationRule:
        return CombinationRule(self.rule, self.headroom, float(theta), mixtures=self.mixtures)

    def _shares(self, g: np.ndarray) -> np.ndarray:
        h = float(self.headroom)  # type: ignore[arg-type]
        return np.minimum(np.where(np.isfinite(g), g, -np.inf) / h, _SHARE_MAX) * h

    def combine(self, g: np.ndarray) -> np.ndarray:
        """The mixture's gain, shape ``g.shape[:-1]`` (−inf where a gain is −inf)."""
        g = np.asarray(g, dtype=float)
        if not self.bounded:
            return g.sum(axis=-1)
        gc = self._shares(g)
        cols = [gc[..., j] for j in range(g.shape[-1])]
        fn = _compiled(g.shape[-1])
        with np.errstate(all="ignore"):
            if abs(self.theta) < _THETA_ZERO:
                out = fn["independent"](*cols, self.headroom, 0.0)
            else:
                out = fn["clayton"](*cols, self.headroom, self.theta)
        out = np.broadcast_to(np.asarray(out, dtype=float), g.shape[:-1])
        bad = ~np.all(np.isfinite(g), axis=-1)
        return np.where(bad, -np.inf, np.minimum(out, self.headroom))

    def gradient(self, g: np.ndarray) -> np.ndarray:
        """dG/dg_k, the same shape as ``g`` (1 everywhere for the additive rule)."""
        g = np.asarray(g, dtype=float)
        if not self.bounded:
            return np.ones_like(g)
        gc = self._shares(np.where(np.isfinite(g), g, 0.0))
        cols = [gc[..., j] for j in range(g.shape[-1])]
        fn = _compiled(g.shape[-1])
        with np.errstate(all="ignore"):
            if abs(self.theta) < _THETA_ZERO:
                d = fn["d_independent"](*cols, self.headroom, 0.0)
            else:
                d = fn["d_clayton"](*cols, self.headroom, self.theta)
        # one derivative per source (each broadcast to the rows): the source axis last
        d = np.stack([np.broadcast_to(np.asarray(x, dtype=float), g.shape[:-1]) for x in d], -1)
        return np.where(np.isfinite(d) & (d > 0), d, 0.0)

    def describe(self) -> str:
        if not self.bounded:
            why = f" ({self.why_additive})" if self.why_additive else ""
            return f"additive: single-source gains summed{why}"
        rule = f"coverage, H·(1 − Π(1 − g/H)) with headroom H = {self.headroom:.4g}"
        if self.mixtures:
            band = ""
            if self.theta_low is not None and self.theta_high is not None:
                band = f", 90% {self.theta_low:.2g} to {self.theta_high:.2g}"
            rule += f"; interaction θ = {self.theta:.3g}{band} from {self.mixtures} mixture(s)"
        return rule


def additive_rule() -> CombinationRule:
    return CombinationRule(rule=ADDITIVE)


def fit_interaction(
    rule: CombinationRule,
    single_gains: np.ndarray,
    measured: Sequence[float],
    single_gains_boot: np.ndarray | None = None,
) -> CombinationRule:
    """Fit θ so the rule reproduces measured mixtures (least squares).

    Args:
        rule: a bounded coverage rule (others are returned unchanged).
        single_gains: (M, K) each measured mixture's single-source gains predicted by the
            point laws at its tokens per source.
        measured: (M,) the mixtures' measured gains over the control.
        single_gains_boot: (B, M, K) the same under bootstrap rows of the laws; the
            interval of θ is the spread of the refits.

    Returns:
        The rule with θ, its interval (with bootstrap rows) and the mixture count.
    """
    y = np.asarray(measured, dtype=float)
    g = np.asarray(single_gains, dtype=float)
    ok = np.isfinite(y) & np.all(np.isfinite(g), axis=-1)
    if not rule.bounded or not ok.any():
        return rule
    g, y = g[ok], y[ok]

    def solve(gm: np.ndarray) -> float:
        def loss(t: float) -> float:
            pred = rule.with_theta(t).combine(gm)
            return float(np.sum((pred - y) ** 2))

        res = optimize.minimize_scalar(loss, bounds=THETA_BOUNDS, method="bounded")
        best = float(res.x)
        # the independent rule (θ = 0) is kept when it fits as well: θ is not identified
        return 0.0 if loss(0.0) <= loss(best) * (1 + 1e-9) else best

    theta = solve(g)
    low = high = None
    if single_gains_boot is not None and np.ndim(single_gains_boot) == 3:
        gb = np.asarray(single_gains_boot, dtype=float)[:, ok]
        draws = np.array([solve(gb[b]) for b in range(gb.shape[0])])
        low, high = (float(v) for v in np.percentile(draws, [5.0, 95.0]))
    return CombinationRule(
        rule=rule.rule,
        headroom=rule.headroom,
        theta=theta,
        theta_low=low,
        theta_high=high,
        mixtures=int(ok.sum()),
    )
