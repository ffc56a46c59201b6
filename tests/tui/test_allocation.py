"""The Allocation screen: solve for a budget with the real allocation code, read the plan."""

from __future__ import annotations

import math

import pytest
from textual.widgets import DataTable, Input, Static
from textual_plotext import PlotextPlot

from planner.laws.session import fit_store
from planner.tui.app import make_app
from planner.tui.messages import FrontierComputed, NextRunRecommended, PlanSolved
from planner.tui.widgets.error_modal import ErrorModal
from tests.tui.helpers import caught, settle


@pytest.fixture
def fitted_store(runs_store):
    fit_store(runs_store, study="default", metric="domain_acc", n_boot=50)
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
        spent = sum(a.cost for a in plan.allocations)
        # the budget is spent, or what is left is held back by the trust region (10×)
        assert plan.trust_multiple == 10
        assert spent <= 50 * (1 + 1e-6)
        assert math.isclose(spent, 50, rel_tol=1e-3) or plan.trust_limited
        assert len(solved.frontier) > 3
        table = app.screen.query_one("#alloc-plan", DataTable)
        assert table.row_count == len(plan.allocations)
        assert "micro budget" in str(app.screen.query_one("#alloc-point", Static).content)

        await pilot.press("n")
        await settle(app, pilot)
        [rec] = caught(seen, NextRunRecommended)
        assert "P(wrong allocation" in rec.text
    [(plan_id, stored)] = fitted_store.plans()
    assert plan_id == solved.plan_id and stored.budget == 50


def plotted(plot) -> list[tuple[list[float], list[float]]]:
    """The (x, y) series a PlotextPlot holds (what its next render draws)."""
    monitor = plot.plt._active.monitor
    return list(zip(monitor.x, monitor.y, strict=True))


def assert_frontier_drawn(screen) -> None:
    rows = screen.frontier_rows
    assert len(rows) > 3 and all(math.isfinite(r.gain) for r in rows)
    series = plotted(screen.query_one("#alloc-frontier", PlotextPlot))
    # the plan's gain, its band (two edges), the best single source, the budget line
    assert len(series) >= 4
    gains = [r.gain for r in rows]
    assert any(
        len(ys) == len(gains) and all(math.isclose(a, b) for a, b in zip(ys, gains, strict=True))
        for _, ys in series
    ), "the optimal gain is not among the plotted series"


async def test_solve_draws_the_frontier(settings, fitted_store, registry):
    app = make_app(settings, fitted_store, registry, mode="allocation")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.click("#alloc-budget")
        await pilot.press(*"50gpuh", "enter")
        await settle(app, pilot)
        assert_frontier_drawn(app.screen)


async def test_stored_plan_is_shown_on_open_with_its_frontier(settings, fitted_store, registry):
    """The plan `annealplan allocate` stored (as the demo does) comes with a frontier: the
    plot used to stay empty until the person solved again."""
    from planner.allocate.session import ProblemOptions, solve_budget
    from planner.units import Rates

    rates = Rates(settings.rates.flops_per_gpu_hour, settings.rates.usd_per_gpu_hour)
    solve_budget(fitted_store, registry, rates, "20gpuh", ProblemOptions(max_extrapolation=10))
    # The plan keeps the options it was solved with, so its frontier is the same problem's.
    from planner.allocate.session import options_of

    stored = options_of(fitted_store.plans(limit=1)[0][1])
    assert stored.max_extrapolation == 10 and stored.guards == ()
    seen = []
    app = make_app(settings, fitted_store, registry, mode="allocation")
    async with app.run_test(size=(80, 24), message_hook=seen.append) as pilot:
        await settle(app, pilot, rounds=3)
        assert app.screen.query_one("#alloc-budget", Input).value == "20gpuh"
        assert app.screen.query_one("#alloc-plan", DataTable).row_count >= 1
        [computed] = caught(seen, FrontierComputed)
        assert computed.problem == ""
        assert_frontier_drawn(app.screen)
        budgets = [r.budget for r in app.screen.frontier_rows]
        assert budgets[0] < 20 < budgets[-1]


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


