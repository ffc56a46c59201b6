"""The runs table: the file format every import and backtest uses.

One row per (run, metric): required columns ``source, compute, metric, value``; optional
``study, params, tokens, seed, cost_curation, cost_training, compute_unit, run_id`` (the run's
cells) and ``n_items, chance`` (the metric's: the evaluation's size, and its value by chance).
Rows that share (study, source, compute, params, tokens, seed, run_id) are one run. ``compute`` is any
quantity that grows with cost; runs are compared only within one (study, metric).

A bad file raises one :class:`ImportDataError` naming the row and the column; nothing is
returned half-read. Columns outside the format (a notes column, a recipe description…) are
not read; the table lists them in ``ignored_columns`` so the commands can say so.
"""

from __future__ import annotations

import csv
import gc
import math
import operator
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
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
    "n_items",
    "chance",
)
COLUMNS = REQUIRED + OPTIONAL
#: the cells that belong to a metric row rather than to its run
METRIC_COLUMNS = ("metric", "value", "n_items", "chance")
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
                    n_items=m.n_items,
                    chance=m.chance,
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
    if suffix not in (".csv", ".tsv", ".txt", ".parquet", ".pq"):
        raise ImportDataError(
            f"{p}: unknown format {suffix or '(no extension)'}; use a .csv or .parquet runs table"
        )
    # A big table is millions of small objects that hold no cycles: the cyclic collector,
    # run again and again while they pile up, took more than half of the reading time.
    with _collector_paused():
        if suffix in (".parquet", ".pq"):
            header, rows = _read_parquet(p)
            numbers, where = None, "row"
        else:
            header, rows, numbers = _read_csv(p)
            where = "line"
        return parse_rows(header, rows, source_name=str(p), row_word=where, row_numbers=numbers)


@contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
    seen_cells: dict[str, _RunCells] = {}
    metrics: dict[tuple[str, str], Metric] = {}
    occurrences: dict[tuple[Any, ...], int] = {}
    # The rows of one run repeat its cells (one row per metric): each distinct set of
    # run cells is validated once, and each run's id hashed once, instead of per row.
    run_cells = operator.itemgetter(*(index[c] for c in _RUN_COLUMNS if c in index))
    parsed_runs: dict[Any, _RunCells] = {}
    run_ids: dict[tuple[Any, ...], str] = {}
    metric_at, value_at = index["metric"], index["value"]
    n_items_at, chance_at = index.get("n_items"), index.get("chance")
    if not rows:
        raise ImportDataError(f"{source_name}: the table has no rows")
    for offset, row in enumerate(rows):
        if len(row) != len(cols):
            raise ImportDataError(
                f"{_where(source_name, row_word, row_numbers, offset)}: {len(row)} cells for "
                f"{len(cols)} columns"
            )
        cells = parsed_runs.get(raw := run_cells(row))
        metric, value = _plain_metric(row[metric_at], row[value_at])
        if cells is None or metric is None:
            # the first row of these run cells, or an unusual metric cell: every cell is
            # checked in the columns' order, so the first error is the one reported
            ctx = _where(source_name, row_word, row_numbers, offset)
            cells, metric, value = _parse_row(row, index, ctx)
            parsed_runs[raw] = cells
        else:
            ctx = ""  # only an error below needs it
        key, explicit_id = cells.key, cells.run_id
        # The k-th row of the same run and metric is the k-th repeat: the same file imported
        # twice yields the same ids, so imports stay idempotent.
        nth = occurrences.get((*key, metric), 0)
        occurrences[(*key, metric)] = nth + 1
        if explicit_id and nth > 0:
            ctx = ctx or _where(source_name, row_word, row_numbers, offset)
            raise ImportDataError(
                f"{ctx}, column metric: run {explicit_id!r} already has a value for {metric!r}"
            )
        if explicit_id:
            run_id = explicit_id
        else:
            run_id = run_ids.get((key, nth))
            if run_id is None:
                run_id = run_ids[(key, nth)] = stable_id("run", *key, nth)
        previous = seen_cells.get(run_id)
        if previous is None:
            seen_cells[run_id] = cells
            runs[run_id] = cells.run(run_id)
        elif previous is not cells and previous != cells:
            ctx = ctx or _where(source_name, row_word, row_numbers, offset)
            if previous.key != cells.key:
                raise ImportDataError(
                    f"{ctx}, column run_id: run {run_id!r} is given another source, study, "
                    "compute, params, tokens or seed than on an earlier row; give each run "
                    "its own run_id"
                )
            if previous.costs != cells.costs:
                raise ImportDataError(
                    f"{ctx}: run {run_id!r} is given different costs on different rows; "
                    "give each run's cost_curation/cost_training once, consistently"
                )
            raise ImportDataError(f"{ctx}, column compute_unit: differs between rows of one run")
        n_items = chance = None
        if n_items_at is not None or chance_at is not None:
            n_items, chance = _metric_cells(
                row, n_items_at, chance_at, source_name, row_word, row_numbers, offset
            )
        metrics[(run_id, metric)] = Metric(
            run_id=run_id, name=metric, value=value, n_items=n_items, chance=chance
        )
    return RunsTable(
        runs=tuple(runs.values()),
        metrics=tuple(metrics.values()),
        compute_units={run_id: c.unit for run_id, c in seen_cells.items()},
        path=source_name,
        ignored_columns=unknown,
    )


