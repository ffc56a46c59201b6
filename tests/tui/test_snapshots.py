"""One SVG snapshot per screen at 80×24 (reviewed before each --snapshot-update)."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from planner.laws.session import fit_store
from planner.tui.app import make_app
from tests.tui.test_jobs import add_sources

SIZE = (80, 24)


async def steady(pilot) -> None:
    """Finish workers, hide toasts and stop cursors blinking, so the picture is stable."""
    app = pilot.app
    for _ in range(3):
        await pilot.pause()
        await app.workers.wait_for_complete()
    await pilot.pause()
    app.clear_notifications()
    for screen in app.screen_stack:
        for widget in screen.query(Input):
            widget.cursor_blink = False
    await pilot.pause()


@pytest.fixture
def sourced(store, registry, settings, docs):
    add_sources(store, registry, settings, docs)
    return store


def test_sources_screen(snap_compare, settings, sourced, registry):
    async def run_before(pilot):
        await steady(pilot)
        await pilot.press("c", *"2B", "enter")
        await steady(pilot)

    assert snap_compare(
        make_app(settings, sourced, registry), terminal_size=SIZE, run_before=run_before
    )


def test_source_form_with_errors(snap_compare, settings, store, registry):
    async def run_before(pilot):
        await steady(pilot)
        await pilot.press("a")
        await pilot.pause()
        pilot.app.screen.query_one("#source-kind").value = "licensed"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await steady(pilot)

    assert snap_compare(
        make_app(settings, store, registry), terminal_size=SIZE, run_before=run_before
    )


def test_jobs_screen(snap_compare, settings, sourced, registry):
    from planner.tui.screens.jobs import SweepRequest, design

    design(
        settings,
        registry,
        sourced,
        SweepRequest(budget="$30", model_params="135M", experiment="first"),
    )

    async def run_before(pilot):
        await steady(pilot)

    app = make_app(settings, sourced, registry, mode="jobs")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_laws_screen(snap_compare, settings, runs_store, registry):
    fit_store(runs_store, study="default", metric="domain_acc", n_boot=50)

    async def run_before(pilot):
        from textual.widgets import DataTable

        await steady(pilot)
        # The parameter table fills from a message posted after the fit worker ends; under a
        # loaded machine that can land after the first settle (5 s was not always enough in
        # a fresh-clone run), so wait for its rows, up to a minute.
        for _ in range(1200):
            tables = list(pilot.app.screen.query(DataTable))
            if tables and all(t.row_count for t in tables):
                break
            await pilot.pause(0.05)
        # the header row is re-measured for the new column widths on a later refresh; a
        # picture taken before it shows the empty table's narrow header over wide rows
        for t in tables:
            t.refresh(layout=True)
        await pilot.pause(0.2)
        await steady(pilot)

    app = make_app(settings, runs_store, registry, mode="laws")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_allocation_screen(snap_compare, settings, runs_store, registry):
    fit_store(runs_store, study="default", metric="domain_acc", n_boot=50)

    async def run_before(pilot):
        await steady(pilot)
        await pilot.click("#alloc-budget")
        await pilot.press(*"50gpuh", "enter")
        await steady(pilot)
        await pilot.press("n")
        await steady(pilot)

    app = make_app(settings, runs_store, registry, mode="allocation")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_executors_screen_without_executors(snap_compare, settings, store, registry):
    async def run_before(pilot):
        await steady(pilot)

    app = make_app(settings, store, registry, mode="executors")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_plugins_screen(snap_compare, settings, store, registry):
    async def run_before(pilot):
        await steady(pilot)

    app = make_app(settings, store, registry, mode="plugins")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_error_modal(snap_compare, settings, store, registry):
    async def run_before(pilot):
        await steady(pilot)
        await pilot.click("#alloc-budget")
        await pilot.press(*"40B", "enter")
        await steady(pilot)

    app = make_app(settings, store, registry, mode="allocation")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
