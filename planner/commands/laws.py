"""``annealplan fit`` and ``annealplan predict``: scaling laws from the stored runs."""

from __future__ import annotations

import json
import math

import click

from planner.commands import jobs_option, table_console
from planner.errors import FitError


def _num(v: float) -> float | None:
    return v if isinstance(v, int | float) and math.isfinite(v) else None


@click.command("fit")
@click.option("--study", help="Only this study.")
@click.option("--metric", help="Only this metric.")
@click.option(
    "--family",
    default="auto",
    show_default=True,
    help="Law family (power, exppower, loglinear, logistic…) or 'auto' (the default average).",
)
@click.option(
    "--method",
    type=click.Choice(["joint", "independent"]),
    default="joint",
    show_default=True,
    help="Share shape parameters across sources (joint) or fit each source alone.",
)
@click.option(
    "--bootstrap", "n_boot", type=click.IntRange(0, 100_000), default=1000, show_default=True
)
@jobs_option
@click.option("--json", "as_json", is_flag=True, help="Print the fits as JSON.")
@click.pass_obj
def fit(obj, study, metric, family, method, n_boot, jobs, as_json) -> None:
    """Fit laws of each metric against compute for every source, and save them."""
    from planner.laws.session import describe_fit, fit_store

    ids, fits = fit_store(
        obj.store,
        study=study,
        metric=metric,
        family=family,
        method=method,
        n_boot=n_boot,
        jobs=jobs,
    )
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "fit_id": i,
                        "study": f.study,
                        "metric": f.metric,
                        "source": f.source,
                        "family": f.family,
                        "law": f.law,
                        "method": f.method,
                        "params": f.params,
                        "success": f.success,
                        "message": f.message,
                        "n_points": f.n_points,
                        "extrapolation_error": _num(f.llo_error),
                        "bootstrap": 0 if f.boot is None else len(f.boot),
                    }
                    for i, f in zip(ids, fits, strict=True)
                ],
                default=float,
            )
        )
        return
    from rich.table import Table

    table = Table(title=f"{len(fits)} fits saved")
    for col in ("study", "metric", "source", "law", "params", "ok", "LLO err"):
        table.add_column(col)
    for f in fits:
        law, params = describe_fit(f, lambda v: f"{v:.4g}")
        llo = f.llo_error
        table.add_row(
            f.study,
            f.metric,
            f.source,
            law,
            params,
            "yes" if f.success else f"no: {f.message}",
            f"{llo:.3f}" if isinstance(llo, float) and math.isfinite(llo) else "-",
        )
    table_console().print(table)


@click.command("predict")
@click.option("--source", required=True, help="The source to predict for.")
@click.option("--compute", required=True, type=float, help="Compute, in the runs' unit.")
@click.option("--metric", help="The metric (needed when several were fitted).")
@click.option("--study", help="The study (needed when several were fitted).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def predict(obj, source, compute, metric, study, as_json) -> None:
    """Predict a metric for a source at a compute, with a 90% prediction interval."""
    from planner.laws.predict import DEFAULT_LEVEL, predict_interval

    if not compute > 0:
        raise FitError(f"--compute must be positive, got {compute}.")
    found = obj.store.fits(study=study, metric=metric, source=source)
    if not found:
        known = sorted({f.source for _, f in obj.store.fits(study=study, metric=metric)})
        hint = f" Fitted sources: {', '.join(known)}." if known else " Run `annealplan fit` first."
        raise FitError(f"No fit for source {source!r}.{hint}")
    if len(found) > 1:
        pairs = ", ".join(sorted({f"{f.study}/{f.metric}" for _, f in found})[:10])
        raise FitError(f"Several fits match ({pairs}…); give --study and --metric.")
    fit_id, f = found[0]
    point, low, high = predict_interval(f, [compute], DEFAULT_LEVEL)
    out = {
        "fit_id": fit_id,
        "study": f.study,
        "metric": f.metric,
        "source": f.source,
        "compute": compute,
        "value": float(point[0]),
        "low": _num(float(low[0])),
        "high": _num(float(high[0])),
        "level": DEFAULT_LEVEL,
        "extrapolation": compute / f.x_max if math.isfinite(f.x_max) else None,
    }
    if as_json:
        click.echo(json.dumps(out))
        return
    interval = (
        f"[{out['low']:.4g}, {out['high']:.4g}]" if out["low"] is not None else "(no interval)"
    )
    click.echo(
        f"{f.study}/{f.metric} {f.source} at {compute:.4g}: {out['value']:.4g} "
        f"90% {interval} ({out['extrapolation']:.2g}x the largest fitted compute)"
    )


COMMANDS = [fit, predict]
