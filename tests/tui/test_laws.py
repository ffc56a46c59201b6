"""The Laws screen: fit a metric with the real fitting code, draw it, switch the method."""

from __future__ import annotations

import math

from textual.widgets import DataTable, Input, Select, Static

from planner.tui.app import make_app
from planner.tui.messages import FitFinished, LawsLoaded
from tests.tui.helpers import caught, settle


async def test_fit_saves_laws_and_draws_them(settings, runs_store, registry):
    seen = []
    app = make_app(settings, runs_store, registry, mode="laws")
    async with app.run_test(size=(100, 32), message_hook=seen.append) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert screen.query_one("#laws-metric", Select).value == "default\tdomain_acc"
        screen.query_one("#laws-boot", Input).value = "50"
        await pilot.press("f")
        await settle(app, pilot, rounds=3)
        [done] = caught(seen, FitFinished)
        assert done.metric == "domain_acc"
        assert {f.source for f in done.fits} == {"control", "pubmed", "textbooks"}
        assert all(f.success and f.boot is not None and len(f.boot) == 50 for f in done.fits)
        loaded = caught(seen, LawsLoaded)[-1].data
        assert set(loaded.curves) == {"control", "pubmed", "textbooks"}
        _grid, point, low, high = loaded.curves["pubmed"]
        assert (low <= point).all() and (point <= high).all()
        # each law over its own runs and one decade beyond, as the report draws it
        for source, (grid, *_) in loaded.curves.items():
            own = [o.compute for o in loaded.observations if o.source == source]
            assert math.isclose(grid[0], min(own) / 1.5)
            assert math.isclose(grid[-1], max(own) * 10)
        table = screen.query_one("#laws-params", DataTable)
        assert table.row_count == 3
        # how sure the fits are of the pair at the end of the drawn range (the control
        # anneal is no candidate)
        [belief] = loaded.beliefs
        assert {belief.a, belief.b} == {"pubmed", "textbooks"} and 0 <= belief.p <= 1
        text = str(screen.query_one("#laws-crossovers", Static).render())
        assert belief.describe(f"{loaded.beliefs_at:.4g} {loaded.compute_unit}") in text
    # saved, as `annealplan fit` saves them
    assert len(runs_store.fits(metric="domain_acc")) == 3


async def test_method_switch_refits_independently(settings, runs_store, registry):
    seen = []
    app = make_app(settings, runs_store, registry, mode="laws")
    async with app.run_test(size=(100, 32), message_hook=seen.append) as pilot:
        await settle(app, pilot)
        app.screen.query_one("#laws-boot", Input).value = "0"
        await pilot.press("m")
        assert app.screen.query_one("#laws-method", Select).value == "independent"
        app.screen.query_one("#laws-family", Select).value = "loglinear"
        await pilot.press("f")
        await settle(app, pilot, rounds=3)
        [done] = caught(seen, FitFinished)
        assert {f.method for f in done.fits} == {"independent"}
        assert {f.family for f in done.fits} == {"loglinear"}


async def test_no_runs_says_what_to_do(settings, store, registry):
    app = make_app(settings, store, registry, mode="laws")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        status = str(app.screen.query_one("#laws-status").content)
        assert "import a runs table" in status
