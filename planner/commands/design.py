"""``annealplan design`` (the first sweep) and ``annealplan next`` (the most useful next run)."""

from __future__ import annotations

import json

import click

from planner.commands.allocate import jsonable


@click.command("design")
@click.option("--budget", required=True, help="Target budget of the final anneal (e.g. 2000gpuh).")
@click.option(
    "--fraction",
    type=float,
    default=0.05,
    show_default=True,
    help="Share of the budget the sweep may spend.",
)
@click.option("--sources", help="Comma-separated sources (default: every registered source).")
@click.option("--points", type=int, default=4, show_default=True, help="Token budgets per source.")
@click.option("--seeds", type=int, default=1, show_default=True, help="Repeats of every run.")
@click.option(
    "--repeat-top/--no-repeat-top",
    default=True,
    show_default=True,
    help="With --seeds 1, run each source's largest budget with a second seed too "
    "(the sweep's own measure of seed noise).",
)
@click.option(
    "--span",
    type=float,
    default=10.0,
    show_default=True,
    help="Largest/smallest tokens of the grid (at least 10).",
)
@click.option("--replay-fraction", type=float, default=0.7, show_default=True)
@click.option("--model-params", required=True, help="Annealing model size N (e.g. 135M).")
@click.option("--eval-cost", default=None, help="Evaluation cost of one run (e.g. 0.5gpuh).")
@click.option("--experiment", default=None, help="Experiment name (default: sweep-<budget>).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def design_cmd(
    obj,
    budget,
    fraction,
    sources,
    points,
    seeds,
    repeat_top,
    span,
    replay_fraction,
    model_params,
    eval_cost,
    experiment,
    as_json,
):
    """Propose a sweep: per-source token grid, control anneal, seeds, and its cost."""
    from planner.design.session import design_stored_sweep
    from planner.units import format_quantity

    rates = obj.settings.rates.as_rates()
    name, q, d = design_stored_sweep(
        obj.store,
        obj.registry,
        rates,
        budget=budget,
        model_params=model_params,
        sources=[s.strip() for s in sources.split(",") if s.strip()] if sources else None,
        fraction=fraction,
        points=points,
        seeds=seeds,
        span=span,
        replay_fraction=replay_fraction,
        eval_cost=eval_cost,
        experiment=experiment,
        repeat_top=repeat_top,
    )
    if as_json:
        click.echo(
            json.dumps(
                jsonable(
                    {
                        "experiment": name,
                        "cost": d.cost,
                        "unit": q.unit,
                        "grid_tokens": d.grid,
                        "runs": [{**jsonable(s), "cost": d.run_costs[s.job_id]} for s in d.specs],
                        "meta": d.meta,
                    }
                ),
                indent=2,
            )
        )
        return
    click.echo(
        f"experiment {name}: {len(d.specs)} runs costing {format_quantity(d.cost, q.unit)} "
        f"({d.cost / q.value:.1%} of {format_quantity(q.value, q.unit)})"
    )
    click.echo(f"{'job':<22}{'source':<20}{'tokens':>10}{'seed':>6}{'cost':>14}")
    for s in d.specs:
        click.echo(
            f"{s.job_id:<22}{s.run_source:<20}{s.tokens:>10.3g}{s.seed:>6}"
            f"{format_quantity(d.run_costs[s.job_id], q.unit):>14}"
        )


