"""Build the planning report: runs and fitted laws with interval bands, crossovers, the
allocation frontier, the point-estimate decision beside the law-based one, and the facts
needed to reproduce the runs (versions, seeds, hashes).

The report reads the store and calls the same core functions as the CLI verbs; it draws
with matplotlib's non-interactive Agg backend.
"""

from __future__ import annotations

import html
import itertools
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from planner.domain import (
    CONTROL_SOURCE,
    FrontierPoint,
    LawFit,
    Observation,
    Plan,
    PointEstimate,
    is_control,
    is_mixture,
    lower_is_better,
)
from planner.laws.decision import undecided
from planner.report.story import (
    PLAN_PLACEHOLDER,
    RankingStory,
    certificate_rows,
    certificate_sentence,
    compute_text,
    confirmation_lines,
    measured_choice_sentence,
    per_unit,
    ranking_story,
    rule_text,
    seed_spread,
    trust_lines,
)
from planner.units import Unit, format_quantity

if TYPE_CHECKING:
    from planner.laws.crossover import Crossover
    from planner.laws.decision import PairBelief


@dataclass(frozen=True, slots=True)
class MeasuredChoice:
    """The point estimate as people practise it: trust the measured micro-anneals and spend
    the whole budget on the source that won at the smallest budgets.

    Attributes:
        choice: that source.
        gain_if_followed: the predicted gain of the whole budget on it alone.
        gain_lost: the plan's predicted gain minus ``gain_if_followed``.
    """

    choice: str
    gain_if_followed: float
    gain_lost: float


@dataclass(frozen=True, slots=True)
class Findings:
    """What the report found, for a summary beside it.

    Attributes:
        metric, lower_is_better: the decision metric and its direction.
        ranking_at_smallest_budget: the sources in their measured order at each one's
            smallest budget (those the laws also rank).
        ranking_predicted_at_target: the same sources in the laws' order at the target.
        ranking_changes: the fitted laws cross before the target with probability at
            least 0.5 (the claim "the ranking changes" rests on the laws, not on the raw
            order); best_changes: the two orders differ at the top.
        measured_point_estimate: following the measured smallest-budget winner.
        point_estimate: the plan's point-estimate comparison (the laws at a micro budget).
        crossovers: where the fitted laws of two sources cross.
        ties: pairs whose P(a beats b) at the target is undecided (0.4 to 0.6): tied, not
            ranked.
        story: the ranking's story in sentences (the report's summary and the demo's).
    """

    metric: str
    lower_is_better: bool
    ranking_at_smallest_budget: tuple[str, ...] = ()
    ranking_predicted_at_target: tuple[str, ...] = ()
    ranking_changes: bool = False
    best_changes: bool = False
    measured_point_estimate: MeasuredChoice | None = None
    point_estimate: PointEstimate | None = None
    crossovers: tuple[Crossover, ...] = ()
    ties: tuple[PairBelief, ...] = ()
    story: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """What :func:`build_report` wrote, and what it found."""

    markdown: Path
    html: Path
    images: tuple[Path, ...]
    findings: Findings


@dataclass(frozen=True)
class _Data:
    """What the report shows, read once from the store.

    Attributes:
        metric, lower: the decision metric and whether lower is better.
        plan: the plan shown (None: no allocation yet).
        fits: the metric's fits of every source but the control.
        obs: the metric's observations; ``by_source`` grouped by source.
        compute_unit: the runs' compute unit when they share one (None: several or unknown).
        target: the target budget in the runs' compute unit (None: not drawn).
    """

    metric: str
    lower: bool
    plan: Plan | None
    fits: list[LawFit]
    obs: list[Observation]
    by_source: dict[str, list[Observation]]
    compute_unit: str | None
    target: float | None

    @property
    def unit_label(self) -> str:
        return {
            "gpu_hours": "GPU-hours",
            "flops": "FLOPs",
            "usd": "USD",
            "tokens": "tokens",
        }.get(self.compute_unit or "", "compute")

    @property
    def solved(self) -> bool:
        """A plan is shown and it is one."""
        return self.plan is not None and self.plan.success


@dataclass(frozen=True)
class _Rankings:
    """The measured order at the smallest budgets beside the laws' order at the target, over
    the sources both rank (``common``)."""

    common: list[str]
    small: list[str]
    target: list[str]

    @property
    def changes(self) -> bool:
        return bool(self.common) and self.small != self.target

    @property
    def best_changes(self) -> bool:
        return bool(self.common) and self.small[:1] != self.target[:1]


