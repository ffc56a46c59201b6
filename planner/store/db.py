"""The planner's DuckDB store: the only module family that imports duckdb.

One file per project (default ``./annealplan.duckdb``). The planner is its only writer.
Every ingest is one transaction and idempotent; threads use :meth:`Store.cursor`.

:class:`Store` is the one handle the rest of the planner uses; each table's reads and its
one writer live in a module of their own (``runs``, ``sources``, ``experiments``, ``fits``,
``plans``), on the plumbing of ``base`` (transactions, rows by column name, the bulk
writer, duckdb's errors as :class:`StoreError`).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from planner.errors import StoreError
from planner.store.codec import _unpack as _unpack  # importable from here, as before the split
from planner.store.experiments import ExperimentStore
from planner.store.fits import FitStore
from planner.store.plans import PlanStore, plan_from_json
from planner.store.runs import ImportSummary, RunStore
from planner.store.sources import SourceStore

__all__ = ["ImportSummary", "Store", "open_store", "plan_from_json"]


class Store(RunStore, SourceStore, ExperimentStore, FitStore, PlanStore):
    """Access to one DuckDB file. Not thread-safe: give each thread ``store.cursor()``."""


def open_store(path: str | Path, *, read_only: bool = False) -> Store:
    """Open (and migrate) the DuckDB file at ``path``.

    Raises:
        StoreError: the file cannot be opened (locked by another process, not a DuckDB
            file, a folder that does not exist…).
    """
    p = Path(path)
    if not read_only and not p.parent.exists():
        raise StoreError(f"folder {p.parent} does not exist; create it or pass another --db")
    try:
        con = duckdb.connect(str(p), read_only=read_only)
        # DuckDB draws a progress bar for a slow query straight onto the terminal: it would
        # scribble over the TUI and over a verb's output (its cursors share the setting)
        con.execute("SET enable_progress_bar = false")
    except duckdb.Error as e:
        raise StoreError(
            f"cannot open the store {p}: {e}. If another annealplan process holds it, "
            "stop that one first (the planner is the file's only writer)."
        ) from e
    store = Store(con, p)
    if not read_only:
        store.migrate()
    return store
