"""``annealplan report``: Markdown + HTML with PNG plots."""

from __future__ import annotations

from pathlib import Path

import click


def make_report(
    obj,
    *,
    out: Path,
    budget: str | None,
    metric: str | None,
    model_params: str | None,
    title: str,
    max_extrapolation: float | None = None,
    companions: tuple[str, ...] = (),
):
    """Plan (or reuse the newest plan) and write the report; shared with ``demo``.
    ``companions`` are more metrics shown beside the decision metric."""
    import numpy as np

    from planner.allocate.beliefs import budget_beliefs
    from planner.allocate.frontier import frontier
    from planner.allocate.session import ProblemOptions, load_for, options_of, plan_for
    from planner.report import build_report
    from planner.units import convert, parse_quantity

    store = obj.store
    rates = obj.settings.rates.as_rates()
    if max_extrapolation is None:
        max_extrapolation = obj.settings.trust_multiple
    asked = ProblemOptions(
        metric=metric, model_params=model_params, max_extrapolation=max_extrapolation
    )
    plans = store.plans()
    plan = None
    plan_id = None
    if budget is None:
        if not plans:
            from planner.errors import SolveError

            raise SolveError("no plan stored yet: pass --budget (e.g. --budget 2000gpuh)")
        plan_id, plan = plans[0]
        q_unit, q_value = plan.unit, plan.budget
        # Rebuild the problem the stored plan was solved with (its cap, guards…).
        options = options_of(
            plan,
            metric=metric or plan.metric,
            model_params=model_params,
            max_extrapolation=max_extrapolation,
        )
    else:
        q = parse_quantity(budget)
        q_unit, q_value = q.unit, q.value
        options = asked
    loaded = load_for(store, obj.registry, rates, q_unit, options)
    if plan is None:
        plan = plan_for(loaded, q_value, options=options)
        plan_id = store.save_plan(plan, loaded.problem.fit_ids)
    budgets = np.geomspace(q_value / 100.0, q_value * 3.0, 40)
    rows = frontier(loaded.problem, budgets)
    units = {u for u in store.compute_units().values() if u}
    budget_compute = None  # unknown or token compute: no budget line on the laws plot
    if len(units) == 1:
        from planner.units import Unit

        u = Unit(units.pop())
        if u is not Unit.TOKENS:
            budget_compute = convert(q_value, q_unit, u, rates)
    return build_report(
        store,
        out,
        metric=plan.metric,
        plan=plan,
        budget_compute=budget_compute,
        frontier_rows=rows,
        title=title,
        # P(a beats b) with the whole budget on each: the ranking at the target, with ties
        beliefs=budget_beliefs(loaded.problem, q_value),
        plan_id=plan_id,
        companions=companions,
    )


@click.command("report")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("report"),
    show_default=True,
)
@click.option("--budget", help="Plan for this budget first (default: the newest stored plan).")
@click.option("--metric", help="Decision metric (default: the plan's).")
@click.option("--model-params", help="Annealing model size N for training cost (e.g. 135M).")
@click.option("--title", default="annealplan report", show_default=True)
@click.option(
    "--max-extrapolation", type=float, help="Cap each source at this multiple of its largest run."
)
@click.pass_obj
def report_cmd(obj, out: Path, budget, metric, model_params, title, max_extrapolation) -> None:
    """Write report.md, report.html and PNG plots: laws with interval bands, crossovers,
    the allocation frontier, the point-estimate decision, reproducibility facts."""
    files = make_report(
        obj, out=out, budget=budget, metric=metric, model_params=model_params, title=title
    )
    click.echo(f"wrote {files.markdown} and {files.html} ({len(files.images)} plots)")


COMMANDS = [report_cmd]
