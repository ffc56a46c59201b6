"""The planner's DuckDB store: the only module family that imports duckdb.

One file per project (default ``./annealplan.duckdb``). The planner is its only writer.
Every ingest is one transaction and idempotent; threads use :meth:`Store.cursor`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from planner.domain import (
    AnnealSpec,
    CostSpec,
    LawFit,
    Metric,
    Observation,
    Plan,
    Run,
    Source,
    SourceAllocation,
)
from planner.errors import StoreError, did_you_mean
from planner.store.migrations import all_migrations
from planner.store.runs_table import RunsTable
from planner.units import Unit


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import changed."""

    runs_added: int
    metrics_added: int
    runs_unchanged: int


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
    except duckdb.Error as e:
        raise StoreError(
            f"cannot open the store {p}: {e}. If another annealplan process holds it, "
            "stop that one first (the planner is the file's only writer)."
        ) from e
    # DuckDB draws a progress bar for a slow query straight onto the terminal: it would
    # scribble over the TUI and over a verb's output (its cursors share the setting)
    con.execute("SET enable_progress_bar = false")
    store = Store(con, p)
    if not read_only:
        store.migrate()
    return store


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, allow_nan=True)


#: a float array in a fit's body with at least this many values is stored as its bytes
PACKED_MIN_SIZE = 64


def _dumps_packed(obj: Any) -> str:
    """JSON in which long float arrays are base64 bytes instead of lists of numbers.

    An averaged fit carries each member's bootstrap draws: as lists of numbers that made a
    fit's body about 190 KB of JSON, and reading a thousand fits back spent seconds parsing
    numbers. :func:`_loads_packed` restores them as arrays.
    """
    return json.dumps(obj, default=_packed_default, allow_nan=True)


def _packed_default(o: Any) -> Any:
    if isinstance(o, np.ndarray) and o.dtype.kind == "f" and o.size >= PACKED_MIN_SIZE:
        a = np.ascontiguousarray(o, dtype="<f8")
        return {"__f8__": base64.b64encode(a.tobytes()).decode("ascii"), "shape": list(a.shape)}
    return _json_default(o)


def _unpack(d: dict[str, Any]) -> Any:
    if "__f8__" in d and len(d) == 2:
        raw = base64.b64decode(d["__f8__"])
        return np.frombuffer(raw, dtype="<f8").reshape(d["shape"]).copy()
    return d


