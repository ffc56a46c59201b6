"""Laws: per metric, the runs, each source's fitted curve with its interval band, and the
crossovers; the parameter table; the law family and fitting method, with a switch.

Fitting is ``annealplan fit --study S --metric M --family F --method X``'s core function
(``planner.laws.session.fit_store``); each law is drawn over its own runs and one decade
beyond (``planner.laws.session.draw_grid``, as in the report) with ``predict_interval``'s
90% prediction interval as its band; the crossovers are ``planner.laws.crossover.crossover``
between each pair of sources, where both are drawn; below them, for every pair, how likely
one beats the other at the end of the drawn range (``planner.laws.session.group_beliefs``:
the joint bootstrap with model averaging; 0.4–0.6 is "undecided: measure more").
"""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Label, Select, Static
from textual_plotext import PlotextPlot

from planner.errors import FitError
from planner.tui.messages import FitFinished, LawsLoaded, MetricData, MetricsListed
from planner.tui.screens.base import PlannerScreen
from planner.tui.widgets.plotting import line, log_ticks, log_x, points

METHODS = ("joint", "independent")
#: plotext colour per source, in order; the control anneal is always grey
COLORS = ("cyan", "orange", "green", "magenta", "blue", "red", "yellow")
GRID_POINTS = 60
#: the same colours for the legend line (Rich names)
RICH_COLORS = {"orange": "dark_orange", "gray": "grey50"}


def family_choices() -> list[str]:
    """``auto`` and the families ``annealplan fit --family`` accepts."""
    from planner.laws.joint import (
        CANDIDATES_ANY,
        CANDIDATES_BOUNDED,
        CANDIDATES_PERPLEXITY,
        CANDIDATES_RICH,
    )

    names = {
        c.family
        for c in (*CANDIDATES_ANY, *CANDIDATES_PERPLEXITY, *CANDIDATES_RICH, *CANDIDATES_BOUNDED)
    }
    return ["auto", *sorted(names)]


def metric_data(store: Any, study: str, metric: str) -> MetricData:
    """Runs, latest fits, curves with 90% bands and pairwise crossovers of one metric.

    Each law is drawn over its own runs and one decade beyond (``draw_grid``, as the
    report draws it), and two laws' crossing is looked for where both are drawn.
    """
    from planner.domain import is_control
    from planner.laws.crossover import crossover
    from planner.laws.pairwise_view import study_views
    from planner.laws.predict import DEFAULT_LEVEL, predict_interval
    from planner.laws.session import draw_grid, group_beliefs

    observations = tuple(store.observations(study=study, metric=metric))
    unit = store.compute_units(study).get(study) or "unknown unit"
    fits = tuple(store.fits(study=study, metric=metric))
    curves: dict[str, Any] = {}
    crossings: list[Any] = []
    good = [f for _, f in fits if f.success]
    for f in good:
        own = [o.compute for o in observations if o.source == f.source]
        grid = draw_grid(own, f.x_max, GRID_POINTS)
        if grid.size < 2:
            continue
        try:
            point, lo, hi = predict_interval(f, grid, DEFAULT_LEVEL)
        except Exception as e:  # a family a plugin no longer provides: say so per source
            curves[f.source] = str(e)
            continue
        curves[f.source] = (grid, point, lo, hi)
    drawn = [
        f
        for f in good
        if not is_control(f.source) and not isinstance(curves.get(f.source, ""), str)
    ]
    try:
        view = study_views(observations, drawn).get((study, metric))
    except Exception:  # the difference model is beside the laws: the laws still show
        view = None
    for a, b in itertools.combinations(drawn, 2):
        low = max(float(curves[a.source][0][0]), float(curves[b.source][0][0]))
        high = min(float(curves[a.source][0][-1]), float(curves[b.source][0][-1]))
        if not high > low:
            continue
        try:
            c = crossover(a, b, low, high, view=view)
        except Exception:
            continue
        if math.isfinite(c.compute) or math.isfinite(c.difference_compute):
            crossings.append(c)
    where, beliefs = math.nan, []
    try:
        where, beliefs = group_beliefs([f for _, f in fits], observations)
    except FitError:  # fits that cannot be drawn from: no beliefs, the table says why
        where, beliefs = math.nan, []
    return MetricData(
        study, metric, observations, fits, curves, tuple(crossings), unit, tuple(beliefs), where
    )


def _fmt(v: float) -> str:
    return f"{v:.4g}" if isinstance(v, int | float) and math.isfinite(v) else "–"


