"""The store's fitted laws."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from planner.domain import LawFit
from planner.store.base import StoreBase
from planner.store.codec import _dumps_packed, _loads_packed


def _fit(record: Mapping[str, Any]) -> LawFit:
    """A row of ``fits`` (its body and bootstrap columns) as a :class:`LawFit`."""
    boot = record["boot"]
    if boot is not None:
        boot = np.asarray(boot, dtype=float).reshape(record["boot_rows"], record["boot_cols"])
    return LawFit.from_json(_loads_packed(record["body"]), boot=boot)


def _fit_row(fit: LawFit, fit_id: str, seq: int) -> dict[str, Any]:
    """A :class:`LawFit` as its row of ``fits``: the scalar fields as a JSON body, the
    bootstrap samples as a flat array with their shape."""
    body = {k: v for k, v in fit.to_json().items() if k != "boot"}
    boot = fit.boot
    flat, rows_, cols_ = None, None, None
    if boot is not None:
        arr = np.asarray(boot, dtype=float)
        rows_, cols_ = arr.shape
        flat = arr.ravel().tolist()
    return {
        "fit_id": fit_id,
        "seq": seq,
        "study": fit.study,
        "metric": fit.metric,
        "source": fit.source,
        "family": fit.family,
        "method": fit.method,
        "body": _dumps_packed(body),
        "boot": flat,
        "boot_rows": rows_,
        "boot_cols": cols_,
        "success": bool(fit.success),
    }


class FitStore(StoreBase):
    """The ``fits`` table."""

    def save_fits(self, fits: Sequence[LawFit]) -> list[str]:
        """Store fits in one transaction; returns their new ids, in their order."""
        with self._writing(f"save {len(fits)} fit(s)") as con:
            rows = [
                _fit_row(fit, f"fit-{uuid.uuid4().hex[:12]}", self._next_seq(con)) for fit in fits
            ]
            if rows:
                self._insert(con, "fits", {k: [r[k] for r in rows] for k in rows[0]})
        return [r["fit_id"] for r in rows]

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
        return [(r["fit_id"], _fit(r)) for r in self._records(sql, params)]

    def fitted_groups(self) -> list[tuple[str, str]]:
        """The (study, metric) pairs whose newest fit of some source succeeded, sorted;
        read from the small columns alone (no fit body is decoded)."""
        rows = self._records(
            "SELECT DISTINCT study, metric FROM fits WHERE success AND seq IN"
            " (SELECT max(seq) FROM fits GROUP BY study, metric, source)"
            " ORDER BY study, metric"
        )
        return [(r["study"], r["metric"]) for r in rows]

    def fit_studies(self, fit_ids: Sequence[str]) -> list[str]:
        """The studies the fits ``fit_ids`` belong to, sorted (ids not stored are skipped);
        read from the small columns alone."""
        if not fit_ids:
            return []
        rows = self._records(
            "SELECT DISTINCT study FROM fits WHERE list_contains(?, fit_id) ORDER BY study",
            [list(fit_ids)],
        )
        return [r["study"] for r in rows]
