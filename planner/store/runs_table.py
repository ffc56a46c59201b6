"""The runs table: the file format every import and backtest uses.

One row per (run, metric): required columns ``source, compute, metric, value``; optional
``study, params, tokens, seed, cost_curation, cost_training, compute_unit, run_id``. Rows that
share (study, source, compute, params, tokens, seed, run_id) are one run. ``compute`` is any
quantity that grows with cost; runs are compared only within one (study, metric).

A bad file raises one :class:`ImportDataError` naming the row and the column; nothing is
returned half-read. Columns outside the format (a notes column, a recipe description…) are
not read; the table lists them in ``ignored_columns`` so the commands can say so.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.domain import DEFAULT_STUDY, Metric, Observation, Run, stable_id
from planner.errors import ImportDataError

REQUIRED = ("source", "compute", "metric", "value")
OPTIONAL = (
    "study",
    "params",
    "tokens",
    "seed",
    "cost_curation",
    "cost_training",
    "compute_unit",
    "run_id",
)
COLUMNS = REQUIRED + OPTIONAL
COMPUTE_UNITS = ("flops", "gpu_hours", "usd", "tokens")


@dataclass(frozen=True, slots=True)
class RunsTable:
    """A validated runs table: runs, their metrics and where they came from."""

    runs: tuple[Run, ...]
    metrics: tuple[Metric, ...]
    compute_units: Mapping[str, str | None]
    path: str = ""
    #: columns of the file that are not runs-table columns, left unread
    ignored_columns: tuple[str, ...] = ()

    def ignored_note(self) -> str:
        """One line for stderr about the columns left unread ("" when there are none)."""
        if not self.ignored_columns:
            return ""
        return (
            f"{self.path}: ignoring column(s) {', '.join(self.ignored_columns)}, which a runs "
            f"table does not have (known: {', '.join(COLUMNS)}); rename one if it was meant"
        )

    def observations(self) -> list[Observation]:
        """Flatten into (study, metric, source, compute, value) observations."""
        by_id = {r.run_id: r for r in self.runs}
        out = []
        for m in self.metrics:
            r = by_id[m.run_id]
            out.append(
                Observation(
                    study=r.study,
                    metric=m.name,
                    source=r.source,
                    compute=r.compute,
                    value=m.value,
                    run_id=r.run_id,
                    seed=r.seed,
                )
            )
        return out


def read_runs_table(path: str | Path) -> RunsTable:
    """Read and validate a runs table from a CSV or Parquet file.

    Args:
        path: a ``.csv`` or ``.parquet`` file.

    Returns:
        The validated table.

    Raises:
        ImportDataError: the file is missing, of an unknown format, lacks a required column,
            names a column twice, or a cell is invalid (the message names row and column).
    """
    p = Path(path)
    if not p.exists():
        raise ImportDataError(
            f"{p} does not exist; give the path of a runs table (.csv or .parquet)"
        )
    suffix = p.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        header, rows, numbers = _read_csv(p)
        where = "line"
    elif suffix in (".parquet", ".pq"):
        header, rows = _read_parquet(p)
        numbers = list(range(1, len(rows) + 1))
        where = "row"
    else:
        raise ImportDataError(
            f"{p}: unknown format {suffix or '(no extension)'}; use a .csv or .parquet runs table"
        )
    return parse_rows(header, rows, source_name=str(p), row_word=where, row_numbers=numbers)


def parse_rows(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    source_name: str = "<rows>",
    row_word: str = "row",
    row_numbers: Sequence[int] | None = None,
) -> RunsTable:
    """Validate rows (as read from a file) into a :class:`RunsTable`."""
    cols = [str(h).strip() for h in header]
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise ImportDataError(
            f"{source_name}: missing required column(s) {', '.join(missing)}; "
            f"a runs table needs {', '.join(REQUIRED)} (optional: {', '.join(OPTIONAL)})"
        )
    unknown = tuple(c for c in cols if c not in COLUMNS)
    dupes = sorted({c for c in cols if c in COLUMNS and cols.count(c) > 1})
    if dupes:
        raise ImportDataError(f"{source_name}: column(s) {', '.join(dupes)} appear twice")
    index = {c: i for i, c in enumerate(cols)}

    runs: dict[str, Run] = {}
    units: dict[str, str | None] = {}
    metrics: dict[tuple[str, str], Metric] = {}
    occurrences: dict[tuple[Any, ...], int] = {}
    if not rows:
        raise ImportDataError(f"{source_name}: the table has no rows")
    for offset, row in enumerate(rows):
        line = row_numbers[offset] if row_numbers is not None else offset + 1
        if len(row) != len(cols):
            raise ImportDataError(
                f"{source_name} {row_word} {line}: {len(row)} cells for {len(cols)} columns"
            )

        def cell(name: str, *, _row: Sequence[Any] = row) -> Any:
            i = index.get(name)
            if i is None:
                return None
            v = _row[i]
            if v is None or (isinstance(v, str) and v.strip() == ""):
                return None
            if isinstance(v, float) and math.isnan(v) and name not in ("value",):
                return None
            return v

        ctx = f"{source_name} {row_word} {line}"
        source = _text(cell("source"), ctx, "source", required=True)
        metric = _text(cell("metric"), ctx, "metric", required=True)
        study = _text(cell("study"), ctx, "study") or DEFAULT_STUDY
        compute = _number(cell("compute"), ctx, "compute", required=True, positive=True)
        value = _number(cell("value"), ctx, "value", required=True, positive=False, signed=True)
        params = _number(cell("params"), ctx, "params", positive=True)
        tokens = _number(cell("tokens"), ctx, "tokens", positive=True)
        seed = _integer(cell("seed"), ctx, "seed")
        cost_c = _number(cell("cost_curation"), ctx, "cost_curation")
        cost_t = _number(cell("cost_training"), ctx, "cost_training")
        unit = _text(cell("compute_unit"), ctx, "compute_unit")
        if unit is not None and unit not in COMPUTE_UNITS:
            raise ImportDataError(
                f"{ctx}, column compute_unit: {unit!r} is not one of {', '.join(COMPUTE_UNITS)}"
            )
        explicit_id = _text(cell("run_id"), ctx, "run_id")
        key = (study, source, compute, params, tokens, seed, explicit_id)
        # The k-th row of the same run and metric is the k-th repeat: the same file imported
        # twice yields the same ids, so imports stay idempotent.
        nth = occurrences.get((*key, metric), 0)
        occurrences[(*key, metric)] = nth + 1
        run_id = explicit_id if explicit_id and nth == 0 else stable_id("run", *key, nth)
        if explicit_id and nth > 0:
            raise ImportDataError(
                f"{ctx}, column metric: run {explicit_id!r} already has a value for {metric!r}"
            )
        run = Run(
            run_id=run_id,
            source=source,
            compute=compute,
            study=study,
            params=params,
            tokens=tokens,
            seed=seed,
            cost_curation=cost_c,
            cost_training=cost_t,
            origin="import",
        )
        previous = runs.get(run_id)
        if previous is not None and previous != run:
            raise ImportDataError(
                f"{ctx}: run {run_id!r} is given different costs on different rows; "
                "give each run's cost_curation/cost_training once, consistently"
            )
        if run_id in units and units[run_id] != unit:
            raise ImportDataError(f"{ctx}, column compute_unit: differs between rows of one run")
        runs[run_id] = run
        units[run_id] = unit
        metrics[(run_id, metric)] = Metric(run_id=run_id, name=metric, value=value)
    return RunsTable(
        runs=tuple(runs.values()),
        metrics=tuple(metrics.values()),
        compute_units=units,
        path=source_name,
        ignored_columns=unknown,
    )


def _text(v: Any, ctx: str, col: str, *, required: bool = False) -> str | None:
    if v is None:
        if required:
            raise ImportDataError(f"{ctx}, column {col}: empty; every row needs a {col}")
        return None
    s = str(v).strip()
    if "\x00" in s:
        raise ImportDataError(f"{ctx}, column {col}: contains a NUL character")
    return s


def _number(
    v: Any,
    ctx: str,
    col: str,
    *,
    required: bool = False,
    positive: bool = False,
    signed: bool = False,
) -> float | None:
    if v is None:
        if required:
            raise ImportDataError(f"{ctx}, column {col}: empty; every row needs a {col}")
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ImportDataError(f"{ctx}, column {col}: {v!r} is not a number") from None
    if not math.isfinite(x):
        raise ImportDataError(f"{ctx}, column {col}: {v!r} is not a finite number")
    if positive and x <= 0:
        raise ImportDataError(f"{ctx}, column {col}: {v!r} must be greater than 0")
    if not positive and not signed and x < 0:
        raise ImportDataError(f"{ctx}, column {col}: {v!r} must not be negative")
    return x


def _integer(v: Any, ctx: str, col: str) -> int | None:
    if v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ImportDataError(f"{ctx}, column {col}: {v!r} is not an integer") from None
    if not math.isfinite(x) or x != int(x):
        raise ImportDataError(f"{ctx}, column {col}: {v!r} is not an integer")
    return int(x)


def _read_csv(p: Path) -> tuple[list[str], list[list[str]], list[int]]:
    rows: list[list[str]] = []
    numbers: list[int] = []
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:
            first_line = f.readline()
            f.seek(0)
            tabbed = p.suffix.lower() == ".tsv" or ("\t" in first_line and "," not in first_line)
            reader = csv.reader(f, csv.excel_tab if tabbed else csv.excel)
            header = next(reader, None)
            if header is None:
                raise ImportDataError(f"{p} is empty; a runs table needs a header row")
            start = reader.line_num + 1
            for row in reader:
                if any(c.strip() for c in row):  # blank lines are not rows
                    rows.append(row)
                    numbers.append(start)
                start = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise ImportDataError(f"{p} is not UTF-8 text ({e}); save it as UTF-8 CSV") from e
    except csv.Error as e:
        raise ImportDataError(f"{p}: not a valid CSV file ({e})") from e
    return header, rows, numbers


def _read_parquet(p: Path) -> tuple[list[str], list[tuple[Any, ...]]]:
    import duckdb

    try:
        con = duckdb.connect()
        try:
            rel = con.sql("SELECT * FROM read_parquet(?)", params=[str(p)])
            header = list(rel.columns)
            rows = rel.fetchall()
        finally:
            con.close()
    except duckdb.Error as e:
        raise ImportDataError(f"{p}: cannot read it as Parquet ({e})") from e
    return header, rows