#: the columns that describe a run: all but the metric's own
_RUN_COLUMNS = tuple(c for c in COLUMNS if c not in METRIC_COLUMNS)


def _metric_cells(
    row: Sequence[Any],
    n_items_at: int | None,
    chance_at: int | None,
    source_name: str,
    row_word: str,
    row_numbers: Sequence[int] | None,
    offset: int,
) -> tuple[float | None, float | None]:
    """A metric row's evaluation size (a count of items, at least 1) and chance level."""
    raw_n = _cell(row, n_items_at, "n_items")
    raw_c = _cell(row, chance_at, "chance")
    if raw_n is None and raw_c is None:
        return None, None
    ctx = _where(source_name, row_word, row_numbers, offset)
    n_items = _number(raw_n, ctx, "n_items", positive=True)
    if n_items is not None and n_items < 1:
        raise ImportDataError(
            f"{ctx}, column n_items: {raw_n!r} is not a count of evaluation items (>= 1)"
        )
    chance = _number(raw_c, ctx, "chance", signed=True)
    return n_items, chance


@dataclass(frozen=True, slots=True)
class _RunCells:
    """The validated run cells of a row: what every row of that run shares."""

    key: tuple[Any, ...]  # (study, source, compute, params, tokens, seed, run_id)
    costs: tuple[float | None, float | None]
    unit: str | None

    @property
    def run_id(self) -> str | None:
        return self.key[-1]

    def run(self, run_id: str) -> Run:
        study, source, compute, params, tokens, seed, _ = self.key
        return Run(
            run_id=run_id,
            source=source,
            compute=compute,
            study=study,
            params=params,
            tokens=tokens,
            seed=seed,
            cost_curation=self.costs[0],
            cost_training=self.costs[1],
            origin="import",
        )


def _where(source_name: str, row_word: str, numbers: Sequence[int] | None, offset: int) -> str:
    """Where a row is, as errors name it ("runs.csv line 7")."""
    line = numbers[offset] if numbers is not None else offset + 1
    return f"{source_name} {row_word} {line}"


def _plain_metric(metric: Any, value: Any) -> tuple[str | None, float]:
    """The metric name and value of a row whose two cells are plainly valid, else None
    (the row is then checked cell by cell, which names what is wrong)."""
    if not isinstance(metric, str) or "\x00" in metric:
        return None, math.nan
    name = metric.strip()
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None, math.nan
    if not name or not math.isfinite(x):
        return None, math.nan
    return name, x


def _cell(row: Sequence[Any], i: int | None, name: str) -> Any:
    """A cell's value, None when the column is absent or the cell is empty."""
    if i is None:
        return None
    v = row[i]
    if v is None or (isinstance(v, str) and v.strip() == ""):
        return None
    if isinstance(v, float) and math.isnan(v) and name != "value":
        return None
    return v


def _parse_row(
    row: Sequence[Any], index: Mapping[str, int], ctx: str
) -> tuple[_RunCells, str, float]:
    """Validate every cell of a row in the columns' order (the first error is reported)."""

    def cell(name: str) -> Any:
        return _cell(row, index.get(name), name)

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
    return _RunCells(key, (cost_c, cost_t), unit), metric, value


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
