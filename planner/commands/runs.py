"""``annealplan runs import/list/export``: the runs table in and out of the store."""

from __future__ import annotations

import json
from pathlib import Path

import click

from planner.commands import table_console
from planner.errors import ConfigError


def direction_overrides(lower: tuple[str, ...], higher: tuple[str, ...]) -> dict[str, bool]:
    """Merge --lower-is-better / --higher-is-better options (a metric may not be in both)."""
    both = set(lower) & set(higher)
    if both:
        raise ConfigError(
            f"metric(s) {', '.join(sorted(both))} given as both lower- and higher-is-better; pick one"
        )
    return {**dict.fromkeys(lower, True), **dict.fromkeys(higher, False)}


def warn_about_table(
    table, observations, overrides: dict[str, bool], metrics: tuple[str, ...] = ()
) -> None:
    """Say on stderr what a runs table's reader left unread, which rows repeat another
    exactly, and which metrics' data (the table's ``observations``) run against their
    direction; ``metrics``: only these. Stdout stays the command's result.

    Rows that repeat another cell for cell are read as repeat runs (a repeat measured twice
    can give the same value) and named here, for ``runs import`` and ``backtest`` alike.
    """
    from planner.laws.direction import direction_conflicts

    if table.ignored_columns:
        click.echo(table.ignored_note(), err=True)
    if table.duplicate_rows:
        click.echo(f"warning: {table.duplicates_note()}", err=True)
    observations = [o for o in observations if not metrics or o.metric in metrics]
    for conflict in direction_conflicts(observations, overrides):
        click.echo(f"warning: {conflict.message()}", err=True)


def direction_options(f):
    f = click.option(
        "--higher-is-better",
        "higher",
        multiple=True,
        metavar="METRIC",
        help="Treat METRIC as higher-is-better (overrides the name rule).",
    )(f)
    return click.option(
        "--lower-is-better",
        "lower",
        multiple=True,
        metavar="METRIC",
        help="Treat METRIC as lower-is-better (overrides the name rule: loss, ppl, bpb, error…).",
    )(f)


@click.group("runs")
def runs() -> None:
    """Import, list and export measured runs (the runs table)."""


@runs.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@direction_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def import_(obj, file: Path, lower, higher, as_json: bool) -> None:
    """Import a runs table (CSV or Parquet): columns source, compute, metric, value
    [study, params, tokens, seed, cost_curation, cost_training]. All or nothing; importing
    the same file twice changes nothing."""
    from planner.store import read_runs_table

    overrides = direction_overrides(lower, higher)
    table = read_runs_table(file)
    # a direction the user gave at an earlier import is remembered, and is their word too
    warn_about_table(table, table.observations(), {**obj.store.metric_directions(), **overrides})
    summary = obj.store.import_runs(table, directions=overrides)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "file": str(file),
                    "runs_added": summary.runs_added,
                    "metrics_added": summary.metrics_added,
                    "runs_unchanged": summary.runs_unchanged,
                }
            )
        )
    else:
        click.echo(
            f"{file}: {summary.runs_added} new runs, {summary.metrics_added} new metric values, "
            f"{summary.runs_unchanged} runs already in the store"
        )


@runs.command("list")
@click.option("--study", help="Only this study.")
@click.option("--source", help="Only this source.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_(obj, study: str | None, source: str | None, as_json: bool) -> None:
    """List runs with their number of metrics."""
    store = obj.store
    rows = store.runs(study=study, source=source)
    counts: dict[str, int] = {}
    for o in store.observations(study=study, source=source):
        counts[o.run_id] = counts.get(o.run_id, 0) + 1
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "run_id": r.run_id,
                        "study": r.study,
                        "source": r.source,
                        "compute": r.compute,
                        "tokens": r.tokens,
                        "params": r.params,
                        "seed": r.seed,
                        "origin": r.origin,
                        "metrics": counts.get(r.run_id, 0),
                    }
                    for r in rows
                ]
            )
        )
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} runs in {store.path.name}")
    for col in ("study", "source", "compute", "tokens", "seed", "metrics", "run id"):
        table.add_column(
            col, justify="right" if col in ("compute", "tokens", "metrics") else "left"
        )
    for r in rows:
        table.add_row(
            r.study,
            r.source,
            f"{r.compute:.4g}",
            f"{r.tokens:.4g}" if r.tokens else "",
            "" if r.seed is None else str(r.seed),
            str(counts.get(r.run_id, 0)),
            r.run_id,
        )
    table_console().print(table)


@runs.command("export")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "parquet"]), help="Default: from the suffix."
)
@click.pass_obj
def export(obj, file: Path, fmt: str | None) -> None:
    """Export every run and metric as a runs table (CSV or Parquet)."""
    n = obj.store.export_runs(file, fmt)
    click.echo(f"wrote {n} rows to {file}")


COMMANDS = [runs]
