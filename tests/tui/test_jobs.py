"""The Jobs screen: design a sweep through its generated form (as `annealplan design`)."""

from __future__ import annotations

from textual.widgets import DataTable, Input

from planner.dispatch.session import SweepOverrides, merge_overrides
from planner.tui.app import make_app
from planner.tui.messages import SweepDesigned
from planner.tui.screens.jobs import RunRequest, SweepForm, text_bar
from planner.tui.widgets.config_form import ConfigForm
from planner.tui.widgets.error_modal import ErrorModal
from planner.units import Unit
from tests.tui.helpers import caught, settle


def add_sources(store, registry, settings, docs):
    from planner.sources.session import build_source

    for name, price in (("pubmed", 2e-6), ("textbooks", 5e-6)):
        store.add_source(
            build_source(
                registry,
                settings.rates.as_rates(),
                kind_name="licensed",
                name=name,
                raw_config={
                    "paths": [str(docs / "*.jsonl")],
                    "usd_per_token": price,
                    "max_tokens": 1e12,
                },
            )
        )


async def test_design_a_sweep_through_the_form(settings, store, registry, docs):
    add_sources(store, registry, settings, docs)
    seen = []
    app = make_app(settings, store, registry, mode="jobs")
    async with app.run_test(size=(100, 40), message_hook=seen.append) as pilot:
        await settle(app, pilot)
        await pilot.press("d")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, SweepForm)
        config = form.query_one(ConfigForm)
        config.query_one("#field-budget", Input).value = "$30k"
        config.query_one("#field-model_params", Input).value = "135M"
        config.query_one("#field-seeds", Input).value = "2"
        config.query_one("#field-experiment", Input).value = "first"
        await pilot.press("ctrl+s")
        await settle(app, pilot, rounds=3)
        [designed] = caught(seen, SweepDesigned)
        assert designed.name == "first"
        # the control anneal once per seed; sources within their caps (the tiny document
        # pool caps them, so their grid collapses to one point)
        caps = {s.name: s.cap_tokens for s in store.sources()}
        assert sum(s.source is None for s in designed.specs) == 2
        assert {s.seed for s in designed.specs} == {0, 1}
        assert all(s.tokens <= caps[s.source] for s in designed.specs if s.source)
        assert 0 < designed.meta["cost"] <= 0.05 * 30_000 * (1 + 1e-9)
        n = len(designed.specs)
        table = app.screen.query_one("#jobs-table", DataTable)
        assert table.row_count == len(designed.specs)
        assert f"{n} runs" in str(app.screen.query_one("#jobs-summary").content)
    meta, specs = store.experiment("first")
    assert specs == designed.specs and meta["seeds"] == 2


async def test_sweep_form_checks_its_fields(settings, store, registry):
    app = make_app(settings, store, registry, mode="jobs")
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("d")
        await pilot.pause()
        config = app.screen.query_one(ConfigForm)
        config.query_one("#field-points", Input).value = "1"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, SweepForm)
        assert "required" in config.error_text("budget")
        assert "greater than or equal to 2" in config.error_text("points")


async def test_design_without_sources_says_what_to_do(settings, store, registry):
    app = make_app(settings, store, registry, mode="jobs")
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("d")
        await pilot.pause()
        config = app.screen.query_one(ConfigForm)
        config.query_one("#field-budget", Input).value = "100gpuh"
        config.query_one("#field-model_params", Input).value = "135M"
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert isinstance(app.screen, ErrorModal)
        assert "add some on the Sources screen" in app.screen.error_message


def test_text_bar():
    assert text_bar(0.5, 10) == "█████░░░░░  50%"
    assert text_bar(2.0, 4) == "████ 100%"
    assert text_bar(float("nan"), 4) == "░░░░   0%"


def test_the_run_form_merges_into_the_meta_as_sweep_run_does():
    meta = {
        "base_model": "models/base",
        "evaluation": {"tasks": ["medqa"], "limit": 50, "batch_size": 4},
        "unit": "gpu_hours",
    }
    req = RunRequest(
        base_model="models/other", tasks=["pubmedqa"], study="med", compute_unit=Unit.USD
    )
    assert req.overrides(meta) == merge_overrides(
        meta,
        SweepOverrides(
            base_model="models/other", tasks=("pubmedqa",), study="med", compute_unit="usd"
        ),
    )
    assert req.overrides(meta)["evaluation"] == {
        "tasks": ["pubmedqa"],
        "limit": 50,
        "batch_size": 4,
    }
