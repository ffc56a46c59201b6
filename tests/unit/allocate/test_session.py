"""Parsing the allocation verbs' typed options (shared by the CLI and the TUI)."""

from __future__ import annotations

import pytest

from planner.allocate.session import ProblemOptions, budget_range, load_for
from planner.errors import SolveError
from planner.units import Rates, Unit


def test_budget_range_is_geometric_in_the_first_unit():
    unit, budgets = budget_range("10gpuh", "1000gpuh", 3)
    assert unit is Unit.GPU_HOURS
    assert [round(b, 6) for b in budgets] == [10.0, 100.0, 1000.0]


@pytest.mark.parametrize(("low", "high", "points"), [("10gpuh", "1gpuh", 5), ("1gpuh", "2gpuh", 1)])
def test_budget_range_refuses_an_empty_range(low, high, points):
    with pytest.raises(SolveError, match="0 < --from < --to"):
        budget_range(low, high, points)


def test_a_token_budget_is_refused_before_the_store_is_read():
    with pytest.raises(SolveError, match="a budget is a cost"):
        load_for(None, None, Rates(), Unit.TOKENS, ProblemOptions())
