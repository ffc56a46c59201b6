"""``annealplan confirm PLAN`` and ``annealplan plans``: run a plan's mixed anneal and set
its measured gain beside the predictions; list the stored plans.

With no executor registered, ``confirm`` starts the embedded local daemon on 127.0.0.1 for
its duration, as ``sweep run`` does; a finished confirmation is reused, not run again.
"""

from __future__ import annotations

import json
import math
from typing import Any

import click


def _signed(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:+.4g}"


def _interval(low: float | None, high: float | None) -> str:
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f"  (90% interval {low:+.4g} to {high:+.4g})"


def render_confirmation(plan_id: str, plan: Any) -> str:
    """A confirmed plan's measured gain beside both predictions, for people."""
    from planner.units import Unit, format_quantity

    conf = plan.confirmation
    rule = plan.combination.rule if plan.combination is not None else "combined"
    lines = [
        f"{plan_id}: one anneal of {conf.source} "
        f"({format_quantity(conf.tokens, Unit.TOKENS)} of its sources; run {conf.run_id})",
        f"  measured gain over control  {_signed(conf.measured_gain)}   on {plan.metric}",
        f"  predicted ({rule} rule)".ljust(30)
        + f"{_signed(conf.predicted_gain)}{_interval(conf.predicted_low, conf.predicted_high)}",
    ]
    if conf.additive_gain is not None:
        lines.append(
            "  predicted if gains added".ljust(30)
            + f"{_signed(conf.additive_gain)}{_interval(conf.additive_low, conf.additive_high)}"
        )
    low, high = conf.predicted_low, conf.predicted_high
    if conf.measured_gain is not None and low is not None and high is not None:
        inside = low <= conf.measured_gain <= high
        lines.append(
            "  the measured gain is "
            + ("inside" if inside else "outside")
            + " the predicted interval"
        )
    return "\n".join(lines)


@click.command("confirm")
@click.argument("plan_id", metavar="PLAN")
@click.option("--executor", help="Run on this registered executor only ('local': embedded).")
@click.option("--poll", type=float, default=2.0, show_default=True, help="Seconds between polls.")
@click.option("--json", "as_json", is_flag=True, help="Print the confirmation as JSON.")
@click.pass_obj
def confirm(obj, plan_id: str, executor: str | None, poll: float, as_json: bool) -> None:
    """Run PLAN's confirmation anneal (a plan id, or 'latest') and store its measured gain.

    The anneal trains on the plan's mix, scaled down, with the sweep's base model, replay,
    training and evaluation; its gain over the control is set beside the predictions.
    """
    from planner.commands.allocate import jsonable
    from planner.dispatch.confirm import confirm_plan

    last: dict[str, str] = {}

    def on_update(record) -> None:
        if not as_json and last.get(record.job_id) != record.state.value:
            last[record.job_id] = record.state.value
            click.echo(f"  {record.job_id} {record.state.value}", err=True)

    store = obj.store
    pid, _ = store.plan(plan_id)
    conf = confirm_plan(
        store,
        obj.registry,
        obj.settings.project_dir,
        pid,
        executor=executor,
        on_update=on_update,
        poll_s=poll,
    )
    _, plan = store.plan(pid)
    if as_json:
        click.echo(json.dumps({"plan_id": pid, "confirmation": jsonable(conf)}, indent=2))
    else:
        click.echo(render_confirmation(pid, plan))


@click.command("plans")
@click.option("--limit", type=int, default=20, show_default=True, help="Newest plans shown.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def plans(obj, limit: int, as_json: bool) -> None:
    """The stored plans, newest first, with their confirmation's state."""
    from planner.units import format_quantity

    stored = obj.store.plans(limit=limit)
    if as_json:
        rows = [
            {
                "plan_id": pid,
                "budget": p.budget,
                "unit": p.unit.value,
                "metric": p.metric,
                "gain": p.gain if math.isfinite(p.gain) else None,
                "confirmation": None
                if p.confirmation is None
                else {
                    "source": p.confirmation.source,
                    "predicted_gain": p.confirmation.predicted_gain,
                    "measured_gain": p.confirmation.measured_gain,
                    "run_id": p.confirmation.run_id,
                },
            }
            for pid, p in stored
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    if not stored:
        click.echo("no plans yet; make one with `annealplan allocate --budget BUDGET`")
        return
    for pid, p in stored:
        conf = p.confirmation
        if conf is None:
            state = "nothing to confirm"
        elif conf.measured_gain is None:
            state = f"confirm with {conf.source} (not run)"
        else:
            state = f"confirmed: measured {_signed(conf.measured_gain)}"
        click.echo(
            f"{pid}  {format_quantity(p.budget, p.unit):>14}  {p.metric}  "
            f"gain {_signed(p.gain)}  {state}"
        )


COMMANDS = [confirm, plans]
