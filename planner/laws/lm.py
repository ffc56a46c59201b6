"""The least-squares engine behind every law fit: batched Levenberg–Marquardt.

A :class:`LawProblem` holds the points of one or more sources and a layout that says which
family parameter of which source maps to which column of the parameter vector. Independent
fits give every source its own columns; joint fits share some (e.g. the exponent).
:func:`solve_law` runs multi-start Levenberg–Marquardt in numpy across all starts at once,
then polishes the best start with ``scipy.optimize.least_squares`` with a robust loss and
the sympy Jacobian. :func:`bootstrap` solves all its replicates together with the same
batched solver (:func:`batched_lm`), which is what makes a 1000-sample bootstrap cheap.

Residuals are divided by a robust spread of y (sensible scaling of y) and compute is divided
by ``x_ref`` (sensible scaling of x); parameters are kept in the metric's own units.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy import optimize

from planner.errors import FitError
from planner.laws.blas import limited_blas
from planner.laws.families import compiled, param_bounds, start_vectors
from plugins.contract import LawFamily

# Defaults that are statistics conventions, not tuned to any data set.
DEFAULT_BOOTSTRAP = 1000
_MAD_TO_SD = 1.4826  # MAD of a normal sample → its standard deviation


@dataclass(frozen=True)
class LawProblem:
    """Points of one or more sources and how their parameters map to a vector.

    Attributes:
        family: the law family.
        X: inputs, shape (k, n): compute / x_ref (and more rows for multi-variable laws).
        y: observed values, shape (n,).
        src: source index of each point, shape (n,).
        layout: (S, p) integer array: column of family parameter j for source s.
        lo, hi: bounds per column, shape (P,).
        y_scale: residuals are divided by it.
        sources: source names, in index order.
        x_ref: the compute scale.
        weights: the points' inverse-variance weights (mean 1; None: equal), for
            noise-aware fits.
        unit_var: the variance of a unit-weight point that the known variances imply
            (0: none known).
    """

    family: LawFamily
    X: np.ndarray
    y: np.ndarray
    src: np.ndarray
    layout: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    y_scale: float
    sources: tuple[str, ...]
    x_ref: float = 1.0
    x_refs: tuple[float, ...] = ()
    lower_is_better: bool | None = None
    weights: np.ndarray | None = None
    unit_var: float = 0.0
    _cols: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cols", self.layout[self.src])  # (n, p)

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    @property
    def sqrt_w(self) -> np.ndarray:
        """Square roots of the points' weights (ones for equal weights)."""
        return np.ones(self.n) if self.weights is None else np.sqrt(self.weights)

    @property
    def n_params(self) -> int:
        return int(self.lo.shape[0])

    def point_params(self, theta: np.ndarray) -> list[np.ndarray]:
        """Per-point family parameters for parameter vectors ``theta`` (..., P)."""
        per_point = theta[..., self._cols]  # (..., n, p)
        return [per_point[..., j] for j in range(per_point.shape[-1])]

    def value(self, theta: np.ndarray) -> np.ndarray:
        return compiled(self.family).value(list(self.X), self.point_params(theta))

    def jac(self, theta: np.ndarray) -> np.ndarray:
        """d value / d theta, shape (..., n, P)."""
        grads = compiled(self.family).jac(list(self.X), self.point_params(theta))
        return self._assemble(theta, grads)

    @cached_property
    def sums(self) -> _NormalSums:
        """Where each point's products land in the normal equations (see :class:`_NormalSums`)."""
        return _NormalSums.of(self._cols, self.n_params)

    def _assemble(self, theta: np.ndarray, grads: Sequence[np.ndarray]) -> np.ndarray:
        shape = (*theta.shape[:-1], self.n, self.n_params)
        if self.layout.shape[0] == 1:  # one source: columns are the family's parameters
            J = np.empty(shape)
            for j, g in enumerate(grads):
                J[..., self.layout[0, j]] = g
            return J
        J = np.zeros(shape)
        rows = np.arange(self.n)
        for j, g in enumerate(grads):
            # each family parameter has its own columns, so (row, column) pairs are unique
            J[..., rows, self._cols[:, j]] = np.broadcast_to(g, shape[:-1])
        return J