class LawsScreen(PlannerScreen):
    """Fitted laws of one metric, drawn against the runs."""

    MODE = "laws"
    # The main table, not an input, takes focus: digits then switch screens.
    AUTO_FOCUS = "#laws-params"
    CSS_PATH = "laws.tcss"
    STATUS_ID = "laws-status"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "fit", "Fit", tooltip="Fit the chosen family and method, and save the fits"),
        Binding("m", "next_method", "Method", tooltip="Switch joint / independent fitting"),
        Binding("r", "reload", "Refresh", show=False),
    ]

    def compose_body(self) -> ComposeResult:
        with Vertical(id="laws-body"):
            with Horizontal(id="laws-controls"):
                yield Select([], prompt="metric", id="laws-metric", allow_blank=True)
                yield Select(
                    [(f, f) for f in family_choices()],
                    value="auto",
                    allow_blank=False,
                    id="laws-family",
                )
                yield Select(
                    [(m, m) for m in METHODS], value="joint", allow_blank=False, id="laws-method"
                )
                yield Label("boot", id="laws-boot-label")
                yield Input("1000", id="laws-boot", type="integer")
            yield PlotextPlot(id="laws-plot")
            yield Static("", id="laws-legend")
            yield Static("", id="laws-crossovers", markup=False)
            yield DataTable(id="laws-params", cursor_type="row", zebra_stripes=True)
            yield Static("", id="laws-status", markup=False, classes="muted")

    def on_mount(self) -> None:
        table = self.query_one("#laws-params", DataTable)
        for col in ("source", "law", "method", "parameters", "n", "LLO err", "ok"):
            table.add_column(col, key=col)
        self.data: MetricData | None = None
        self.list_metrics()

    # ------------------------------------------------------------------ metrics
    @work(thread=True, exclusive=True, group="laws-list", exit_on_error=False)
    def list_metrics(self) -> None:
        store = self.store.cursor()
        try:
            pairs = store.studies_metrics()
        finally:
            store.close()
        self.post_message(MetricsListed(pairs))

    def on_metrics_listed(self, event: MetricsListed) -> None:
        select = self.query_one("#laws-metric", Select)
        current = select.value
        options = [(f"{m}" if s == "default" else f"{s}/{m}", f"{s}\t{m}") for s, m in event.pairs]
        select.set_options(options)
        values = [v for _, v in options]
        if current in values:
            select.value = current
        elif values:
            select.value = values[0]
        else:
            self.query_one("#laws-status", Static).update(
                "No runs yet: import a runs table (annealplan runs import) or run a sweep."
            )

    def selected_metric(self) -> tuple[str, str] | None:
        value = self.query_one("#laws-metric", Select).value
        if value is Select.BLANK or not isinstance(value, str):
            return None
        study, metric = value.split("\t", 1)
        return study, metric

    @on(Select.Changed, "#laws-metric")
    def metric_changed(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        chosen = self.selected_metric()
        if chosen is not None:
            self.query_one("#laws-status", Static).update(f"reading {chosen[1]}…")
            self.load_metric(*chosen)

    @work(thread=True, exclusive=True, group="laws-load", exit_on_error=False)
    def load_metric(self, study: str, metric: str) -> None:
        store = self.store.cursor()
        try:
            data = metric_data(store, study, metric)
        finally:
            store.close()
        self.post_message(LawsLoaded(data))

    def on_laws_loaded(self, event: LawsLoaded) -> None:
        data = self.data = event.data
        if (data.study, data.metric) != self.selected_metric():
            return  # the person moved on to another metric meanwhile
        self.fill_table(data)
        self.draw(data)
        fitted = [f for _, f in data.fits]
        if fitted:
            first = fitted[0]
            self.query_one("#laws-status", Static).update(
                f"{len(data.observations)} runs · {len(fitted)} fits "
                f"({first.method}, {first.family}) · f: refit"
            )
        else:
            self.query_one("#laws-status", Static).update(
                f"{len(data.observations)} runs, no fits yet: press f to fit"
            )

    def draw(self, data: MetricData) -> None:
        """Runs as points, each source's law as a line, one source's 90% band, crossovers
        as red verticals. The band follows the table's cursor: three bands at once hide
        the points in a terminal-sized plot."""
        from planner.domain import is_control

        plot = self.query_one("#laws-plot", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        sources = sorted({o.source for o in data.observations} | set(data.curves))
        computes = [o.compute for o in data.observations if o.compute > 0]
        if not computes:
            plot.refresh()
            return
        palette = iter(COLORS * 4)
        colors = {s: "gray" if is_control(s) else next(palette) for s in sources}
        banded = self.banded_source(data)
        x_low, x_high = min(computes) / 1.5, max(computes)
        for s, curve in data.curves.items():
            if isinstance(curve, str):
                continue
            grid, point, lo, hi = curve
            x_low, x_high = min(x_low, float(grid[0])), max(x_high, float(grid[-1]))
            color = colors.get(s, "white")
            gx = log_x(grid)
            if s == banded:
                for edge in (lo, hi):
                    line(plt, gx, edge, color, "·")
            line(plt, gx, point, color, "braille")
        # crossovers as red verticals over the runs' range of values
        values = [o.value for o in data.observations]
        for c in data.crossovers:
            if math.isfinite(c.compute):
                line(plt, log_x([c.compute] * 2), [min(values), max(values)], "red", "│")
        # points last, so lines never hide a measured run
        for s in sources:
            pts = [
                (o.compute, o.value) for o in data.observations if o.source == s and o.compute > 0
            ]
            if pts:
                xs, ys = zip(*pts, strict=True)
                points(plt, log_x(xs), ys, colors[s], "●")
        log_ticks(plt, x_low, x_high)
        plt.xlabel(f"compute ({data.compute_unit})")
        plot.refresh()
        legend = "  ".join(
            f"[{RICH_COLORS.get(colors[s], colors[s])}]●[/] {s or 'control'}" for s in sources
        )
        if banded:
            legend += f"  · band: 90% PI of {banded}"
        self.query_one("#laws-legend", Static).update(legend)
        lines = []
        for c in data.crossovers:
            p = f", p={c.probability:.2f}" if math.isfinite(c.probability) else ""
            if c.method == "difference":  # the difference model first (see laws.crossover)
                laws = f"; laws p={c.probability:.2f}" if math.isfinite(c.probability) else ""
                p = (
                    f", p={c.difference_probability:.2f} (difference model, mean crossing "
                    f"at {_fmt(c.difference_compute)}){laws}"
                )
            q = c.quantiles()
            band = f" [{_fmt(q[0])}, {_fmt(q[2])}]" if math.isfinite(q[0]) else ""
            lines.append(
                f"{c.a} × {c.b} cross at {_fmt(c.compute)}{band}{p}; "
                f"{c.better_after or '?'} better beyond"
            )
        if not lines and data.fits:
            lines.append("no crossover in the plotted range")
        # how sure the fits are of each pair at the end of the drawn range
        where = f"{_fmt(data.beliefs_at)} {data.compute_unit}".strip()
        lines.extend(b.describe(where) for b in data.beliefs)
        self.query_one("#laws-crossovers", Static).update("\n".join(lines))

    def banded_source(self, data: MetricData) -> str | None:
        """The source whose band is drawn: the table's highlighted row, else the first
        fitted source that is not the control."""
        table = self.query_one("#laws-params", DataTable)
        ids = {fit_id: f.source for fit_id, f in data.fits}
        if table.row_count:
            try:
                key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            except Exception:
                key = None
            if key in ids and ids[key] in data.curves:
                return ids[key]
        from planner.domain import is_control

        return next((s for s in data.curves if not is_control(s)), None)

    @on(DataTable.RowHighlighted, "#laws-params")
    def band_follows_cursor(self) -> None:
        if self.data is not None:
            self.draw(self.data)

    def fill_table(self, data: MetricData) -> None:
        table = self.query_one("#laws-params", DataTable)
        table.clear()
        from planner.domain import is_control
        from planner.laws.session import describe_fit

        # the control last: the cursor (and the band) start on a real source
        for fit_id, f in sorted(data.fits, key=lambda p: is_control(p[1].source)):
            law, params = describe_fit(f, _fmt)
            llo = f.llo_error
            ok = "yes" if f.success else f"no: {f.message}"
            table.add_row(
                f.source, law, f.method, params, str(f.n_points), _fmt(llo), ok, key=fit_id
            )

    # ------------------------------------------------------------------ fitting
    def action_next_method(self) -> None:
        select = self.query_one("#laws-method", Select)
        i = METHODS.index(str(select.value)) if select.value in METHODS else 0
        select.value = METHODS[(i + 1) % len(METHODS)]
        self.notify(f"Fitting method: {select.value}")

    def action_fit(self) -> None:
        chosen = self.selected_metric()
        if chosen is None:
            self.notify("No metric to fit: import runs first.", severity="warning")
            return
        family = str(self.query_one("#laws-family", Select).value)
        method = str(self.query_one("#laws-method", Select).value)
        boot_text = self.query_one("#laws-boot", Input).value.strip() or "0"
        n_boot = max(0, int(boot_text))
        self.query_one("#laws-status", Static).update(
            f"fitting {chosen[1]} ({method}, {family}, {n_boot} bootstrap samples)…"
        )
        self.run_fit(chosen[0], chosen[1], family, method, n_boot)

    @work(thread=True, exclusive=True, group="laws-fit", exit_on_error=False)
    def run_fit(self, study: str, metric: str, family: str, method: str, n_boot: int) -> None:
        """``annealplan fit --study S --metric M --family F --method X --bootstrap B``."""
        from planner.laws.session import fit_store

        store = self.store.cursor()
        try:
            ids, fits = fit_store(
                store, study=study, metric=metric, family=family, method=method, n_boot=n_boot
            )
        finally:
            store.close()
        self.post_message(FitFinished(study, metric, ids, fits))

    def on_fit_finished(self, event: FitFinished) -> None:
        ok = sum(1 for f in event.fits if f.success)
        self.notify(f"Fitted {event.metric}: {ok}/{len(event.fits)} fits succeeded and were saved.")
        self.load_metric(event.study, event.metric)
