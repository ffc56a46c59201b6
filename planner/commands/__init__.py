"""The CLI's verbs, one module per group; :mod:`planner.cli` collects their ``COMMANDS``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rich.console import Console

#: the width a table gets when stdout is a file or a pipe: as wide as its cells
UNBOUNDED_WIDTH = 100_000


def table_console() -> Console:
    """The console a verb prints its table on.

    A terminal gets its own width (rich wraps cells to fit). A file or a pipe has no width,
    and rich's default of 80 columns cut study, metric and source names to a few letters
    there, losing what a script reads; it gets every cell whole.
    """
    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    return Console(width=UNBOUNDED_WIDTH)


#: ``--jobs`` of the verbs that fit many (study, metric) groups (fit, backtest)
jobs_option = click.option(
    "--jobs",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Worker processes for the groups; 0: one per core. The result does not depend on it.",
)


def proxy_options(f):
    """``--proxy`` and ``--chance`` (the verbs that fit accuracies: fit, backtest)."""
    f = click.option(
        "--chance",
        "chance",
        multiple=True,
        metavar="GLOB=LEVEL",
        help="Chance level of the metrics matching GLOB (e.g. 'arc_*=0.25'); wins over a "
        "runs table's chance column (repeatable).",
    )(f)
    return click.option(
        "--proxy",
        "proxy",
        multiple=True,
        metavar="ACC_GLOB=PROXY",
        help="Predict the accuracies matching ACC_GLOB (globs, comma-separated; '!glob' "
        "excludes) through the continuous metric PROXY: extrapolate it, then map it to the "
        "accuracy by a sigmoid with its floor at chance (repeatable; e.g. "
        "'*,!loss_*=loss_openlm_val'). A task's acc and its prob_correct_norm from the "
        "executor are paired without it.",
    )(f)


def decision_settings(obj, proxy, chance, metrics, overrides) -> tuple[dict, dict]:
    """The proxies and chance levels for ``metrics``: the flags, else the project file's.

    Returns:
        (metric → proxy metric, metric → chance level).

    Raises:
        FitError: a bad ``--proxy`` or ``--chance`` setting (one clear error).
    """
    from planner.laws.proxy import resolve_chance, resolve_proxies

    settings = obj.settings if obj is not None else None
    specs = list(proxy) or (list(settings.proxy) if settings is not None else [])
    levels = list(chance) or (dict(settings.chance) if settings is not None else {})
    known = sorted(set(metrics))
    return resolve_proxies(specs, known, overrides=overrides), resolve_chance(levels, known)
