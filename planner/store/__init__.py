"""The planner's DuckDB store (the only package that imports duckdb)."""

from __future__ import annotations

from planner.store.db import ImportSummary, Store, open_store, plan_from_json
from planner.store.runs_table import RunsTable, read_runs_table

__all__ = ["ImportSummary", "RunsTable", "Store", "open_store", "plan_from_json", "read_runs_table"]
