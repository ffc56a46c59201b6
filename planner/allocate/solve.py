"""The budget solver: KKT water-filling on the marginal-utility multiplier, vectorised.

Problem, per row r (a row is one bootstrap sample at one budget)::

    maximise   Σ_k g_k(D_k)        subject to   Σ_k C_k(D_k) ≤ B_r,   0 ≤ D_k ≤ cap_k

with ``g_k(0) = 0`` and ``C_k(0) = 0`` (an unused source is neither bought nor trained on).

Method. For a multiplier λ each source takes the tokens where its marginal utility
``MU_k = g_k'/C_k'`` equals λ (closed-form inverse from sympy when one exists, vectorised
bisection otherwise), clipped at 0 and at its cap; λ is found by bisection so the budget is
spent. This is exact for concave gains and convex costs.

Laws that are not concave everywhere (a logistic in log tokens; a power law whose gain over
control is negative until enough tokens; a fixed curation cost) are handled through the
concave envelope: a source enters only when λ is at most its best *average* return
``max_D g(D)/C(D)`` (attained at ``D*``), and then takes at least ``D*`` tokens. That relaxed
problem can leave budget unspent where a source jumps from 0 to ``D*``; such rows are
repaired by branching on the jumping source (forced out / forced in at ≥ ``D*``), keeping the
better branch, a few rounds deep, and the result is finally compared with the best
single-source plan and with spending nothing. With one non-concave source this is exact; with
several it is a well-tested heuristic (see tests/unit/allocate).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from planner.allocate.model import Curve
from planner.allocate.problem import AllocationProblem

_BISECT_LAMBDA = 64
_BISECT_TOKENS = 52
_GRID = 65
_REPAIR_ROUNDS = 2
_SCAN_GRID = 24
_SCAN_REFINE = 16
_TOL = 1e-9
_MU_SWEEPS = 3
_MU_BISECT = 32
_MU_BRACKET = 40


@dataclass(frozen=True, slots=True)
class BatchSolution:
    """Solutions of a batch of rows (:func:`solve_batch`).

    Attributes:
        tokens: (R, K) tokens per source.
        cost: (R, K) cost per source in the budget's unit.
        gain: (R, K) gain per source; ``total`` its row sum.
        lam: (R,) the multiplier (marginal utility of the last unit spent; 0 when the budget
            does not bind).
        spent: (R,) total cost.
        feasible: (R,) False where even the cheapest use of any source exceeds the budget.
    """

    tokens: np.ndarray
    cost: np.ndarray
    gain: np.ndarray
    total: np.ndarray
    lam: np.ndarray
    spent: np.ndarray
    feasible: np.ndarray


class Batch:
    """K sources × R rows of parameters and budgets, grouped by compiled template."""

    def __init__(
        self,
        curves: Sequence[Curve],
        thetas: Sequence[np.ndarray],
        budgets: np.ndarray,
        *,
        prepare: bool = True,
        scale: np.ndarray | None = None,
    ):
        """Args:
        curves: the K sources.
        thetas: per source an (R, P_k) array of parameter rows.
        budgets: (R,) budgets in the costs' unit.
        prepare: compute the affordable horizon and best average return (needed to solve;
            not needed to evaluate gains and costs).
        scale: (R, K) positive weights on each source's gain (and so on its marginal
            utility): the linearisation of a combined gain (see :func:`solve_combined`);
            None for the plain sum.
        """
        self.curves = tuple(curves)
        self.budgets = np.asarray(budgets, dtype=float)
        self.R = int(self.budgets.shape[0])
        self.K = len(self.curves)
        self.scale = None if scale is None else np.broadcast_to(scale, (self.R, self.K))
        groups: dict[int, list[int]] = {}
        tpl_by_id = {}
        for k, c in enumerate(self.curves):
            groups.setdefault(id(c.template), []).append(k)
            tpl_by_id[id(c.template)] = c.template
        self.thetas = [np.broadcast_to(t, (self.R, np.shape(t)[-1])) for t in thetas]
        self.groups = []
        for tid, idx in groups.items():
            tpl = tpl_by_id[tid]
            p = np.stack([np.broadcast_to(thetas[k], (self.R, tpl.n_params)) for k in idx], axis=1)
            self.groups.append((tpl, np.asarray(idx), p))  # p: (R, K_g, P)
        self.cap = np.array([c.cap_tokens for c in self.curves], dtype=float)
        self.dmin = np.array([getattr(c, "min_tokens", 0.0) for c in self.curves], dtype=float)
        self._inv_ok: dict[int, int | None] = {}
        if prepare:
            self._prepare()

    # ---- elementwise evaluation over (R, K[, G]) arrays -------------------------------
    def _eval(self, name: str, d: np.ndarray) -> np.ndarray:
        out = np.empty(d.shape, dtype=float)
        extra = d.ndim - 2
        with np.errstate(all="ignore"):
            for tpl, idx, p in self.groups:
                args = [p[..., j].reshape(p.shape[:2] + (1,) * extra) for j in range(tpl.n_params)]
                val = getattr(tpl, name)(d[:, idx], *args)
                out[:, idx] = np.broadcast_to(val, d[:, idx].shape)
        return out

    def gain(self, d: np.ndarray) -> np.ndarray:
        """Gain per source; exactly 0 at 0 tokens, -inf where the law is undefined."""
        pos = d > 0
        m = self._dmin_like(d)
        g = self._eval("gain", np.where(pos, np.maximum(d, m), 1.0))
        # below the smallest measured budget the law is not trusted: ramp from the control
        with np.errstate(all="ignore"):  # a law that overflows there is undefined (-inf)
            g = np.where((m > 0) & (d < m), g * d / np.where(m > 0, m, 1.0), g)
        g = np.where(np.isfinite(g), g, -np.inf)
        if self.scale is not None:
            g = g * self._scale_like(d)
        return np.where(pos, g, 0.0)

    def _scale_like(self, d: np.ndarray) -> np.ndarray:
        """The per-row, per-source weights broadcast to ``d`` of shape (R, K[, G])."""
        return self.scale.reshape(self.scale.shape + (1,) * (d.ndim - 2))

    def _dmin_like(self, d: np.ndarray) -> np.ndarray:
        """Per-source minimum tokens broadcast to ``d`` of shape (R, K[, G])."""
        return self.dmin.reshape((1, self.K) + (1,) * (d.ndim - 2))

    def cost(self, d: np.ndarray) -> np.ndarray:
        """Cost per source; exactly 0 at 0 tokens."""
        pos = d > 0
        return np.where(pos, self._eval("cost", np.where(pos, d, 1.0)), 0.0)

    def mu(self, d: np.ndarray) -> np.ndarray:
        lo = self._dmin_like(d)
        mu = self._eval("mu", np.maximum(d, lo))
        if np.any(self.dmin > 0):
            # on the ramp: d(gain)/d(cost) = (gain(dmin)/dmin) / cost'(d)
            below = (lo > 0) & (d < lo)
            if np.any(below):
                safe = np.where(lo > 0, lo, 1.0)
                slope = self._eval("gain", np.broadcast_to(safe, d.shape).copy()) / safe
                dc = self._eval("cost", d * 1.0001 + 1e-12) - self._eval("cost", d)
                dd = d * 0.0001 + 1e-12
                mu = np.where(below, slope / (dc / dd), mu)
        if self.scale is not None:
            mu = mu * self._scale_like(d)
        return np.where(np.isnan(mu), -np.inf, mu)

    # ---- set-up: affordable horizon, best average return ------------------------------
    def _afford(self, budget: np.ndarray) -> np.ndarray:
        """(R, K) most tokens each source could buy alone with ``budget`` (R,)."""
        cap = np.broadcast_to(self.cap, (self.R, self.K))
        hi_cap = np.where(np.isfinite(cap), cap, 1e30)
        b = budget[:, None]
        ok_cap = self.cost(hi_cap) <= b
        lo = np.full((self.R, self.K), -30.0)  # log10 tokens
        hi = np.log10(hi_cap)
        for _ in range(_BISECT_TOKENS + 8):
            mid = 0.5 * (lo + hi)
            fits = self.cost(10.0**mid) <= b
            lo = np.where(fits, mid, lo)
            hi = np.where(fits, hi, mid)
        d = np.where(ok_cap, hi_cap, 10.0**lo)
        # not even a sliver is affordable (fixed cost above the budget): 0 tokens
        return np.where(self.cost(d) <= b * (1 + _TOL), d, 0.0)

    def _prepare(self) -> None:
        self.capb = self._afford(self.budgets)
        h = self.capb
        ok = h > 0
        frac = 10.0 ** np.linspace(-9.0, 0.0, _GRID)
        grid = np.where(ok, h, 1.0)[..., None] * frac
        with np.errstate(all="ignore"):
            g = self._eval("gain", grid)
            c = self._eval("cost", grid)
            avg = np.where(np.isfinite(g / c), g / c, -np.inf)
        best = np.argmax(avg, axis=-1)
        # golden-section refinement in log tokens around the best grid point
        lg = np.log(grid)
        a = np.take_along_axis(lg, np.clip(best - 1, 0, _GRID - 1)[..., None], -1)[..., 0]
        b = np.take_along_axis(lg, np.clip(best + 1, 0, _GRID - 1)[..., None], -1)[..., 0]
        ratio = (np.sqrt(5) - 1) / 2

        def avg_at(x: np.ndarray) -> np.ndarray:
            d = np.exp(x)
            with np.errstate(all="ignore"):
                v = self.gain(d) / self.cost(d)
            return np.where(np.isfinite(v), v, -np.inf)

        for _ in range(30):
            x1 = b - ratio * (b - a)
            x2 = a + ratio * (b - a)
            left = avg_at(x1) >= avg_at(x2)
            b = np.where(left, x2, b)
            a = np.where(left, a, x1)
        x = 0.5 * (a + b)
        gbest = np.take_along_axis(grid, best[..., None], -1)[..., 0]
        cand = np.exp(x)
        dstar = np.where(avg_at(x) >= avg_at(np.log(gbest)), cand, gbest)
        dstar = np.minimum(dstar, h)
        self.dstar = np.where(ok, dstar, 0.0)
        thr = avg_at(np.log(np.where(ok, self.dstar, 1.0)))
        # a source that never beats control, or that the budget cannot reach, never enters
        self.thr = np.where(ok & (thr > 0), thr, -np.inf)

    # ---- D(λ) --------------------------------------------------------------------------
    def _inverse_index(self, tpl, p: np.ndarray, idx: np.ndarray) -> int | None:
        """Index of the sympy inverse that reproduces D from MU(D) on this group, or None."""
        key = id(tpl)
        if key in self._inv_ok:
            return self._inv_ok[key]
        found = None
        if tpl.mu_inv_candidates:
            lo = np.maximum(self.dstar[:, idx], 1e-300)
            hi = np.where(np.isfinite(self.capb[:, idx]), self.capb[:, idx], lo * 1e6)
            test = np.sqrt(lo * np.maximum(hi, lo))  # geometric middle of the usable range
            args = [p[..., j] for j in range(tpl.n_params)]
            with np.errstate(all="ignore"):
                lam = np.asarray(tpl.mu(test, *args), dtype=float)
                good = np.isfinite(lam) & (lam > 0) & (test > 0)
                for i, inv in enumerate(tpl.mu_inv_candidates):
                    back = np.asarray(inv(lam, *args), dtype=float)
                    err = np.abs(back - test) / test
                    if good.any() and np.all(np.where(good, err < 1e-6, True)):
                        found = i
                        break
        self._inv_ok[key] = found
        return found

    def tokens_at(
        self,
        lam: np.ndarray,
        off: np.ndarray | None = None,
        on: np.ndarray | None = None,
    ) -> np.ndarray:
        """(R, K) tokens each source takes at multiplier ``lam`` (R,).

        Args:
            lam: the multiplier per row (0: as many useful tokens as affordable).
            off: (R, K) sources forced out; on: (R, K) sources forced in (≥ D*).
        """
        lam2 = np.broadcast_to(np.asarray(lam, dtype=float)[:, None], (self.R, self.K))
        # a weighted source reaches λ where its own marginal utility reaches λ / weight
        lam_own = lam2 if self.scale is None else lam2 / self.scale
        lo = self.dstar
        hi = self.capb
        d = np.empty((self.R, self.K))
        for tpl, idx, p in self.groups:
            sub_lo, sub_hi, sub_lam = lo[:, idx], hi[:, idx], lam_own[:, idx]
            inv = self._inverse_index(tpl, p, idx)
            args = [p[..., j] for j in range(tpl.n_params)]
            if inv is not None:
                with np.errstate(all="ignore"):
                    x = np.asarray(tpl.mu_inv_candidates[inv](sub_lam, *args), dtype=float)
                x = np.broadcast_to(x, sub_lam.shape)
                # past the top of the decreasing branch, or λ=0 (1/0): the clip decides
                x = np.where(np.isnan(x), np.where(sub_lam > 0, sub_lo, sub_hi), x)
                d[:, idx] = np.clip(x, sub_lo, sub_hi)
            else:
                d[:, idx] = self._invert_numeric(tpl, args, sub_lam, sub_lo, sub_hi)
        enter = lam2 <= self.thr
        if on is not None:
            enter = enter | (on & (self.capb > 0))
        if off is not None:
            enter = enter & ~off
        return np.where(enter, d, 0.0)

    def _invert_numeric(self, tpl, args, lam, lo, hi) -> np.ndarray:
        """Largest D in [lo, hi] with MU(D) ≥ λ, by bisection in log D (MU decreasing there)."""
        ok = (lo > 0) & (hi > 0)
        llo = np.log(np.where(ok, lo, 1.0))
        lhi = np.log(np.where(ok, np.maximum(hi, lo), 1.0))

        def mu(x: np.ndarray) -> np.ndarray:
            with np.errstate(all="ignore"):
                m = np.asarray(tpl.mu(np.exp(x), *args), dtype=float)
            return np.where(np.isnan(m), -np.inf, np.broadcast_to(m, x.shape))

        top_ok = mu(lhi) >= lam
        a, b = llo.copy(), lhi.copy()
        for _ in range(_BISECT_TOKENS):
            mid = 0.5 * (a + b)
            up = mu(mid) >= lam
            a = np.where(up, mid, a)
            b = np.where(up, b, mid)
        x = np.where(top_ok, lhi, a)
        return np.where(ok, np.exp(x), 0.0)

    def rebudget(self, rows: np.ndarray, budgets: np.ndarray) -> Batch:
        """A new batch of the given rows with other budgets (set-up recomputed)."""
        new = Batch(
            self.curves,
            [t[rows] for t in self.thetas],
            budgets,
            prepare=False,
            scale=None if self.scale is None else self.scale[rows],
        )
        new._inv_ok = self._inv_ok
        # a smaller budget only truncates the search for the best average return, which is
        # unimodal for the supported laws: clip the parent's D* instead of searching again
        new.capb = new._afford(new.budgets)
        ok = new.capb > 0
        new.dstar = np.where(ok, np.minimum(self.dstar[rows], new.capb), 0.0)
        d = np.where(ok, new.dstar, 1.0)
        with np.errstate(all="ignore"):
            avg = new.gain(d) / new.cost(d)
        new.thr = np.where(ok & np.isfinite(avg) & (avg > 0), avg, -np.inf)
        return new

    def take(self, rows: np.ndarray) -> Batch:
        """A batch restricted to some rows (shares compiled templates and set-up)."""
        new = object.__new__(Batch)
        new.curves = self.curves
        new.budgets = self.budgets[rows]
        new.R = int(new.budgets.shape[0])
        new.K = self.K
        new.groups = [(t, idx, p[rows]) for t, idx, p in self.groups]
        new.thetas = [t[rows] for t in self.thetas]
        new.cap = self.cap
        new.dmin = self.dmin
        new.scale = None if self.scale is None else self.scale[rows]
        new._inv_ok = self._inv_ok
        new.capb = self.capb[rows]
        new.dstar = self.dstar[rows]
        new.thr = self.thr[rows]
        return new


def waterfill(
    batch: Batch, off: np.ndarray | None = None, on: np.ndarray | None = None, depth: int = 0
) -> BatchSolution:
    """Solve every row of ``batch`` by bisection on λ with non-concave repair.

    Args:
        batch: sources, parameter rows and budgets.
        off, on: (R, K) sources forced out / forced in (used by the repair branches).
        depth: recursion depth of the repair (internal).
    """
    R, K = batch.R, batch.K
    b = batch.budgets
    top = np.max(batch.thr, axis=1, initial=-np.inf)
    # largest MU of a forced-in source at its D*: bounds λ from above for those rows
    mu_star = batch.mu(np.where(batch.dstar > 0, batch.dstar, 1.0))
    if on is not None:
        forced = np.where(on & np.isfinite(mu_star), np.abs(mu_star), -np.inf)
        top = np.maximum(top, np.max(forced, axis=1, initial=-np.inf))
    top = np.where(np.isfinite(top) & (top > 0), top, 1.0) * (1 + 1e-9)

    def spend(lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = batch.tokens_at(lam, off, on)
        return d, batch.cost(d).sum(axis=1)

    d0, s0 = spend(np.zeros(R))
    loose = s0 <= b * (1 + _TOL)  # the budget does not bind: take every useful token
    lo = np.log(top) - np.log(1e16)
    hi = np.log(top)
    for _ in range(_BISECT_LAMBDA):
        mid = 0.5 * (lo + hi)
        _, s = spend(np.exp(mid))
        over = s > b
        lo = np.where(over, mid, lo)
        hi = np.where(over, hi, mid)
    d_hi, s_hi = spend(np.exp(hi))
    d_lo, _ = spend(np.exp(lo))
    d = np.where(loose[:, None], d0, d_hi)
    s = np.where(loose, s0, s_hi)
    lam = np.where(loose, 0.0, np.exp(hi))
    g = batch.gain(d)
    tot = g.sum(axis=1)
    feasible = s <= b * (1 + 1e-7)
    tot = np.where(feasible, tot, -np.inf)

    # rows whose budget is not spent sit on a jump of a non-concave source: branch on it
    left = (b - s) > 1e-7 * np.maximum(b, 1e-300)
    rows = np.flatnonzero(left & ~loose & feasible)
    if rows.size and depth < _REPAIR_ROUNDS:
        sub = batch.take(rows)
        jump = sub.cost(d_lo[rows]) - sub.cost(d_hi[rows])
        j = np.argmax(jump, axis=1)
        base_off = np.zeros((rows.size, K), bool) if off is None else off[rows].copy()
        off_j = base_off.copy()
        off_j[np.arange(rows.size), j] = True
        branch_off = waterfill(sub, off_j, None if on is None else on[rows], depth + 1)
        branch_scan = _scan(sub, j, off_j, depth + 1)
        for br in (branch_off, branch_scan):
            better = br.feasible & (br.total > tot[rows] + 1e-15 * np.abs(tot[rows]))
            r = rows[better]
            d[r], s[r], lam[r], tot[r] = (
                br.tokens[better],
                br.spent[better],
                br.lam[better],
                br.total[better],
            )
            g[r] = br.gain[better]
    return BatchSolution(
        tokens=d,
        cost=batch.cost(d),
        gain=g,
        total=tot,
        lam=lam,
        spent=s,
        feasible=feasible | (tot > -np.inf),
    )


def _scan(batch: Batch, j: np.ndarray, off_j: np.ndarray, depth: int) -> BatchSolution:
    """Best plan with source ``j[r]`` at a scanned token count and the others water-filled.

    A source whose gain is convex over part of its range may sit anywhere in it at the
    optimum (another source's concavity can outweigh its convexity), so its tokens are
    searched directly: a log grid over what the row can afford, then golden-section
    refinement around the best grid point. The other sources share what is left.
    """
    R, K = batch.R, batch.K
    ar = np.arange(R)
    capj = batch.capb[ar, j]
    frac = np.concatenate([[0.0], 10.0 ** np.linspace(-4.0, 0.0, _SCAN_GRID)])
    G = frac.size

    def value(dj: np.ndarray, rows: np.ndarray) -> BatchSolution:
        # dj: (len(rows),) tokens of source j for these batch rows
        cj = np.zeros((rows.size, K))
        cj[np.arange(rows.size), j[rows]] = dj
        cost_j = batch.take(rows).cost(cj)[np.arange(rows.size), j[rows]]
        left = batch.budgets[rows] - cost_j * (dj > 0)
        ok = left >= -1e-12 * batch.budgets[rows]
        sub = batch.rebudget(rows, np.maximum(left, 0.0))
        others = waterfill(sub, off_j[rows], None, depth)
        tokens = others.tokens.copy()
        tokens[np.arange(rows.size), j[rows]] = dj
        gain = sub.gain(tokens)
        total = np.where(ok, gain.sum(axis=1), -np.inf)
        return BatchSolution(
            tokens, sub.cost(tokens), gain, total, others.lam, sub.cost(tokens).sum(axis=1), ok
        )

    rows = np.repeat(ar, G)
    dj = (capj[:, None] * frac[None, :]).reshape(-1)
    grid = value(dj, rows)
    tot = grid.total.reshape(R, G)
    k = np.argmax(tot, axis=1)
    a = np.log(np.maximum(capj * frac[np.clip(k - 1, 1, G - 1)], 1e-300))
    b = np.log(np.maximum(capj * frac[np.clip(k + 1, 1, G - 1)], 1e-300))
    ratio = (np.sqrt(5) - 1) / 2
    x1 = b - ratio * (b - a)
    x2 = a + ratio * (b - a)
    f1, f2 = value(np.exp(x1), ar).total, value(np.exp(x2), ar).total
    for _ in range(_SCAN_REFINE):
        # golden section: one new evaluation per step, reusing the interior point kept
        left = f1 >= f2
        b = np.where(left, x2, b)
        a = np.where(left, a, x1)
        x2n = np.where(left, x1, a + ratio * (b - a))
        x1n = np.where(left, b - ratio * (b - a), x2)
        fnew = value(np.exp(np.where(left, x1n, x2n)), ar).total
        f1, f2 = np.where(left, fnew, f2), np.where(left, f1, fnew)
        x1, x2 = x1n, x2n
    fine = value(np.where(capj > 0, np.exp(0.5 * (a + b)), 0.0), ar)
    pick = grid.total.reshape(R, G)[ar, k]
    use_fine = fine.total >= pick
    best_rows = ar * G + k
    out = {}
    for name in ("tokens", "cost", "gain", "total", "lam", "spent", "feasible"):
        gv = getattr(grid, name)[best_rows]
        fv = getattr(fine, name)
        mask = use_fine.reshape((R,) + (1,) * (np.ndim(fv) - 1))
        out[name] = np.where(mask, fv, gv)
    return BatchSolution(**out)


def best_single(batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best plan that buys one source only, per row.

    Returns:
        (index (R,), tokens (R,), gain (R,)) of the best single source; the per-source gains
        of spending everything on each source are in :func:`single_gains`.
    """
    d, g = single_gains(batch)
    k = np.argmax(g, axis=1)
    ar = np.arange(batch.R)
    return k, d[ar, k], g[ar, k]


def single_gains(batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, gain), each (R, K): every source alone with the whole budget."""
    on = batch.capb > 0
    d = batch.tokens_at(np.zeros(batch.R), on=on)
    g = batch.gain(d)
    return d, np.where(on, g, -np.inf)


def solve_batch(batch: Batch, *, repair: bool = True) -> BatchSolution:
    """Water-filling, then the safeguard against the best single-source plan and doing nothing.

    Args:
        batch: the rows to solve.
        repair: branch on non-concave sources that leave budget unspent (off: faster, used
            inside outer searches whose final solve repairs).
    """
    sol = waterfill(batch, depth=0 if repair else _REPAIR_ROUNDS)
    k, dk, gk = best_single(batch)
    tot = np.where(sol.feasible, sol.total, -np.inf)
    use_single = gk > tot + 1e-12 * np.abs(tot)
    d = sol.tokens.copy()
    if use_single.any():
        r = np.flatnonzero(use_single)
        d[r] = 0.0
        d[r, k[r]] = dk[r]
    # tokens are bought whole: less than one token of a source is not a purchase (nearly
    # flat laws otherwise give plans of a thousandth of a token and a gain of 1e-10)
    d = np.where(d >= 1.0, d, 0.0)
    g = batch.gain(d)
    total = g.sum(axis=1)
    # spending nothing (gain 0) beats any plan that loses to control
    none = ~(total > 0)
    d[none] = 0.0
    g[none] = 0.0
    total = np.where(none, 0.0, total)
    cost = batch.cost(d)
    feasible = batch.capb.max(axis=1, initial=0.0) > 0
    return BatchSolution(
        tokens=d,
        cost=cost,
        gain=g,
        total=total,
        lam=np.where(use_single | none, np.nan, sol.lam),
        spent=cost.sum(axis=1),
        feasible=feasible,
    )


# ---- the problem's rows: guard-rails, and the objective alone ---------------------------
@dataclass(frozen=True)
class GuardedSolution:
    """A solve of R rows with the objective separated from the guard terms.

    Attributes:
        sol: the batch solution (its ``gain`` is the objective's gain per source).
        guard: (G, R) the guarded quantity per guard.
        mu: (G, R) the multipliers used.
        guard_ok: (R,) every guard holds.
    """

    sol: BatchSolution
    guard: np.ndarray
    mu: np.ndarray
    guard_ok: np.ndarray


def objective_batch(
    problem: AllocationProblem,
    budgets: np.ndarray,
    sample: np.ndarray | None = None,
    *,
    prepare: bool = True,
) -> Batch:
    """The problem's objective alone (every guard multiplier at 0) as a batch.

    Args:
        problem: the allocation problem.
        budgets: (R,) budgets, one per row.
        sample: (R,) bootstrap row per row, or None for the point values.
        prepare: as :class:`Batch` (not needed to evaluate gains and costs).
    """
    budgets = np.asarray(budgets, dtype=float)
    thetas = problem.objective_thetas(budgets.shape[0], sample)
    return Batch(problem.curves, thetas, budgets, prepare=prepare)


def evaluate_plan(
    problem: AllocationProblem, tokens: np.ndarray, sample: np.ndarray | None
) -> np.ndarray:
    """Objective gain per source of fixed ``tokens`` (R, K) under point or bootstrap rows."""
    return objective_batch(problem, np.ones(tokens.shape[0]), sample, prepare=False).gain(tokens)


def solve_rows(
    problem: AllocationProblem,
    budgets: np.ndarray,
    sample: np.ndarray | None = None,
    *,
    scale: np.ndarray | None = None,
) -> GuardedSolution:
    """Solve rows (one budget each, bootstrap row ``sample`` each or the point fit), with
    the problem's guard-rails enforced by their multipliers.

    Args:
        problem: the allocation problem.
        budgets: (R,) budgets in the problem's unit, before the evaluation cost.
        sample: (R,) bootstrap row per row, or None for the point values.
        scale: (R, K) weights on the sources' gains (see :class:`Batch`); the solution's
            gains are then weighted too.
    """
    budgets = np.maximum(np.asarray(budgets, dtype=float) - problem.setup.eval_cost, 0.0)
    R = budgets.shape[0]
    thetas = problem.thetas(R, sample)
    G = len(problem.guards)
    gbatches = [
        Batch(problem.guard_curves[g], problem.guard_thetas(g, R, sample), budgets, prepare=False)
        for g in range(G)
    ]

    def run(mu: np.ndarray, repair: bool = False) -> tuple[BatchSolution, np.ndarray]:
        problem.set_multipliers(thetas, mu)
        sol = solve_batch(Batch(problem.curves, thetas, budgets, scale=scale), repair=repair)
        gv = np.array([gb.gain(sol.tokens).sum(axis=1) for gb in gbatches]).reshape(G, R)
        return sol, gv

    mu = np.zeros((G, R))
    sol, gv = run(mu, repair=not G)
    thr = np.array([g.sign * g.threshold for g in problem.guards]).reshape(G, 1)
    if G:
        for _ in range(_MU_SWEEPS if G > 1 else 1):
            for g in range(G):
                need = gv[g] < thr[g, 0] - 1e-12
                if not need.any():
                    continue
                mu[g] = _bisect_multiplier(run, mu, g, need, thr[g, 0])
                sol, gv = run(mu)
        sol, gv = run(mu, repair=True)
    # report the objective alone: take the μ·guard terms back out, per source
    gain = sol.gain.copy()
    for g, gb in enumerate(gbatches):
        gain -= mu[g][:, None] * gb.gain(sol.tokens)
    total = np.where(sol.tokens.sum(axis=1) > 0, gain.sum(axis=1), 0.0)
    sol = BatchSolution(sol.tokens, sol.cost, gain, total, sol.lam, sol.spent, sol.feasible)
    ok = np.all(gv >= thr - 1e-9 * np.maximum(1.0, np.abs(thr)), axis=0) if G else np.ones(R, bool)
    return GuardedSolution(sol, gv, mu, ok)


def _bisect_multiplier(
    run: Callable[[np.ndarray], tuple[BatchSolution, np.ndarray]],
    mu: np.ndarray,
    g: int,
    need: np.ndarray,
    threshold: float,
) -> np.ndarray:
    """The smallest multiplier ``mu[g]`` per row that makes guard ``g`` hold where ``need``.

    Args:
        run: solves the rows for multipliers (G, R) and gives the guards' values (G, R).
        mu: the multipliers now (the other guards' stay as they are).
        g: the guard whose multiplier is searched.
        need: (R,) rows where the guard does not hold now (the others keep ``mu[g]``).
        threshold: the guard's signed threshold.
    """
    # bracket μ_g: grow until the guard holds (or give up at a huge μ)
    lo = np.where(need, 0.0, mu[g])
    hi = np.where(need, 1.0, mu[g])
    for _ in range(_MU_BRACKET):
        trial = mu.copy()
        trial[g] = hi
        _, gt = run(trial)
        short = need & (gt[g] < threshold - 1e-12)
        if not short.any():
            break
        hi = np.where(short, hi * 4.0, hi)
    for _ in range(_MU_BISECT):
        mid = np.where(need, 0.5 * (lo + hi), mu[g])
        trial = mu.copy()
        trial[g] = mid
        _, gt = run(trial)
        ok = gt[g] >= threshold - 1e-12
        hi = np.where(need & ok, mid, hi)
        lo = np.where(need & ~ok, mid, lo)
    return np.where(need, hi, mu[g])


# ---- a combined (non-additive) gain: the mixture's gain under a combination rule ---------
_COUPLED_ITERS = 60
_COUPLED_TOL = 1e-5


def solve_combined(
    problem: AllocationProblem,
    budgets: np.ndarray,
    sample: np.ndarray | None = None,
    rule: Any = None,
) -> GuardedSolution:
    """Maximise the combined gain ``G(g_1(D_1), …, g_K(D_K))`` within each row's budget.

    ``rule`` (a :class:`planner.allocate.combine.CombinationRule`) gives G and its gradient.
    The KKT conditions of the coupled problem are those of the additive one with each
    source's marginal utility weighted by ``w_k = ∂G/∂g_k``: every interior source has
    ``w_k·g_k'(D_k)/C_k'(D_k) = λ``. So the rows are solved by a fixed point: water-fill with
    weights ``w``, recompute ``w`` at the solution, repeat until the weights stop moving
    (rows that have converged drop out). The weighted water-filling keeps its exact
    inversion of each source's marginal utility and its repair of non-concave laws; at the
    fixed point the certificate holds with the combined gain's gradient. The result is then
    compared with the best single source (whose combined gain is its own gain) and with
    spending nothing.

    A rule that is not bounded (additive), or a problem with guard-rails (whose multipliers
    are found on the additive objective), is solved by :func:`solve_rows` as before.

    Returns:
        A :class:`GuardedSolution` whose ``sol.gain`` is each source's own gain at the plan,
        ``sol.total`` the combined gain and ``sol.lam`` the multiplier of the combined
        problem.
    """
    if rule is None or not rule.bounded or problem.guards:
        return solve_rows(problem, budgets, sample)
    budgets = np.asarray(budgets, dtype=float)
    R, K = budgets.shape[0], len(problem.names)
    w = np.ones((R, K))
    tokens = np.zeros((R, K))
    lam = np.zeros(R)
    feasible = np.zeros(R, bool)
    todo = np.arange(R)
    for it in range(_COUPLED_ITERS):
        sub = None if sample is None else sample[todo]
        got = solve_rows(problem, budgets[todo], sub, scale=w[todo])
        tokens[todo] = got.sol.tokens
        lam[todo] = got.sol.lam
        feasible[todo] = got.sol.feasible
        raw = evaluate_plan(problem, got.sol.tokens, sub)
        new = np.maximum(rule.gradient(np.where(np.isfinite(raw), raw, 0.0)), 1e-12)
        moved = np.max(np.abs(np.log(new) - np.log(w[todo])), axis=1)
        # damp after a few plain steps: a source on the edge of entering can make the
        # weights alternate between two plans
        step = 1.0 if it < 8 else 0.5
        w[todo] = np.exp((1 - step) * np.log(w[todo]) + step * np.log(new))
        todo = todo[moved > _COUPLED_TOL]
        if todo.size == 0:
            break
    raw = evaluate_plan(problem, tokens, sample)
    total = rule.combine(raw)
    # the best single source (its combined gain is its own) and spending nothing
    avail = np.maximum(budgets - problem.setup.eval_cost, 0.0)
    d1, g1 = single_gains(objective_batch(problem, avail, sample))
    k = np.argmax(g1, axis=1)
    ar = np.arange(R)
    single = (g1[ar, k] > total + 1e-12 * np.abs(total)) & np.isfinite(g1[ar, k])
    if single.any():
        tokens[single] = 0.0
        tokens[single, k[single]] = d1[single, k[single]]
        lam[single] = np.nan
    tokens = np.where(tokens >= 1.0, tokens, 0.0)
    raw = evaluate_plan(problem, tokens, sample)
    total = rule.combine(raw)
    none = ~(total > 0)
    tokens[none] = 0.0
    raw[none] = 0.0
    total = np.where(none, 0.0, total)
    lam = np.where(none, np.nan, lam)
    batch = objective_batch(problem, avail, sample, prepare=False)
    cost = batch.cost(tokens)
    sol = BatchSolution(tokens, cost, raw, total, lam, cost.sum(axis=1), feasible)
    return GuardedSolution(sol, np.zeros((0, R)), np.zeros((0, R)), np.ones(R, bool))


def combined_mu(
    problem: AllocationProblem,
    tokens: np.ndarray,
    rule: Any = None,
    sample: np.ndarray | None = None,
) -> np.ndarray:
    """(R, K) each source's marginal combined gain per unit of cost at ``tokens``.

    ``∂G/∂g_k · g_k'(D)/C_k'(D)``; a source at 0 tokens is read just above 0 (its first
    token), so the certificate says what buying a little of it would return.
    """
    tokens = np.atleast_2d(np.asarray(tokens, dtype=float))
    batch = objective_batch(problem, np.ones(tokens.shape[0]), sample, prepare=False)
    raw = batch.gain(tokens)
    w = (
        np.ones_like(raw)
        if rule is None or not rule.bounded
        else rule.gradient(np.where(np.isfinite(raw), raw, 0.0))
    )
    # at 0 tokens: the first token (on the ramp below the smallest measured budget)
    at = np.where(tokens > 0, tokens, 1.0)
    return w * batch.mu(at)


def entry_return(
    problem: AllocationProblem, tokens: np.ndarray, budget: float, sample: np.ndarray | None = None
) -> np.ndarray:
    """(R, K) the best combined gain per unit of cost each source could add by itself.

    The solver lets a source in only when the multiplier is at most this value (its best
    average return ``max_D w_k·g_k(D)/C_k(D)`` within ``budget``, weighted by the combined
    gain's gradient ``w_k`` at ``tokens``); for a concave law it is the return of its first
    token. −inf where buying it never beats the control.
    """
    tokens = np.atleast_2d(np.asarray(tokens, dtype=float))
    R = tokens.shape[0]
    rule = problem.rule
    raw = evaluate_plan(problem, tokens, sample)
    w = rule.gradient(np.where(np.isfinite(raw), raw, 0.0)) if rule.bounded else None
    thetas = problem.objective_thetas(R, sample)
    batch = Batch(problem.curves, thetas, np.full(R, float(budget)), scale=w)
    return batch.thr
