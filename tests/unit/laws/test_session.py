"""The fitting session shared by ``annealplan fit`` and the TUI, and the laws' drawing range."""

from __future__ import annotations

import math

import pytest

from planner.errors import FitError
from planner.laws.session import draw_grid, draw_range, family_candidates, fit_store
from planner.store import open_store


def test_a_law_is_drawn_over_its_runs_and_one_decade_beyond():
    assert draw_range([3.0, 30.0, 300.0]) == (2.0, 3000.0)
    # no run of its own: the largest fitted compute stands in
    low, high = draw_range([], fallback=6.0)
    assert math.isclose(low, 4.0) and math.isclose(high, 60.0)
    assert all(math.isnan(v) for v in draw_range([0.0, -1.0]))
    grid = draw_grid([3.0, 300.0], points=7)
    assert grid.size == 7 and math.isclose(grid[0], 2.0) and math.isclose(grid[-1], 3000.0)
    assert draw_grid([]).size == 0


def test_family_candidates():
    assert family_candidates("auto") is None
    assert {c.family for c in family_candidates("power")} == {"power"}
    assert family_candidates("from-a-plugin") == ["from-a-plugin"]


def test_fit_store_without_runs_says_what_to_do(tmp_path):
    store = open_store(tmp_path / "s.duckdb")
    try:
        with pytest.raises(FitError, match="study=s1 metric=acc: import some"):
            fit_store(store, study="s1", metric="acc")
    finally:
        store.close()
