"""Scaling-law families, each written once as a sympy expression.

Numeric value functions and Jacobians are derived with ``sympy.lambdify``, so a family is
declared in one place and the fitter, the bootstrap and the allocator all evaluate the same
formula. Parameters are stored in the metric's ORIGINAL units: evaluating ``family.expr``
with ``x = compute / fit.x_ref`` and ``fit.params`` gives the metric value itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import sympy

from planner.errors import FitError, did_you_mean
from plugins.contract import LawFamily

x = sympy.Symbol("x", positive=True)


def _spread(y: np.ndarray) -> float:
    """A robust spread of y that is never zero (used to seed start grids)."""
    s = float(np.ptp(y)) if y.size else 0.0
    return s if s > 0 else max(abs(float(np.mean(y))) * 1e-3, 1e-12) if y.size else 1.0


def _power_starts(xs: np.ndarray, y: np.ndarray) -> list[list[float]]:
    # x is scaled so that the largest fitted compute is 1: E is near the last value and
    # E + A·x^-α passes near the first point, whatever the direction of the metric.
    xs = np.asarray(xs, dtype=float)
    if xs.ndim > 1:
        xs = xs[:, 0]
    order = np.argsort(xs)
    x0, y0, y1 = float(xs[order[0]]), float(y[order[0]]), float(y[order[-1]])
    span = _spread(y)
    starts = []
    for alpha in (0.1, 0.3, 0.7):
        for gap in (0.25, 1.0, 4.0):
            sign = 1.0 if y0 >= y1 else -1.0
            e = y1 - sign * gap * span
            a = (y0 - e) / max(x0 ** (-alpha), 1e-12)
            starts.append([e, a, alpha])
    return starts


def _exppower_starts(xs: np.ndarray, y: np.ndarray) -> list[list[float]]:
    # the power law's starts for log y: exp(E + A·x^-α) is a power law in log y
    return _power_starts(xs, np.log(np.maximum(np.asarray(y, dtype=float), 1e-300)))


def _constant_starts(xs: np.ndarray, y: np.ndarray) -> list[list[float]]:
    return [[float(np.mean(y))]]


def _loglinear_starts(xs: np.ndarray, y: np.ndarray) -> list[list[float]]:
    lx = np.log(np.asarray(xs, dtype=float).reshape(len(y), -1)[:, 0])
    if np.ptp(lx) > 0:
        b, a = np.polyfit(lx, y, 1)
    else:
        a, b = float(np.mean(y)), 0.0
    return [[float(a), float(b)]]


def _logistic_starts(xs: np.ndarray, y: np.ndarray) -> list[list[float]]:
    lx = np.log(np.asarray(xs, dtype=float).reshape(len(y), -1)[:, 0])
    lo, hi = float(np.min(y)), float(np.max(y))
    starts = []
    for x0 in (float(np.median(lx)), float(np.max(lx)) + 2.0):
        for k in (0.5, 2.0):
            starts.append([max(lo - 0.02, 0.0), min(max(hi + 0.1, lo + 0.1), 1.0), k, x0])
    return starts


def _chinchilla_starts(xs: np.ndarray, y: np.ndarray) -> list[list[float]]:
    span = _spread(y)
    e = float(np.min(y)) - 0.5 * span
    return [[e, 0.5 * span, alpha, 0.5 * span, beta] for alpha in (0.2, 0.5) for beta in (0.2, 0.5)]


def _make_families() -> dict[str, LawFamily]:
    E, A, alpha = sympy.symbols("E A alpha")
    a, b = sympy.symbols("a b")
    floor, ceil, k, x0 = sympy.symbols("floor ceil k x0")
    B, beta = sympy.symbols("B beta")
    N, D = sympy.symbols("N D", positive=True)
    inf = math.inf
    level = sympy.Symbol("c")
    return {
        "constant": LawFamily(
            name="constant",
            # written as an expression in x like the others (sympy folds 0·log x away), so
            # the allocator's contract holds: its derivative in compute is 0, no marginal gain
            expr=level + 0 * sympy.log(x),
            x=x,
            params=(level,),
            bounds=((-inf, inf),),
            start_grid=_constant_starts,
            description="c: no trend; the simplest law a flat, noisy series supports",
        ),
        "loglinear": LawFamily(
            name="loglinear",
            expr=a + b * sympy.log(x),
            x=x,
            params=(a, b),
            bounds=((-inf, inf), (-inf, inf)),
            start_grid=_loglinear_starts,
            description="a + b·log x: no saturation; the safest extrapolation with few points",
        ),
        "power": LawFamily(
            name="power",
            expr=E + A * x ** (-alpha),
            x=x,
            params=(E, A, alpha),
            # A's sign follows the metric's direction (see param_bounds); α > 0 saturates.
            bounds=((-inf, inf), (-inf, inf), (1e-3, 3.0)),
            start_grid=_power_starts,
            description="E + A·x^-α: saturating power law towards the asymptote E",
            signed_param="A",
        ),
        "exppower": LawFamily(
            name="exppower",
            expr=sympy.exp(E + A * x ** (-alpha)),
            x=x,
            params=(E, A, alpha),
            bounds=((-inf, inf), (-inf, inf), (1e-3, 3.0)),
            start_grid=_exppower_starts,
            description="exp(E + A·x^-α): a perplexity, the exponential of a power-law loss",
            signed_param="A",
            positive=True,
        ),
        "logistic": LawFamily(
            name="logistic",
            expr=floor + (ceil - floor) / (1 + sympy.exp(-k * (sympy.log(x) - x0))),
            x=x,
            params=(floor, ceil, k, x0),
            bounds=((0.0, 1.0), (0.0, 1.0), (1e-3, 20.0), (-50.0, 50.0)),
            start_grid=_logistic_starts,
            description="floor + (ceil-floor)·sigmoid(k·(log x - x0)): accuracies in [0, 1]",
            bounded=True,
        ),
        "chinchilla": LawFamily(
            name="chinchilla",
            expr=E + A / N**alpha + B / D**beta,
            x=N,
            params=(E, A, alpha, B, beta),
            bounds=((-inf, inf), (0.0, inf), (1e-3, 3.0), (0.0, inf), (1e-3, 3.0)),
            start_grid=_chinchilla_starts,
            description="E + A/N^α + B/D^β: loss against parameters N and tokens D",
            variables=(N, D),
        ),
    }


@cache
def builtin_families() -> dict[str, LawFamily]:
    """The built-in law families by name (``constant``, ``loglinear``, ``power``, ``logistic``,
    ``chinchilla``)."""
    return _make_families()


def get_family(name: str, extra: Mapping[str, LawFamily] | None = None) -> LawFamily:
    """Look a family up by name.

    Args:
        name: the family's name.
        extra: more families (e.g. from plugins), searched after the built-ins.

    Raises:
        FitError: unknown name, with a "did you mean" suggestion.
    """
    families = {**builtin_families(), **(extra or {})}
    if name in families:
        return families[name]
    raise FitError(
        f"unknown law family {name!r}{did_you_mean(name, families)} (known: {', '.join(sorted(families))})"
    )


def law_function(family: LawFamily) -> tuple[sympy.Expr, sympy.Symbol, tuple[sympy.Symbol, ...]]:
    """The family as (sympy expression, compute symbol, parameter symbols), for the allocator."""
    return family.expr, family.x, family.params


def variables(family: LawFamily) -> tuple[sympy.Symbol, ...]:
    """The input symbols of a family (``(x,)`` for one-variable laws)."""
    return tuple(family.variables) or (family.x,)


@dataclass(frozen=True, slots=True)
class Compiled:
    """Numeric functions of a family: ``value(X, P)`` and ``jac(X, P)``.

    ``X`` has shape (k, ...) (one row per input variable) and ``P`` shape (p, ...); both
    broadcast, so one call evaluates many sources, starts or bootstrap replicates at once.
    ``jac`` returns a list of p arrays (derivatives with respect to each parameter);
    ``value_jac`` returns ``[value, *jac]`` from one function whose common subexpressions
    (e.g. the power law's x^-α) are computed once, which is what the solver's loop calls.
    """

    value: Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], np.ndarray]
    jac: Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], list[np.ndarray]]
    value_jac: Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], list[np.ndarray]]


_COMPILED: dict[tuple[str, sympy.Expr], Compiled] = {}


def compiled(family: LawFamily) -> Compiled:
    """Lambdified value and Jacobian of a family (cached per family expression)."""
    key = (family.name, family.expr)  # sympy caches an expression's hash
    hit = _COMPILED.get(key)
    if hit is not None:
        return hit
    vs = variables(family)
    ps = family.params
    f = sympy.lambdify((vs, ps), family.expr, "numpy")
    # value and derivatives together, common subexpressions (the power law's x^-α) once;
    # the Jacobian alone comes from the same function (one code generation, not p)
    both = sympy.lambdify(
        (vs, ps), [family.expr, *(sympy.diff(family.expr, p) for p in ps)], "numpy", cse=True
    )

    def value(X: Sequence[np.ndarray], P: Sequence[np.ndarray]) -> np.ndarray:
        with np.errstate(all="ignore"):
            out = np.asarray(f(tuple(X), tuple(P)), dtype=float)
        # a law that does not depend on every input (the constant) still gives one value
        # per input point
        shape = np.broadcast_shapes(*(np.shape(v) for v in (*X, *P)))
        return out if out.shape == shape else np.broadcast_to(out, shape).copy()

    def value_jac(X: Sequence[np.ndarray], P: Sequence[np.ndarray]) -> list[np.ndarray]:
        with np.errstate(all="ignore"):
            outs = both(tuple(X), tuple(P))
            shape = np.broadcast_shapes(*(np.shape(v) for v in (*X, *P)))
            return [np.broadcast_to(np.asarray(o, dtype=float), shape) for o in outs]

    def jac(X: Sequence[np.ndarray], P: Sequence[np.ndarray]) -> list[np.ndarray]:
        return value_jac(X, P)[1:]

    out = Compiled(value=value, jac=jac, value_jac=value_jac)
    _COMPILED[key] = out
    return out


def param_bounds(family: LawFamily, lower_is_better: bool | None) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of a family's parameters for a metric's direction.

    A family may name a ``signed_param`` (the power law's A): its sign is fixed by the
    direction, so a lower-is-better metric decreases towards its asymptote and a
    higher-is-better one increases towards it.
    """
    lo = np.array([b[0] for b in family.bounds], dtype=float)
    hi = np.array([b[1] for b in family.bounds], dtype=float)
    if family.signed_param and lower_is_better is not None:
        i = family.param_names.index(family.signed_param)
        if lower_is_better:
            lo[i] = max(lo[i], 0.0)
        else:
            hi[i] = min(hi[i], 0.0)
    return lo, hi


def start_vectors(family: LawFamily, X: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Start vectors for multi-start fitting (the family's grid, or derived from data)."""
    grid: Any = family.start_grid
    starts = grid(X.T if X.ndim > 1 else X, y) if callable(grid) else grid
    return [np.asarray(s, dtype=float) for s in starts]
