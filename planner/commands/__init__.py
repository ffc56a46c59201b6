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