def _fmt(v: float, digits: int = 4) -> str:
    if v is None or not isinstance(v, int | float) or not math.isfinite(v):
        return "–"
    return f"{v:.{digits}g}"


def _ranking(values: Mapping[str, float], lower: bool) -> list[str]:
    return sorted(values, key=lambda s: values[s], reverse=not lower)


def build_report(
    store: Any,
    out_dir: str | Path,
    *,
    metric: str,
    plan: Plan | None = None,
    budget_compute: float | None = None,
    frontier_rows: Sequence[FrontierPoint] = (),
    title: str = "annealplan report",
    facts: Mapping[str, Any] | None = None,
    beliefs: Sequence[PairBelief] | None = None,
    plan_id: str | None = None,
    companions: Sequence[str] = (),
) -> ReportFiles:
    """Write ``report.md``, ``report.html`` and PNG plots into ``out_dir``.

    Args:
        store: an open store (fits, runs and metrics are read from it).
        out_dir: the folder to write into (created if missing).
        metric: the decision metric (the plan's objective).
        plan: the plan to show (default: the newest stored plan for ``metric``).
        budget_compute: the target budget in the runs' compute unit (for the ranking at
            the target and the line on the laws plot); None draws no target.
        frontier_rows: rows from ``planner.allocate.frontier.frontier`` to plot.
        title: the report's heading.
        facts: extra reproducibility facts (e.g. the command that made the runs).
        beliefs: P(a beats b) at the target budget for each pair of sources (e.g.
            ``planner.allocate.beliefs.budget_beliefs``); None reads them from the laws at
            ``budget_compute`` when it is given.
        plan_id: the plan's stored id (named in the confirmation's command).
        companions: more metrics to show beside the decision metric (its own task's
            ``acc``, ``acc_norm`` and ``exact_match`` are shown without asking), e.g. the
            exact match of a generative version of the same question.

    Returns:
        The files written and the key findings (rankings, crossing, gain over point estimate).
    """
    import matplotlib

    matplotlib.use("Agg")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = _read(store, metric, plan, budget_compute)
    rankings = _rankings(data)
    crossovers_md, crossings = _crossovers_section(data)
    if beliefs is None:
        beliefs = _law_beliefs(data)
    told = ranking_story(
        small=rankings.small,
        target=rankings.target,
        crossovers=crossings,
        beliefs=[b for b in beliefs if b.a in rankings.common and b.b in rankings.common],
        compute_unit=data.compute_unit,
        target_compute=data.target,
    )
    md: list[str] = [f"# {title}", "", f"_Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC._", ""]
    summary, measured, story = _summary(data, rankings, told, plan_id)
    md += summary
    md += _sources_section(store)
    laws_md, laws_png = _laws_section(data, out)
    md += laws_md
    md += _seed_section(data)
    md += _companions_section(store, data, companions)
    md += crossovers_md
    md += _allocation_section(data, plan_id)
    images = [laws_png]
    if frontier_rows:
        fr_png = _frontier_plot(data, frontier_rows, out)
        images.append(fr_png)
        md += [f"![frontier]({fr_png.name})", ""]
    md += _reproducibility_section(store, facts)

    md_path = out / "report.md"
    md_path.write_text("\n".join(md))
    html_path = out / "report.html"
    html_path.write_text(_to_html("\n".join(md), title))
    findings = Findings(
        metric=metric,
        lower_is_better=data.lower,
        ranking_at_smallest_budget=tuple(rankings.small),
        ranking_predicted_at_target=tuple(rankings.target),
        ranking_changes=told.changes,
        best_changes=rankings.best_changes,
        measured_point_estimate=measured,
        point_estimate=data.plan.point_estimate if data.plan is not None else None,
        crossovers=tuple(crossings),
        ties=tuple(b for b in beliefs if undecided(b.p)),
        story=story,
    )
    return ReportFiles(markdown=md_path, html=html_path, images=tuple(images), findings=findings)


