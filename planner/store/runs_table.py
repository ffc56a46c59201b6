"""The runs table: the file format every import and backtest uses.

One row per (run, metric): required columns ``source, compute, metric, value``; optional
``study, params, tokens, seed, cost_curation, cost_training, compute_unit, run_id`` (the run's
cells) and ``n_items, chance`` (the metric's: the evaluation's size, and its value by chance).
Rows that share (study, source, compute, params, tokens, seed, run_id) are one run. ``compute`` is any
quantity that grows with cost; runs are compared only within one (study, metric).

A bad file raises one :class:`ImportDataError` naming the row and the column; nothing is
returned half-read. Columns outside the format (a notes column, a recipe description…) are
not read; the table lists them in ``ignored_columns`` so the commands can say so, as it
lists in ``duplicate_rows`` the rows that repeat an earlier row cell for cell (they are read
as repeat runs). A text cell of a CSV file loses the ``'`` that an export puts before a
formula-like cell (:func:`quoted_in_csv`).
"""

from __future__ import annotations

import csv
import gc
import math
import operator
import re
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

#: the start of a text cell a spreadsheet runs as a formula: ``=``, ``+``, ``-``, ``@``, a tab
#: or a carriage return (the OWASP rule against CSV injection), after any ``'`` before it
FORMULA_START = r"'*[=+\-@\t\r]"
#: a whole cell that is a plain number ("-1.5", "+2e3"), which spreadsheets read as a number
PLAIN_NUMBER = r"'*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?"
_FORMULA_START = re.compile(FORMULA_START)
_PLAIN_NUMBER = re.compile(PLAIN_NUMBER)


def quoted_in_csv(cell: str) -> bool:
    """Whether a CSV export of the runs table puts a ``'`` before this text cell: it starts
    like a formula and is not a plain number. The ``'`` already there before such a start
    counts in, so that reading the file back (:func:`unquoted`) restores every cell."""
    return _FORMULA_START.match(cell) is not None and _PLAIN_NUMBER.fullmatch(cell) is None


def unquoted(cell: str) -> str:
    """A text cell of a CSV runs table as it was before an export quoted it."""
    if cell.startswith("'") and quoted_in_csv(cell[1:]):
        return cell[1:]
    return cell


@dataclass(frozen=True, slots=True)
class RunsTable:
    """A validated runs table: runs, their metrics and where they came from."""

    runs: tuple[Run, ...]
    metrics: tuple[Metric, ...]
    compute_units: Mapping[str, str | None]
    path: str = ""
    #: columns of the file that are not runs-table columns, left unread
    ignored_columns: tuple[str, ...] = ()
    #: rows that repeat an earlier row cell for cell: (where it is, where the earlier one is)
    duplicate_rows: tuple[tuple[str, str], ...] = ()

    def ignored_note(self) -> str:
        """One line for stderr about the columns left unread ("" when there are none)."""
        if not self.ignored_columns:
            return ""
        return (
            f"{self.path}: ignoring column(s) {', '.join(self.ignored_columns)}, which a runs "
            f"table does not have (known: {', '.join(COLUMNS)}); rename one if it was meant"
        )

    def duplicates_note(self, most: int = 5) -> str:
        """One line for stderr about rows that repeat an earlier row exactly ("" when none).

        Such a row is read as one more repeat run of its source, compute and metric, as a
        real repeat is; it is also what a row copied twice looks like, so it is named.
        """
        if not self.duplicate_rows:
            return ""
        shown = ", ".join(f"{row} (= {first})" for row, first in self.duplicate_rows[:most])
        more = len(self.duplicate_rows) - most
        return (
            f"{self.path}: {len(self.duplicate_rows)} row(s) repeat an earlier row cell for "
            f"cell: {shown}{f' and {more} more' if more > 0 else ''}; each is read as one more "
            "repeat run of its source, compute and metric. Delete the copies if rows were "
            "written twice; tell real repeats apart by a seed (or run_id) column"
        )

    def observations(self) -> list[Observation]:
        """Flatten into (study, metric, source, compute, value) observations."""
        by_id = {r.run_id: r for r in self.runs}
        with _collector_paused():  # as when reading: many small objects that hold no cycles
            return [
                Observation(
                    study=(r := by_id[m.run_id]).study,
                    metric=m.name,
                    source=r.source,
                    compute=r.compute,
                    value=m.value,
                    run_id=r.run_id,
                    seed=r.seed,
                    n_items=m.n_items,
                    chance=m.chance,
                )
                for m in self.metrics
            ]


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
            numbers, where, quoted = None, "row", False
        else:
            header, rows, numbers = _read_csv(p)
            where, quoted = "line", True  # a CSV export quotes formula-like cells
        return parse_rows(
            header,
            rows,
            source_name=str(p),
            row_word=where,
            row_numbers=numbers,
            quoted=quoted,
        )


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
    quoted: bool = False,
) -> RunsTable:
    """Validate rows (as read from a file) into a :class:`RunsTable`; ``quoted``: the rows
    come from a CSV file, whose formula-like text cells an export quoted (:func:`unquoted`)."""
    cols, unknown = _check_header(header, source_name)
    if not rows:
        raise ImportDataError(f"{source_name}: the table has no rows")
    reader = _RowReader(cols, source_name, row_word, row_numbers, quoted)
    reader.read(rows)
    return reader.table(ignored_columns=unknown)