@click.command("next")
@click.option("--budget", default=None, help="Target budget (default: the last stored plan's).")
@click.option("--metric", help="Metric (default: the only fitted one).")
@click.option("--model-params", help="Annealing model size N (e.g. 135M).")
@click.option("--control", type=float, help="Control value when no control run is stored.")
@click.option("--study", help="Study (default: the only one).")
@click.option(
    "--replay-fraction",
    type=float,
    default=0.7,
    show_default=True,
    help="Replay share of the candidate runs (for their cost).",
)
@click.option(
    "--tolerance",
    type=float,
    default=0.05,
    show_default=True,
    help="A plan is wrong when it loses more than this share of the best gain.",
)
@click.option("--top", type=int, default=5, show_default=True)
@click.option(
    "--max-extrapolation",
    type=float,
    default=None,
    help="The trust region: each source capped at this multiple of its largest measured "
    "budget (default: the latest plan's, else the project's trust_multiple, 10).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def next_cmd(
    obj,
    budget,
    metric,
    model_params,
    control,
    study,
    replay_fraction,
    tolerance,
    top,
    max_extrapolation,
    as_json,
):
    """Recommend the next run by expected value of information per unit of cost.

    Pairs of sources whose P(a beats b) at the budget is between 0.4 and 0.6 are
    undecided: measure more. Where there are some, only runs of their sources are weighed.
    Sources the plan holds at their trust limit get a larger run that extends the trust
    region, listed beside them.
    """
    from planner.allocate.session import ProblemOptions
    from planner.design.session import recommend_runs
    from planner.errors import SolveError
    from planner.units import Quantity, format_quantity, parse_quantity

    plans = obj.store.plans(limit=1)
    latest = plans[0][1] if plans else None
    if budget:
        q = parse_quantity(budget)
    else:
        if latest is None:
            raise SolveError(
                "no target budget: pass --budget or run `annealplan allocate --budget …` first"
            )
        q = Quantity(latest.budget, latest.unit)
    if max_extrapolation is None and latest is not None:
        max_extrapolation = latest.trust_multiple or (
            latest.options.max_extrapolation if latest.options else None
        )
    if max_extrapolation is None:
        max_extrapolation = obj.settings.trust_multiple
    options = ProblemOptions(
        metric=metric,
        model_params=model_params,
        control=control,
        study=study,
        max_extrapolation=max_extrapolation,
    )
    found = recommend_runs(
        obj.store,
        obj.registry,
        obj.settings.rates.as_rates(),
        q,
        options,
        replay_fraction=replay_fraction,
        tol=tolerance,
        top=top,
        plan=latest,
    )
    state, recs, noise = found.state, found.recommendations, found.noise
    if as_json:
        click.echo(
            json.dumps(
                jsonable(
                    {
                        "budget": q.value,
                        "unit": q.unit,
                        "p_wrong_now": state.p_wrong,
                        "recommendations": [r.to_dict() for r in recs],
                        "noise": noise,
                        "pairs": [
                            {"a": b.a, "b": b.b, "p_a_beats_b": b.p, "undecided": b.undecided}
                            for b in found.beliefs
                        ],
                        "targeted_sources": list(found.targeted),
                        "trust_extensions": [e.to_dict() for e in found.extensions],
                    }
                ),
                indent=2,
            )
        )
        return
    click.echo(
        f"P(wrong allocation at {format_quantity(q.value, q.unit)}) now: {state.p_wrong:.2f}"
    )
    if state.p_wrong == 0:
        click.echo(
            "the decision is already settled by the fits; more runs are not expected to change it"
        )
    where = format_quantity(q.value, q.unit)
    for b in found.beliefs:
        click.echo(f"  {b.describe(where)}")
    if found.targeted:
        click.echo(f"runs of the undecided pairs' sources ({', '.join(found.targeted)}):")
    for r in recs:
        click.echo(
            f"  {r.source:<20}{r.tokens:>10.3g} tokens  cost {format_quantity(r.cost, q.unit):>12}  "
            f"P(wrong) after {r.p_wrong_after:.2f}"
        )
    if found.extensions:
        click.echo("sources the plan holds at their trust limit (a larger run lets it buy more):")
    for e in found.extensions:
        click.echo(
            f"  {e.source:<20}{e.tokens:>10.3g} tokens  cost {format_quantity(e.cost, q.unit):>12}  "
            f"{e.reason}"
        )


COMMANDS = [design_cmd, next_cmd]
