"""What to run next: expected value of information by preposterior analysis.

The bootstrap fits are treated as draws from what we believe about the laws. For the target
budget every draw t has its own optimal plan ``P_t``; ``G[t, u]`` is the gain of plan ``P_u``
if draw t were the truth. A plan is *wrong* under draw t when it loses more than ``tol`` of
draw t's best gain. Today's decision is the plan with the smallest probability of being wrong.

For a candidate run (a source at some tokens) the outcome is simulated from each draw s
(``y_s = law_s(x) + noise``); the refit after that outcome is approximated cheaply by
importance-reweighting the draws by the likelihood of ``y_s`` (``w_t ∝ N(y_s; law_t(x), σ)``).
The decision is re-taken under those weights and its probability of being wrong recorded.
The average over s is the expected probability of a wrong decision after the run; the
reduction divided by the run's cost ranks the candidates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import sympy

from planner.allocate.model import N_TOKENS, Curve, make_curve
from planner.allocate.problem import AllocationProblem, cost_expr, predictor_expr, trim_to_boot
from planner.allocate.solve import evaluate_plan, solve_combined
from planner.design.sweep import round3
from planner.domain import is_control
from planner.errors import SolveError
from planner.units import Unit


@dataclass(frozen=True, slots=True)
class Candidate:
    """A run that could be done next.

    Attributes:
        source: the source (or :data:`~planner.domain.CONTROL_SOURCE` for the control).
        tokens: its source tokens (for the control: its training tokens).
    """

    source: str
    tokens: float


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The value of one candidate run.

    Attributes:
        source, tokens: the run.
        cost: what it costs, in the problem's unit (training with replay + curation + eval).
        p_wrong_now: probability the current decision is wrong.
        p_wrong_after: expected probability after the run.
        reduction_per_cost: (now − after) / cost.
    """

    source: str
    tokens: float
    cost: float
    p_wrong_now: float
    p_wrong_after: float
    reduction_per_cost: float

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "tokens": self.tokens,
            "cost": self.cost,
            "p_wrong_now": self.p_wrong_now,
            "p_wrong_after": self.p_wrong_after,
            "reduction": self.p_wrong_now - self.p_wrong_after,
            "reduction_per_cost": self.reduction_per_cost,
        }


@dataclass(frozen=True)
class DecisionState:
    """The wrong-decision matrix at the target budget and today's decision."""

    wrong: np.ndarray  # (B, B): plan u wrong if draw t is true
    gains: np.ndarray  # (B, B): G[t, u]
    plans: np.ndarray  # (B, K) tokens of each draw's optimal plan
    decision: int
    p_wrong: float


def decision_state(
    problem: AllocationProblem, budget: float, *, tol: float = 0.05, max_boot: int = 200
) -> DecisionState:
    """Solve every bootstrap draw at ``budget`` and build the cross-evaluation matrices."""
    B = min(problem.n_boot, max_boot)
    if B < 10:
        raise SolveError(
            "the fits carry too few bootstrap samples to weigh runs; refit with a bootstrap "
            "(`annealplan fit --boot 200`)"
        )
    sample = np.arange(B)
    rule = problem.rule
    plans = solve_combined(problem, np.full(B, float(budget)), sample, rule=rule).sol.tokens
    K = plans.shape[1]
    tok = np.tile(plans, (B, 1))  # row t*B + u: plan u
    truth = np.repeat(sample, B)  # under draw t
    gains = rule.combine(evaluate_plan(problem, tok, truth)).reshape(B, B)
    best = np.maximum(gains.max(axis=1), 0.0)  # doing nothing (gain 0) is always possible
    wrong = gains < best[:, None] - tol * np.abs(best[:, None]) - 1e-12
    p = wrong.mean(axis=0)
    u = int(np.argmin(p))
    del K
    return DecisionState(wrong, gains, plans, u, float(p[u]))


def observation_curves(problem: AllocationProblem, metric: str | None = None) -> list[Curve]:
    """Per source, the raw fitted law of ``metric`` (default: the first weighted metric) as a
    curve in tokens, with the same bootstrap rows as the problem."""
    metric = metric or next(iter(problem.weights))
    out = []
    for s in problem.inputs:
        fit = s.fits[metric]
        unit = Unit(fit.compute_unit or "tokens")
        # the fit's predictor: a model average's rows take the laws the problem's rows take
        expr, vals = predictor_expr(
            fit, problem.families, N_TOKENS, problem.setup, s.curation, "o", unit
        )
        out.append(
            make_curve(
                s.name,
                expr,
                cost_expr(N_TOKENS, s.curation, problem.setup),
                trim_to_boot(vals, problem.n_boot),
            )
        )
    return out


