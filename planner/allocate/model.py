"""Symbolic side of the allocation: per-source gain and cost curves, compiled once.

A source's curve is two sympy expressions in the token symbol :data:`N_TOKENS`: its gain over
the control anneal (direction-aware, so larger is better) and its total cost in the budget's
unit. The marginal utility ``MU(n) = gain'(n) / cost'(n)`` is derived here with sympy, never
written by hand per law family, and lambdified with every parameter as an argument so one
compiled function serves the point fit and all bootstrap samples at once.

Numeric constants (cost coefficients, weights…) are lifted into parameters too, so sources
that share a law family and a cost model share one compiled :class:`Template`; compiling is
the slow part (about 0.1–0.5 s), evaluating is numpy speed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

#: the symbol for a source's token count in every allocation expression
N_TOKENS = sympy.Symbol("n", positive=True)
_LAMBDA = sympy.Symbol("lam", positive=True)

_CACHE: dict[str, Template] = {}
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class Template:
    """Compiled gain/cost/marginal-utility functions for one expression structure.

    Every function takes ``(n, *params)`` (``mu_inv`` takes ``(lam, *params)``) with numpy
    arrays that broadcast together.

    Attributes:
        key: the structural key (``srepr`` of the templated expressions).
        syms: the parameter symbols, in argument order.
        gain_expr, cost_expr, mu_expr: the symbolic forms (for display and tests).
        gain, cost, mu, dgain, dcost: lambdified functions.
        mu_inv: the closed-form inverse of MU on its decreasing branch when sympy found one
            (checked numerically before use), else None.
    """

    key: str
    syms: tuple[sympy.Symbol, ...]
    gain_expr: sympy.Expr
    cost_expr: sympy.Expr
    mu_expr: sympy.Expr
    gain: Callable[..., Any]
    cost: Callable[..., Any]
    mu: Callable[..., Any]
    dgain: Callable[..., Any]
    dcost: Callable[..., Any]
    mu_inv_candidates: tuple[Callable[..., Any], ...]

    @property
    def n_params(self) -> int:
        return len(self.syms)


def templatise(
    gain_expr: sympy.Expr, cost_expr: sympy.Expr, values: Mapping[sympy.Symbol, Any]
) -> tuple[sympy.Expr, sympy.Expr, dict[sympy.Symbol, Any]]:
    """Lift float constants into parameters so equal structures share one template.

    Args:
        gain_expr, cost_expr: expressions in :data:`N_TOKENS` and parameter symbols.
        values: value (scalar or array) of every parameter symbol.

    Returns:
        The two expressions with each float replaced by a symbol ``k0, k1…`` (in traversal
        order) and the values extended with those constants.
    """
    floats: list[sympy.Float] = []
    for node in sympy.preorder_traversal(sympy.Tuple(gain_expr, cost_expr)):
        if isinstance(node, sympy.Float) and node not in floats:
            floats.append(node)
    repl = {f: sympy.Symbol(f"k{i}", real=True) for i, f in enumerate(floats)}
    out = dict(values)
    for f, s in repl.items():
        out[s] = float(f)
    return gain_expr.xreplace(repl), cost_expr.xreplace(repl), out


def compile_template(gain_expr: sympy.Expr, cost_expr: sympy.Expr) -> Template:
    """Derive MU with sympy, try to invert it in closed form, and lambdify everything.

    The result is cached by structure; the expressions should already be templatised.

    Args:
        gain_expr: gain over control in :data:`N_TOKENS` (larger is better).
        cost_expr: total cost in the budget's unit, in :data:`N_TOKENS`.
    """
    key = sympy.srepr(sympy.Tuple(gain_expr, cost_expr))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    n = N_TOKENS
    syms = tuple(
        sorted((gain_expr.free_symbols | cost_expr.free_symbols) - {n}, key=lambda s: s.name)
    )
    dgain = sympy.diff(gain_expr, n)
    dcost = sympy.diff(cost_expr, n)
    mu_expr = dgain / dcost
    args = (n, *syms)

    def lam(expr: sympy.Expr, a: tuple[sympy.Symbol, ...] = args) -> Callable[..., Any]:
        return sympy.lambdify(a, expr, modules="numpy", cse=True)

    inverses: list[Callable[..., Any]] = []
    # Closed forms exist for the power-law families with affine costs; sympy gives up or
    # returns nothing for logistic laws, and a sum of laws (weighted metrics) is not tried
    # because solve() can take minutes on it. Candidates are checked numerically later.
    if _worth_solving(mu_expr):
        try:
            sols = sympy.solve(sympy.Eq(mu_expr, _LAMBDA), n, dict=False)
        except (NotImplementedError, ValueError, TypeError, sympy.PolynomialError):
            sols = []
        for sol in sols[:4] if isinstance(sols, list) else []:
            if sol.has(sympy.I) or sol.free_symbols - set(syms) - {_LAMBDA}:
                continue
            inverses.append(lam(sol, (_LAMBDA, *syms)))
    tpl = Template(
        key=key,
        syms=syms,
        gain_expr=gain_expr,
        cost_expr=cost_expr,
        mu_expr=mu_expr,
        gain=lam(gain_expr),
        cost=lam(cost_expr),
        mu=lam(mu_expr),
        dgain=lam(dgain),
        dcost=lam(dcost),
        mu_inv_candidates=tuple(inverses),
    )
    with _CACHE_LOCK:
        _CACHE.setdefault(key, tpl)
    return tpl


def _worth_solving(mu_expr: sympy.Expr) -> bool:
    if sympy.count_ops(mu_expr) > 60:
        return False
    # exp/log of n (logistic, log-linear with exp terms) rarely invert; skip the slow attempt
    return not any(f.has(N_TOKENS) for f in mu_expr.atoms(sympy.exp))


@dataclass(frozen=True, eq=False)
class Curve:
    """One source's gain and cost curves with their parameter values.

    Attributes:
        name: the source's name.
        template: the compiled functions.
        theta: point parameter values, in ``template.syms`` order, shape (P,).
        boot: bootstrap parameter rows, shape (B, P), or None.
        cap_tokens: most tokens the source can supply (``inf`` when unbounded).
        min_tokens: the smallest budget the law was measured at. Below it the law is not
            trusted (a log law runs off to ±inf at 0): the gain ramps linearly from the
            control (0 at 0 tokens) to the law's value there.
    """

    name: str
    template: Template
    theta: np.ndarray
    boot: np.ndarray | None
    cap_tokens: float = float("inf")
    min_tokens: float = 0.0

    @property
    def n_boot(self) -> int:
        return 0 if self.boot is None else int(self.boot.shape[0])

    def gain(self, tokens: Any, theta: np.ndarray | None = None) -> np.ndarray:
        """Gain over control at ``tokens`` (0 tokens → exactly 0: the source is unused)."""
        p = self.theta if theta is None else theta
        d = np.asarray(tokens, dtype=float)
        m = self.min_tokens
        with np.errstate(all="ignore"):
            g = np.asarray(
                self.template.gain(np.where(d > 0, np.maximum(d, m), 1.0), *p), dtype=float
            )
            if m > 0:
                g = np.where(d < m, g * d / m, g)
        return np.where(d > 0, np.broadcast_to(g, np.broadcast(d, g).shape), 0.0)

    def cost(self, tokens: Any) -> np.ndarray:
        """Total cost in the budget's unit (0 tokens cost nothing: the source is not bought)."""
        d = np.asarray(tokens, dtype=float)
        with np.errstate(all="ignore"):
            c = np.asarray(self.template.cost(np.where(d > 0, d, 1.0), *self.theta), dtype=float)
        return np.where(d > 0, np.broadcast_to(c, np.broadcast(d, c).shape), 0.0)

    def mu(self, tokens: Any, theta: np.ndarray | None = None) -> np.ndarray:
        """Marginal utility dGain/dCost at ``tokens``."""
        p = self.theta if theta is None else theta
        with np.errstate(all="ignore"):
            return np.asarray(self.template.mu(np.asarray(tokens, dtype=float), *p), dtype=float)


