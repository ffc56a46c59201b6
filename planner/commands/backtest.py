"""``annealplan backtest RUNS``: replay a runs table and score decisions against the truth."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path

import click

from planner.commands import decision_settings, jobs_option, proxy_options
from planner.commands.runs import direction_options, direction_overrides, warn_about_table


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


#: said in --help without importing the methods (the CLI starts without numpy)
METHOD_HELP = (
    "Prediction method: 'table' (the point estimate, the difference model and the joint "
    "laws, and a proxy's prediction where one is named, weighed by the table's own nested "
    "backtest), 'difference' (the difference model alone), 'joint' (averaged joint laws), "
    "'point-estimate', 'independent', or one of the joint laws' variants; an unknown name "
    "lists them all. Default: the project's default method."
)


@click.command("backtest")
@click.argument("runs_file", metavar="RUNS", type=click.Path(path_type=Path))
@click.option(
    "--fraction",
    type=float,
    default=0.1,
    show_default=True,
    help="Fit on runs with compute <= F·x_T, predict at x_T.",
)
@click.option("--metric", "metrics", multiple=True, help="Only this metric (repeatable).")
@click.option("--method", default=None, metavar="NAME", help=METHOD_HELP)
@proxy_options
@direction_options
@jobs_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def backtest(
    obj, runs_file, fraction, metrics, method, proxy, chance, lower, higher, jobs, as_json
) -> None:
    """Backtest a prediction method on a runs table (CSV or Parquet).

    Decision accuracy is pooled: pairs of sources ordered correctly at x_T over all pairs of
    all (study, metric) groups. A predicted tie (two sources predicted equal) is a coin
    flip and counts as half a pair, for the method and for the point estimate alike
    ('ties' counts them). ARE and interval coverage are over all (group, source) targets.
    A method's P(a beats b) is scored by the Brier score, the expected calibration error
    (10 bins), and the share and accuracy of its confident pairs (P >= 0.8 or <= 0.2); the
    point estimate's probability is Phi(d / sigma_d), its difference at x_PE over that
    difference's noise.
    """
    from planner.backtest import DEFAULT_METHOD, run_backtest
    from planner.store.runs_table import read_runs_table

    table = read_runs_table(runs_file)
    observations = table.observations()
    overrides = direction_overrides(lower, higher)
    warn_about_table(table, observations, overrides, metrics)
    proxies, levels = decision_settings(
        obj, proxy, chance, [o.metric for o in observations], overrides
    )
    # a bar on stderr when a person watches; stdout stays the result (and pure JSON)
    with (
        click.progressbar(length=1, label="groups", file=sys.stderr)
        if sys.stderr.isatty()
        else nullcontext()
    ) as bar:

        def progress(done: int, total: int) -> None:
            if bar is not None:
                bar.length = total
                bar.update(1)

        result = run_backtest(
            observations,
            fraction=fraction,
            method=method or DEFAULT_METHOD,
            metrics=list(metrics) or None,
            overrides=overrides,
            jobs=jobs,
            progress=progress,
            proxies=proxies,
            chance=levels,
        )
    d = result.as_dict()
    if as_json:
        click.echo(json.dumps(d))
        return
    click.echo(
        f"{runs_file}: method {d['method']}, F = {fraction}, {d['groups']} groups, "
        f"{d['pairs']} pairs, {d['targets']} targets"
    )
    click.echo(f"{'':28}{'method':>10}{'point est.':>12}")
    click.echo(
        f"{'decision accuracy':28}{_fmt(d['decision_accuracy']):>10}"
        f"{_fmt(d['point_estimate_decision_accuracy']):>12}"
    )
    click.echo(f"{'predicted ties (half each)':28}{d['ties']:>10}{d['point_estimate_ties']:>12}")
    click.echo(f"{'mean ARE':28}{_fmt(d['mean_are']):>10}{_fmt(d['point_estimate_mean_are']):>12}")
    click.echo(f"{'90% interval coverage':28}{_fmt(d['interval_coverage']):>10}{'-':>12}")
    for label, key in (
        ("Brier score of P(a beats b)", "brier"),
        ("calibration error (ECE)", "calibration_error"),
        ("confident pairs (P>=.8/<=.2)", "confident_share"),
        ("  of which right", "confident_accuracy"),
    ):
        click.echo(f"{label:28}{_fmt(d[key]):>10}{_fmt(d['point_estimate_' + key]):>12}")
    notes = d.get("notes") or {}
    if notes.get("weights"):
        weights = ", ".join(f"{k} {v:.2f}" for k, v in notes["weights"].items())
        click.echo(f"the table's weights: {weights}")
    click.echo("")
    click.echo(f"{'study':24} {'metric':30} {'pairs':>5} {'acc':>6} {'pe acc':>6} {'ARE':>6}  law")
    for g in d["per_group"]:
        click.echo(
            f"{g['study'][:24]:24} {g['metric'][:30]:30} {g['pairs']:>5} "
            f"{_fmt(g['decision_accuracy']):>6} {_fmt(g['point_estimate_decision_accuracy']):>6} "
            f"{_fmt(g['mean_are']):>6}  {g['law']}"
        )


COMMANDS = [backtest]