@dataclass(frozen=True, slots=True)
class _NormalSums:
    """The normal equations of a joint layout, summed without a dense Jacobian.

    A point's derivative is non-zero only in the columns of its own source's parameters
    (and the shared ones), so JᵀWJ and JᵀWr are sums of per-point products of the family's
    p derivatives. For each pair (j, k) of family parameters, ``pairs`` holds a 0/1 matrix
    (n, U) that sums the points' products into the U distinct matrix entries they fall on,
    and those entries' flat positions in the P×P matrix (and the mirrored ones); ``grads``
    does the same for the gradient. Summing is then a small matrix product per pair,
    O(B·n·S) instead of the dense O(B·n·P²).
    """

    n_params: int
    pairs: tuple[tuple[int, int, np.ndarray, np.ndarray, np.ndarray | None], ...]
    grads: tuple[tuple[int, np.ndarray, np.ndarray], ...]

    @staticmethod
    def of(cols: np.ndarray, n_params: int) -> _NormalSums:
        n, p = cols.shape

        def pattern(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            at, inverse = np.unique(keys, return_inverse=True)
            ind = np.zeros((n, at.size))
            ind[np.arange(n), inverse] = 1.0
            return at, ind

        pairs, seen = [], []
        for j in range(p):
            for k in range(j, p):
                at, ind = pattern(cols[:, j] * n_params + cols[:, k])
                mirror = None if j == k else (at % n_params) * n_params + at // n_params
                pairs.append((j, k, ind, at, mirror))
                seen.extend([at] if mirror is None else [at, mirror])
        flat = np.concatenate(seen)
        if np.unique(flat).size != flat.size:  # a column shared by two family parameters
            raise FitError("a parameter layout maps two family parameters to one column")
        grads = []
        for j in range(p):
            at, ind = pattern(cols[:, j])
            grads.append((j, ind, at))
        return _NormalSums(n_params, tuple(pairs), tuple(grads))

    def step(self, G: np.ndarray, r: np.ndarray, w: np.ndarray, lam: np.ndarray) -> np.ndarray:
        """Levenberg–Marquardt steps (B, P) from the family's derivatives G (p, B, n)."""
        B, P = r.shape[0], self.n_params
        wG = G * w
        A = np.zeros((B, P * P))
        for j, k, ind, at, mirror in self.pairs:
            s = (wG[j] * G[k]) @ ind
            A[:, at] += s
            if mirror is not None:
                A[:, mirror] += s
        g = np.zeros((B, P))
        for j, ind, at in self.grads:
            g[:, at] += (wG[j] * r) @ ind
        A = A.reshape(B, P, P)
        diag = np.einsum("bpp->bp", A) + 1e-12
        A[:, np.arange(P), np.arange(P)] += lam[:, None] * diag
        try:
            return -np.linalg.solve(A, g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            return -np.einsum("bpq,bq->bp", np.linalg.pinv(A), g)


@dataclass(frozen=True, slots=True)
class LawSolution:
    """The outcome of solving a :class:`LawProblem`: the parameter vector, the robust cost,
    the robust loss's scale, the parameter covariance and the residual noise scale."""

    theta: np.ndarray
    cost: float
    success: bool
    message: str
    nfev: int
    f_scale: float
    covariance: np.ndarray | None
    noise_sd: float
    dof: int

    @staticmethod
    def failed(n_params: int, message: str, dof: int, f_scale: float = 1.0) -> LawSolution:
        """A problem that could not be solved, and why."""
        nan = np.full(n_params, np.nan)
        return LawSolution(nan, math.nan, False, message, 0, f_scale, None, math.nan, dof)


def _rho(z: np.ndarray, loss: str) -> tuple[np.ndarray, np.ndarray]:
    """Robust loss rho(z) of squared scaled residuals z and its derivative (IRLS weight)."""
    if loss == "linear":
        return z, np.ones_like(z)
    if loss == "soft_l1":
        s = np.sqrt(1.0 + z)
        return 2.0 * (s - 1.0), 1.0 / s
    if loss == "huber":
        big = z > 1.0
        sz = np.sqrt(np.maximum(z, 1e-300))
        return np.where(big, 2.0 * sz - 1.0, z), np.where(big, 1.0 / sz, 1.0)
    raise FitError(f"Unknown robust loss {loss!r}: use linear, soft_l1 or huber.")


def batched_lm(
    problem: LawProblem,
    theta0: np.ndarray,
    *,
    Y: np.ndarray | None = None,
    W: np.ndarray | None = None,
    loss: str = "linear",
    f_scale: float = 1.0,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Levenberg–Marquardt on many parameter vectors (and data replicates) at once.

    Bounds are kept by projection. The robust loss is handled by iteratively re-weighted
    least squares, which reaches the same optimum as scipy's robust ``least_squares``.

    Args:
        problem: the structure (inputs, layout, bounds, y scale).
        theta0: starting vectors, shape (B, P).
        Y: data per replicate, shape (B, n); default ``problem.y`` for all.
        W: case weights per replicate (bootstrap counts), shape (B, n); default ones.
        loss, f_scale: robust loss and its scale (in y_scale units).
        max_iter, tol: iteration cap and relative cost tolerance.

    Returns:
        (theta (B, P), cost (B,), converged (B,)) where cost is 0.5·Σ w·ρ(r²).
    """
    theta = np.clip(np.array(theta0, dtype=float), problem.lo, problem.hi)
    B = theta.shape[0]
    Y = np.broadcast_to(problem.y if Y is None else Y, (B, problem.n))
    fs2 = f_scale**2
    evaluate = _evaluator(problem, loss, fs2)
    # one source: the normal equations column by column (see _evaluator); joint layouts:
    # summed from the family's derivatives (problem.sums), solved with LAPACK
    lm_step = _lm_step_columns if problem.layout.shape[0] == 1 else problem.sums.step

    # The working set holds the rows still iterating, compacted whenever some converge,
    # so iterations gather nothing while every row is active and little once few are.
    out_theta, out_cost = theta, np.empty(B)
    rows = np.arange(B)
    th, Ya = theta.copy(), np.array(Y)
    Wa = None if W is None else np.asarray(W, dtype=float)  # None: unit weights
    r, J, cost = evaluate(th, Ya, Wa)
    lam = np.full(B, 1e-3)
    for _ in range(max_iter):
        if rows.size == 0:
            break
        step = lm_step(J, r, _irls_weights(r, Wa, loss, fs2), lam)
        new = np.clip(th + step, problem.lo, problem.hi)
        r_new, J_new, new_cost = evaluate(new, Ya, Wa)
        better = new_cost < cost
        rel = np.abs(cost - new_cost) <= tol * (cost + 1e-300)
        small = np.max(np.abs(new - th) / (np.abs(th) + 1e-8), axis=-1) < 1e-9
        if better.all():  # the usual case early on: take the new state without copying
            th, cost, r, J = new, new_cost, r_new, J_new
        else:
            th = np.where(better[:, None], new, th)
            cost = np.where(better, new_cost, cost)
            r = np.where(better[:, None], r_new, r)
            J = np.where(better[None, :, None], J_new, J)
        lam = np.where(better, np.maximum(lam / 3.0, 1e-12), lam * 4.0)
        done = (better & (rel | small)) | (lam > 1e12)
        if done.any():
            out_theta[rows[done]] = th[done]
            out_cost[rows[done]] = cost[done]
            keep = ~done
            rows, th, cost, r, lam = rows[keep], th[keep], cost[keep], r[keep], lam[keep]
            Ya = Ya[keep]
            Wa = None if Wa is None else Wa[keep]
            J = np.compress(keep, J, axis=1)
    converged = np.ones(B, dtype=bool)
    converged[rows] = False
    out_theta[rows] = th
    out_cost[rows] = cost
    return out_theta, out_cost, converged


def _evaluator(
    problem: LawProblem, loss: str, fs2: float
) -> Callable[[np.ndarray, np.ndarray, np.ndarray | None], tuple[np.ndarray, ...]]:
    """``evaluate(theta, Y, W) -> (r, J, cost)`` for :func:`batched_lm`.

    Residuals, Jacobian and cost come from one evaluation of the law and its derivatives;
    the solver keeps them for accepted steps, so each iteration evaluates the law once.

    One source: each parameter is one Jacobian column, so J is (P, B, n), column-major, and
    the normal equations are formed and solved column by column over the whole batch
    (contiguous (B,) arrays), far cheaper than B small matrix products and LAPACK calls.
    Joint layouts: J holds the family's p derivatives per point, (p, B, n), and the normal
    equations are summed from them (problem.sums) without forming the (B, n, P) Jacobian.
    """
    single = problem.layout.shape[0] == 1
    fam_vj = compiled(problem.family).value_jac
    cols = problem.layout[0] if single else None
    P, ys = problem.n_params, problem.y_scale

    def evaluate(
        th: np.ndarray, Yr: np.ndarray, Wr: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with np.errstate(all="ignore"):
            if single:
                val, *grads = fam_vj(list(problem.X), [th[:, c, None] for c in cols])
                J = np.empty((P, th.shape[0], problem.n))
                for j, c in enumerate(cols):
                    np.multiply(grads[j], 1.0 / ys, out=J[c])
            else:
                val, *grads = fam_vj(list(problem.X), problem.point_params(th))
                J = np.empty((len(grads), th.shape[0], problem.n))
                for j, g in enumerate(grads):
                    np.multiply(g, 1.0 / ys, out=J[j])
            r = (val - Yr) / ys
            rho = r * r if loss == "linear" else _rho(r * r / fs2, loss)[0] * fs2
            c = 0.5 * np.sum(rho if Wr is None else Wr * rho, axis=-1)
        c = np.where(np.isfinite(c), c, np.inf)
        # a non-finite residual makes its cost non-finite, and any non-finite derivative
        # makes the Jacobian's sum non-finite: cheap checks before the costly repairs
        if not np.isfinite(c).all():
            r = np.where(np.isfinite(r), r, 0.0)
        with np.errstate(all="ignore"):  # the sum overflows exactly when J is unusable
            bad_jacobian = not np.isfinite(np.sum(J))
        if bad_jacobian:
            J = np.where(np.isfinite(J), J, 0.0)
        return r, J, c

    return evaluate


def _irls_weights(r: np.ndarray, W: np.ndarray | None, loss: str, fs2: float) -> np.ndarray:
    """The iteratively re-weighted least-squares weights of residuals ``r`` (times the case
    weights ``W``, None for ones)."""
    if loss == "linear":
        return np.ones_like(r) if W is None else W
    w = _rho(r * r / fs2, loss)[1]
    return w if W is None else W * w


def _lm_step_columns(J: np.ndarray, r: np.ndarray, w: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Levenberg–Marquardt steps for a batch, the Jacobian given column-major.

    Args:
        J: (P, B, n) Jacobian columns; r: (B, n) residuals; w: (B, n) weights; lam: (B,).

    Returns:
        steps, shape (B, P): the solutions of (JᵀWJ + λ·diag(JᵀWJ))·step = -JᵀWr.
    """
    P = J.shape[0]
    wJ = J * w
    M = np.empty((P, P, J.shape[1]))
    for i in range(P):
        for j in range(i, P):
            M[i, j] = M[j, i] = np.einsum("bn,bn->b", wJ[i], J[j])
    b = -np.einsum("pbn,bn->pb", wJ, r)
    for i in range(P):
        M[i, i] += lam * (M[i, i] + 1e-12)
    # Gaussian elimination without pivoting: M is symmetric positive definite (λ > 0), for
    # which it is stable; a non-finite step is rejected by the caller like a bad one
    with np.errstate(all="ignore"):
        for k in range(P - 1):
            f = M[k + 1 :, k] / M[k, k]  # (P-k-1, B)
            M[k + 1 :, k + 1 :] -= f[:, None, :] * M[k, k + 1 :][None, :, :]
            b[k + 1 :] -= f * b[k]
        x = np.empty_like(b)
        for k in range(P - 1, -1, -1):
            x[k] = (b[k] - np.sum(M[k, k + 1 :] * x[k + 1 :], axis=0)) / M[k, k]
    return x.T


def _robust_sd(r: np.ndarray) -> float:
    med = float(np.median(r))
    return _MAD_TO_SD * float(np.median(np.abs(r - med)))


def make_problem(
    family: LawFamily,
    inputs: np.ndarray,
    y: np.ndarray,
    src: np.ndarray,
    layout: np.ndarray,
    *,
    sources: Sequence[str],
    lower_is_better: bool | None,
    x_refs: Sequence[float] | None = None,
    var: np.ndarray | None = None,
) -> LawProblem:
    """Scale inputs and y and build a :class:`LawProblem` (see its attributes).

    ``var`` gives each point's known noise variance (NaN where unknown): the points are
    then weighed by its inverse, and the fit's noise is never taken below it.
    """
    inputs = np.atleast_2d(np.asarray(inputs, dtype=float))
    refs = (
        tuple(float(v) for v in x_refs)
        if x_refs is not None
        else tuple(float(np.max(row)) for row in inputs)
    )
    X = inputs / np.asarray(refs)[:, None]
    n_cols = int(layout.max()) + 1
    flo, fhi = param_bounds(family, lower_is_better)
    lo = np.full(n_cols, -np.inf)
    hi = np.full(n_cols, np.inf)
    for j in range(layout.shape[1]):
        lo[layout[:, j]] = flo[j]
        hi[layout[:, j]] = fhi[j]
    spread = float(np.std(y))
    if not spread > 0:
        spread = max(abs(float(np.mean(y))), 1.0)
    from planner.laws.noise import inverse_variance_weights

    weights, unit_var = inverse_variance_weights(var) if var is not None else (None, 0.0)
    return LawProblem(
        family=family,
        X=X,
        y=np.asarray(y, dtype=float),
        src=np.asarray(src, dtype=int),
        layout=np.asarray(layout, dtype=int),
        lo=lo,
        hi=hi,
        y_scale=spread,
        sources=tuple(sources),
        x_ref=refs[0],
        x_refs=refs,
        lower_is_better=lower_is_better,
        weights=weights,
        unit_var=unit_var,
    )


def _weights_for(problem: LawProblem, rows: int) -> np.ndarray | None:
    """The points' weights for ``rows`` parameter vectors (None for equal weights)."""
    if problem.weights is None:
        return None
    return np.broadcast_to(problem.weights, (rows, problem.n))


def _starts(problem: LawProblem) -> np.ndarray:
    """Multi-start vectors: each source's family starts, averaged into shared columns."""
    per_source = []
    for s in range(len(problem.sources)):
        m = problem.src == s
        per_source.append(start_vectors(problem.family, problem.X[:, m].T, problem.y[m]))
    n_starts = max(len(v) for v in per_source)
    out = np.zeros((n_starts, problem.n_params))
    for k in range(n_starts):
        acc = np.zeros(problem.n_params)
        cnt = np.zeros(problem.n_params)
        for s, vs in enumerate(per_source):
            v = vs[k % len(vs)]
            np.add.at(acc, problem.layout[s], v)
            np.add.at(cnt, problem.layout[s], 1.0)
        out[k] = acc / np.maximum(cnt, 1.0)
    lo = np.where(np.isfinite(problem.lo), problem.lo, -np.inf)
    hi = np.where(np.isfinite(problem.hi), problem.hi, np.inf)
    # keep starts strictly inside the bounds (least_squares requires it)
    width = np.where(np.isfinite(hi - lo), hi - lo, 1.0)
    out = np.clip(out, lo + 1e-6 * width, hi - 1e-6 * width)
    out = np.where(np.isfinite(out), out, 0.0)
    return out


@limited_blas
def solve_law(problem: LawProblem, *, loss: str = "soft_l1") -> LawSolution:
    """Fit a problem: multi-start batched LM, then a robust ``least_squares`` polish.

    Never raises for numerical trouble: a degenerate problem gives ``success=False``.
    """
    n, P = problem.n, problem.n_params
    trouble = _unsolvable(problem)
    if trouble:
        return LawSolution.failed(P, trouble, n - P)
    starts = _starts(problem)
    sw = problem.sqrt_w
    theta, cost, _ = batched_lm(
        problem, starts, loss="linear", W=_weights_for(problem, starts.shape[0])
    )
    best = theta[int(np.argmin(cost))]
    r0 = sw * (problem.value(best) - problem.y) / problem.y_scale
    # f_scale: the robust noise level of a plain least-squares fit, in y_scale units
    f_scale = max(_robust_sd(r0), 1e-3) if n > P else 1.0

    def fun(t: np.ndarray) -> np.ndarray:
        r = sw * (problem.value(t) - problem.y) / problem.y_scale
        return np.where(np.isfinite(r), r, 1e6)

    def jac(t: np.ndarray) -> np.ndarray:
        J = sw[:, None] * problem.jac(t) / problem.y_scale
        return np.where(np.isfinite(J), J, 0.0)

    try:
        res = optimize.least_squares(
            fun,
            _strictly_inside(best, problem.lo, problem.hi),
            jac=jac,
            bounds=(problem.lo, problem.hi),
            loss=loss,
            f_scale=f_scale,
            x_scale="jac",
            max_nfev=200 * (P + 1),
        )
    except (ValueError, np.linalg.LinAlgError) as e:  # numerical trouble is data, not a crash
        return LawSolution.failed(P, f"solver failed: {e}", n - P, f_scale)
    theta_hat = res.x
    resid = fun(theta_hat) * problem.y_scale
    ok = bool(
        res.status > 0
        and np.all(np.isfinite(theta_hat))
        and np.all(np.abs(resid) < 1e5 * problem.y_scale)
    )
    msg = "converged" if ok else f"did not converge: {res.message}"
    dof = n - P
    noise_sd = math.sqrt(float(np.sum(resid**2)) / dof) if dof > 0 else math.nan
    if problem.unit_var > 0:  # the noise of a unit-weight point: never below the known
        noise_sd = max(noise_sd, math.sqrt(problem.unit_var)) if dof > 0 else math.nan
    cov = _covariance(problem, theta_hat, noise_sd) if dof > 0 and ok else None
    return LawSolution(
        theta_hat, float(res.cost), ok, msg, int(res.nfev), f_scale, cov, noise_sd, dof
    )


def _unsolvable(problem: LawProblem) -> str | None:
    """Why the data cannot support the problem's law at all, or None."""
    n, P = problem.n, problem.n_params
    if n < P:
        return f"too few points: {n} for {P} parameters"
    for s, name in enumerate(problem.sources):
        ys = problem.y[problem.src == s]
        if ys.size and np.ptp(ys) == 0 and ys.size > 1 and np.std(problem.y) == 0:
            return f"flat data: {name} does not change with compute"
    if problem.family.positive and np.any(problem.y <= 0):
        return (
            f"the {problem.family.name} law is positive by construction and the metric has "
            "values <= 0; choose another family"
        )
    if np.std(problem.y) == 0:
        return "flat data: the metric does not change with compute"
    return None


def _strictly_inside(theta: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``theta`` moved just inside finite bounds: ``least_squares`` needs such a start."""
    x0 = np.clip(theta, lo, hi)
    pad_lo = np.where(np.isfinite(lo), lo + 1e-9 * (1 + np.abs(np.nan_to_num(lo))), -np.inf)
    pad_hi = np.where(np.isfinite(hi), hi - 1e-9 * (1 + np.abs(np.nan_to_num(hi))), np.inf)
    return np.minimum(np.maximum(x0, pad_lo), pad_hi)


def _covariance(problem: LawProblem, theta: np.ndarray, noise_sd: float) -> np.ndarray | None:
    """The parameters' covariance (JᵀJ)⁻¹·σ̂², None when JᵀJ is (nearly) singular."""
    J = problem.sqrt_w[:, None] * problem.jac(theta)
    JtJ = J.T @ J
    if np.all(np.isfinite(JtJ)) and np.linalg.cond(JtJ) < 1e12:
        return np.linalg.inv(JtJ) * noise_sd**2
    return None


@limited_blas
def bootstrap(
    problem: LawProblem,
    sol: LawSolution,
    n_boot: int = DEFAULT_BOOTSTRAP,
    *,
    scheme: str = "parametric",
    loss: str = "soft_l1",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap parameter vectors, all replicates solved at once.

    ``parametric`` (default): new data = fitted curve + normal noise whose scale is itself
    drawn from its posterior (σ̂²·dof/χ²_dof), so that 3–6 points per source give honest,
    t-like intervals instead of the too-narrow ones that resampling a handful of residuals
    gives. ``cases`` resamples the runs within each source (multinomial case weights); it
    needs several points per source to mean anything.

    Returns:
        (theta_boot (B, P), noise_sd_boot (B,)); empty arrays when no noise estimate exists.
    """
    if not sol.success or sol.dof < 1 or not math.isfinite(sol.noise_sd):
        return np.empty((0, problem.n_params)), np.empty(0)
    rng = np.random.default_rng(seed)
    fitted = problem.value(sol.theta)
    sd = sol.noise_sd * np.sqrt(sol.dof / rng.chisquare(sol.dof, size=n_boot))
    if scheme == "parametric":
        # a point of weight w has noise sd / sqrt(w)
        Y = fitted + sd[:, None] * rng.standard_normal((n_boot, problem.n)) / problem.sqrt_w
        W = _weights_for(problem, n_boot)
    elif scheme == "cases":
        Y = None
        W = np.zeros((n_boot, problem.n))
        for s in range(len(problem.sources)):
            idx = np.flatnonzero(problem.src == s)
            counts = rng.multinomial(idx.size, np.full(idx.size, 1.0 / idx.size), size=n_boot)
            W[:, idx] = counts
        if problem.weights is not None:
            W = W * problem.weights
    else:
        raise FitError(f"Unknown bootstrap scheme {scheme!r}: use parametric or cases.")
    theta0 = np.broadcast_to(sol.theta, (n_boot, problem.n_params))
    theta, _, _ = batched_lm(problem, theta0, Y=Y, W=W, loss=loss, f_scale=sol.f_scale)
    return theta, sd


__all__ = [
    "DEFAULT_BOOTSTRAP",
    "LawProblem",
    "LawSolution",
    "batched_lm",
    "bootstrap",
    "make_problem",
    "solve_law",
]
