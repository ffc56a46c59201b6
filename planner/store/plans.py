"""The store's allocation plans."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from planner.domain import Plan
from planner.errors import StoreError
from planner.store.base import StoreBase, suggest
from planner.store.codec import _dumps

#: the plan id that names the newest stored plan
LATEST = "latest"
#: how a person lists the stored plans (every "no such plan" error says it)
LIST_PLANS = "list the stored plans with `annealplan plans`"


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

    def plan(self, plan_id: str) -> tuple[str, Plan]:
        """One stored plan by id, or the newest with ``"latest"``.

        Returns:
            Its id (the newest plan's for ``"latest"``) and the plan.

        Raises:
            StoreError: no such plan (or none stored), saying how to list them.
        """
        if plan_id == LATEST:
            rows = self._records("SELECT plan_id, body FROM plans ORDER BY seq DESC LIMIT 1")
        else:
            rows = self._records("SELECT plan_id, body FROM plans WHERE plan_id = ?", [plan_id])
        if rows:
            return rows[0]["plan_id"], _plan(rows[0])
        if not self._all("SELECT count(*) FROM plans")[0][0]:
            raise StoreError(
                f"no plan {plan_id!r}: the store holds no plans yet; make one with "
                "`annealplan allocate --budget BUDGET`"
            )
        ids = [r["plan_id"] for r in self._records("SELECT plan_id FROM plans ORDER BY seq")]
        hint = suggest(plan_id, ids, "")
        hint = hint if hint.startswith("; did you mean") else ""
        raise StoreError(f"no plan {plan_id!r}{hint}; {LIST_PLANS}")

    def update_plan(self, plan_id: str, plan: Plan) -> None:
        """Replace a stored plan's body (its id, time and fits stay), in one statement.

        Raises:
            StoreError: no such plan; nothing was written.
        """
        with self._writing(f"update plan {plan_id}") as con:
            found = con.execute("SELECT count(*) FROM plans WHERE plan_id = ?", [plan_id])
            if not found.fetchall()[0][0]:
                raise StoreError(f"no plan {plan_id!r}; {LIST_PLANS}")
            con.execute(
                "UPDATE plans SET budget = ?, unit = ?, metric = ?, success = ?, body = ?"
                " WHERE plan_id = ?",
                [
                    float(plan.budget),
                    plan.unit.value,
                    plan.metric,
                    bool(plan.success),
                    _dumps(plan.to_json()),
                    plan_id,
                ],
            )

    def plans(self, *, limit: int | None = None) -> list[tuple[str, Plan]]:
        sql = "SELECT plan_id, body FROM plans ORDER BY seq DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [(r["plan_id"], _plan(r)) for r in self._records(sql)]


def plan_from_json(d: Mapping[str, Any]) -> Plan:
    """Rebuild a :class:`Plan` from its stored JSON (see :meth:`Plan.from_json`)."""
    return Plan.from_json(d)
