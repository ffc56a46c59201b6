"""The store's experiments: designed sweeps and their anneal specs."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from planner.domain import AnnealSpec
from planner.errors import StoreError
from planner.store.base import StoreBase, suggest
from planner.store.codec import _dumps

#: the columns of ``anneal_specs`` an :class:`AnnealSpec` is read from: its fields, by name
SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(AnnealSpec))


def _spec(record: Mapping[str, Any]) -> AnnealSpec:
    """A row of ``anneal_specs`` (the :data:`SPEC_FIELDS` columns) as an :class:`AnnealSpec`."""
    return AnnealSpec(**record)


def _spec_columns(specs: Sequence[AnnealSpec]) -> dict[str, list[Any]]:
    """Anneal specs as the columns of their rows of ``anneal_specs``, in their order."""
    return {
        "job_id": [s.job_id for s in specs],
        "experiment": [s.experiment for s in specs],
        "source": [s.source for s in specs],
        "tokens": [float(s.tokens) for s in specs],
        "replay_fraction": [float(s.replay_fraction) for s in specs],
        "seed": [int(s.seed) for s in specs],
        "position": list(range(len(specs))),
    }


class ExperimentStore(StoreBase):
    """The ``experiments`` and ``anneal_specs`` tables."""

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
        with self._writing(f"save experiment {name!r}") as con:
            exists = con.execute(
                "SELECT count(*) FROM experiments WHERE name = ?", [name]
            ).fetchall()[0][0]
            if exists and not replace:
                raise StoreError(f"experiment {name!r} exists; pick another name")
            con.execute("DELETE FROM anneal_specs WHERE experiment = ?", [name])
            con.execute("DELETE FROM experiments WHERE name = ?", [name])
            self._insert(con, "experiments", {"name": [name], "meta": [_dumps(dict(meta))]})
            self._insert(con, "anneal_specs", _spec_columns(specs))

    def experiment(self, name: str) -> tuple[dict[str, Any], list[AnnealSpec]]:
        rows = self._records("SELECT meta FROM experiments WHERE name = ?", [name])
        if not rows:
            more = suggest(name, self.experiments(), "design one with `annealplan design`")
            raise StoreError(f"no experiment named {name!r}{more}")
        specs = self._records(
            f"SELECT {', '.join(SPEC_FIELDS)} FROM anneal_specs"
            " WHERE experiment = ? ORDER BY position",
            [name],
        )
        return json.loads(rows[0]["meta"]), [_spec(r) for r in specs]

    def experiments(self) -> list[str]:
        rows = self._records("SELECT name FROM experiments ORDER BY created_at, name")
        return [r["name"] for r in rows]