def _check_header(header: Sequence[str], source_name: str) -> tuple[list[str], tuple[str, ...]]:
    """The header's column names, and those outside the format; raises when a required
    column is missing or a known one appears twice."""
    cols = [str(h).strip() for h in header]
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise ImportDataError(
            f"{source_name}: missing required column(s) {', '.join(missing)}; "
            f"a runs table needs {', '.join(REQUIRED)} (optional: {', '.join(OPTIONAL)})"
            + _delimiter_hint(cols)
        )
    unknown = tuple(c for c in cols if c not in COLUMNS)
    dupes = sorted({c for c in cols if c in COLUMNS and cols.count(c) > 1})
    if dupes:
        raise ImportDataError(f"{source_name}: column(s) {', '.join(dupes)} appear twice")
    return cols, unknown


def _delimiter_hint(cols: Sequence[str]) -> str:
    """Why the header may lack the columns: a file separated by semicolons (as spreadsheets
    write CSV where the decimal mark is a comma) reads as one column holding them all."""
    if not any(";" in c for c in cols):
        return ""
    return (
        ". The header holds ';': the file looks separated by semicolons, and a runs table is "
        "separated by commas (or by tabs, in a .tsv file); save it again as comma-separated "
        "CSV, with '.' as the decimal mark"
    )


