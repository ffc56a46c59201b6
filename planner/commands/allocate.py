"""``annealplan allocate``, ``frontier`` and ``crossovers``: the cost-optimal plan.

Heavy modules (numpy, sympy, the solver) are imported inside the commands so that
``annealplan --help`` stays fast.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, is_dataclass
from enum import Enum
from typing import Any

import click


def jsonable(obj: Any) -> Any:
    """Dataclasses, enums, numpy scalars and NaN (→ null) made JSON-able."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(asdict(obj))
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def _common(f):
    """Options shared by the three verbs."""
    opts = [
        click.option("--metric", help="Metric to maximise (default: the only fitted one)."),
        click.option(
            "--weights", help="Weighted objective: metric=w[,metric=w…] (losses count negatively)."
        ),
        click.option(
            "--guard",
            "guards",
            multiple=True,
            help='Guard-rail on the summed change over control, e.g. "general_acc>=-0.01".',
        ),
        click.option(
            "--model-params", help="Annealing model size N for training cost 6·N·D (e.g. 135M)."
        ),
        click.option(
            "--control", type=float, help="Control anneal's value when no control run is stored."
        ),
        click.option("--study", help="Study whose fits to use (default: the only one)."),
        click.option(
            "--sources", help="Comma-separated sources to consider (default: all fitted)."
        ),
        click.option(
            "--replay-fraction",
            type=float,
            default=0.0,
            show_default=True,
            help="Replay share trained alongside a source's tokens (adds training cost).",
        ),
        click.option(
            "--eval-cost", default=None, help="Evaluation cost of the final plan (e.g. 5gpuh)."
        ),
        click.option(
            "--max-extrapolation",
            "--trust-multiple",
            "max_extrapolation",
            type=float,
            default=None,
            help="The trust region: buy no source past this many times its largest measured "
            "budget (default: the project's trust_multiple setting, 10).",
        ),
        click.option(
            "--combination",
            type=click.Choice(["coverage", "additive"]),
            default="coverage",
            show_default=True,
            help="How single-source gains combine in the mixed anneal: coverage, "
            "H·(1 − Π(1 − g/H)) bounded by the metric's headroom H, or additive (the sum).",
        ),
        click.option(
            "--p-in-optimal-from",
            type=click.Choice(["laws", "difference"]),
            default="laws",
            show_default=True,
            help="P(in optimal plan) from the laws' bootstrap rows as solved, or from those "
            "rows recalibrated to the difference model's view of the runs' pairwise "
            "differences.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print JSON."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _rates(obj):
    return obj.settings.rates.as_rates()


def _budget(text: str):
    from planner.units import parse_quantity

    return parse_quantity(text)


def render_plan(plan, plan_id: str | None = None) -> str:
    """A plan for people, as plain text of at most 80 columns (long names aside): both
    predictions, the allocation, its KKT certificate, the confirmation anneal (how to run
    it, or its measured gain) and the trust region."""
    from planner.report import story
    from planner.report.story import gain_text, wrap
    from planner.units import format_quantity

    lines = [f"Plan for {format_quantity(plan.budget, plan.unit)} on {plan.metric}"]
    if not plan.success:
        lines += wrap(f"no plan: {plan.message}")
        return "\n".join(lines)
    for text in story.prediction_lines(plan):
        lines += wrap(text)
    if plan.message:
        lines += wrap(plan.message)
    lines.append(f"  {'source':<24}{'tokens':>12}{'cost':>16}{'gain':>10}{'P(in opt)':>11}")
    for a in plan.allocations:
        p = f"{a.p_in_optimal:.2f}" if math.isfinite(a.p_in_optimal) else "-"
        cap = " cap" if a.capped else ""
        lines.append(
            f"  {a.source:<24}{format_quantity(a.tokens, _tokens()):>12}"
            f"{format_quantity(a.cost, plan.unit):>16}{a.gain:>+10.4g}{p:>11}{cap}"
        )
    # the certificate is a table: indented, not wrapped
    lines += [f"  {row}" for row in story.certificate_lines(plan)]
    for text in [*story.confirmation_lines(plan, plan_id), *story.trust_lines(plan)]:
        lines += wrap(text)
    if bs := plan.best_single:
        lines += wrap(f"best single source: {bs.source} (predicted gain {gain_text(bs.gain)})")
    if pe := plan.point_estimate:
        lines += wrap(
            f"the laws read at a micro budget of {format_quantity(pe.micro_budget, plan.unit)}"
            f" pick {pe.choice}; following it loses {pe.gain_lost:.4g} of gain, predicted "
            "under the laws"
        )
    if u := plan.uncertainty:
        lines += wrap(
            f"over {u.samples} bootstrap fits: P(plan within 5% of optimal) "
            f"{u.p_plan_near_optimal:.2f}, P(beats best single) {u.p_beats_best_single:.2f}"
        )
    for m in plan.mixed_runs:
        if not m.skipped:
            lines += wrap(
                f"mixed run {m.source}: measured {gain_text(m.measured_gain)}, "
                f"predicted {gain_text(m.predicted_gain)}"
            )
    for n in plan.notes:
        lines += wrap(f"note: {n}")
    return "\n".join(lines)


def _tokens():
    from planner.units import Unit

    return Unit.TOKENS


@click.command("allocate")
@click.option("--budget", required=True, help="Budget: 2000gpuh, 1.5e21flop or $30k.")
@click.option(
    "--micro-fraction",
    type=float,
    default=0.05,
    show_default=True,
    help="Share of the budget a single micro-anneal would spend (point-estimate comparison).",
)
@click.option("--no-save", is_flag=True, help="Do not store the plan.")
@_common
@click.pass_obj
def allocate_cmd(obj, budget, micro_fraction, no_save, as_json, **common):
    """The cost-optimal tokens per source for a budget, with uncertainty."""
    from planner.allocate.session import solve_budget

    plan, plan_id, _ = solve_budget(
        obj.store,
        obj.registry,
        _rates(obj),
        _budget(budget),
        _options(common, obj),
        micro_fraction=micro_fraction,
        save=not no_save,
    )
    if as_json:
        body = jsonable(plan)
        body["plan_id"] = plan_id
        click.echo(json.dumps(body, indent=2))
    else:
        click.echo(render_plan(plan, plan_id))
        if plan_id:
            click.echo(f"  stored as {plan_id}")
            if plan.confirmation is not None:
                click.echo(f"  run its confirmation anneal: annealplan confirm {plan_id}")


def _options(common: dict, obj=None):
    """The shared options (``_common``) as the allocation room's ``ProblemOptions``; the
    trust multiple defaults to the project's setting."""
    from planner.allocate.session import ProblemOptions

    opts = {**common, "guards": tuple(common.get("guards", ()))}
    if opts.get("max_extrapolation") is None and obj is not None:
        opts["max_extrapolation"] = obj.settings.trust_multiple
    return ProblemOptions(**opts)


def _range_problem(obj, budget_from, budget_to, points, common: dict):
    """The budgets and the problem that ``frontier`` and ``crossovers`` both start from."""
    from planner.allocate.session import range_problem

    return range_problem(
        obj.store,
        obj.registry,
        _rates(obj),
        budget_from,
        budget_to,
        points,
        _options(common, obj),
    )


def _budget_range(smallest: str, points: int):
    """Options of the verbs that scan a range of budgets (``frontier``, ``crossovers``),
    plus the shared ones."""
    opts = [
        click.option(
            "--from", "budget_from", required=True, help=f"Smallest budget (e.g. {smallest})."
        ),
        click.option("--to", "budget_to", required=True, help="Largest budget (e.g. 10000gpuh)."),
        click.option("--points", type=int, default=points, show_default=True),
        _common,
        click.pass_obj,
    ]

    def wrap(f):
        for o in reversed(opts):
            f = o(f)
        return f

    return wrap


@click.command("frontier")
@_budget_range("10gpuh", points=12)
def frontier_cmd(obj, budget_from, budget_to, points, as_json, **common):
    """The optimal plan's gain (with interval) across a range of budgets."""
    from planner.allocate.frontier import frontier
    from planner.units import format_quantity

    unit, budgets, loaded = _range_problem(obj, budget_from, budget_to, points, common)
    rows = frontier(loaded.problem, budgets)
    if as_json:
        click.echo(
            json.dumps(
                jsonable({"unit": unit, "metric": loaded.problem.metric_label, "rows": rows}),
                indent=2,
            )
        )
        return
    names = loaded.problem.names
    click.echo(
        f"{'budget':>14}{'gain':>10}{'low':>10}{'high':>10}  best single   "
        + " ".join(f"{n[:10]:>10}" for n in names)
    )
    for r in rows:
        toks = " ".join(
            f"{format_quantity(r.tokens[n], _tokens()).replace(' tokens', ''):>10}" for n in names
        )
        click.echo(
            f"{format_quantity(r.budget, unit):>14}{r.gain:>+10.4g}{r.gain_low:>10.4g}"
            f"{r.gain_high:>10.4g}  {r.best_single!s:<13}{toks}"
        )


@click.command("crossovers")
@_budget_range("1gpuh", points=25)
def crossovers_cmd(obj, budget_from, budget_to, points, as_json, **common):
    """Budgets at which the best single source changes, with probabilities, and for every
    pair of sources P(a beats b) at the range's end (0.4–0.6: undecided, measure more).

    The budgets where the best source changes are the laws' (each source's whole-budget
    gain, costs included: what the allocation compares). Beside them, for every pair, the
    difference model's crossing over the computes the range buys: the share of its
    posterior draws of the pair's difference that change sign there, and where (shown when
    the study's runs support the model; JSON ``pair_crossings``). A crossing is a question
    about a difference, which the difference model estimates directly, keeping trends only
    as far as the runs' nested backtests show they persist.
    """
    from planner.allocate.beliefs import budget_beliefs
    from planner.allocate.frontier import crossovers
    from planner.allocate.pairwise_view import budget_pair_crossings
    from planner.units import format_quantity

    unit, budgets, loaded = _range_problem(obj, budget_from, budget_to, points, common)
    scan = crossovers(loaded.problem, budgets)
    end = float(max(budgets))
    beliefs = budget_beliefs(loaded.problem, end)
    pair_crossings = budget_pair_crossings(loaded.problem, budgets)
    if as_json:
        pairs = [
            {"a": b.a, "b": b.b, "p_a_beats_b": b.p, "undecided": b.undecided} for b in beliefs
        ]
        body = {"unit": unit, **scan.to_json(), "pairs_at": end, "pairs": pairs}
        body["pair_crossings"] = [c.to_json() for c in pair_crossings]
        click.echo(json.dumps(jsonable(body), indent=2))
        return
    if not scan.crossovers:
        click.echo(
            f"no crossover between {format_quantity(budgets[0], unit)} and "
            f"{format_quantity(budgets[-1], unit)}: the best single source is {scan.best[0]} throughout"
        )
    for c in scan.crossovers:
        p = f" (probability {c.probability:.2f})" if c.probability is not None else ""
        click.echo(f"at {format_quantity(c.budget, unit)}: {c.before} → {c.after}{p}")
    where = format_quantity(end, unit)
    for b in beliefs:
        click.echo(b.describe(where))
    for c in pair_crossings:
        at = "" if c.compute is None else f", at {c.compute:.3g} {c.unit}"
        click.echo(
            f"difference model: {c.a} and {c.b} cross between {c.low:.3g} and "
            f"{c.high:.3g} {c.unit} with P = {c.probability:.2f}{at}"
        )


COMMANDS = [allocate_cmd, frontier_cmd, crossovers_cmd]
