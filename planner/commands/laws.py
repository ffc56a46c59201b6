"""``annealplan fit`` and ``annealplan predict``: scaling laws from the stored runs."""

from __future__ import annotations

import json
import math

import click

from planner.commands import decision_settings, jobs_option, proxy_options, table_console
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
@click.option(
    "--at",
    "at",
    type=float,
    default=None,
    help="Compare the sources at this compute (default: ten times each group's largest run).",
)
@proxy_options
@jobs_option
@click.option("--json", "as_json", is_flag=True, help="Print the fits as JSON.")
@click.pass_obj
def fit(obj, study, metric, family, method, n_boot, at, proxy, chance, jobs, as_json) -> None:
    """Fit laws of each metric against compute for every source, and save them.

    For every pair of sources the fits also say how likely one beats the other at a
    compute (from the group's joint bootstrap, with the uncertainty of which law is right
    and the runs' own noise); a pair between 0.4 and 0.6 is undecided: measure more
    (`annealplan next` targets those pairs).

    An accuracy with a proxy (--proxy, the project file's ``proxy``, or a task's
    ``prob_correct_norm`` from the executor) is also predicted in two steps: its proxy
    extrapolated, then mapped to the accuracy by a sigmoid with its floor at chance.
    """
    from planner.laws.session import describe_fit, fit_store

    if at is not None and not at > 0:
        raise FitError(f"--at must be a positive compute, got {at}.")
    # a bad --proxy or --chance is refused before anything is fitted
    directions = obj.store.metric_directions()
    metrics = sorted({m for _, m in obj.store.studies_metrics()})
    proxies, levels = decision_settings(obj, proxy, chance, metrics, directions)
    ids, fits = fit_store(
        obj.store,
        study=study,
        metric=metric,
        family=family,
        method=method,
        n_boot=n_boot,
        jobs=jobs,
    )
    beliefs = _beliefs(obj.store, fits, at)
    proxied = _proxied(obj.store, fits, at, proxies, levels, directions, n_boot)
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
                        **_beats(beliefs.get((f.study, f.metric)), f.source),
                        **_proxy_json(proxied.get((f.study, f.metric)), f.source),
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
    console = table_console()
    console.print(table)
    for (st, me), (where, pairs) in beliefs.items():
        if not pairs:
            continue
        console.print(f"{st}/{me}, measured at {where:.3g}:", markup=False, highlight=False)
        for b in pairs:
            console.print(f"  {b.describe(f'{where:.3g}')}", markup=False, highlight=False)
    for (st, me), view in proxied.items():
        if view is None:
            console.print(
                f"{st}/{me}: no two-step prediction through its proxy (too few shared runs, "
                "or not a share of items)",
                markup=False,
                highlight=False,
            )
            continue
        console.print(
            f"{st}/{me} through {view.proxy}, at {view.compute:.3g}:",
            markup=False,
            highlight=False,
        )
        for i, s in enumerate(view.sources):
            console.print(
                f"  {s}: {view.value[i]:.4g} (90% {view.low[i]:.4g}–{view.high[i]:.4g})",
                markup=False,
                highlight=False,
            )
        for b in view.beliefs:
            console.print(f"  {b.describe(f'{view.compute:.3g}')}", markup=False, highlight=False)


def _proxied(store, fits, at, proxies, levels, directions, n_boot) -> dict:
    """(study, metric) → its two-step prediction through its proxy (None when it cannot be
    made), for the fitted groups whose metric has a proxy."""
    from planner.domain import lower_is_better
    from planner.laws.session import proxy_view

    out = {}

    for st, me in sorted({(f.study, f.metric) for f in fits}):
        if me not in proxies:
            continue
        out[(st, me)] = proxy_view(
            store.observations(study=st, metric=me),
            store.observations(study=st, metric=proxies[me]),
            proxy=proxies[me],
            lower_is_better=lower_is_better(me, directions),
            proxy_lower_is_better=lower_is_better(proxies[me], directions),
            chance=levels.get(me),
            at=at,
            n_boot=max(n_boot, 20),
        )
    return out


def _proxy_json(view, source: str) -> dict:
    """A fit's JSON field for its two-step prediction through its proxy."""
    if view is None or source not in view.sources:
        return {}
    i = view.sources.index(source)
    beats = {}
    for b in view.beliefs:
        if b.a == source:
            beats[b.b] = b.p
        elif b.b == source:
            beats[b.a] = 1.0 - b.p
    return {
        "proxy": {
            "metric": view.proxy,
            "at": view.compute,
            "value": float(view.value[i]),
            "low": float(view.low[i]),
            "high": float(view.high[i]),
            "beats": beats,
        }
    }


def _beliefs(store, fits, at) -> dict:
    """(study, metric) → (compute, P(a beats b) per pair) for the groups just fitted."""
    from planner.laws.session import group_beliefs

    groups: dict[tuple[str, str], list] = {}
    for f in fits:
        groups.setdefault((f.study, f.metric), []).append(f)
    out = {}
    for (st, me), group in groups.items():
        try:
            out[(st, me)] = group_beliefs(group, store.observations(study=st, metric=me), at=at)
        except FitError:
            out[(st, me)] = (math.nan, [])
    return out


def _beats(entry, source: str) -> dict:
    """A fit's JSON fields for its pairs: where, and P(this source beats each other one)."""
    if not entry or not entry[1]:
        return {}
    where, pairs = entry
    beats = {}
    for b in pairs:
        if b.a == source:
            beats[b.b] = b.p
        elif b.b == source:
            beats[b.a] = 1.0 - b.p
    return {"beats_at": where, "beats": beats} if beats else {}


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
