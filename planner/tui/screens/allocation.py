"""Allocation: a budget in, the cost-optimal plan out.

The plan's gain under its combination rule beside the additive prediction, the plan table
(tokens and cost per source, gain with its interval, probability of being in the optimal
plan, what limits it), the frontier plot (optimal gain across budgets, with its band), and
beside it the KKT certificate, the confirmation anneal, the trust region, the point
estimate's choice and "what to run next" (the same story as ``annealplan allocate`` and the
report, from ``planner.report.story``). Solving calls
``annealplan allocate --budget B``'s core function (``planner.allocate.session.solve_budget``:
the problem from the store, ``make_plan``, ``store.save_plan``); the frontier is
``annealplan frontier``'s and the recommendation ``annealplan next``'s. A plan read from the
store (the last one ``annealplan allocate`` saved) gets its frontier recomputed from the
fits, so the plot is never left empty.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Input, Label, Select, Static
from textual_plotext import PlotextPlot

from planner.domain import FrontierPoint
from planner.report import story
from planner.tui.messages import FrontierComputed, NextRunRecommended, PlansLoaded, PlanSolved
from planner.tui.screens.base import PlannerScreen
from planner.tui.widgets.plotting import line, log_ticks, log_x
from planner.units import Unit, format_quantity

#: the frontier spans this factor below and above the chosen budget
FRONTIER_SPAN = (0.05, 5.0)
FRONTIER_POINTS = 12


def _fmt(v: float, spec: str = "+.4g") -> str:
    return format(v, spec) if isinstance(v, int | float) and math.isfinite(v) else "–"


def _rates(app: Any) -> Any:
    return app.settings.rates.as_rates()


def _options(app: Any, study: str | None, metric: str | None, model_params: str | None) -> Any:
    """The screen's inputs as ``annealplan allocate``'s options (the rest at their defaults,
    the trust region at the project's setting)."""
    from planner.allocate.session import ProblemOptions

    return ProblemOptions(
        study=study,
        metric=metric,
        model_params=model_params,
        max_extrapolation=app.settings.trust_multiple,
    )


def frontier_around(problem: Any, budget: float) -> list[FrontierPoint]:
    """``annealplan frontier`` from ``FRONTIER_SPAN[0]``× to ``FRONTIER_SPAN[1]``× the budget."""
    from planner.allocate.frontier import frontier

    budgets = np.geomspace(budget * FRONTIER_SPAN[0], budget * FRONTIER_SPAN[1], FRONTIER_POINTS)
    return frontier(problem, budgets)


def solve_plan(
    app: Any,
    store: Any,
    budget_text: str,
    study: str | None,
    metric: str | None,
    model_params: str | None,
) -> PlanSolved:
    """``annealplan allocate --budget B [--study S] [--metric M] [--model-params N]`` plus
    its frontier."""
    from planner.allocate.session import solve_budget
    from planner.errors import SolveError

    if not budget_text.strip():
        raise SolveError("type a budget first, e.g. 2000gpuh, 1.5e21flop or $30k")
    plan, plan_id, loaded = solve_budget(
        store, app.registry, _rates(app), budget_text, _options(app, study, metric, model_params)
    )
    rows = frontier_around(loaded.problem, plan.budget)
    return PlanSolved(plan_id, plan, frontier=rows, point=plan.point_estimate)


def stored_frontier(
    app: Any, store: Any, plan_id: str, plan: Any, model_params: str | None
) -> FrontierComputed:
    """The frontier around a stored plan's budget, from the fits in the store now."""
    from planner.allocate.session import load_for, options_of
    from planner.errors import AnnealplanError

    # The options the plan was solved with (its extrapolation cap, guards…), so the
    # frontier is the plan's own; a plan stored without them gets the screen's.
    options = options_of(plan, metric=plan.metric, model_params=model_params)
    try:
        loaded = load_for(store, app.registry, _rates(app), plan.unit, options)
    except AnnealplanError as e:
        # Opening the screen must not raise a modal over a plan that is shown fine: the
        # frontier is left out and the status line says why.
        return FrontierComputed(plan_id, [], problem=e.msg)
    return FrontierComputed(plan_id, frontier_around(loaded.problem, plan.budget))


def recommend(
    app: Any,
    store: Any,
    budget_text: str,
    study: str | None,
    metric: str | None,
    model_params: str | None,
) -> NextRunRecommended:
    """``annealplan next --budget B``: the most useful next run, by value of information."""
    from planner.design.session import recommend_runs
    from planner.units import parse_quantity

    q = parse_quantity(budget_text)
    found = recommend_runs(
        store, app.registry, _rates(app), q, _options(app, study, metric, model_params), top=3
    )
    state, recs = found.state, found.recommendations
    lines = [f"P(wrong allocation at {format_quantity(q.value, q.unit)}) now: {state.p_wrong:.2f}"]
    where = format_quantity(q.value, q.unit)
    lines.extend(b.describe(where) for b in found.beliefs if b.undecided)
    if state.p_wrong == 0:
        lines.append(
            "the fits already settle the decision; more runs are not expected to change it"
        )
    for r in recs:
        lines.append(
            f"run {r.source} at {r.tokens:.3g} tokens, cost {format_quantity(r.cost, q.unit)}: "
            f"P(wrong) after {r.p_wrong_after:.2f}"
        )
    return NextRunRecommended("\n".join(lines), detail=recs)


class AllocationScreen(PlannerScreen):
    """Budget → plan, frontier, point-estimate comparison, next run."""

    MODE = "allocation"
    # The main table, not an input, takes focus: digits then switch screens.
    AUTO_FOCUS = "#alloc-plan"
    CSS_PATH = "allocation.tcss"
    STATUS_ID = "alloc-status"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "solve", "Solve", tooltip="Solve the allocation for the budget"),
        Binding("n", "next_run", "Next run", tooltip="What to run next (value of information)"),
        Binding("o", "notes", "Notes", tooltip="The plan's caveats"),
        Binding("b", "focus_budget", "Budget", show=False),
    ]

    def compose_body(self) -> ComposeResult:
        with Vertical(id="alloc-body"):
            with Horizontal(id="alloc-controls"):
                yield Label("Budget", classes="control-label")
                yield Input(placeholder="2000gpuh, $30k, 1e21flop", id="alloc-budget")
                yield Select([], prompt="metric", id="alloc-metric", allow_blank=True)
                yield Label("N", classes="control-label")
                yield Input(placeholder="from runs", id="alloc-params")
            yield Static("", id="alloc-summary", markup=False)
            yield DataTable(id="alloc-plan", cursor_type="row", zebra_stripes=True)
            with Horizontal(id="alloc-main"):
                yield PlotextPlot(id="alloc-frontier")
                with VerticalScroll(id="alloc-side"):
                    yield Static("", id="alloc-story", markup=False)
                    yield Static("", id="alloc-point", markup=False)
                    yield Static("", id="alloc-next", markup=False)
            yield Static("", id="alloc-status", markup=False, classes="muted")

    def on_mount(self) -> None:
        table = self.query_one("#alloc-plan", DataTable)
        for col in ("source", "tokens", "cost", "gain [90%]", "P(opt)"):
            table.add_column(col, key=col)
        self.plan: Any = None
        self.plan_id: str | None = None
        #: the frontier rows drawn last (tests read what the plot shows from here)
        self.frontier_rows: list[FrontierPoint] = []
        self.load_plans()

    # ------------------------------------------------------------------ stored plans
    @work(thread=True, exclusive=True, group="alloc-load", exit_on_error=False)
    def load_plans(self) -> None:
        store = self.store.cursor()
        try:
            plans = store.plans(limit=1)
            groups = store.fitted_groups()
        finally:
            store.close()
        self.post_message(PlansLoaded(plans, groups))

    def on_plans_loaded(self, event: PlansLoaded) -> None:
        select = self.query_one("#alloc-metric", Select)
        current = select.value
        groups = event.groups
        # one study: the metric is enough; several: each choice names its study too, as
        # `annealplan allocate --study S --metric M` does
        several = len({study for study, _ in groups}) > 1
        select.set_options([(f"{st}/{m}" if several else m, (st, m)) for st, m in groups])
        stored = None
        if event.plans:
            plan = event.plans[0][1]
            study = plan.options.study if plan.options is not None else None
            stored = next(
                (g for g in groups if g[1] == plan.metric and (study is None or g[0] == study)),
                None,
            )
        if current in groups:
            select.value = current
        elif len(groups) == 1:
            select.value = groups[0]
        elif stored is not None:
            select.value = stored
        if self.plan is not None or not event.plans:
            if not event.plans:
                self.query_one("#alloc-status", Static).update(
                    "Type a budget (e.g. 50gpuh) and press Enter to solve; needs fitted laws."
                )
            return
        plan_id, plan = event.plans[0]
        budget = self.query_one("#alloc-budget", Input)
        if not budget.value:
            budget.value = _budget_text(plan.budget, plan.unit)
        self.show_plan(plan_id, plan, None)
        if plan.success:
            *_, params = self._inputs()
            self.run_stored_frontier(plan_id, plan, params)

    @work(thread=True, exclusive=True, group="alloc-frontier", exit_on_error=False)
    def run_stored_frontier(self, plan_id: str, plan: Any, params: str | None) -> None:
        store = self.store.cursor()
        try:
            message = stored_frontier(self.planner, store, plan_id, plan, params)
        finally:
            store.close()
        self.post_message(message)

    def on_frontier_computed(self, event: FrontierComputed) -> None:
        if self.plan_id != event.plan_id or self.plan is None:
            return  # another plan was solved meanwhile
        self.draw_frontier(self.plan, event.frontier)
        if event.problem:
            self.query_one("#alloc-status", Static).update(f"no frontier: {event.problem}")

    # ------------------------------------------------------------------ solving
    def action_focus_budget(self) -> None:
        self.query_one("#alloc-budget", Input).focus()

    @on(Input.Submitted, "#alloc-budget")
    def budget_submitted(self) -> None:
        self.action_solve()

    def action_solve(self) -> None:
        budget, study, metric, params = self._inputs()
        self.query_one("#alloc-status", Static).update(f"solving for {budget}…")
        self.run_solve(budget, study, metric, params)

    def _inputs(self) -> tuple[str, str | None, str | None, str | None]:
        """(budget, study, metric, model size) as typed and chosen."""
        budget = self.query_one("#alloc-budget", Input).value.strip()
        chosen = self.query_one("#alloc-metric", Select).value
        study, metric = chosen if isinstance(chosen, tuple) else (None, None)
        params = self.query_one("#alloc-params", Input).value.strip() or None
        return budget, study, metric, params

    @work(thread=True, exclusive=True, group="alloc-solve", exit_on_error=False)
    def run_solve(
        self, budget: str, study: str | None, metric: str | None, params: str | None
    ) -> None:
        store = self.store.cursor()
        try:
            message = solve_plan(self.planner, store, budget, study, metric, params)
        finally:
            store.close()
        self.post_message(message)

    def on_plan_solved(self, event: PlanSolved) -> None:
        self.show_plan(event.plan_id, event.plan, event.frontier)
        # Leave the budget box so the screen's keys (n: next run) work at once.
        self.query_one("#alloc-plan", DataTable).focus()

    def show_plan(self, plan_id: str, plan: Any, frontier: list[FrontierPoint] | None) -> None:
        self.plan, self.plan_id = plan, plan_id
        unit = plan.unit
        head = f"{format_quantity(plan.budget, unit)} on {plan.metric}: "
        if plan.success:
            # the gain under the plan's rule, then the additive prediction beside it
            head += "\n".join(story.prediction_lines(plan))
        else:
            head += f"no plan: {plan.message}"
        self.query_one("#alloc-summary", Static).update(head)
        table = self.query_one("#alloc-plan", DataTable)
        table.clear()
        limits = {c.source: c.limit for c in plan.certificate if c.status == "capped"}
        for a in plan.allocations:
            gain = _fmt(a.gain)
            if band := story.interval_text(a.gain_low, a.gain_high):
                gain += f" {band}"
            tokens = format_quantity(a.tokens, Unit.TOKENS).replace(" tokens", "")
            limit = limits.get(a.source) or ("cap" if a.capped else "")
            table.add_row(
                a.source + (f" ({limit})" if limit else ""),
                tokens,
                format_quantity(a.cost, unit),
                gain,
                _fmt(a.p_in_optimal, ".2f"),
                key=a.source,
            )
        # the plan's id stays off the screen (as below): the command names PLAN
        self.query_one("#alloc-story", Static).update(
            "\n".join(story.plan_panel_lines(plan)) if plan.success else ""
        )
        self.query_one("#alloc-point", Static).update(_comparison(plan))
        self.draw_frontier(plan, frontier)
        # The plan's id stays out of the screen (it is in `annealplan plans`): only what a
        # person reads to decide.
        notes = f" · o: {len(plan.notes)} notes" if plan.notes else ""
        self.query_one("#alloc-status", Static).update(f"plan saved{notes} · n: what to run next")

    def draw_frontier(self, plan: Any, rows: list[FrontierPoint] | None) -> None:
        plot = self.query_one("#alloc-frontier", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("optimal gain vs budget")
        self.frontier_rows = list(rows or [])
        if not rows:
            plot.refresh()
            return
        budgets = [r.budget for r in rows]
        xs = log_x(budgets)
        line(plt, xs, [r.gain for r in rows], "cyan", "braille", label="plan")
        lows = [r.gain_low for r in rows]
        highs = [r.gain_high for r in rows]
        line(plt, xs, lows, "cyan", "·")
        line(plt, xs, highs, "cyan", "·")
        line(plt, xs, [r.best_single_gain for r in rows], "orange", "braille", label="best single")
        # the chosen budget as a red vertical over the plotted gains
        gains = [
            v
            for r in rows
            for v in (r.gain, r.gain_low, r.gain_high, r.best_single_gain)
            if math.isfinite(v)
        ]
        if gains:
            line(plt, log_x([plan.budget] * 2), [min(gains), max(gains)], "red", "│")
        log_ticks(plt, min(budgets), max(budgets))
        plt.xlabel(plan.unit.value)
        plot.refresh()

    def action_notes(self) -> None:
        if self.plan is None or not (self.plan.notes or self.plan.message):
            self.notify("No plan yet, or it has no notes.")
            return
        from planner.tui.widgets.error_modal import ErrorModal

        text = "\n\n".join([self.plan.message, *self.plan.notes]).strip()
        self.app.push_screen(ErrorModal("Notes on this plan", text, kind="info"))

    # ------------------------------------------------------------------ next run
    def action_next_run(self) -> None:
        budget, study, metric, params = self._inputs()
        if not budget and self.plan is not None:
            budget = _budget_text(self.plan.budget, self.plan.unit)
        if not budget:
            self.notify("Type a budget first.", severity="warning")
            return
        self.query_one("#alloc-next", Static).update("weighing candidate runs…")
        self.run_next(budget, study, metric, params)

    @work(thread=True, exclusive=True, group="alloc-next", exit_on_error=False)
    def run_next(
        self, budget: str, study: str | None, metric: str | None, params: str | None
    ) -> None:
        store = self.store.cursor()
        try:
            message = recommend(self.planner, store, budget, study, metric, params)
        finally:
            store.close()
        self.post_message(message)

    def on_next_run_recommended(self, event: NextRunRecommended) -> None:
        self.query_one("#alloc-next", Static).update(event.text)


def _budget_text(value: float, unit: Unit) -> str:
    suffix = {Unit.GPU_HOURS: "gpuh", Unit.FLOPS: "flop", Unit.USD: "usd"}.get(unit, unit.value)
    return f"{value:g}{suffix}"


def _comparison(plan: Any) -> str:
    """The point estimate's choice beside the plan (what one micro-anneal would pick)."""
    lines = []
    if pe := plan.point_estimate:
        lines.append(
            f"point estimate: the laws at a micro budget of "
            f"{format_quantity(pe.micro_budget, plan.unit)} pick {pe.choice}; "
            f"following it loses {_fmt(pe.gain_lost, '.4g')} of gain, predicted under the laws"
        )
    if bs := plan.best_single:
        lines.append(f"best single source: {bs.source} (gain {_fmt(bs.gain)})")
    if u := plan.uncertainty:
        lines.append(f"P(plan within 5% of optimal) {u.p_plan_near_optimal:.2f}")
    return "\n".join(lines)