def run_cost(
    problem: AllocationProblem,
    source: str,
    tokens: float,
    *,
    replay_fraction: float,
    eval_cost: float = 0.0,
) -> float:
    """Cost of one annealing run in the problem's unit: curation + training (with replay) + eval.

    A curation model's fixed part (``expr(0)``: a licence, a pipeline set-up) is paid once per
    source, not per run, so a run pays only the variable part.
    """
    setup = replace(problem.setup, replay_fraction=replay_fraction)
    if is_control(source):
        expr = cost_expr(N_TOKENS, None, setup)
    else:
        curation = problem.inputs[problem.names.index(source)].curation
        expr = cost_expr(N_TOKENS, curation, setup)
    expr = expr - expr.subs(N_TOKENS, 0)
    return float(sympy.lambdify(N_TOKENS, expr)(float(tokens))) + eval_cost


def recommend_next(
    problem: AllocationProblem,
    budget: float,
    candidates: Sequence[Candidate],
    noise: Mapping[str, float],
    *,
    replay_fraction: float = 0.7,
    eval_cost: float = 0.0,
    tol: float = 0.05,
    max_boot: int = 200,
    seed: int = 0,
    state: DecisionState | None = None,
) -> list[Recommendation]:
    """Rank candidate runs by the reduction of P(wrong allocation) per unit of cost.

    Args:
        problem: the allocation problem (its fits need bootstrap samples).
        budget: the target budget.
        candidates: runs to weigh.
        noise: per source (and ``control``), the standard deviation of one run's measured
            metric around its law.
        replay_fraction: the runs' replay share (for their cost).
        eval_cost: evaluation cost of one run.
        tol: a plan is wrong when it loses more than this share of the best gain.
        max_boot: bootstrap draws used (B; the work grows as B² per candidate).
        seed: the simulated noise (common to all candidates, so they are compared fairly).
        state: a precomputed :func:`decision_state`.

    Returns:
        Recommendations, best first.
    """
    st = state or decision_state(problem, budget, tol=tol, max_boot=max_boot)
    B = st.wrong.shape[0]
    obs = observation_curves(problem)
    eps = np.random.default_rng(seed).standard_normal(B)
    wrong = st.wrong.astype(float)
    out = []
    for cand in candidates:
        if is_control(cand.source):
            ctrl = problem.controls.get(next(iter(problem.weights)))
            if ctrl is None or ctrl.boot is None:
                continue
            mu = np.asarray(ctrl.boot, dtype=float)[np.arange(B) % len(ctrl.boot)]
        else:
            if cand.source not in problem.names:
                raise SolveError(f"unknown source {cand.source!r} among the candidates")
            c = obs[problem.names.index(cand.source)]
            p = c.boot[:B] if c.boot is not None else np.broadcast_to(c.theta, (B, c.theta.size))
            with np.errstate(all="ignore"):
                mu = np.asarray(c.template.gain(float(cand.tokens), *p.T), dtype=float)
            mu = np.broadcast_to(mu, (B,))
        sigma = float(noise.get(cand.source, np.nan))
        if not (np.isfinite(sigma) and sigma > 0):
            raise SolveError(f"no noise level for {cand.source!r}; give one per source")
        y = mu + sigma * eps
        logl = -0.5 * ((y[:, None] - mu[None, :]) / sigma) ** 2
        logl -= logl.max(axis=1, keepdims=True)
        w = np.exp(logl)
        w /= w.sum(axis=1, keepdims=True)
        post = w @ wrong  # (s, u): P(plan u wrong | outcome of draw s)
        after = float(post.min(axis=1).mean())
        cost = run_cost(
            problem, cand.source, cand.tokens, replay_fraction=replay_fraction, eval_cost=eval_cost
        )
        out.append(
            Recommendation(
                source=cand.source,
                tokens=float(cand.tokens),
                cost=cost,
                p_wrong_now=st.p_wrong,
                p_wrong_after=after,
                reduction_per_cost=(st.p_wrong - after) / cost if cost > 0 else float("inf"),
            )
        )
    out.sort(key=lambda r: -r.reduction_per_cost)
    return out


def default_candidates(
    problem: AllocationProblem, budget: float, *, points: int = 6
) -> list[Candidate]:
    """Per source, runs on a geometric grid from a quarter of its largest fitted run up to
    the tokens today's plan would give it (at least 16× the largest run)."""
    out = []
    pt = solve_combined(problem, np.array([float(budget)]), rule=problem.rule).sol.tokens[0]
    for k, name in enumerate(problem.names):
        xm = problem.x_max_tokens[k]
        lo = xm / 4 if np.isfinite(xm) and xm > 0 else max(pt[k] / 1000, 1e6)
        hi = max(lo * 64, pt[k]) if np.isfinite(xm) else max(pt[k], lo * 64)
        for t in np.geomspace(lo, hi, points):
            out.append(Candidate(name, float(round3(t))))
    return out
