"""Sources: the candidate data sources, with their kind, cap and cost per token.

Adding and editing go through a form generated from the source kind's pydantic ``Config``
(validation messages under each field); saving calls the same
:func:`planner.sources.session.build_source` as ``annealplan sources add``. The cost preview
prices a token count with :func:`~planner.sources.session.quote_cost`, as
``annealplan sources cost`` does.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Select, Static
from textual.worker import Worker, WorkerState

from planner.tui.messages import CostPreviewed, SourceRemoved, SourceSaved, SourcesLoaded
from planner.tui.rows import SourceRow, format_cap, format_per_token, read_first_screen
from planner.tui.screens.base import PlannerScreen, forward_worker_error
from planner.tui.widgets.config_form import ConfigForm
from planner.units import Unit, format_quantity


class SourcesScreen(PlannerScreen):
    """The registered sources; add, edit, remove, price."""

    MODE = "sources"
    # The main table, not an input, takes focus: digits then switch screens.
    AUTO_FOCUS = "#sources-table"
    CSS_PATH = "sources.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add", "Add", tooltip="Add a source through its kind's form"),
        Binding("e", "edit", "Edit", tooltip="Edit the selected source"),
        Binding("x", "remove", "Remove", tooltip="Remove the selected source"),
        Binding("c", "focus_cost", "Cost", tooltip="Price a token count of the selected source"),
        Binding("r", "reload", "Refresh", show=False),
    ]

    def compose_body(self) -> ComposeResult:
        with Vertical(id="sources-body"):
            yield Static("reading the store…", id="store-summary", classes="muted")
            yield DataTable(id="sources-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="source-detail", markup=False, classes="muted")
            with Horizontal(id="cost-row"):
                yield Label("Cost of", id="cost-label")
                yield Input(placeholder="tokens, e.g. 2B", id="cost-tokens")
                yield Static("", id="cost-result", markup=False)

    def on_mount(self) -> None:
        table = self.query_one("#sources-table", DataTable)
        table.add_column("source", key="name")
        table.add_column("kind", key="kind")
        table.add_column("cap", key="cap")
        table.add_column("cost/token", key="per_token")
        table.add_column("cost model", key="model")
        self.rows: dict[str, SourceRow] = {}
        self.load_sources()

    # ------------------------------------------------------------------ loading
    @work(thread=True, exclusive=True, group="sources-load", exit_on_error=False)
    def load_sources(self) -> None:
        data = read_first_screen(self.store, self.registry)
        self.post_message(SourcesLoaded(data.sources, data.counts, data.rows))

    def on_sources_loaded(self, event: SourcesLoaded) -> None:
        counts = event.counts
        self.query_one("#store-summary", Static).update(
            f"{counts.get('sources', 0)} sources · {counts.get('runs', 0):,} runs · "
            f"{counts.get('metrics', 0):,} metric values · {counts.get('fits', 0)} fits · "
            f"{counts.get('plans', 0)} plans · {counts.get('experiments', 0)} experiments"
        )
        table = self.query_one("#sources-table", DataTable)
        selected = self.selected_name()
        table.clear()
        self.rows = {r.name: r for r in event.rows}
        for row in event.rows:
            table.add_row(
                row.name,
                row.kind,
                format_cap(row.cap_tokens),
                format_per_token(row),
                row.cost_model,
                key=row.name,
            )
        if not event.rows:
            self.query_one("#source-detail", Static).update(
                "No sources yet: press a to add one (its kind's form asks for what it needs)."
            )
        elif selected in self.rows:
            table.move_cursor(row=table.get_row_index(selected))
        self.show_detail()

    def selected_name(self) -> str | None:
        table = self.query_one("#sources-table", DataTable)
        if table.row_count == 0:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:
            return None
        return str(key.value) if key.value is not None else None

    @on(DataTable.RowHighlighted, "#sources-table")
    def show_detail(self) -> None:
        name = self.selected_name()
        row = self.rows.get(name or "")
        if row is None:
            return
        text = row.problem or row.formula or "curation is free"
        self.query_one("#source-detail", Static).update(f"{row.name}: {text}")

    @on(DataTable.RowSelected, "#sources-table")
    def edit_selected(self) -> None:
        self.action_edit()

    def action_reload(self) -> None:
        self.load_sources()

    # ------------------------------------------------------------------ add / edit / remove
    def action_add(self) -> None:
        self.app.push_screen(SourceForm(self.registry, self.planner.settings), self._saved)

    def action_edit(self) -> None:
        name = self.selected_name()
        if name is None:
            self.notify("No source selected; press a to add one.", severity="warning")
            return
        source = self.store.source(name)
        self.app.push_screen(
            SourceForm(self.registry, self.planner.settings, source=source), self._saved
        )

    def _saved(self, source: Any) -> None:
        if source is not None:
            self.notify(f"Saved source {source.name}.")
            self.load_sources()

    def action_remove(self) -> None:
        name = self.selected_name()
        if name is None:
            return
        self.app.push_screen(
            ConfirmModal(f"Remove source {name!r}? Its runs and fits stay in the store."),
            lambda yes: self.remove_source(name) if yes else None,
        )

    @work(thread=True, exclusive=True, group="sources-write", exit_on_error=False)
    def remove_source(self, name: str) -> None:
        store = self.store.cursor()
        try:
            store.remove_source(name)
        finally:
            store.close()
        self.post_message(SourceRemoved(name))

    def on_source_removed(self, event: SourceRemoved) -> None:
        self.notify(f"Removed source {event.name}.")
        self.load_sources()

    # ------------------------------------------------------------------ cost preview
    def action_focus_cost(self) -> None:
        self.query_one("#cost-tokens", Input).focus()

    @on(Input.Submitted, "#cost-tokens")
    def preview_cost(self, event: Input.Submitted) -> None:
        name = self.selected_name()
        if name is None:
            self.notify("Select a source first.", severity="warning")
            return
        self.compute_cost(name, event.value)

    @work(thread=True, exclusive=True, group="sources-cost", exit_on_error=False)
    def compute_cost(self, name: str, tokens_text: str) -> None:
        """What ``annealplan sources cost NAME --tokens T`` prints."""
        from planner.sources.session import quote_cost
        from planner.units import parse_tokens

        tokens = parse_tokens(tokens_text)
        store = self.store.cursor()
        try:
            source = store.source(name)
        finally:
            store.close()
        rates = self.planner.settings.rates.as_rates()
        quote = quote_cost(source, self.registry, tokens, rates=rates)
        if quote.free:
            self.post_message(CostPreviewed(name, tokens, 0.0, "usd", quote.formula))
            return
        text = (
            f"{format_quantity(tokens, Unit.TOKENS)} of {name} cost "
            f"{format_quantity(quote.cost, quote.unit)}"
        )
        if quote.exceeds_cap:
            text += f" (more than its cap of {format_cap(source.cap_tokens)})"
        self.post_message(CostPreviewed(name, tokens, quote.cost, quote.unit.value, text))

    def on_cost_previewed(self, event: CostPreviewed) -> None:
        self.query_one("#cost-result", Static).update(event.text)


class ConfirmModal(ModalScreen[bool]):
    """A yes/no question."""

    DEFAULT_CSS = """
    ConfirmModal { align: center middle; }
    ConfirmModal > Vertical {
        width: 60; max-width: 95%; height: auto; border: thick $warning;
        background: $surface; padding: 1 2;
    }
    ConfirmModal Horizontal { height: auto; margin-top: 1; }
    ConfirmModal Button { margin-right: 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "answer(False)", "Cancel", show=False)
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, markup=False)
            with Horizontal():
                yield Button("Yes", variant="warning", id="yes")
                yield Button("No", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class SourceForm(ModalScreen[Any]):
    """Add or edit a source: name, kind and the kind's configuration form.

    Saving runs ``build_source`` (which may read the files to count the cap) in a worker
    and closes the form only when the store has the source; an error opens the error
    modal over the form, so nothing typed is lost.
    """

    CSS_PATH = "sources.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    def __init__(self, registry: Any, settings: Any, *, source: Any = None) -> None:
        super().__init__()
        self.registry = registry
        self.settings = settings
        self.source = source
        kinds = sorted(registry.source_kinds)
        self.kind = source.kind if source is not None else (kinds[0] if kinds else "")

    def compose(self) -> ComposeResult:
        editing = self.source is not None
        with Vertical(id="source-form"):
            yield Static(
                f"Edit source {self.source.name}" if editing else "Add a source",
                id="form-title",
            )
            with Horizontal(id="form-head"):
                with Vertical(classes="head-field"):
                    yield Label("name *", classes="form-label")
                    yield Input(
                        value=self.source.name if editing else "",
                        placeholder="e.g. pubmed",
                        id="source-name",
                        disabled=editing,
                    )
                    yield Static("", id="error-name", classes="form-error", markup=False)
                with Vertical(classes="head-field"):
                    yield Label("kind", classes="form-label")
                    yield Select(
                        [(k, k) for k in sorted(self.registry.source_kinds)],
                        value=self.kind,
                        allow_blank=False,
                        id="source-kind",
                        disabled=editing,
                    )
            yield Static(self._kind_line(), id="kind-description", markup=False, classes="muted")
            yield self._form()
            with Horizontal(id="form-buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")
                yield Static("", id="form-status", classes="muted")

    def _kind_line(self) -> str:
        kind = self.registry.source_kinds.get(self.kind)
        return kind.description if kind is not None else ""

    def _form(self) -> ConfigForm:
        kind = self.registry.source_kinds.get(self.kind)
        values = dict(self.source.config) if self.source is not None else {}
        assert kind is not None, "the registry has no source kinds"
        return ConfigForm(kind.Config, values, id="config-form")

    def on_mount(self) -> None:
        if self.source is None:
            self.query_one("#source-name", Input).focus()

    @on(Select.Changed, "#source-kind")
    async def kind_changed(self, event: Select.Changed) -> None:
        if event.value is Select.BLANK or event.value == self.kind:
            return
        self.kind = str(event.value)
        await self.query_one("#config-form", ConfigForm).remove()
        await self.query_one("#source-form").mount(
            self._form(), after=self.query_one("#kind-description")
        )
        self.query_one("#kind-description", Static).update(self._kind_line())

    @property
    def config_form(self) -> ConfigForm:
        return self.query_one("#config-form", ConfigForm)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        name = self.query_one("#source-name", Input).value.strip()
        name_error = self.query_one("#error-name", Static)
        name_error.update("required: name the source" if not name else "")
        name_error.set_class(not name, "shown")
        config = self.config_form.validated()
        if not name or config is None:
            return
        raw = config.model_dump(mode="json", exclude_unset=True)
        self.query_one("#form-status", Static).update("saving… (counting the cap may read files)")
        self.save_source(name, self.kind, raw)

    @work(thread=True, exclusive=True, group="source-save", exit_on_error=False)
    def save_source(self, name: str, kind: str, raw: dict[str, Any]) -> None:
        """``annealplan sources add KIND --name NAME --set …`` (``--replace`` when editing)."""
        from planner.sources.session import build_source

        rates = self.settings.rates.as_rates()
        source = build_source(self.registry, rates, kind_name=kind, name=name, raw_config=raw)
        store = self.app.store.cursor()  # type: ignore[attr-defined]
        try:
            store.add_source(source, replace=self.source is not None)
        finally:
            store.close()
        self.post_message(SourceSaved(source, replaced=self.source is not None))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        forward_worker_error(self, event)
        if event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            self.query_one("#form-status", Static).update("")

    def on_source_saved(self, event: SourceSaved) -> None:
        event.stop()
        self.dismiss(event.source)
