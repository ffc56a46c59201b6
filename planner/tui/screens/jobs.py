"""Experiments and jobs: design a sweep, dispatch it, watch its jobs, read a job's log,
cancel.

Designing calls ``annealplan design``'s core function
(``planner.design.session.design_stored_sweep``: ``design_sweep``, then
``store.save_experiment``); the sweep's form is generated from :class:`SweepRequest` like a
source's. Dispatching, polling, logs and cancelling go through the executor client the app
was given, with the functions ``annealplan sweep run`` and ``annealplan jobs`` use.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label, Log, ProgressBar, Select, Static

from planner.dispatch.session import SweepOverrides, merge_overrides
from planner.errors import AnnealplanError
from planner.tui.messages import (
    ExperimentLoaded,
    ExperimentsLoaded,
    JobCancelled,
    JobLogRead,
    JobUpdated,
    JobView,
    SweepDesigned,
    SweepDispatched,
    SweepFinished,
)
from planner.tui.screens.base import PlannerScreen
from planner.tui.widgets.config_form import ConfigForm
from planner.units import Unit, format_quantity

#: how often a running sweep is polled, in seconds
POLL_SECONDS = 1.0
BAR_WIDTH = 8
#: job states after which nothing changes
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "ingested"})


class SweepRequest(BaseModel):
    """What ``annealplan design`` asks for (the form's fields, in its words)."""

    model_config = ConfigDict(extra="forbid")

    budget: str
    """Target budget of the final anneal: 2000gpuh, 1.5e21flop or $30k."""
    model_params: str
    """The annealing model's size N, e.g. 135M."""
    fraction: float = Field(default=0.05, gt=0, le=1)
    """Share of the budget the sweep may spend."""
    sources: list[str] = Field(default_factory=list)
    """Sources to sweep (empty: every registered source)."""
    points: int = Field(default=4, ge=2)
    """Token budgets per source."""
    seeds: int = Field(default=1, ge=1)
    """Repeats of every run."""
    span: float = Field(default=10.0, ge=10)
    """Largest/smallest tokens of the grid (at least 10)."""
    replay_fraction: float = Field(default=0.7, ge=0, lt=1)
    """Share of replay data in every run's mixture."""
    eval_cost: str | None = None
    """Evaluation cost of one run, e.g. 0.5gpuh."""
    experiment: str | None = None
    """The experiment's name (default: sweep-<budget>)."""


class RunRequest(BaseModel):
    """What a sweep needs to run beyond its design (the experiment meta keys of
    :mod:`planner.dispatch`); stored meta fills the form, what is typed overrides it."""

    model_config = ConfigDict(extra="forbid")

    base_model: str
    """The Hugging Face checkpoint folder, relative to the executor's root."""
    replay: str | None = None
    """The replay data: a registered source's name (needed unless the experiment's meta
    already describes it)."""
    tokenizer: str | None = None
    """The tokenizer folder (default: the base model's)."""
    tasks: list[str] = Field(default_factory=list)
    """lm-eval tasks to evaluate every anneal on."""
    task_dirs: list[str] = Field(default_factory=list)
    """Folders of task YAMLs, relative to the executor's root."""
    limit: int | None = Field(default=None, ge=1)
    """Evaluate on at most this many documents per task."""
    study: str | None = None
    """The study the runs land in (default: the experiment's name)."""
    compute_unit: Unit | None = None
    """The unit of the runs' compute: flops, gpu_hours, usd or tokens."""

    @staticmethod
    def values_from_meta(meta: dict[str, Any]) -> dict[str, Any]:
        evaluation = dict(meta.get("evaluation") or {})
        replay = meta.get("replay")
        values = {
            "base_model": meta.get("base_model"),
            # a replay given as {kind, config} is kept as it is unless a name is typed
            "replay": replay if isinstance(replay, str) else None,
            "tokenizer": meta.get("tokenizer"),
            "tasks": evaluation.get("tasks"),
            "task_dirs": evaluation.get("task_dirs"),
            "limit": evaluation.get("limit"),
            "study": meta.get("study"),
            "compute_unit": meta.get("compute_unit") or meta.get("unit"),
        }
        return {k: v for k, v in values.items() if v not in (None, [], "")}

    def overrides(self, meta: dict[str, Any]) -> dict[str, Any]:
        """The meta keys this request sets (``run_sweep``'s ``overrides``), merged into
        ``meta`` by the rule ``annealplan sweep run`` uses."""
        given = SweepOverrides(
            base_model=self.base_model,
            replay=self.replay,
            tokenizer=self.tokenizer,
            tasks=tuple(self.tasks),
            task_dirs=tuple(self.task_dirs),
            limit=self.limit,
            study=self.study,
            compute_unit=self.compute_unit.value if self.compute_unit is not None else None,
        )
        return merge_overrides(meta, given)


def design(settings: Any, registry: Any, store: Any, req: SweepRequest) -> SweepDesigned:
    """``annealplan design --budget … --model-params …``: design and store the sweep.

    Raises:
        SolveError, StoreError, UnitError: as the CLI verb does.
    """
    from planner.design.session import design_stored_sweep

    rates = settings.rates.as_rates()
    name, _, d = design_stored_sweep(
        store,
        registry,
        rates,
        budget=req.budget,
        model_params=req.model_params,
        sources=list(req.sources) or None,
        fraction=req.fraction,
        points=req.points,
        seeds=req.seeds,
        span=req.span,
        replay_fraction=req.replay_fraction,
        eval_cost=req.eval_cost,
        experiment=req.experiment,
        no_sources_hint="add some on the Sources screen (key 1, then a)",
    )
    return SweepDesigned(name, d.specs, d.meta)


def text_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """``█████░░░░░  50%``: a progress bar a table cell can hold."""
    f = 0.0 if not math.isfinite(fraction) else min(max(fraction, 0.0), 1.0)
    filled = round(f * width)
    return "█" * filled + "░" * (width - filled) + f" {f:4.0%}"


class JobsScreen(PlannerScreen):
    """A sweep's jobs: design, dispatch, progress, log, cancel."""

    MODE = "jobs"
    # The main table, not an input, takes focus: digits then switch screens.
    AUTO_FOCUS = "#jobs-table"
    CSS_PATH = "jobs.tcss"
    STATUS_ID = "jobs-status"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "design", "Design", tooltip="Design a sweep (budgets, control, seeds)"),
        Binding("r", "run", "Run", tooltip="Dispatch the sweep's jobs to the executors"),
        Binding("c", "cancel_job", "Cancel job", tooltip="Cancel the selected job"),
        Binding("l", "toggle_log", "Log", tooltip="Show or hide the selected job's log"),
    ]

    def compose_body(self) -> ComposeResult:
        with Vertical(id="jobs-body"):
            with Horizontal(id="jobs-head"):
                yield Select([], prompt="experiment", id="jobs-experiment", allow_blank=True)
                yield Static("", id="jobs-summary", markup=False)
            with Horizontal(id="jobs-progress-row"):
                yield Label("sweep", id="jobs-progress-label")
                yield ProgressBar(total=1, show_eta=False, id="jobs-progress")
            yield DataTable(id="jobs-table", cursor_type="row", zebra_stripes=True)
            yield Log(id="jobs-log", max_lines=2000, classes="hidden")
            yield Static("", id="jobs-status", markup=False, classes="muted")

    def on_mount(self) -> None:
        table = self.query_one("#jobs-table", DataTable)
        # the long job id last, so a narrow terminal cuts it rather than the state
        for col in ("source", "tokens", "seed", "state", "progress", "executor", "job"):
            table.add_column(col, key=col)
        self.specs: list[Any] = []
        self.meta: dict[str, Any] = {}
        self.jobs: dict[str, JobView] = {}
        self.log_job: str | None = None
        self.log_offset = 0
        self.load_experiments()

    # ------------------------------------------------------------------ experiments
    @work(thread=True, exclusive=True, group="jobs-list", exit_on_error=False)
    def load_experiments(self, select: str | None = None) -> None:
        store = self.store.cursor()
        try:
            names = store.experiments()
        finally:
            store.close()
        self.post_message(ExperimentsLoaded(names, select))

    def on_experiments_loaded(self, event: ExperimentsLoaded) -> None:
        select = self.query_one("#jobs-experiment", Select)
        wanted = event.select or (select.value if isinstance(select.value, str) else None)
        select.set_options([(n, n) for n in event.names])
        if wanted in event.names:
            select.value = wanted
        elif event.names:
            select.value = event.names[-1]
        else:
            self.query_one("#jobs-status", Static).update(
                "No sweep yet: press d to design one (it needs registered sources)."
            )

    def experiment_name(self) -> str | None:
        value = self.query_one("#jobs-experiment", Select).value
        return value if isinstance(value, str) else None

    @on(Select.Changed, "#jobs-experiment")
    def experiment_changed(self) -> None:
        name = self.experiment_name()
        if name is not None:
            self.load_experiment(name)

    @work(thread=True, exclusive=True, group="jobs-load", exit_on_error=False)
    def load_experiment(self, name: str) -> None:
        store = self.store.cursor()
        try:
            meta, specs = store.experiment(name)
        finally:
            store.close()
        self.post_message(ExperimentLoaded(name, meta, specs))

    def on_experiment_loaded(self, event: ExperimentLoaded) -> None:
        if event.name != self.experiment_name():
            return
        self.specs, self.meta = event.specs, event.meta
        self.jobs = {}
        self.show_specs()
        self.refresh_jobs_once(event.name)

    def on_sweep_designed(self, event: SweepDesigned) -> None:
        unit = Unit(event.meta.get("unit", "gpu_hours"))
        self.notify(
            f"Designed {event.name}: {len(event.specs)} runs costing "
            f"{format_quantity(event.meta.get('cost', math.nan), unit)}."
        )
        self.load_experiments(select=event.name)

    def show_specs(self) -> None:
        table = self.query_one("#jobs-table", DataTable)
        table.clear()
        meta = self.meta
        unit = Unit(meta.get("unit", "gpu_hours"))
        for s in self.specs:
            table.add_row(
                s.run_source,
                format_quantity(s.tokens, Unit.TOKENS).replace(" tokens", ""),
                str(s.seed),
                "designed",
                text_bar(0.0),
                "",
                s.job_id,
                key=s.job_id,
            )
        total = meta.get("cost")
        budget = meta.get("budget")
        parts = [f"{len(self.specs)} runs"]
        if isinstance(total, int | float):
            share = ""
            if isinstance(budget, int | float) and budget:
                share = f" ({total / budget:.1%} of {format_quantity(budget, unit)})"
            parts.append(f"{format_quantity(total, unit)}{share}")
        if meta.get("seeds"):
            seeds = f"{meta['seeds']} seed{'s' if meta['seeds'] != 1 else ''}"
            if meta.get("repeat_top"):
                seeds = "a second seed at each largest budget"
            parts.append(seeds)
        self.query_one("#jobs-summary", Static).update(" · ".join(parts))
        self.update_sweep_bar()

    # ------------------------------------------------------------------ design
    def action_design(self) -> None:
        self.app.push_screen(SweepForm(), self._design_requested)

    def _design_requested(self, req: SweepRequest | None) -> None:
        if req is not None:
            self.query_one("#jobs-status", Static).update("designing the sweep…")
            self.run_design(req)

    @work(thread=True, exclusive=True, group="jobs-design", exit_on_error=False)
    def run_design(self, req: SweepRequest) -> None:
        store = self.store.cursor()
        try:
            message = design(self.planner.settings, self.registry, store, req)
        finally:
            store.close()
        self.post_message(message)

    # ------------------------------------------------------------------ dispatch and watch
    def _clients(self) -> list[Any]:
        clients = self.planner.clients
        if not clients:
            from planner.errors import ExecutorError

            raise ExecutorError(
                "no executor is connected (the app was started with --no-executors), so the "
                "sweep cannot run from here; restart `annealplan tui` without that flag, or "
                "run it with `annealplan sweep run`"
            )
        return clients

    def action_run(self) -> None:
        name = self.experiment_name()
        if name is None:
            self.notify("Design a sweep first (d).", severity="warning")
            return
        try:
            self._clients()
        except AnnealplanError as e:
            self.planner.show_error(e.title, e.msg)
            return
        self.app.push_screen(RunForm(name, self.meta), lambda req: self._run_requested(name, req))

    def _run_requested(self, name: str, req: RunRequest | None) -> None:
        if req is None:
            return
        self.query_one("#jobs-status", Static).update(f"dispatching {name}…")
        self.dispatch(name, req.overrides(self.meta))

    # HTTP runs in async workers on the app's loop (the clients live there); the store
    # calls inside run_sweep are single-row reads and one-transaction ingests.
    @work(exclusive=True, group="jobs-dispatch", exit_on_error=False)
    async def dispatch(self, name: str, overrides: dict[str, Any]) -> None:
        """``annealplan sweep run NAME``: submit, follow and ingest every job of the sweep."""
        from planner.dispatch.scheduler import run_sweep

        clients = self._clients()
        store = self.store.cursor()
        try:
            submitted = await run_sweep(store, name, clients, overrides=overrides, wait=False)
            self.post_message(SweepDispatched(name, submitted.submitted, submitted))

            def update(record: Any) -> None:
                self.post_message(JobUpdated(name, job_view(record)))

            summary = await run_sweep(
                store, name, clients, overrides=overrides, on_update=update, poll_s=POLL_SECONDS
            )
        finally:
            store.close()
        self.post_message(SweepFinished(name, summary))

    def on_sweep_dispatched(self, event: SweepDispatched) -> None:
        summary = event.summary
        if summary is not None and event.experiment == self.experiment_name():
            labels = {c.name: executor_label(c) for c in self.planner.clients}
            table = self.query_one("#jobs-table", DataTable)
            for job_id, name in summary.placement.items():
                if job_id in table.rows:
                    table.update_cell(job_id, "executor", labels.get(name, name))
        reused = f", {summary.reused} already in the store" if summary and summary.reused else ""
        self.notify(f"Dispatched {event.submitted} job(s) of {event.experiment}{reused}.")
        self.query_one("#jobs-status", Static).update(f"{event.experiment}: running")

    def on_job_updated(self, event: JobUpdated) -> None:
        if event.experiment == self.experiment_name():
            self.show_job(event.job)

    def on_sweep_finished(self, event: SweepFinished) -> None:
        s = event.summary
        failed = f", {len(s.failed)} failed" if s.failed else ""
        self.query_one("#jobs-status", Static).update(
            f"{event.experiment}: {s.succeeded}/{s.total} succeeded{failed}, "
            f"{s.ingested} new run(s) in the store · fit them on the Laws screen (key 3)"
        )
        if event.experiment == self.experiment_name():
            self.refresh_states(event.experiment)

    def refresh_jobs_once(self, name: str) -> None:
        if self.planner.clients:
            self.refresh_states(name)
        else:
            self.mark_ingested(name)

    @work(exclusive=True, group="jobs-states", exit_on_error=False)
    async def refresh_states(self, name: str) -> None:
        """The executors' view of the sweep's jobs (``annealplan jobs list``), once."""
        from planner.errors import ExecutorReplyError

        ids = {s.job_id for s in self.specs}
        for client in self._clients():
            try:
                records = await client.jobs()
            except ExecutorReplyError:
                continue  # unreachable: the Executors screen says so
            for record in records:
                if record.job_id in ids:
                    view = job_view(record, executor=executor_label(client))
                    self.post_message(JobUpdated(name, view))
        self.mark_ingested(name)

    @work(thread=True, group="jobs-ingested", exit_on_error=False)
    def mark_ingested(self, name: str) -> None:
        """Jobs whose run is already in the store are done, whatever the executors say."""
        store = self.store.cursor()
        try:
            have = {r.run_id for r in store.runs()}
        finally:
            store.close()
        for s in self.specs:
            if s.job_id in have:
                self.post_message(JobUpdated(name, JobView(s.job_id, "ingested", 1.0)))

    def show_job(self, view: JobView) -> None:
        table = self.query_one("#jobs-table", DataTable)
        previous = self.jobs.get(view.job_id)
        if previous is not None and previous.state == "ingested":
            return  # in the store: final whatever comes later
        self.jobs[view.job_id] = view
        if view.job_id in table.rows:
            table.update_cell(view.job_id, "state", view.state)
            table.update_cell(view.job_id, "progress", text_bar(view.progress))
            if view.executor:
                table.update_cell(view.job_id, "executor", view.executor)
        self.update_sweep_bar()
        if self.log_job == view.job_id:
            self.read_log(view.job_id, self.log_offset)

    def update_sweep_bar(self) -> None:
        bar = self.query_one("#jobs-progress", ProgressBar)
        ids = {s.job_id for s in self.specs}
        done = sum(
            1.0 if v.state in FINAL_STATES else v.progress
            for v in self.jobs.values()
            if v.job_id in ids
        )
        bar.update(total=max(len(ids), 1), progress=done)

    # ------------------------------------------------------------------ log and cancel
    def selected_job(self) -> str | None:
        table = self.query_one("#jobs-table", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return str(key.value) if key.value is not None else None

    def action_toggle_log(self) -> None:
        log = self.query_one("#jobs-log", Log)
        if not log.has_class("hidden"):
            log.add_class("hidden")
            self.log_job = None
            return
        job = self.selected_job()
        if job is None:
            return
        log.remove_class("hidden")
        self._follow_log(job)

    @on(DataTable.RowHighlighted, "#jobs-table")
    def job_highlighted(self) -> None:
        job = self.selected_job()
        if self.log_job is not None and job is not None and job != self.log_job:
            self._follow_log(job)

    def _follow_log(self, job: str) -> None:
        log = self.query_one("#jobs-log", Log)
        log.clear()
        self.log_job, self.log_offset = job, 0
        log.write(f"— log of {job} —\n")
        if self.planner.clients:
            self.read_log(job, 0)

    @work(exclusive=True, group="jobs-log", exit_on_error=False)
    async def read_log(self, job_id: str, offset: int) -> None:
        """``annealplan jobs log JOB``: the log from ``offset`` on."""
        chunk = await self._on_executor(job_id, lambda c: c.log(job_id, offset))
        if chunk is not None:
            self.post_message(JobLogRead(job_id, chunk.text, offset, chunk.next_offset))

    def on_job_log_read(self, event: JobLogRead) -> None:
        if event.job_id != self.log_job or event.offset != self.log_offset:
            return
        self.log_offset = event.next_offset
        if event.text:
            self.query_one("#jobs-log", Log).write(event.text)

    async def _on_executor(self, job_id: str, call: Any) -> Any:
        """Run ``call(client)`` on the executor that knows ``job_id`` (None: none does)."""
        from planner.errors import ExecutorReplyError

        for client in self._clients():
            try:
                return await call(client)
            except ExecutorReplyError as e:
                if e.status == 404:
                    continue
                raise
        return None

    def action_cancel_job(self) -> None:
        job = self.selected_job()
        if job is None:
            return
        try:
            self._clients()
        except AnnealplanError as e:
            self.planner.show_error(e.title, e.msg)
            return
        self.cancel(job)

    @work(group="jobs-cancel", exit_on_error=False)
    async def cancel(self, job_id: str) -> None:
        """``annealplan jobs cancel JOB``."""
        from planner.errors import ExecutorError

        record = await self._on_executor(job_id, lambda c: c.cancel(job_id))
        if record is None:
            raise ExecutorError(
                f"no executor knows job {job_id}; it was never dispatched (press r to run the sweep)"
            )
        self.post_message(JobCancelled(job_id))
        self.post_message(JobUpdated(self.experiment_name() or "", job_view(record)))

    def on_job_cancelled(self, event: JobCancelled) -> None:
        self.notify(f"Cancel requested for {event.job_id}.")


def executor_label(client: Any) -> str:
    """Where a job runs, for the table: the executor's name and its backend."""
    return f"{client.name} ({client.backend})"


def job_view(record: Any, *, executor: str = "") -> JobView:
    """A job record (``executors.protocol.JobRecord``) as the table shows it."""
    state = getattr(record.state, "value", str(record.state))
    p = record.progress
    if state == "succeeded":
        fraction = 1.0
    elif p.total_steps:
        fraction = p.step / p.total_steps
    else:
        fraction = 0.0
    message = record.error.message if record.error else ""
    return JobView(record.job_id, state, fraction, message, executor)


class ModelFormScreen(ModalScreen[Any]):
    """A modal form over a pydantic model: returns the validated model, or None."""

    CSS_PATH = "jobs.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    def __init__(
        self,
        title: str,
        model: type[BaseModel],
        values: dict[str, Any] | None = None,
        *,
        button: str = "OK",
        first: str | None = None,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.model = model
        self.values = dict(values or {})
        self.button = button
        self.first = first

    def compose(self) -> ComposeResult:
        with Vertical(classes="model-form"):
            yield Static(self.title_text, classes="model-form-title")
            yield ConfigForm(self.model, self.values, id="model-config")
            with Horizontal(classes="model-form-buttons"):
                yield Button(self.button, variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        if self.first:
            self.query_one(f"#field-{self.first}").focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self.action_save()
        else:
            self.action_cancel()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        value = self.query_one(ConfigForm).validated()
        if value is not None:
            self.dismiss(value)


class SweepForm(ModelFormScreen):
    """The sweep's parameters (``annealplan design``'s options)."""

    def __init__(self) -> None:
        super().__init__("Design a sweep", SweepRequest, button="Design", first="budget")


class RunForm(ModelFormScreen):
    """What the executors need beyond the design (``annealplan sweep run``'s options),
    prefilled from the experiment's stored meta."""

    def __init__(self, experiment: str, meta: dict[str, Any]) -> None:
        super().__init__(
            f"Run {experiment} on the executors",
            RunRequest,
            RunRequest.values_from_meta(meta),
            button="Run",
            first="base_model",
        )