def _read(store: Any, metric: str, plan: Plan | None, target: float | None) -> _Data:
    """The plan (the newest stored one for ``metric`` when none is given), fits and runs."""
    if plan is None:
        plans = [p for _, p in store.plans() if p.metric == metric]
        plan = plans[0] if plans else None
    fits = [f for _, f in store.fits(metric=metric) if not is_control(f.source)]
    obs = store.observations(metric=metric)
    by_source: dict[str, list[Observation]] = defaultdict(list)
    for o in obs:
        by_source[o.source].append(o)
    units = {u for u in store.compute_units().values() if u}
    return _Data(
        metric=metric,
        lower=lower_is_better(metric, store.metric_directions()),
        plan=plan,
        fits=fits,
        obs=obs,
        by_source=by_source,
        compute_unit=units.pop() if len(units) == 1 else None,
        target=target,
    )


def _rankings(data: _Data) -> _Rankings:
    """The measured order at each source's smallest budget, and the laws' at the target:
    each source's predicted gain with the whole budget on it alone (from the plan), or
    without a plan, each law's prediction at the target."""
    from planner.laws.predict import predict_interval

    smallest: dict[str, float] = {}
    for s, rows in data.by_source.items():
        if is_control(s) or not rows:
            continue
        c0 = min(o.compute for o in rows)
        smallest[s] = float(np.mean([o.value for o in rows if o.compute == c0]))
    predicted: dict[str, float] = {}
    by_gain = _gain_by_source(data.plan)
    if by_gain:
        # The laws' ranking at the target: each source's predicted gain over control when the
        # whole budget is spent on it alone (higher gain is better whatever the metric).
        predicted = dict(by_gain)
        rank_target = sorted(predicted, key=lambda s: predicted[s], reverse=True)
    else:
        if data.target:
            for f in data.fits:
                if f.success:
                    predicted[f.source] = float(predict_interval(f, [data.target])[0][0])
        rank_target = _ranking(predicted, data.lower)
    rank_small = _ranking(smallest, data.lower)
    common = [s for s in rank_small if s in predicted]
    return _Rankings(
        common=common,
        small=[s for s in rank_small if s in common],
        target=[s for s in rank_target if s in common],
    )


def _gain_by_source(plan: Plan | None) -> Mapping[str, float]:
    """Each source's predicted gain with the whole budget on it alone ({} without a plan)."""
    if plan is None or plan.best_single is None:
        return {}
    return plan.best_single.gain_by_source


def _law_beliefs(data: _Data) -> list[PairBelief]:
    """P(a beats b) from the laws at the target compute ([] without a target or when the
    fits cannot be drawn together)."""
    from planner.errors import FitError
    from planner.laws.decision import pair_beliefs

    ok = [f for f in data.fits if f.success]
    if data.target is None or len(ok) < 2:
        return []
    try:
        return pair_beliefs(ok, data.target)
    except FitError:
        return []