def _loads_packed(text: str) -> Any:
    """Read :func:`_dumps_packed` JSON (bodies written before it, all lists, read as they are)."""
    return json.loads(text, object_hook=_unpack)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Unit):
        return o.value
    if isinstance(o, Path):
        return str(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return {f.name: getattr(o, f.name) for f in dataclasses.fields(o)}
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    raise TypeError(f"cannot store a {type(o).__name__} as JSON")


class Store:
    """Access to one DuckDB file. Not thread-safe: give each thread ``store.cursor()``."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, *, owner: bool = True) -> None:
        self._con = con
        self.path = path
        self._owner = owner
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- plumbing
    def cursor(self) -> Store:
        """A handle for another thread on the same database."""
        return Store(self._con.cursor(), self.path, owner=False)

    def close(self) -> None:
        with suppress(duckdb.Error):
            self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All or nothing: a failure (or a kill) leaves no partial rows."""
        con = self._con
        con.begin()
        try:
            yield con
        except BaseException:
            con.rollback()
            raise
        else:
            con.commit()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._con.execute(sql, list(params)).fetchall()
        except duckdb.Error as e:
            raise StoreError(f"query failed on {self.path}: {e}") from e

    def schema_version(self) -> int:
        rows = self._con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
        ).fetchall()
        if not rows[0][0]:
            return 0
        return int(
            self._con.execute("SELECT max(version) FROM schema_version").fetchall()[0][0] or 0
        )

    def migrate(self) -> int:
        """Apply pending numbered migrations; returns the schema version."""
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)"
        )
        current = self.schema_version()
        migrations = all_migrations()
        if current > len(migrations):
            raise StoreError(
                f"{self.path} has schema version {current}, newer than this annealplan knows "
                f"({len(migrations)}); upgrade annealplan"
            )
        for m in migrations[current:]:
            with self.transaction() as con:
                con.execute(m.SQL)
                con.execute("INSERT INTO schema_version (version) VALUES (?)", [m.VERSION])
        return self.schema_version()

    def _next_seq(self, con: duckdb.DuckDBPyConnection) -> int:
        return int(con.execute("SELECT nextval('seq_ids')").fetchall()[0][0])

    # ----------------------------------------------------------------- runs
    def import_runs(
        self, table: RunsTable, *, directions: Mapping[str, bool] | None = None
    ) -> ImportSummary:
        """Import a validated runs table in one transaction; re-importing changes nothing.

        Args:
            table: from :func:`planner.store.runs_table.read_runs_table`.
            directions: metric name → lower is better, remembered for later fits.
        """
        existing = self._existing_run_ids([r.run_id for r in table.runs])
        new_runs = [r for r in table.runs if r.run_id not in existing]
        run_rows = [self._run_row(r, table.compute_units.get(r.run_id), {}) for r in new_runs]
        have = self._existing_metric_keys([m.run_id for m in table.metrics])
        metric_rows = [
            (m.run_id, m.name, m.value, m.n_items, m.chance)
            for m in table.metrics
            if (m.run_id, m.name) not in have
        ]
        try:
            with self.transaction() as con:
                if run_rows:
                    con.executemany(
                        "INSERT INTO runs (run_id, study, source, compute, compute_unit, params,"
                        " tokens, seed, cost_curation, cost_training, origin, meta)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        run_rows,
                    )
                if metric_rows:
                    self._insert_metrics(con, metric_rows)
                for name, lower in (directions or {}).items():
                    con.execute(
                        "INSERT OR REPLACE INTO metric_directions VALUES (?, ?)",
                        [name, bool(lower)],
                    )
        except duckdb.Error as e:
            raise StoreError(f"import into {self.path} failed, nothing was written: {e}") from e
        return ImportSummary(
            runs_added=len(run_rows),
            metrics_added=len(metric_rows),
            runs_unchanged=len(table.runs) - len(run_rows),
        )

    def _insert_metrics(
        self,
        con: duckdb.DuckDBPyConnection,
        rows: list[tuple[str, str, float, float | None, float | None]],
    ) -> None:
        """Insert (run_id, name, value, n_items, chance) rows."""
        if len(rows) > 200:
            # executemany costs ~1 ms a row; a relation insert is bulk.
            import pyarrow as pa

            batch = pa.table(
                {
                    "run_id": [r[0] for r in rows],
                    "name": [r[1] for r in rows],
                    "value": [float(r[2]) for r in rows],
                    "n_items": pa.array([r[3] for r in rows], type=pa.float64()),
                    "chance": pa.array([r[4] for r in rows], type=pa.float64()),
                }
            )
            con.register("_metric_batch", batch)
            try:
                con.execute(
                    "INSERT INTO metrics (run_id, name, value, n_items, chance)"
                    " SELECT run_id, name, value, n_items, chance FROM _metric_batch"
                )
            finally:
                con.unregister("_metric_batch")
        else:
            con.executemany(
                "INSERT INTO metrics (run_id, name, value, n_items, chance) VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    def _existing_run_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        rows = self._all("SELECT run_id FROM runs WHERE run_id IN (SELECT unnest(?))", [list(ids)])
        return {r[0] for r in rows}

    def _existing_metric_keys(self, ids: Sequence[str]) -> set[tuple[str, str]]:
        if not ids:
            return set()
        rows = self._all(
            "SELECT run_id, name FROM metrics WHERE run_id IN (SELECT unnest(?))",
            [sorted(set(ids))],
        )
        return {(a, b) for a, b in rows}

    @staticmethod
    def _run_row(run: Run, unit: str | None, meta: Mapping[str, Any]) -> tuple[Any, ...]:
        return (
            run.run_id,
            run.study,
            run.source,
            float(run.compute),
            unit,
            run.params,
            run.tokens,
            run.seed,
            run.cost_curation,
            run.cost_training,
            run.origin,
            _dumps(dict(meta)),
        )

    def ingest_result(
        self, run: Run, metrics: Sequence[Metric], meta: Mapping[str, Any] | None = None
    ) -> bool:
        """Record one finished job exactly once (primary key = job id).

        Returns:
            True when the run was new, False when it was already there (nothing changed).
        """
        meta = dict(meta or {})
        unit = meta.get("compute_unit")
        for m in metrics:
            if m.run_id != run.run_id:
                raise StoreError(f"metric {m.name} belongs to {m.run_id}, not {run.run_id}")
            if not math.isfinite(m.value):
                raise StoreError(f"metric {m.name} of {run.run_id} is not finite ({m.value})")
        with self._lock:
            try:
                with self.transaction() as con:
                    found = con.execute(
                        "SELECT count(*) FROM runs WHERE run_id = ?", [run.run_id]
                    ).fetchall()[0][0]
                    if found:
                        return False
                    con.execute(
                        "INSERT INTO runs (run_id, study, source, compute, compute_unit, params,"
                        " tokens, seed, cost_curation, cost_training, origin, meta)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        list(self._run_row(run, unit, meta)),
                    )
                    if metrics:
                        self._insert_metrics(
                            con, [(m.run_id, m.name, m.value, m.n_items, m.chance) for m in metrics]
                        )
            except duckdb.ConstraintException:
                return False  # a concurrent ingest of the same job won
            except duckdb.Error as e:
                raise StoreError(f"could not record run {run.run_id}: {e}") from e
        return True

    def runs(self, study: str | None = None, source: str | None = None) -> list[Run]:
        sql = (
            "SELECT run_id, source, compute, study, params, tokens, seed, cost_curation,"
            " cost_training, origin FROM runs WHERE (? IS NULL OR study = ?)"
            " AND (? IS NULL OR source = ?) ORDER BY study, source, compute, run_id"
        )
        return [
            Run(
                run_id=r[0],
                source=r[1],
                compute=r[2],
                study=r[3],
                params=r[4],
                tokens=r[5],
                seed=r[6],
                cost_curation=r[7],
                cost_training=r[8],
                origin=r[9],
            )
            for r in self._all(sql, [study, study, source, source])
        ]

    def run_meta(self, run_id: str) -> dict[str, Any]:
        rows = self._all("SELECT meta, compute_unit FROM runs WHERE run_id = ?", [run_id])
        if not rows:
            raise StoreError(f"no run {run_id!r} in {self.path}")
        meta = json.loads(rows[0][0])
        meta.setdefault("compute_unit", rows[0][1])
        return meta

    def compute_units(self, study: str | None = None) -> dict[str, str | None]:
        """Distinct compute units per study (None: unknown, e.g. imported tables)."""
        rows = self._all(
            "SELECT study, any_value(compute_unit), count(DISTINCT compute_unit) FROM runs"
            " WHERE (? IS NULL OR study = ?) GROUP BY study",
            [study, study],
        )
        return {r[0]: (r[1] if r[2] <= 1 else None) for r in rows}

    def observations(
        self, study: str | None = None, metric: str | None = None, source: str | None = None
    ) -> list[Observation]:
        sql = (
            "SELECT r.study, m.name, r.source, r.compute, m.value, r.run_id, r.seed,"
            " m.n_items, m.chance FROM runs r JOIN metrics m USING (run_id)"
            " WHERE (? IS NULL OR r.study = ?) AND (? IS NULL OR m.name = ?)"
            " AND (? IS NULL OR r.source = ?)"
            " ORDER BY r.study, m.name, r.source, r.compute, r.run_id"
        )
        return [
            Observation(
                study=r[0],
                metric=r[1],
                source=r[2],
                compute=r[3],
                value=r[4],
                run_id=r[5],
                seed=r[6],
                n_items=r[7],
                chance=r[8],
            )
            for r in self._all(sql, [study, study, metric, metric, source, source])
        ]

    def studies_metrics(self) -> list[tuple[str, str]]:
        return [
            (r[0], r[1])
            for r in self._all(
                "SELECT DISTINCT r.study, m.name FROM runs r JOIN metrics m USING (run_id)"
                " ORDER BY 1, 2"
            )
        ]

    def metric_directions(self) -> dict[str, bool]:
        return {
            r[0]: bool(r[1])
            for r in self._all("SELECT name, lower_is_better FROM metric_directions")
        }

    def set_metric_direction(self, name: str, lower_is_better: bool) -> None:
        with self.transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO metric_directions VALUES (?, ?)",
                [name, bool(lower_is_better)],
            )

    def counts(self) -> dict[str, int]:
        out = {}
        for table in ("sources", "experiments", "runs", "metrics", "fits", "plans"):
            out[table] = int(self._all(f"SELECT count(*) FROM {table}")[0][0])
        return out

    def export_runs(self, path: str | Path, fmt: str | None = None) -> int:
        """Write the runs table (one row per run and metric) to CSV or Parquet.

        Returns:
            the number of rows written.
        """
        p = Path(path)
        fmt = (fmt or p.suffix.lstrip(".") or "csv").lower()
        if fmt not in ("csv", "parquet"):
            raise StoreError(f"cannot export as {fmt!r}; use csv or parquet")
        if not p.parent.exists():
            raise StoreError(f"folder {p.parent} does not exist")
        query = (
            "SELECT r.source, r.compute, m.name AS metric, m.value, r.study, r.params, r.tokens,"
            " r.seed, r.cost_curation, r.cost_training, r.compute_unit, r.run_id, m.n_items,"
            " m.chance FROM runs r JOIN metrics m USING (run_id) ORDER BY r.study, metric, r.source, r.compute, r.run_id"
        )
        n = int(self._all(f"SELECT count(*) FROM ({query})")[0][0])
        tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.tmp")
        options = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
        try:
            self._con.execute(f"COPY ({query}) TO '{_sql_path(tmp)}' ({options})")
            tmp.replace(p)
        except (duckdb.Error, OSError) as e:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"could not export runs to {p}: {e}") from e
        return n

    # ----------------------------------------------------------------- sources
    def add_source(self, src: Source, *, replace: bool = False) -> None:
        cost = src.cost
        row = [
            src.name,
            src.kind,
            _dumps(dict(src.config)),
            cost.model if cost else None,
            _dumps(dict(cost.params)) if cost else None,
            cost.unit.value if cost else None,
            src.cap_tokens,
            src.plugin,
            src.plugin_version,
            src.description,
        ]
        with self.transaction() as con:
            exists = con.execute(
                "SELECT count(*) FROM sources WHERE name = ?", [src.name]
            ).fetchall()[0][0]
            if exists and not replace:
                raise StoreError(
                    f"a source named {src.name!r} already exists; choose another --name or "
                    "remove it first (annealplan sources remove)"
                )
            con.execute("DELETE FROM sources WHERE name = ?", [src.name])
            con.execute(
                "INSERT INTO sources (name, kind, config, cost_model, cost_params, cost_unit,"
                " cap_tokens, plugin, plugin_version, description) VALUES (?,?,?,?,?,?,?,?,?,?)",
                row,
            )

    def sources(self) -> list[Source]:
        rows = self._all(
            "SELECT name, kind, config, cost_model, cost_params, cost_unit, cap_tokens, plugin,"
            " plugin_version, description FROM sources ORDER BY name"
        )
        return [self._source(r) for r in rows]

    @staticmethod
    def _source(r: tuple[Any, ...]) -> Source:
        cost = CostSpec(r[3], json.loads(r[4] or "{}"), Unit(r[5])) if r[3] else None
        return Source(
            name=r[0],
            kind=r[1],
            config=json.loads(r[2]),
            cost=cost,
            cap_tokens=r[6],
            plugin=r[7],
            plugin_version=r[8],
            description=r[9],
        )

    def source(self, name: str) -> Source:
        for s in self.sources():
            if s.name == name:
                return s
        names = [s.name for s in self.sources()]
        more = _suggest(name, names, "add one with `annealplan sources add`")
        raise StoreError(f"no source named {name!r}{more}")

    def remove_source(self, name: str) -> None:
        self.source(name)  # raises with a suggestion when unknown
        with self.transaction() as con:
            con.execute("DELETE FROM sources WHERE name = ?", [name])

    # ----------------------------------------------------------------- experiments
    def save_experiment(
        self,
        name: str,
        specs: Sequence[AnnealSpec],
        meta: Mapping[str, Any],
        *,
        replace: bool = True,
    ) -> None:
        """Store a designed sweep. Job ids are the primary key of the runs they produce."""
        for s in specs:
            if s.experiment != name:
                raise StoreError(f"spec {s.job_id} belongs to {s.experiment!r}, not {name!r}")
        with self.transaction() as con:
            exists = con.execute(
                "SELECT count(*) FROM experiments WHERE name = ?", [name]
            ).fetchall()[0][0]
            if exists and not replace:
                raise StoreError(f"experiment {name!r} exists; pick another name")
            con.execute("DELETE FROM anneal_specs WHERE experiment = ?", [name])
            con.execute("DELETE FROM experiments WHERE name = ?", [name])
            con.execute(
                "INSERT INTO experiments (name, meta) VALUES (?, ?)", [name, _dumps(dict(meta))]
            )
            if specs:
                con.executemany(
                    "INSERT INTO anneal_specs VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            s.job_id,
                            name,
                            s.source,
                            float(s.tokens),
                            float(s.replay_fraction),
                            int(s.seed),
                            i,
                        )
                        for i, s in enumerate(specs)
                    ],
                )

    def experiment(self, name: str) -> tuple[dict[str, Any], list[AnnealSpec]]:
        rows = self._all("SELECT meta FROM experiments WHERE name = ?", [name])
        if not rows:
            more = _suggest(name, self.experiments(), "design one with `annealplan design`")
            raise StoreError(f"no experiment named {name!r}{more}")
        specs = [
            AnnealSpec(
                job_id=r[0],
                experiment=name,
                source=r[1],
                tokens=r[2],
                replay_fraction=r[3],
                seed=r[4],
            )
            for r in self._all(
                "SELECT job_id, source, tokens, replay_fraction, seed FROM anneal_specs"
                " WHERE experiment = ? ORDER BY position",
                [name],
            )
        ]
        return json.loads(rows[0][0]), specs

    def experiments(self) -> list[str]:
        return [r[0] for r in self._all("SELECT name FROM experiments ORDER BY created_at, name")]

    # ----------------------------------------------------------------- fits
    def save_fits(self, fits: Sequence[LawFit]) -> list[str]:
        ids = []
        with self.transaction() as con:
            for fit in fits:
                fit_id = f"fit-{uuid.uuid4().hex[:12]}"
                body = {
                    f.name: getattr(fit, f.name)
                    for f in dataclasses.fields(fit)
                    if f.name not in ("boot",)
                }
                boot = fit.boot
                flat, rows_, cols_ = None, None, None
                if boot is not None:
                    arr = np.asarray(boot, dtype=float)
                    rows_, cols_ = arr.shape
                    flat = arr.ravel().tolist()
                con.execute(
                    "INSERT INTO fits (fit_id, seq, study, metric, source, family, method, body,"
                    " boot, boot_rows, boot_cols, success) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        fit_id,
                        self._next_seq(con),
                        fit.study,
                        fit.metric,
                        fit.source,
                        fit.family,
                        fit.method,
                        _dumps_packed(body),
                        flat,
                        rows_,
                        cols_,
                        bool(fit.success),
                    ],
                )
                ids.append(fit_id)
        return ids

    def fits(
        self,
        study: str | None = None,
        metric: str | None = None,
        source: str | None = None,
        *,
        latest: bool = True,
    ) -> list[tuple[str, LawFit]]:
        """Stored fits; with ``latest`` only the newest per (study, metric, source)."""
        where = (
            " WHERE (? IS NULL OR study = ?) AND (? IS NULL OR metric = ?)"
            " AND (? IS NULL OR source = ?)"
        )
        params = [study, study, metric, metric, source, source]
        sql = "SELECT fit_id, body, boot, boot_rows, boot_cols FROM fits" + where
        if latest:
            # the newest seq per (study, metric, source) is found on the small columns
            # first: a window over the rows themselves decompressed every older fit's body
            sql += (
                " AND seq IN (SELECT max(seq) FROM fits"
                + where
                + " GROUP BY study, metric, source)"
            )
            params += params
        sql += " ORDER BY study, metric, source"
        out = []
        names = {f.name for f in dataclasses.fields(LawFit)}
        for r in self._all(sql, params):
            body = {k: v for k, v in _loads_packed(r[1]).items() if k in names}
            if body.get("covariance") is not None:
                body["covariance"] = np.asarray(body["covariance"], dtype=float)
            boot = np.asarray(r[2], dtype=float).reshape(r[3], r[4]) if r[2] is not None else None
            out.append((r[0], LawFit(**body, boot=boot)))
        return out

    def fitted_groups(self) -> list[tuple[str, str]]:
        """The (study, metric) pairs whose newest fit of some source succeeded, sorted;
        read from the small columns alone (no fit body is decoded)."""
        rows = self._all(
            "SELECT DISTINCT study, metric FROM fits WHERE success AND seq IN"
            " (SELECT max(seq) FROM fits GROUP BY study, metric, source)"
            " ORDER BY study, metric"
        )
        return [(r[0], r[1]) for r in rows]

    # ----------------------------------------------------------------- plans
    def save_plan(self, plan: Plan, fit_ids: Sequence[str] = ()) -> str:
        plan_id = f"plan-{uuid.uuid4().hex[:12]}"
        ids = list(fit_ids) or list(plan.fit_ids)
        with self.transaction() as con:
            con.execute(
                "INSERT INTO plans (plan_id, seq, budget, unit, metric, success, body, fit_ids)"
                " VALUES (?,?,?,?,?,?,?,?)",
                [
                    plan_id,
                    self._next_seq(con),
                    float(plan.budget),
                    plan.unit.value,
                    plan.metric,
                    bool(plan.success),
                    _dumps(plan),
                    _dumps(ids),
                ],
            )
        return plan_id

    def plans(self, *, limit: int | None = None) -> list[tuple[str, Plan]]:
        sql = "SELECT plan_id, body FROM plans ORDER BY seq DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [(r[0], plan_from_json(json.loads(r[1]))) for r in self._all(sql)]


def plan_from_json(d: Mapping[str, Any]) -> Plan:
    """Rebuild a :class:`Plan` from its stored JSON (unknown keys are kept in ``extra``)."""
    alloc_fields = {f.name for f in dataclasses.fields(SourceAllocation)}
    plan_fields = {f.name for f in dataclasses.fields(Plan)}
    allocations = tuple(
        SourceAllocation(**{k: v for k, v in a.items() if k in alloc_fields})
        for a in d.get("allocations", [])
    )
    kwargs = {k: v for k, v in d.items() if k in plan_fields and k != "allocations"}
    kwargs["unit"] = Unit(kwargs["unit"])
    for key in ("notes", "fit_ids"):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    return Plan(allocations=allocations, **kwargs)


def _suggest(name: str, names: Sequence[str], otherwise: str) -> str:
    """'; did you mean X?' for a near miss, else the known names, else what to do."""
    hint = did_you_mean(name, names)
    if hint:
        return hint
    if names:
        return f"; known: {', '.join(names)}"
    return f"; {otherwise}"


def _sql_path(p: Path) -> str:
    return str(p).replace("'", "''")