class _RowReader:
    """Reads rows one by one into runs and metric values, checking each against the rows
    before it (the same run's cells, its repeats, one value per run and metric)."""

    def __init__(
        self,
        cols: Sequence[str],
        source_name: str,
        row_word: str,
        row_numbers: Sequence[int] | None,
        quoted: bool,
    ) -> None:
        self.index = {c: i for i, c in enumerate(cols)}
        self.quoted = quoted
        self.width = len(cols)
        self.source_name, self.row_word, self.row_numbers = source_name, row_word, row_numbers
        self.runs: dict[str, Run] = {}
        self.seen_cells: dict[str, _RunCells] = {}
        self.metrics: dict[tuple[str, str], Metric] = {}
        # (run cells, metric) -> the offset of its first row, or of each of its rows once
        # it repeats: the k-th is the k-th repeat, and a repeat is compared with the others
        self.occurrences: dict[tuple[Any, ...], int | list[int]] = {}
        self.duplicates: list[tuple[int, int]] = []
        self.rows: Sequence[Sequence[Any]] = ()
        # The rows of one run repeat its cells (one row per metric): each distinct set of
        # run cells is validated once, and each run's id hashed once, instead of per row.
        self.run_cells = operator.itemgetter(
            *(self.index[c] for c in _RUN_COLUMNS if c in self.index)
        )
        self.parsed_runs: dict[Any, _RunCells] = {}
        self.run_ids: dict[tuple[Any, ...], str] = {}
        self.metric_at, self.value_at = self.index["metric"], self.index["value"]
        self.n_items_at, self.chance_at = self.index.get("n_items"), self.index.get("chance")

    def where(self, offset: int) -> str:
        """Where a row is, as errors name it ("runs.csv line 7")."""
        return _where(self.source_name, self.row_word, self.row_numbers, offset)

    def read(self, rows: Sequence[Sequence[Any]]) -> None:
        """Read every row; raises :class:`ImportDataError` naming the first wrong one.

        The loop runs once per row of tables with millions: it keeps its lookups in locals.
        """
        self.rows = rows
        width, run_cells = self.width, self.run_cells
        metric_at, value_at = self.metric_at, self.value_at
        parsed_runs, seen_cells, metrics = self.parsed_runs, self.seen_cells, self.metrics
        n_items_at, chance_at = self.n_items_at, self.chance_at
        noise_cells = n_items_at is not None or chance_at is not None
        for offset, row in enumerate(rows):
            if len(row) != width:
                raise ImportDataError(f"{self.where(offset)}: {len(row)} cells for {width} columns")
            cells = parsed_runs.get(raw := run_cells(row))
            metric, value = _plain_metric(row[metric_at], row[value_at])
            if cells is None or metric is None:
                # the first row of these run cells, or an unusual metric cell: every cell is
                # checked in the columns' order, so the first error is the one reported
                cells, metric, value = _parse_row(row, self.index, self.where(offset), self.quoted)
                parsed_runs[raw] = cells
            run_id = self.run_id(cells, metric, offset)
            previous = seen_cells.get(run_id)
            if previous is None:
                seen_cells[run_id] = cells
                self.runs[run_id] = cells.run(run_id)
            elif previous is not cells and previous != cells:
                _refuse_other_cells(previous, cells, run_id, self.where(offset))
            n_items = chance = None
            if noise_cells:
                n_items, chance = _metric_cells(row, n_items_at, chance_at, self.where(offset))
            metrics[(run_id, metric)] = Metric(
                run_id=run_id, name=metric, value=value, n_items=n_items, chance=chance
            )

    def run_id(self, cells: _RunCells, metric: str, offset: int) -> str:
        """The row's run: its explicit run_id, else the hash of its run cells and of which
        repeat of them it is."""
        key, explicit_id = cells.key, cells.run_id
        # The k-th row of the same run and metric is the k-th repeat: the same file imported
        # twice yields the same ids, so imports stay idempotent.
        nth = self.repeat(offset, (*key, metric))
        if explicit_id:
            if nth > 0:
                raise ImportDataError(
                    f"{self.where(offset)}, column metric: run {explicit_id!r} already has a "
                    f"value for {metric!r}"
                )
            return explicit_id
        run_id = self.run_ids.get((key, nth))
        if run_id is None:
            run_id = self.run_ids[(key, nth)] = stable_id("run", *key, nth)
        return run_id

    def repeat(self, offset: int, run_metric: tuple[Any, ...]) -> int:
        """Which repeat of its run cells and metric the row at ``offset`` is (0: the first);
        a repeat equal to an earlier row, cell for cell, is noted as a duplicate."""
        earlier = self.occurrences.get(run_metric)
        if earlier is None:
            self.occurrences[run_metric] = offset
            return 0
        if isinstance(earlier, int):
            earlier = self.occurrences[run_metric] = [earlier]
        row = self.rows[offset]
        same = next((o for o in earlier if self.rows[o] == row), None)
        if same is not None:
            self.duplicates.append((offset, same))
        earlier.append(offset)
        return len(earlier) - 1

    def table(self, *, ignored_columns: tuple[str, ...]) -> RunsTable:
        def label(offset: int) -> str:
            return _row_label(self.row_word, self.row_numbers, offset)

        return RunsTable(
            runs=tuple(self.runs.values()),
            metrics=tuple(self.metrics.values()),
            compute_units={run_id: c.unit for run_id, c in self.seen_cells.items()},
            path=self.source_name,
            ignored_columns=ignored_columns,
            duplicate_rows=tuple((label(o), label(first)) for o, first in self.duplicates),
        )