def _summary(
    data: _Data, rankings: _Rankings, told: RankingStory, plan_id: str | None
) -> tuple[list[str], MeasuredChoice | None, tuple[str, ...]]:
    """The summary: the plan's gain under its rule and added up, what the fitted laws say
    about the ranking, and what the two point estimates (measured and read from the laws)
    are predicted to give up. Returns the lines, the measured choice and the story's
    sentences (shared with the demo's summary)."""
    plan = data.plan
    md = ["## Summary", ""]
    if plan is not None and plan.success:
        md.append(
            f"For a budget of **{format_quantity(plan.budget, plan.unit)}**, the cost-optimal "
            f"allocation on `{data.metric}` predicts a gain of **{plan.gain:+.4g}** over the control "
            f"anneal (90% interval {_fmt(plan.gain_low)} to {_fmt(plan.gain_high)})"
            + (f" under the {rule_text(plan)}." if rule_text(plan) else ".")
        )
        if plan.additive_gain is not None and (
            plan.combination is None or plan.combination.rule != "additive"
        ):
            md.append(
                f"Had the single-source gains simply added, it would predict "
                f"{plan.additive_gain:+.4g} (90% interval {_fmt(plan.additive_low)} to "
                f"{_fmt(plan.additive_high)})."
            )
        conf = plan.confirmation
        if conf is not None and conf.measured_gain is not None:
            md.append(f"The mixed anneal that confirms it measured **{conf.measured_gain:+.4g}**.")
        elif conf is not None:
            md.append(
                "The mixed anneal that confirms it has not run yet "
                f"(`annealplan confirm {plan_id or PLAN_PLACEHOLDER}`)."
            )
    elif plan is not None:
        md.append(f"No allocation could be made: {plan.message}")
    else:
        md.append("No allocation has been made yet (`annealplan allocate --budget …`).")
    md.append("")
    measured = None
    story = list(told.sentences)
    if rankings.common:
        measured = _measured_choice(data, rankings)
        if measured is not None:
            story.append(
                measured_choice_sentence(
                    measured.choice, measured.gain_if_followed, measured.gain_lost, plan
                )
            )
    if story:
        first, *rest = story
        if told.changes:
            first = first.replace("the ranking changes:", "**the ranking changes:**", 1)
        md += [first, ""]
        md += [f"- {s}" for s in rest]
        md.append("")
    pe = plan.point_estimate if plan is not None else None
    if pe:
        interval = (
            f" (90% interval {_fmt(pe.gain_lost_low)} to {_fmt(pe.gain_lost_high)})."
            if pe.gain_lost_low is not None
            else "."
        )
        md.append(
            f"Read at a micro budget of {format_quantity(pe.micro_budget, plan.unit)} "
            f"({pe.micro_budget / plan.budget:.0%} of the budget), the laws choose **{pe.choice}**; "
            "following that choice at the target budget is predicted under the laws to give up "
            f"**{_fmt(pe.gain_lost)}** of gain compared with the allocation" + interval
        )
        conf = plan.confirmation
        if conf is not None and conf.measured_gain is not None:
            md[-1] += (
                f" The allocation's mixed anneal measured {conf.measured_gain:+.4g} against "
                f"its predicted {conf.predicted_gain:+.4g}."
            )
        md.append("")
    return md, measured, tuple(story)


def _measured_choice(data: _Data, rankings: _Rankings) -> MeasuredChoice | None:
    """The point estimate as people practise it: trust the measured micro-anneals and spend
    the budget on their winner (None without a plan that predicts its gain)."""
    gain_by = _gain_by_source(data.plan)
    winner = rankings.small[0]
    if not data.solved or winner not in gain_by:
        return None
    followed = float(gain_by[winner])
    return MeasuredChoice(winner, followed, float(data.plan.gain - followed))


def _sources_section(store: Any) -> list[str]:
    sources = store.sources()
    if not sources:
        return []
    md = [
        "## Sources",
        "",
        "| source | kind | cap (tokens) | curation cost model |",
        "|---|---|---|---|",
    ]
    for s in sources:
        cost = (
            f"{s.cost.model} {json.dumps(dict(s.cost.params))} [{s.cost.unit.value}]"
            if s.cost
            else "free"
        )
        cap = format_quantity(s.cap_tokens, Unit.TOKENS) if s.cap_tokens else "unbounded"
        md.append(f"| {s.name} | {s.kind} | {cap} | {cost} |")
    md.append("")
    return md


def _laws_section(data: _Data, out: Path) -> tuple[list[str], Path]:
    """The runs and fitted laws: budgets per source, the plot and the table of fits."""
    md = [f"## Runs and fitted laws: `{data.metric}`", ""]
    budgets_per_source = {
        s: sorted({o.compute for o in rows}) for s, rows in data.by_source.items()
    }
    md.append(
        "Budgets measured per source: "
        + "; ".join(
            f"{s or CONTROL_SOURCE}: {len(b)}" for s, b in sorted(budgets_per_source.items())
        )
        + "."
    )
    md.append("")
    laws_png = out / f"laws-{_slug(data.metric)}.png"
    _plot_laws(data, laws_png)
    md += [f"![laws]({laws_png.name})", ""]
    md += ["| source | family | method | parameters | points | fit |", "|---|---|---|---|---|---|"]
    for f in sorted(data.fits, key=lambda f: f.source):
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in f.params.items())
        md.append(
            f"| {f.source} | {f.family} | {f.method} | {params} | {f.n_points} | "
            f"{'ok' if f.success else html.escape(f.message)} |"
        )
    md.append("")
    return md, laws_png


