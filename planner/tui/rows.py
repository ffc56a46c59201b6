"""The first screen's rows, computed without Textual.

What the Sources screen shows for each source (kind, cap, cost per token, formula) is read
here, in a module that imports neither Textual nor any screen, so the start-up benchmark's
UI-free baseline runs the very same code as the screen's worker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from planner.units import Unit, format_quantity


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One source as the table shows it (what needed the registry is computed off-thread)."""

    name: str
    kind: str
    cap_tokens: float | None
    cost_model: str
    usd_per_token: float | None
    cost_unit: str
    cost_per_token: float | None
    formula: str = ""
    problem: str = ""


#: marginal cost per token is read at this many tokens (linear models: any point)
PER_TOKEN_AT = 1e9


def describe_source(source: Any, registry: Any) -> SourceRow:
    """A table row for ``source``; a cost model that cannot be built is shown, not raised."""
    cost_model, unit, per_token, formula, problem = "free", "", None, "", ""
    if source.cost is not None:
        cost_model, unit = source.cost.model, source.cost.unit.value
        try:
            model = registry.cost_model_for(source)
            step = PER_TOKEN_AT * 1e-3
            per_token = float(model.cost(PER_TOKEN_AT + step) - model.cost(PER_TOKEN_AT)) / step
            formula = model.describe()
        except Exception as e:  # a plugin gone missing must not hide the other sources
            problem = str(e)
    else:
        per_token, unit = 0.0, "usd"
    return SourceRow(
        name=source.name,
        kind=source.kind,
        cap_tokens=source.cap_tokens,
        cost_model=cost_model,
        usd_per_token=per_token if unit == "usd" else None,
        cost_unit=unit,
        cost_per_token=per_token,
        formula=formula,
        problem=problem,
    )


def format_per_token(row: SourceRow) -> str:
    if row.problem:
        return "?"
    if row.cost_per_token is None:
        return ""
    if row.cost_per_token == 0:
        return "free"
    unit = {"usd": "$", "flops": " FLOP", "gpu_hours": " GPU-h"}.get(row.cost_unit, row.cost_unit)
    if unit == "$":
        return f"${row.cost_per_token:.3g}"
    return f"{row.cost_per_token:.3g}{unit}"


def format_cap(cap: float | None) -> str:
    return (
        "unbounded" if cap is None or not math.isfinite(cap) else format_quantity(cap, Unit.TOKENS)
    )


@dataclass(frozen=True, slots=True)
class FirstScreen:
    """What the Sources screen needs to draw: the sources, the store's counts, the rows."""

    sources: Sequence[Any]
    counts: Mapping[str, int]
    rows: Sequence[SourceRow]


def read_first_screen(store: Any, registry: Any) -> FirstScreen:
    """The Sources screen's queries (``store.sources()``, ``store.counts()``) and rows.

    Args:
        store: the open store; a cursor of it is used and closed (one per worker thread).
        registry: the plugin registry (the sources' cost models).
    """
    cursor = store.cursor()
    try:
        sources = cursor.sources()
        counts = cursor.counts()
    finally:
        cursor.close()
    return FirstScreen(sources, counts, [describe_source(s, registry) for s in sources])
