"""The Sources screen: add a source through its generated form, price it, edit, remove."""

from __future__ import annotations

from textual.widgets import DataTable, Input, Select, Static

from planner.tui.app import make_app
from planner.tui.messages import CostPreviewed, SourceSaved
from planner.tui.screens.sources import SourceForm
from planner.tui.widgets.config_form import ConfigForm
from tests.tui.helpers import caught, settle


async def open_form(app, pilot, kind: str) -> SourceForm:
    await pilot.press("a")
    await pilot.pause()
    form = app.screen
    assert isinstance(form, SourceForm)
    form.query_one("#source-kind", Select).value = kind
    await pilot.pause()
    return form


async def test_add_licensed_source_through_the_form(settings, store, registry, docs):
    seen = []
    app = make_app(settings, store, registry)
    async with app.run_test(size=(100, 40), message_hook=seen.append) as pilot:
        await settle(app, pilot)
        form = await open_form(app, pilot, "licensed")
        form.query_one("#source-name", Input).value = "pubmed"
        config = form.query_one(ConfigForm)
        config.query_one("#field-paths", Input).value = str(docs / "*.jsonl")
        config.query_one("#field-usd_per_token", Input).value = "2e-6"
        config.query_one("#field-max_tokens", Input).value = "1M"
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert not isinstance(app.screen, SourceForm), "the form closes once the store has it"
        [saved] = caught(seen, SourceSaved)
        assert saved.source.kind == "licensed" and not saved.replaced
        await settle(app, pilot)
        table = app.screen.query_one("#sources-table", DataTable)
        assert table.row_count == 1
        row = table.get_row("pubmed")
        assert row[1] == "licensed"
        assert row[3] == "$2e-06"  # marginal cost per token of price 2e-6 usd/token
    # the store has it, exactly as `annealplan sources add` would have written it
    stored = store.source("pubmed")
    assert stored.cost is not None and stored.cost.model == "linear"
    assert stored.config["paths"] == [str(docs / "*.jsonl")]


async def test_form_shows_validation_errors_under_each_field(settings, store, registry):
    app = make_app(settings, store, registry)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        form = await open_form(app, pilot, "licensed")
        config = form.query_one(ConfigForm)
        config.query_one("#field-usd_per_token", Input).value = "-1"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, SourceForm), "an invalid form stays open"
        assert "required" in config.error_text("paths")
        assert "required" in config.error_text("max_tokens")
        assert "greater than or equal to 0" in config.error_text("usd_per_token")
        assert "required" in str(form.query_one("#error-name", Static).content)
        assert config.error_text("text_field") == ""
        assert store.sources() == []


async def test_cost_preview_prices_a_token_count(settings, store, registry, docs):
    from planner.sources.session import build_source

    store.add_source(
        build_source(
            registry,
            settings.rates.as_rates(),
            kind_name="licensed",
            name="pubmed",
            raw_config={"paths": [str(docs / "*.jsonl")], "usd_per_token": 2e-6, "max_tokens": 1e9},
        )
    )
    seen = []
    app = make_app(settings, store, registry)
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await settle(app, pilot)
        await pilot.press("c")
        await pilot.press(*"2M", "enter")
        await settle(app, pilot)
        [preview] = caught(seen, CostPreviewed)
        assert preview.tokens == 2e6 and abs(preview.cost - 4.0) < 1e-9 and preview.unit == "usd"
        assert "cost $4" in str(app.screen.query_one("#cost-result", Static).content)


async def test_bad_config_from_the_plugin_opens_the_error_modal(
    settings, store, registry, tmp_path
):
    """A glob that matches no file passes the model but not the plugin: the error modal
    opens over the form, which keeps what was typed."""
    from planner.tui.widgets.error_modal import ErrorModal

    app = make_app(settings, store, registry)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        form = await open_form(app, pilot, "files")
        form.query_one("#source-name", Input).value = "empty"
        form.query_one("#field-paths", Input).value = str(tmp_path / "nothing" / "*.jsonl")
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert isinstance(app.screen, ErrorModal)
        assert app.screen_stack[-2] is form
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is form
        assert form.query_one("#source-name", Input).value == "empty"
    assert store.sources() == []
