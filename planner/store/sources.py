"""The store's registered data sources."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from planner.domain import CostSpec, Source
from planner.errors import StoreError
from planner.store.base import StoreBase, suggest
from planner.store.codec import _dumps
from planner.units import Unit


def _source(record: Mapping[str, Any]) -> Source:
    """A row of ``sources`` as a :class:`Source`."""
    cost = None
    if record["cost_model"]:
        params = json.loads(record["cost_params"] or "{}")
        cost = CostSpec(record["cost_model"], params, Unit(record["cost_unit"]))
    return Source(
        name=record["name"],
        kind=record["kind"],
        config=json.loads(record["config"]),
        cost=cost,
        cap_tokens=record["cap_tokens"],
        plugin=record["plugin"],
        plugin_version=record["plugin_version"],
        description=record["description"],
    )


def _source_columns(src: Source) -> dict[str, list[Any]]:
    """A :class:`Source` as the columns of its one row of ``sources``."""
    cost = src.cost
    return {
        "name": [src.name],
        "kind": [src.kind],
        "config": [_dumps(dict(src.config))],
        "cost_model": [cost.model if cost else None],
        "cost_params": [_dumps(dict(cost.params)) if cost else None],
        "cost_unit": [cost.unit.value if cost else None],
        "cap_tokens": [src.cap_tokens],
        "plugin": [src.plugin],
        "plugin_version": [src.plugin_version],
        "description": [src.description],
    }


class SourceStore(StoreBase):
    """The ``sources`` table."""

    def add_source(self, src: Source, *, replace: bool = False) -> None:
        with self._writing(f"save source {src.name!r}") as con:
            exists = con.execute(
                "SELECT count(*) FROM sources WHERE name = ?", [src.name]
            ).fetchall()[0][0]
            if exists and not replace:
                raise StoreError(
                    f"a source named {src.name!r} already exists; choose another --name or "
                    "remove it first (annealplan sources remove)"
                )
            con.execute("DELETE FROM sources WHERE name = ?", [src.name])
            self._insert(con, "sources", _source_columns(src))

    def sources(self) -> list[Source]:
        rows = self._records(
            "SELECT name, kind, config, cost_model, cost_params, cost_unit, cap_tokens, plugin,"
            " plugin_version, description FROM sources ORDER BY name"
        )
        return [_source(r) for r in rows]

    def source(self, name: str) -> Source:
        for s in self.sources():
            if s.name == name:
                return s
        names = [s.name for s in self.sources()]
        more = suggest(name, names, "add one with `annealplan sources add`")
        raise StoreError(f"no source named {name!r}{more}")

    def remove_source(self, name: str) -> None:
        self.source(name)  # raises with a suggestion when unknown
        with self._writing(f"remove source {name!r}") as con:
            con.execute("DELETE FROM sources WHERE name = ?", [name])
