"""What every table of the store shares: the connection, transactions, rows read by column
name, one bulk writer, and duckdb's errors turned into :class:`StoreError`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal, Self

import duckdb
import pyarrow as pa

from planner.errors import StoreError, did_you_mean
from planner.store.migrations import all_migrations

#: what a failed read tells the user to do
READ_ADVICE = (
    "if another annealplan version wrote this file, use that version; otherwise the file "
    "may be damaged: restore it from a copy"
)
#: what a failed write tells the user to do
WRITE_ADVICE = (
    "nothing was written; check that the file is writable (not opened read-only) and that "
    "its disk has room, then run the command again"
)


class StoreBase:
    """One DuckDB connection (or cursor) on a store file, and the plumbing of its tables.

    Not thread-safe: give each thread ``store.cursor()``. DuckDB itself keeps concurrent
    handles apart (each transaction sees a snapshot; a conflicting commit fails), so the
    store holds no lock of its own.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self._con = con
        self.path = path

    # ----------------------------------------------------------------- handles
    def cursor(self) -> Self:
        """A handle for another thread on the same database."""
        try:
            return type(self)(self._con.cursor(), self.path)
        except duckdb.Error as e:
            raise self._error("open another handle on", e, READ_ADVICE) from e

    def close(self) -> None:
        with suppress(duckdb.Error):
            self._con.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- transactions
    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All or nothing: a failure (or a kill) leaves no partial rows."""
        con = self._con
        con.begin()
        try:
            yield con
        except BaseException:
            with suppress(duckdb.Error):  # a failed commit may have ended it already
                con.rollback()
            raise
        else:
            con.commit()

    @contextmanager
    def _writing(self, what: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """One writer's transaction; a duckdb (or Arrow) error inside it, the commit's
        included, becomes a :class:`StoreError` saying what was not written."""
        try:
            with self.transaction() as con:
                yield con
        except (duckdb.Error, pa.ArrowException) as e:
            raise self._error(f"{what} in", e, WRITE_ADVICE) from e

    def _error(self, what: str, e: Exception, advice: str) -> StoreError:
        """The StoreError for a duckdb (or Arrow) error: what failed on this file, and what to
        do (``advice``, unless the handle itself was closed)."""
        if isinstance(e, duckdb.ConnectionException):
            advice = "this handle on the store was closed: open the store again"
        return StoreError(f"could not {what} {self.path} ({e}); {advice}")

    # ----------------------------------------------------------------- reads
    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of a query as tuples: for counts and other aggregates."""
        try:
            return self._con.execute(sql, list(params)).fetchall()
        except duckdb.Error as e:
            raise self._error("read from", e, READ_ADVICE) from e

    def _records(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """The rows of a query as {column name: value}: what each table turns into its
        domain objects, so a column added or moved in a query cannot shift another."""
        try:
            cur = self._con.execute(sql, list(params))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        except duckdb.Error as e:
            raise self._error("read from", e, READ_ADVICE) from e

    def counts(self) -> dict[str, int]:
        out = {}
        for table in ("sources", "experiments", "runs", "metrics", "fits", "plans"):
            out[table] = int(self._all(f"SELECT count(*) FROM {table}")[0][0])
        return out

    # ----------------------------------------------------------------- writes
    @staticmethod
    def _insert(
        con: duckdb.DuckDBPyConnection,
        table: str,
        columns: Mapping[str, Sequence[Any]],
        *,
        on_conflict: Literal["fail", "skip", "replace"] = "fail",
        key: Sequence[str] = (),
    ) -> int:
        """Insert rows given column by column (by name) in one bulk statement.

        Every table is written through here: an Arrow batch scanned by DuckDB costs about
        the same for one row as ``execute`` and is bulk for many (``executemany`` costs
        about 1 ms a row).

        Args:
            con: the open transaction.
            table: the table written.
            columns: column name → values (all of one length); the table's other columns
                take their defaults.
            on_conflict: ``fail`` raises on a duplicate key; ``skip`` leaves out the rows
                whose ``key`` is already in the table; ``replace`` overwrites them.
            key: the primary key's columns (for ``skip``).

        Returns:
            the number of rows inserted.
        """
        batch = pa.table(dict(columns))
        if batch.num_rows == 0:
            return 0
        name = f"_{table}_batch"
        if on_conflict == "skip":
            on = " AND ".join(f"t.{k} = b.{k}" for k in key)
            sql = (
                f"INSERT INTO {table} BY NAME SELECT b.* FROM {name} b ANTI JOIN {table} t ON {on}"
            )
        else:
            verb = "INSERT OR REPLACE" if on_conflict == "replace" else "INSERT"
            sql = f"{verb} INTO {table} BY NAME SELECT * FROM {name}"
        con.register(name, batch)
        inserted = int(con.execute(sql).fetchall()[0][0])
        # Not in a `finally`: after a failed statement the transaction is aborted and refuses
        # even this, which would hide the real error; the rollback drops the view then.
        con.unregister(name)
        return inserted

    @staticmethod
    def _next_seq(con: duckdb.DuckDBPyConnection) -> int:
        return int(con.execute("SELECT nextval('seq_ids')").fetchall()[0][0])

    # ----------------------------------------------------------------- schema
    def schema_version(self) -> int:
        rows = self._all(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
        )
        if not rows[0][0]:
            return 0
        return int(self._all("SELECT max(version) FROM schema_version")[0][0] or 0)

    def migrate(self) -> int:
        """Apply pending numbered migrations; returns the schema version."""
        try:
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version INTEGER PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)"
            )
        except duckdb.Error as e:
            raise self._error("prepare the schema of", e, WRITE_ADVICE) from e
        current = self.schema_version()
        migrations = all_migrations()
        if current > len(migrations):
            raise StoreError(
                f"{self.path} has schema version {current}, newer than this annealplan knows "
                f"({len(migrations)}); upgrade annealplan"
            )
        for m in migrations[current:]:
            with self._writing(f"apply schema migration {m.VERSION}") as con:
                con.execute(m.SQL)
                con.execute("INSERT INTO schema_version (version) VALUES (?)", [m.VERSION])
        return self.schema_version()


def suggest(name: str, names: Sequence[str], otherwise: str) -> str:
    """'; did you mean X?' for a near miss, else the known names, else what to do."""
    hint = did_you_mean(name, names)
    if hint:
        return hint
    if names:
        return f"; known: {', '.join(names)}"
    return f"; {otherwise}"
