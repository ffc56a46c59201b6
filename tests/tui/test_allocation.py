"""The Allocation screen: solve for a budget with the real allocation code, read the plan."""

from __future__ import annotations

import math

import pytest
from textual.widgets import DataTable, Input, Static

from planner.tui.app import make_app
from planner.tui.messages import NextRunRecommended, PlanSolved
from planner.tui.screens.laws import fit_metric
from planner.tui.widgets.error_modal import ErrorModal
from tests.tui.helpers import caught, settle


@pytest.fixture
def fitted_store(runs_store):
    fit_metric(runs_store, "default", "domain_acc", family="auto", method="joint", n_boot=50)
    return runs_store


async def test_solve_shows_the_plan_and_saves_it(settings, fitted_store, registry):
    seen = []
    app = make_app(settings, fitted_store, registry, mode="allocation")
    async with app.run_test(size=(80, 24), message_hook=seen.append) as pilot:
        await settle(app, pilot)
        await pilot.click("#alloc-budget")
        await pilot.press(*"50gpuh", "enter")
        await settle(app, pilot)
        [solved] = caught(seen, PlanSolved)
        plan = solved.plan
        assert plan.success and plan.unit.value == "gpu_hours" and plan.budget == 50
        assert {a.source for a in plan.allocations} <= {"pubmed", "textbooks"}
        assert math.isclose(sum(a.cost for a in plan.allocations), 50, rel_tol=1e-3)
        assert len(solved.frontier) > 3
        table = app.screen.query_one("#alloc-plan", DataTable)
        assert table.row_count == len(plan.allocations)
        assert "picks" in str(app.screen.query_one("#alloc-point", Static).content)

        await pilot.press("n")
        await settle(app, pilot)
        [rec] = caught(seen, NextRunRecommended)
        assert "P(wrong allocation" in rec.text
    [(plan_id, stored)] = fitted_store.plans()
    assert plan_id == solved.plan_id and stored.budget == 50


async def test_stored_plan_is_shown_on_open(settings, fitted_store, registry):
    from planner.allocate.plan import make_plan
    from planner.commands.allocate import load
    from planner.tui.screens.allocation import _obj
    from planner.units import Unit

    loaded = load(
        _obj(type("A", (), {"settings": settings, "registry": registry})(), fitted_store),
        Unit.GPU_HOURS,
        None,
        None,
        (),
        None,
        None,
        None,
        None,
        0.0,
        None,
    )
    fitted_store.save_plan(make_plan(loaded.problem, 20.0), loaded.problem.fit_ids)
    app = make_app(settings, fitted_store, registry, mode="allocation")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert app.screen.query_one("#alloc-budget", Input).value == "20gpuh"
        assert app.screen.query_one("#alloc-plan", DataTable).row_count >= 1


async def test_a_token_budget_opens_the_error_modal(settings, fitted_store, registry):
    app = make_app(settings, fitted_store, registry, mode="allocation")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.click("#alloc-budget")
        await pilot.press(*"40B", "enter")
        await settle(app, pilot)
        assert isinstance(app.screen, ErrorModal)
        assert "a budget is a cost" in app.screen.error_message
        await pilot.press("escape")
        assert not isinstance(app.screen, ErrorModal)
    assert fitted_store.plans() == []