async def test_with_several_studies_each_choice_names_its_study(
    settings, runs_store, registry, tmp_path
):
    """A store with two studies: the metric choices carry their study, and the plan is
    solved on the chosen one (before, solving said to pass --study, which the screen had
    no way to do)."""
    import csv

    from textual.widgets import Select

    from planner.store import read_runs_table
    from tests.tui.conftest import write_runs

    rows = list(csv.DictReader(write_runs(tmp_path / "more.csv", seed=1).open()))
    second = tmp_path / "second.csv"
    with second.open("w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=[*rows[0], "study"])
        out.writeheader()
        out.writerows({**r, "study": "second"} for r in rows)
    runs_store.import_runs(read_runs_table(second))
    fit_store(runs_store, metric="domain_acc", n_boot=50)
    assert runs_store.fitted_groups() == [("default", "domain_acc"), ("second", "domain_acc")]
    seen = []
    app = make_app(settings, runs_store, registry, mode="allocation")
    async with app.run_test(size=(80, 24), message_hook=seen.append) as pilot:
        await settle(app, pilot)
        select = app.screen.query_one("#alloc-metric", Select)
        assert select.is_blank()  # two studies and no stored plan: nothing is guessed
        labels = [str(prompt) for prompt, value in select._options if isinstance(value, tuple)]
        assert labels == ["default/domain_acc", "second/domain_acc"]
        select.value = ("second", "domain_acc")
        await pilot.click("#alloc-budget")
        await pilot.press(*"50gpuh", "enter")
        await settle(app, pilot)
        [solved] = caught(seen, PlanSolved)
        assert solved.plan.success and solved.plan.options.study == "second"
        assert not isinstance(app.screen, ErrorModal)


def rendered(widget) -> list[str]:
    """The lines a widget draws at its size on screen (what a person reads)."""
    from textual.geometry import Region

    return [strip.text for strip in widget.render_lines(Region(0, 0, *widget.size))]


def assert_whole(widget, text: str) -> list[str]:
    """The widget draws ``text`` within its width, wrapped only between words: no number
    is cut or clipped."""
    lines = rendered(widget)
    assert all(len(line.rstrip()) <= widget.size.width for line in lines)
    assert " ".join(lines).split() == text.split()
    return lines


@pytest.mark.parametrize("measured", [None, 0.0105])
async def test_the_plan_story_reads_whole_at_80_columns(settings, store, registry, measured):
    """A stored plan with both predictions, its certificate, confirmation and trust region:
    at 80×24 every number is drawn whole, the table needs no horizontal scroll, and the
    side panel scrolls to the end of the story."""
    from planner.report import story
    from tests.helpers.plans import story_plan

    plan = story_plan(measured_gain=measured)
    store.save_plan(plan)
    app = make_app(settings, store, registry, mode="allocation")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot, rounds=3)
        screen = app.screen
        summary = screen.query_one("#alloc-summary", Static)
        lines = assert_whole(summary, str(summary.content))
        drawn = " ".join(lines)
        assert "coverage rule, H = 0.38" in drawn
        assert "+0.071 [+0.058, +0.083]" in drawn
        assert "additive prediction (gains summed): +0.083 [+0.069, +0.097]" in drawn

        table = screen.query_one("#alloc-plan", DataTable)
        assert table.virtual_size.width <= table.size.width
        rows = rendered(table)
        assert any("synthetic (trust)" in r and "+0.052 [+0.041, +0.063]" in r for r in rows)

        panel = screen.query_one("#alloc-story", Static)
        text = "\n".join(story.plan_panel_lines(plan))
        assert str(panel.content) == text
        words = " ".join(assert_whole(panel, text))
        for expected in (
            "web: 0.000412/$ = λ",
            "synthetic: 0.000733/$ > λ, trust region",
            "textbook: 0.000151/$ < λ, not bought",
            "predicted (coverage): +0.012 [+0.008, +0.016]",
            "additive: +0.014 [+0.01, +0.018]",
            "trusted up to 10× its largest measured budget",
            "the laws are not trusted past 1.2M tokens of synthetic; measure larger first",
        ):
            assert expected in " ".join(words.split()), expected
        if measured is None:
            assert "not run yet; run it with: annealplan confirm PLAN" in " ".join(words.split())
        else:
            assert "measured gain: +0.0105 (run mix-1)" in words
        # the panel is taller than the screen leaves it: it scrolls to the trust warning
        side = screen.query_one("#alloc-side")
        side.scroll_end(animate=False)
        await pilot.pause()
        assert side.scroll_y == side.max_scroll_y > 0
        assert "micro budget" in str(screen.query_one("#alloc-point", Static).content)