def _plot_laws(data: _Data, path: Path) -> None:
    """Each source's runs and its law with the 90% band over its own range, the control
    anneal and the target budget."""
    import matplotlib.pyplot as plt

    from planner.laws.predict import predict_interval
    from planner.laws.session import draw_grid, draw_range

    fig, ax = plt.subplots(figsize=(8, 5))
    colors = itertools.cycle(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    xs_all = [o.compute for o in data.obs]
    target = data.target
    if xs_all:
        lo = min(xs_all) / 1.5
        hi = max([*xs_all, target or 0.0]) * 1.5
        grid = np.geomspace(lo, hi, 120)
        for f in sorted(data.fits, key=lambda f: f.source):
            color = next(colors)
            rows = data.by_source.get(f.source, [])
            ax.scatter([o.compute for o in rows], [o.value for o in rows], color=color, zorder=3)
            if f.success:
                # Draw each law over its own data and one decade beyond, not over every
                # source's range: far from its runs a law says little.
                own = [o.compute for o in rows]
                low_x, high_x = draw_range(own, f.x_max)
                g = grid[(grid >= low_x) & (grid <= high_x)]
                if g.size < 2:
                    g = draw_grid(own, f.x_max)
                point, low, high = predict_interval(f, g)
                ax.plot(g, point, color=color, label=f"{f.source} ({f.family})")
                if np.all(np.isfinite(low)):
                    ax.fill_between(g, low, high, color=color, alpha=0.15)
            else:
                ax.plot([], [], color=color, label=f"{f.source} (fit failed)")
        control_obs = [o for s, rows in data.by_source.items() if is_control(s) for o in rows]
        if control_obs:
            cv = float(np.mean([o.value for o in control_obs]))
            ax.axhline(cv, color="grey", linestyle="--", label="control anneal")
        if target:
            ax.axvline(target, color="black", linestyle=":", label="target budget")
        ax.set_xscale("log")
        ax.set_xlabel(
            "tokens per run"
            if data.compute_unit == "tokens"
            else f"total cost per run ({data.unit_label})"
        )
        ax.set_ylabel(data.metric + (" (lower is better)" if data.lower else " (higher is better)"))
        ax.legend(fontsize=8)
        ax.set_title(f"{data.metric}: runs, fitted laws and 90% prediction bands")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _crossovers_section(data: _Data) -> tuple[list[str], list[Crossover]]:
    """Where each pair of fitted laws crosses, over the runs' range and up to the target."""
    from planner.laws.crossover import crossover
    from planner.laws.pairwise_view import study_views

    md: list[str] = []
    ok = [f for f in data.fits if f.success]
    xs_all = [o.compute for o in data.obs]
    crossings = []
    views = {}
    if len(ok) >= 2 and xs_all:
        try:
            views = study_views(data.obs, ok)
        except Exception as e:  # the difference model is beside the laws: never fatal here
            md.append(f"_The difference model's crossings were not computed: {e}_")
        lo_c = min(xs_all)
        hi_c = max([*xs_all, data.target or 0.0]) * 1.5
        for a, b in itertools.combinations(sorted(ok, key=lambda f: f.source), 2):
            try:
                c = crossover(a, b, lo_c, hi_c, view=views.get((a.study, a.metric)))
            except Exception as e:  # a degenerate pair must not sink the whole report
                md.append(f"_Crossover of {a.source} and {b.source} not computed: {e}_")
                continue
            crossings.append(c)
    md += ["## Crossovers", ""]
    if crossings:
        md += [
            "The laws' columns are the fitted curves' crossing and the share of their joint "
            "bootstrap draws that cross; the difference model's are the share of its "
            "posterior draws of the two sources' difference that change sign, and where its "
            "mean does (the decision's own view: trends in a difference kept only as far as "
            "the runs' nested backtests show they persist).",
            "",
            "| sources | crosses at | P(crossing in range) | better after "
            "| difference model: crosses at | difference model: P(crossing) |",
            "|---|---|---|---|---|---|",
        ]

        def where(compute: float) -> str:
            return compute_text(compute, data.compute_unit) if math.isfinite(compute) else "–"

        for c in crossings:
            md.append(
                f"| {c.a} vs {c.b} | {where(c.compute)} | {_fmt(c.probability, 2)} "
                f"| {c.better_after or '–'} | {where(c.difference_compute)} "
                f"| {_fmt(c.difference_probability, 2)} |"
            )
    else:
        md.append("Fewer than two fitted sources: no crossovers to compute.")
    md.append("")
    return md, crossings


def _allocation_section(data: _Data, plan_id: str | None = None) -> list[str]:
    """The plan's table, its KKT certificate, the confirmation anneal, the trust region,
    the best single source and the point estimate beside it, and its notes."""
    md = ["## Allocation", ""]
    plan = data.plan
    if plan is None or not plan.success:
        return md
    md += [
        "| source | tokens | cost | predicted gain | 90% interval | P(in optimal plan) |",
        "|---|---|---|---|---|---|",
    ]
    for a in plan.allocations:
        md.append(
            f"| {a.source} | {format_quantity(a.tokens, Unit.TOKENS)} | "
            f"{format_quantity(a.cost, plan.unit)} | {a.gain:+.4g} | "
            f"{_fmt(a.gain_low)} to {_fmt(a.gain_high)} | {_fmt(a.p_in_optimal, 2)} |"
        )
    md.append("")
    md += _certificate_md(plan)
    md += ["### Confirmation and trust region", ""]
    md += [f"- {line}" for line in confirmation_lines(plan, plan_id)]
    md += [f"- {line}" for line in trust_lines(plan)]
    md.append("")
    if bs := plan.best_single:
        md.append(f"Best single source: **{bs.source}** (predicted gain {bs.gain:+.4g}).")
    if pe := plan.point_estimate:
        md.append("")
        md += [
            "| decision | choice | predicted gain at the target budget (under the laws) |",
            "|---|---|---|",
            f"| laws + allocation | {', '.join(a.source for a in plan.allocations if a.tokens > 0)} | {plan.gain:+.4g} |",
            f"| point estimate (one micro-anneal) | {pe.choice} | {plan.gain - pe.gain_lost:+.4g} |",
        ]
        conf = plan.confirmation
        if conf is not None and conf.measured_gain is not None:
            md.append(
                f"| allocation, measured (mixed anneal) | {conf.source} | {conf.measured_gain:+.4g} |"
            )
    md.append("")
    for note in plan.notes:
        md.append(f"- {note}")
    md.append("")
    return md


def _certificate_md(plan: Plan) -> list[str]:
    """The KKT certificate: each source's marginal gain per unit of cost beside λ, and the
    rule it shows, in words."""
    rows = certificate_rows(plan)
    if not rows:
        return []
    per = per_unit(plan.unit)
    md = [
        "### KKT certificate",
        "",
        f"| source | status | tokens | marginal gain per {per} | against λ |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r.source} | {r.status} | {r.tokens} | {r.marginal_utility} | {r.versus_lambda} |"
        )
    md += ["", certificate_sentence(plan), ""]
    return md


def _seed_section(data: _Data) -> list[str]:
    """Where a source was run with several seeds at one budget: the values and their
    spread (the noise the laws must see through)."""
    grouped: dict[tuple[str, float], list[tuple[int, float]]] = defaultdict(list)
    for o in data.obs:
        if o.seed is not None:
            grouped[(o.source or CONTROL_SOURCE, o.compute)].append((o.seed, o.value))
    rows = seed_spread(grouped)
    if not rows:
        return []
    md = [
        "## Seed spread",
        "",
        "| source | budget | seeds | values | spread (max − min) |",
        "|---|---|---|---|---|",
    ]
    for source, budget, seeds, values, spread in rows:
        md.append(
            f"| {source} | {compute_text(budget, data.compute_unit)} | "
            f"{', '.join(str(s) for s in seeds)} | {', '.join(_fmt(v) for v in values)} | "
            f"{_fmt(spread, 3)} |"
        )
    md.append("")
    return md


#: the discrete scores reported beside a continuous decision metric of the same task
COMPANION_NAMES = ("acc", "acc_norm", "exact_match")


def _companions_section(store: Any, data: _Data, extra: Sequence[str] = ()) -> list[str]:
    """The decision metric beside its task's accuracy and exact match: each source's mean
    at its largest measured budget (seeds averaged), the control's and the confirmation
    anneal's, so a reader sees what the continuous metric stands for."""
    task = data.metric.split("/")[0]
    if task == data.metric:
        return []
    names = [data.metric]
    by_metric: dict[str, list[Observation]] = {data.metric: list(data.obs)}
    for m in [*(f"{task}/{n}" for n in COMPANION_NAMES), *extra]:
        if m not in names:
            rows = store.observations(metric=m)
            if rows:
                names.append(m)
                by_metric[m] = rows
    if len(names) == 1:
        return []
    top: dict[str, float] = {}
    for o in data.obs:
        top[o.source] = max(top.get(o.source, 0.0), o.compute)
    conf = data.plan.confirmation if data.plan is not None else None
    conf_run = conf.run_id if conf is not None else None

    def mean_at(rows: Sequence[Observation], source: str) -> float:
        vals = [o.value for o in rows if o.source == source and o.compute == top.get(source)]
        return float(np.mean(vals)) if vals else float("nan")

    md = [
        f"## `{data.metric}` beside its task's discrete scores",
        "",
        "Each source at its largest measured budget (seeds averaged); the plan decides on "
        f"`{data.metric}`, a continuous score, because the discrete ones move in steps of "
        "one item on a small evaluation set.",
        "",
        "| run | budget | "
        + " | ".join(f"`{n.split('/', 1)[-1]}`" if n.startswith(task) else f"`{n}`" for n in names)
        + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for source in sorted(top, key=lambda x: (not is_control(x), x)):
        if conf_run is not None and source == conf.source:
            continue
        cells = [_fmt(mean_at(by_metric[n], source)) for n in names]
        label = (
            CONTROL_SOURCE
            if is_control(source)
            else f"mixed: {source}"
            if is_mixture(source)
            else source
        )
        md.append(
            f"| {label} | {compute_text(top[source], data.compute_unit)} | "
            + " | ".join(cells)
            + " |"
        )
    if conf_run is not None:
        cells = []
        for n in names:
            vals = [o.value for o in by_metric[n] if o.run_id == conf_run]
            cells.append(_fmt(float(np.mean(vals))) if vals else "–")
        md.append(f"| confirmation ({conf.source}) | – | " + " | ".join(cells) + " |")
    md.append("")
    return md


def _frontier_plot(data: _Data, rows: Sequence[FrontierPoint], out: Path) -> Path:
    """The optimal gain across budgets with its band, and the best single source's."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    b = np.array([r.budget for r in rows])
    g = np.array([r.gain for r in rows])
    ax.plot(b, g, label="optimal allocation")
    lo_ = np.array([r.gain_low for r in rows], dtype=float)
    hi_ = np.array([r.gain_high for r in rows], dtype=float)
    if np.all(np.isfinite(lo_)):
        ax.fill_between(b, lo_, hi_, alpha=0.2, label="90% interval")
    bsg = np.array([r.best_single_gain for r in rows], dtype=float)
    ax.plot(b, bsg, linestyle="--", label="best single source")
    ax.set_xscale("log")
    ax.set_xlabel(f"budget ({data.plan.unit.value if data.plan else data.unit_label})")
    ax.set_ylabel(f"predicted gain on {data.metric}")
    ax.set_title("Allocation frontier")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "frontier.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _reproducibility_section(store: Any, facts: Mapping[str, Any] | None) -> list[str]:
    """Versions, the given facts, and per run its seed and the hashes of its data and
    checkpoint."""
    md = ["## Reproducibility", ""]
    rows_meta = []
    for r in store.runs():
        try:
            meta = store.run_meta(r.run_id)
        except Exception:
            meta = {}
        rows_meta.append((r, meta))
    versions: dict[str, set[str]] = defaultdict(set)
    for _, meta in rows_meta:
        for k, v in (meta.get("versions") or {}).items():
            versions[k].add(str(v))
    if versions:
        md.append(
            "Versions: "
            + ", ".join(f"{k} {'/'.join(sorted(v))}" for k, v in sorted(versions.items()))
            + "."
        )
        md.append("")
    for k, v in (facts or {}).items():
        md.append(f"- {k}: {v}")
    md += [
        "",
        "| run | source | compute | seed | data hash | checkpoint hash |",
        "|---|---|---|---|---|---|",
    ]
    for r, meta in rows_meta:
        md.append(
            f"| {r.run_id} | {r.source} | {_fmt(r.compute)} | {'' if r.seed is None else r.seed} | "
            f"{str(meta.get('data_hash', ''))[:12]} | {str(meta.get('checkpoint_hash', ''))[:12]} |"
        )
    md.append("")
    return md


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in s)


def _to_html(markdown: str, title: str) -> str:
    """Render the report's small Markdown subset (headings, tables, images, lists, bold)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
        "img{max-width:100%}</style></head><body>"
        f"{body}</body></html>"
    )