def _refuse_other_cells(previous: _RunCells, cells: _RunCells, run_id: str, ctx: str) -> None:
    """Raise for a row of run ``run_id`` whose run cells differ from an earlier row's."""
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


#: the columns that describe a run: all but the metric's own
_RUN_COLUMNS = tuple(c for c in COLUMNS if c not in METRIC_COLUMNS)


def _cell(row: Sequence[Any], i: int | None) -> Any:
    """A cell's value, None when the column is absent or the cell is empty (or NaN)."""
    if i is None:
        return None
    v = row[i]
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _metric_cells(
    row: Sequence[Any], n_items_at: int | None, chance_at: int | None, ctx: str
) -> tuple[float | None, float | None]:
    """A metric row's evaluation size (a count of items, at least 1) and chance level;
    ``ctx`` names the row in errors."""
    raw_n = _cell(row, n_items_at)
    raw_c = _cell(row, chance_at)
    if raw_n is None and raw_c is None:
        return None, None
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
    return f"{source_name} {_row_label(row_word, numbers, offset)}"


def _row_label(row_word: str, numbers: Sequence[int] | None, offset: int) -> str:
    """A row's place in its file ("line 7": CSV lines count from the header's, 1)."""
    line = numbers[offset] if numbers is not None else offset + 1
    return f"{row_word} {line}"


def _plain_metric(metric: Any, value: Any) -> tuple[str | None, float]:
    """The metric name and value of a row whose two cells are plainly valid, else None
    (the row is then checked cell by cell, which names what is wrong)."""
    if not isinstance(metric, str) or "\x00" in metric or metric.startswith("'"):
        return None, math.nan
    name = metric.strip()
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None, math.nan
    if not name or not math.isfinite(x):
        return None, math.nan
    return name, x


def _parse_row(
    row: Sequence[Any], index: Mapping[str, int], ctx: str, quoted: bool
) -> tuple[_RunCells, str, float]:
    """Validate every cell of a row in the columns' order (the first error is reported);
    ``quoted``: text cells may carry a CSV export's quote (:func:`unquoted`)."""

    def cell(name: str) -> Any:
        """The cell's value, None when the column is absent or the cell is empty."""
        i = index.get(name)
        if i is None:
            return None
        v = row[i]
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        if isinstance(v, float) and math.isnan(v) and name != "value":
            return None
        return v

    def text(name: str, *, required: bool = False) -> str | None:
        s = _text(cell(name), ctx, name, required=required)
        return unquoted(s).strip() if quoted and s else s  # stripped like any cell

    source = text("source", required=True)
    metric = text("metric", required=True)
    study = text("study") or DEFAULT_STUDY
    compute = _number(cell("compute"), ctx, "compute", required=True, positive=True)
    value = _number(cell("value"), ctx, "value", required=True, positive=False, signed=True)
    params = _number(cell("params"), ctx, "params", positive=True)
    tokens = _number(cell("tokens"), ctx, "tokens", positive=True)
    seed = _integer(cell("seed"), ctx, "seed")
    cost_c = _number(cell("cost_curation"), ctx, "cost_curation")
    cost_t = _number(cell("cost_training"), ctx, "cost_training")
    unit = text("compute_unit")
    if unit is not None and unit not in COMPUTE_UNITS:
        raise ImportDataError(
            f"{ctx}, column compute_unit: {unit!r} is not one of {', '.join(COMPUTE_UNITS)}"
        )
    explicit_id = text("run_id")
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
                # blank lines are not rows (the first cell alone settles almost every row)
                if (row and row[0].strip()) or any(c.strip() for c in row):
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