def make_curve(
    name: str,
    gain_expr: sympy.Expr,
    cost_expr: sympy.Expr,
    values: Mapping[sympy.Symbol, Any],
    *,
    cap_tokens: float | None = None,
) -> Curve:
    """Build a :class:`Curve` from expressions and parameter values.

    Args:
        name: the source's name.
        gain_expr: gain over control in :data:`N_TOKENS` (larger is better).
        cost_expr: total cost in the budget's unit.
        values: every free symbol except ``n`` → a float (point value) or a 1-D array of
            bootstrap values (all arrays the same length B). A symbol given as an array gets
            its mean as the point value unless ``values`` also has it under ``(sym, "point")``.
        cap_tokens: the source's supply cap (None: unbounded).
    """
    point_overrides = {k[0]: v for k, v in values.items() if isinstance(k, tuple)}
    plain = {k: v for k, v in values.items() if not isinstance(k, tuple)}
    g, c, vals = templatise(gain_expr, cost_expr, plain)
    tpl = compile_template(g, c)
    missing = [s.name for s in tpl.syms if s not in vals]
    if missing:
        raise ValueError(f"no value for parameter(s) {', '.join(missing)} of source {name!r}")
    lengths = {np.size(v) for v in vals.values() if np.ndim(v) > 0}
    if len(lengths) > 1:
        raise ValueError(f"bootstrap arrays of source {name!r} differ in length: {lengths}")
    theta = np.array(
        [
            float(point_overrides[s])
            if s in point_overrides
            else float(np.mean(vals[s]))
            if np.ndim(vals[s]) > 0
            else float(vals[s])
            for s in tpl.syms
        ]
    )
    boot = None
    if lengths:
        (b,) = lengths
        boot = np.column_stack(
            [np.broadcast_to(np.asarray(vals[s], dtype=float), (b,)) for s in tpl.syms]
        )
    cap = float("inf") if cap_tokens is None else float(cap_tokens)
    return Curve(name=name, template=tpl, theta=theta, boot=boot, cap_tokens=cap)
