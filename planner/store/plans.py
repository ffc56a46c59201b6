"""The store's allocation plans."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from planner.domain import Plan
from planner.store.base import StoreBase
from planner.store.codec import _dumps


def _plan(record: Mapping[str, Any]) -> Plan:
    """A row of ``plans`` (its JSON body) as a :class:`Plan`."""
    return plan_from_json(json.loads(record["body"]))


class PlanStore(StoreBase):
    """The ``plans`` table."""

    def save_plan(self, plan: Plan, fit_ids: Sequence[str] = ()) -> str:
        plan_id = f"plan-{uuid.uuid4().hex[:12]}"
        ids = list(fit_ids) or list(plan.fit_ids)
        with self._writing(f"save plan {plan_id}") as con:
            row = {
                "plan_id": [plan_id],
                "seq": [self._next_seq(con)],
                "budget": [float(plan.budget)],
                "unit": [plan.unit.value],
                "metric": [plan.metric],
                "success": [bool(plan.success)],
                "body": [_dumps(plan.to_json())],
                "fit_ids": [_dumps(ids)],
            }
            self._insert(con, "plans", row)
        return plan_id

    def plans(self, *, limit: int | None = None) -> list[tuple[str, Plan]]:
        sql = "SELECT plan_id, body FROM plans ORDER BY seq DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [(r["plan_id"], _plan(r)) for r in self._records(sql)]


def plan_from_json(d: Mapping[str, Any]) -> Plan:
    """Rebuild a :class:`Plan` from its stored JSON (see :meth:`Plan.from_json`)."""
    return Plan.from_json(d)
