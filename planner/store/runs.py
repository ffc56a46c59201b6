"""The store's runs, their metric values and the metrics' remembered directions."""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from planner.domain import MeasuredMixture, Metric, Observation, Run
from planner.errors import StoreError
from planner.store.base import StoreBase
from planner.store.codec import _dumps
from planner.store.runs_table import FORMULA_START, PLAIN_NUMBER, RunsTable

#: the columns of ``runs`` a :class:`Run` is read from: its fields, by name
RUN_FIELDS = tuple(f.name for f in dataclasses.fields(Run))


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import changed."""

    runs_added: int
    metrics_added: int
    runs_unchanged: int


def _run(record: Mapping[str, Any]) -> Run:
    """A row of ``runs`` (the :data:`RUN_FIELDS` columns) as a :class:`Run`."""
    return Run(**record)


def _observation(record: Mapping[str, Any]) -> Observation:
    """A row of ``runs`` joined with ``metrics`` (aliased to the fields) as an observation."""
    return Observation(**record)


#: the runs table an export writes: (column, SQL expression), in the runs-table order
_EXPORT_COLUMNS = (
    ("source", "r.source"),
    ("compute", "r.compute"),
    ("metric", "m.name"),
    ("value", "m.value"),
    ("study", "r.study"),
    ("params", "r.params"),
    ("tokens", "r.tokens"),
    ("seed", "r.seed"),
    ("cost_curation", "r.cost_curation"),
    ("cost_training", "r.cost_training"),
    ("compute_unit", "r.compute_unit"),
    ("run_id", "r.run_id"),
    ("n_items", "m.n_items"),
    ("chance", "m.chance"),
)
#: the text columns of an export (the others are numbers, which no spreadsheet runs)
_EXPORT_TEXT = frozenset(("source", "metric", "study", "compute_unit", "run_id"))


class RunStore(StoreBase):
    """The ``runs``, ``metrics`` and ``metric_directions`` tables."""

    # ----------------------------------------------------------------- writers
    def _insert_runs(
        self,
        con: duckdb.DuckDBPyConnection,
        runs: Sequence[Run],
        units: Sequence[str | None],
        metas: Sequence[Mapping[str, Any]],
        mixtures: Sequence[Mapping[str, float] | None] = (),
    ) -> int:
        """The one writer of ``runs``: the runs not in the store yet; returns how many.

        ``mixtures`` gives each run's tokens per source when it is a mixed run (None, or
        left out, for one source)."""
        columns: dict[str, Any] = {name: [getattr(r, name) for r in runs] for name in RUN_FIELDS}
        columns["compute"] = [float(x) for x in columns["compute"]]
        columns["compute_unit"] = list(units)
        columns["meta"] = [_dumps(dict(m)) if m else "{}" for m in metas]  # imports: all {}
        mixed = list(mixtures) or [None] * len(runs)
        # typed: a column of only None would otherwise have no type to insert by
        columns["tokens_per_source"] = pa.array(
            [None if m is None else _dumps({k: float(v) for k, v in m.items()}) for m in mixed],
            type=pa.string(),
        )
        return self._insert(con, "runs", columns, on_conflict="skip", key=("run_id",))

    def _insert_metrics(self, con: duckdb.DuckDBPyConnection, metrics: Sequence[Metric]) -> int:
        """The one writer of ``metrics``: the (run, metric) values not in the store yet."""
        columns = {
            "run_id": [m.run_id for m in metrics],
            "name": [m.name for m in metrics],
            "value": [float(m.value) for m in metrics],
            # typed: a column of only None would otherwise have no type to insert by
            "n_items": pa.array([m.n_items for m in metrics], type=pa.float64()),
            "chance": pa.array([m.chance for m in metrics], type=pa.float64()),
        }
        return self._insert(con, "metrics", columns, on_conflict="skip", key=("run_id", "name"))

    def import_runs(
        self, table: RunsTable, *, directions: Mapping[str, bool] | None = None
    ) -> ImportSummary:
        """Import a validated runs table in one transaction; re-importing changes nothing.

        Args:
            table: from :func:`planner.store.runs_table.read_runs_table`.
            directions: metric name → lower is better, remembered for later fits.

        Raises:
            StoreError: the store refused the rows; nothing was written.
        """
        runs = table.runs
        units = [table.compute_units.get(r.run_id) for r in runs]
        directions = dict(directions or {})
        with self._writing(f"import {table.path or 'a runs table'}") as con:
            runs_added = self._insert_runs(con, runs, units, [{}] * len(runs))
            metrics_added = self._insert_metrics(con, table.metrics)
            self._insert(
                con,
                "metric_directions",
                {
                    "name": list(directions),
                    "lower_is_better": [bool(v) for v in directions.values()],
                },
                on_conflict="replace",
            )
        return ImportSummary(
            runs_added=runs_added,
            metrics_added=metrics_added,
            runs_unchanged=len(runs) - runs_added,
        )

    def ingest_result(
        self,
        run: Run,
        metrics: Sequence[Metric],
        meta: Mapping[str, Any] | None = None,
        *,
        tokens_per_source: Mapping[str, float] | None = None,
    ) -> bool:
        """Record one finished job exactly once (primary key = job id).

        Args:
            run, metrics, meta: the run, its metric values and what is kept beside it.
            tokens_per_source: for a run that annealed on several sources at once (its
                source a mixture's name), the tokens of each; read back by
                :meth:`mixtures`. None: a one-source (or control) run.

        Returns:
            True when the run was new, False when it was already there (nothing changed).

        Raises:
            StoreError: a metric is not the run's or not finite, or the store refused the
                rows; nothing was written.
        """
        meta = dict(meta or {})
        for m in metrics:
            if m.run_id != run.run_id:
                raise StoreError(f"metric {m.name} belongs to {m.run_id}, not {run.run_id}")
            if not math.isfinite(m.value):
                raise StoreError(f"metric {m.name} of {run.run_id} is not finite ({m.value})")
        if tokens_per_source is not None and (
            len(tokens_per_source) < 2
            or not all(math.isfinite(t) and t > 0 for t in tokens_per_source.values())
        ):
            raise StoreError(
                f"run {run.run_id}: a mixed run names two or more sources, each with a "
                f"positive, finite token count (got {dict(tokens_per_source)})"
            )
        unit = [meta.get("compute_unit")]
        try:
            with self._writing(f"record run {run.run_id}") as con:
                if not self._insert_runs(con, [run], unit, [meta], [tokens_per_source]):
                    return False  # recorded before: nothing changes
                self._insert_metrics(con, metrics)
        except StoreError as e:
            if isinstance(e.__cause__, duckdb.ConstraintException):
                return False  # another handle recorded the same job first
            raise
        return True

    # ----------------------------------------------------------------- readers
    def runs(self, study: str | None = None, source: str | None = None) -> list[Run]:
        sql = (
            f"SELECT {', '.join(RUN_FIELDS)} FROM runs WHERE (? IS NULL OR study = ?)"
            " AND (? IS NULL OR source = ?) ORDER BY study, source, compute, run_id"
        )
        return [_run(r) for r in self._records(sql, [study, study, source, source])]

    def has_run(self, run_id: str) -> bool:
        """True when run ``run_id`` is stored."""
        return bool(self._all("SELECT count(*) FROM runs WHERE run_id = ?", [run_id])[0][0])

    def mixtures(self, study: str | None = None) -> list[MeasuredMixture]:
        """The stored mixed runs (those recorded with tokens per source), by study and
        compute; their metric values are in :meth:`observations` like any run's."""
        rows = self._records(
            "SELECT run_id, study, source, tokens_per_source, compute FROM runs"
            " WHERE tokens_per_source IS NOT NULL AND (? IS NULL OR study = ?)"
            " ORDER BY study, compute, run_id",
            [study, study],
        )
        return [
            MeasuredMixture(
                run_id=r["run_id"],
                study=r["study"],
                source=r["source"],
                tokens_per_source={
                    k: float(v) for k, v in json.loads(r["tokens_per_source"]).items()
                },
                compute=float(r["compute"]),
            )
            for r in rows
        ]

    def run_meta(self, run_id: str) -> dict[str, Any]:
        rows = self._records("SELECT meta, compute_unit FROM runs WHERE run_id = ?", [run_id])
        if not rows:
            raise StoreError(f"no run {run_id!r} in {self.path}")
        meta = json.loads(rows[0]["meta"])
        meta.setdefault("compute_unit", rows[0]["compute_unit"])
        return meta

    def compute_units(self, study: str | None = None) -> dict[str, str | None]:
        """Distinct compute units per study (None: unknown, e.g. imported tables)."""
        rows = self._records(
            "SELECT study, any_value(compute_unit) AS unit, count(DISTINCT compute_unit) AS n"
            " FROM runs WHERE (? IS NULL OR study = ?) GROUP BY study",
            [study, study],
        )
        return {r["study"]: (r["unit"] if r["n"] <= 1 else None) for r in rows}

    def observations(
        self, study: str | None = None, metric: str | None = None, source: str | None = None
    ) -> list[Observation]:
        sql = (
            "SELECT r.study, m.name AS metric, r.source, r.compute, m.value, r.run_id, r.seed,"
            " m.n_items, m.chance FROM runs r JOIN metrics m USING (run_id)"
            " WHERE (? IS NULL OR r.study = ?) AND (? IS NULL OR m.name = ?)"
            " AND (? IS NULL OR r.source = ?)"
            " ORDER BY r.study, m.name, r.source, r.compute, r.run_id"
        )
        params = [study, study, metric, metric, source, source]
        return [_observation(r) for r in self._records(sql, params)]

    def studies_metrics(self) -> list[tuple[str, str]]:
        rows = self._records(
            "SELECT DISTINCT r.study, m.name AS metric FROM runs r JOIN metrics m USING (run_id)"
            " ORDER BY 1, 2"
        )
        return [(r["study"], r["metric"]) for r in rows]

    def metric_directions(self) -> dict[str, bool]:
        rows = self._records("SELECT name, lower_is_better FROM metric_directions")
        return {r["name"]: bool(r["lower_is_better"]) for r in rows}

    # ----------------------------------------------------------------- export
    def export_runs(self, path: str | Path, fmt: str | None = None) -> int:
        """Write the runs table (one row per run and metric) to CSV or Parquet.

        In a CSV file, a text cell that a spreadsheet would run as a formula (it starts with
        ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, and is not a plain number)
        gets a ``'`` before it, the OWASP rule against CSV injection; reading the file back
        as a runs table takes it off again. Numbers, and Parquet files, are written as
        they are.

        Returns:
            the number of rows written.
        """
        p = Path(path)
        fmt = (fmt or p.suffix.lstrip(".") or "csv").lower()
        if fmt not in ("csv", "parquet"):
            raise StoreError(f"cannot export as {fmt!r}; use csv or parquet")
        if not p.parent.exists():
            raise StoreError(f"folder {p.parent} does not exist")
        select = ", ".join(
            f"{_quoted(expr) if fmt == 'csv' and name in _EXPORT_TEXT else expr} AS {name}"
            for name, expr in _EXPORT_COLUMNS
        )
        query = (
            f"SELECT {select} FROM runs r JOIN metrics m USING (run_id)"
            " ORDER BY r.study, m.name, r.source, r.compute, r.run_id"
        )
        n = int(self._all(f"SELECT count(*) FROM ({query})")[0][0])
        tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.tmp")
        options = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
        try:
            self._con.execute(f"COPY ({query}) TO '{_sql_path(tmp)}' ({options})")
            tmp.replace(p)
        except (duckdb.Error, OSError) as e:
            tmp.unlink(missing_ok=True)
            raise StoreError(
                f"could not export runs to {p} ({e}); check that its folder is writable and "
                "its disk has room, then run the export again"
            ) from e
        return n


def _quoted(expr: str) -> str:
    """SQL for a text cell with a ``'`` before it where
    :func:`planner.store.runs_table.quoted_in_csv` says so."""
    return (
        f"CASE WHEN regexp_matches({expr}, {_sql_text('^' + FORMULA_START)})"
        f" AND NOT regexp_full_match({expr}, {_sql_text(PLAIN_NUMBER)})"
        f" THEN '''' || {expr} ELSE {expr} END"  # '''': one ' in SQL
    )


def _sql_text(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _sql_path(p: Path) -> str:
    return str(p).replace("'", "''")
