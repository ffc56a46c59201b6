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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from planner.domain import FrontierPoint, Observation, Plan, lower_is_better
from planner.units import Unit, format_quantity


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """What :func:`build_report` wrote."""

    markdown: Path
    html: Path
    images: tuple[Path, ...]
    findings: Mapping[str, Any] = field(default_factory=dict)


CONTROL_NAMES = ("control", "")


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
    loaded: Any = None,
    budget_compute: float | None = None,
    frontier_rows: Sequence[FrontierPoint] = (),
    title: str = "annealplan report",
    facts: Mapping[str, Any] | None = None,
) -> ReportFiles:
    """Write ``report.md``, ``report.html`` and PNG plots into ``out_dir``.

    Args:
        store: an open store (fits, runs and metrics are read from it).
        out_dir: the folder to write into (created if missing).
        metric: the decision metric (the plan's objective).
        plan: the plan to show (default: the newest stored plan for ``metric``).
        loaded: the allocation problem the plan came from (for the point-estimate table).
        budget_compute: the target budget in the runs' compute unit (for the ranking at
            the target); defaults to the plan's budget.
        frontier_rows: rows from ``planner.allocate.frontier.frontier`` to plot.
        title: the report's heading.
        facts: extra reproducibility facts (e.g. the command that made the runs).

    Returns:
        The files written and the key findings (rankings, crossing, gain over point estimate).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from planner.laws.crossover import crossover
    from planner.laws.fit import predict_interval
    from planner.laws.session import draw_grid, draw_range

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images: list[Path] = []
    md: list[str] = [f"# {title}", "", f"_Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC._", ""]

    if plan is None:
        plans = [p for _, p in store.plans() if p.metric == metric]
        plan = plans[0] if plans else None
    directions = store.metric_directions()
    lower = lower_is_better(metric, directions)

    fits = [f for _, f in store.fits(metric=metric) if f.source not in CONTROL_NAMES]
    obs = store.observations(metric=metric)
    by_source: dict[str, list[Observation]] = defaultdict(list)
    for o in obs:
        by_source[o.source].append(o)
    control_obs = [o for s in CONTROL_NAMES for o in by_source.get(s, [])]
    units = {u for u in store.compute_units().values() if u}
    compute_unit = units.pop() if len(units) == 1 else None
    unit_label = {
        "gpu_hours": "GPU-hours",
        "flops": "FLOPs",
        "usd": "USD",
        "tokens": "tokens",
    }.get(compute_unit or "", "compute")
    # Only draw the target where the runs' compute is in the budget's unit.
    target = budget_compute

    # ------------------------------------------------------------------ findings
    findings: dict[str, Any] = {"metric": metric, "lower_is_better": lower}
    smallest: dict[str, float] = {}
    for s, rows in by_source.items():
        if s in CONTROL_NAMES or not rows:
            continue
        c0 = min(o.compute for o in rows)
        smallest[s] = float(np.mean([o.value for o in rows if o.compute == c0]))
    predicted_at_target: dict[str, float] = {}
    by_gain = plan.best_single.gain_by_source if plan and plan.best_single else None
    if by_gain:
        # The laws' ranking at the target: each source's predicted gain over control when the
        # whole budget is spent on it alone (higher gain is better whatever the metric).
        predicted_at_target = dict(by_gain)
        rank_target = sorted(
            predicted_at_target, key=lambda s: predicted_at_target[s], reverse=True
        )
    else:
        if target:
            for f in fits:
                if f.success:
                    predicted_at_target[f.source] = float(predict_interval(f, [target])[0][0])
        rank_target = _ranking(predicted_at_target, lower)
    rank_small = _ranking(smallest, lower)
    common = [s for s in rank_small if s in predicted_at_target]
    rank_small_c = [s for s in rank_small if s in common]
    rank_target_c = [s for s in rank_target if s in common]
    findings.update(
        ranking_at_smallest_budget=rank_small_c,
        ranking_predicted_at_target=rank_target_c,
        ranking_changes=bool(common) and rank_small_c != rank_target_c,
        best_changes=bool(common) and rank_small_c[:1] != rank_target_c[:1],
    )

    md += ["## Summary", ""]
    if plan is not None and plan.success:
        md.append(
            f"For a budget of **{format_quantity(plan.budget, plan.unit)}**, the cost-optimal "
            f"allocation on `{metric}` predicts a gain of **{plan.gain:+.4g}** over the control "
            f"anneal (90% interval {_fmt(plan.gain_low)} to {_fmt(plan.gain_high)})."
        )
    elif plan is not None:
        md.append(f"No allocation could be made: {plan.message}")
    else:
        md.append("No allocation has been made yet (`annealplan allocate --budget …`).")
    md.append("")
    if common:
        small_txt = " > ".join(rank_small_c)
        target_txt = " > ".join(rank_target_c)
        if findings["ranking_changes"]:
            md.append(
                f"**The ranking changes.** At each source's smallest budget the measured order is "
                f"{small_txt}; the fitted laws predict {target_txt} at the target budget. A single "
                "micro-anneal would have ranked the sources differently from what the laws expect "
                "at scale."
            )
        else:
            md.append(
                f"**No crossing in this example.** The measured order at the smallest budgets "
                f"({small_txt}) is the order the laws predict at the target budget; "
                "here a micro-anneal would have picked the same "
                "best source."
            )
        gain_by = plan.best_single.gain_by_source if plan and plan.best_single else {}
        winner = rank_small_c[0]
        if plan is not None and plan.success and winner in gain_by:
            # The point estimate as people practise it: trust the measured micro-anneals and
            # spend the budget on their winner.
            followed = float(gain_by[winner])
            findings["measured_point_estimate"] = {
                "choice": winner,
                "gain_if_followed": followed,
                "gain_lost": float(plan.gain - followed),
            }
            md.append(
                f"Following the measured smallest-budget winner — the whole budget on "
                f"**{winner}** — is predicted to gain {followed:+.4g}, "
                f"{plan.gain - followed:.4g} less than the allocation."
            )
        md.append("")
    pe = plan.point_estimate if plan is not None else None
    if pe:
        findings["point_estimate"] = pe
        md.append(
            f"Read at a micro budget of {format_quantity(pe.micro_budget, plan.unit)} "
            f"({pe.micro_budget / plan.budget:.0%} of the budget), the laws choose **{pe.choice}**; following that choice at the "
            "target budget gives up a predicted "
            f"**{_fmt(pe.gain_lost)}** of gain compared with the allocation"
            + (
                f" (90% interval {_fmt(pe.gain_lost_low)} to {_fmt(pe.gain_lost_high)})."
                if pe.gain_lost_low is not None
                else "."
            )
        )
        md.append("")

    # ------------------------------------------------------------------ sources
    sources = store.sources()
    if sources:
        md += [
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

    # ------------------------------------------------------------------ laws plot
    md += [f"## Runs and fitted laws: `{metric}`", ""]
    budgets_per_source = {s: sorted({o.compute for o in rows}) for s, rows in by_source.items()}
    md.append(
        "Budgets measured per source: "
        + "; ".join(f"{s or 'control'}: {len(b)}" for s, b in sorted(budgets_per_source.items()))
        + "."
    )
    md.append("")
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = itertools.cycle(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    xs_all = [o.compute for o in obs]
    if xs_all:
        lo = min(xs_all) / 1.5
        hi = max([*xs_all, target or 0.0]) * 1.5
        grid = np.geomspace(lo, hi, 120)
        for f in sorted(fits, key=lambda f: f.source):
            color = next(colors)
            rows = by_source.get(f.source, [])
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
        if control_obs:
            cv = float(np.mean([o.value for o in control_obs]))
            ax.axhline(cv, color="grey", linestyle="--", label="control anneal")
        if target:
            ax.axvline(target, color="black", linestyle=":", label="target budget")
        ax.set_xscale("log")
        ax.set_xlabel(
            "tokens per run" if compute_unit == "tokens" else f"total cost per run ({unit_label})"
        )
        ax.set_ylabel(metric + (" (lower is better)" if lower else " (higher is better)"))
        ax.legend(fontsize=8)
        ax.set_title(f"{metric}: runs, fitted laws and 90% prediction bands")
    fig.tight_layout()
    laws_png = out / f"laws-{_slug(metric)}.png"
    fig.savefig(laws_png, dpi=110)
    plt.close(fig)
    images.append(laws_png)
    md += [f"![laws]({laws_png.name})", ""]

    md += ["| source | family | method | parameters | points | fit |", "|---|---|---|---|---|---|"]
    for f in sorted(fits, key=lambda f: f.source):
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in f.params.items())
        md.append(
            f"| {f.source} | {f.family} | {f.method} | {params} | {f.n_points} | "
            f"{'ok' if f.success else html.escape(f.message)} |"
        )
    md.append("")

    # ------------------------------------------------------------------ crossovers
    ok = [f for f in fits if f.success]
    crossings = []
    if len(ok) >= 2 and xs_all:
        lo_c = min(xs_all)
        hi_c = max([*xs_all, target or 0.0]) * 1.5
        for a, b in itertools.combinations(sorted(ok, key=lambda f: f.source), 2):
            try:
                c = crossover(a, b, lo_c, hi_c)
            except Exception as e:  # a degenerate pair must not sink the whole report
                md.append(f"_Crossover of {a.source} and {b.source} not computed: {e}_")
                continue
            crossings.append(c)
    md += ["## Crossovers", ""]
    if crossings:
        md += [
            "| sources | crosses at | P(crossing in range) | better after |",
            "|---|---|---|---|",
        ]
        for c in crossings:
            md.append(
                f"| {c.a} vs {c.b} | {_fmt(c.compute)} | {_fmt(c.probability, 2)} | {c.better_after or '–'} |"
            )
    else:
        md.append("Fewer than two fitted sources: no crossovers to compute.")
    md.append("")
    findings["crossovers"] = [
        {"a": c.a, "b": c.b, "compute": c.compute, "probability": c.probability} for c in crossings
    ]

    # ------------------------------------------------------------------ allocation
    md += ["## Allocation", ""]
    if plan is not None and plan.success:
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
        if bs := plan.best_single:
            md.append(f"Best single source: **{bs.source}** (predicted gain {bs.gain:+.4g}).")
        if pe:
            md.append("")
            md += [
                "| decision | choice | predicted gain at the target budget |",
                "|---|---|---|",
                f"| laws + allocation | {', '.join(a.source for a in plan.allocations if a.tokens > 0)} | {plan.gain:+.4g} |",
                f"| point estimate (one micro-anneal) | {pe.choice} | {plan.gain - pe.gain_lost:+.4g} |",
            ]
        md.append("")
        for note in plan.notes:
            md.append(f"- {note}")
        if conf := plan.confirmation:
            md.append(
                f"- Confirm the mix with one anneal: {conf.source} at "
                f"{format_quantity(conf.tokens, Unit.TOKENS)}."
            )
        md.append("")
    if frontier_rows:
        fig, ax = plt.subplots(figsize=(8, 4))
        b = np.array([r.budget for r in frontier_rows])
        g = np.array([r.gain for r in frontier_rows])
        ax.plot(b, g, label="optimal allocation")
        lo_ = np.array([r.gain_low for r in frontier_rows], dtype=float)
        hi_ = np.array([r.gain_high for r in frontier_rows], dtype=float)
        if np.all(np.isfinite(lo_)):
            ax.fill_between(b, lo_, hi_, alpha=0.2, label="90% interval")
        bsg = np.array([r.best_single_gain for r in frontier_rows], dtype=float)
        ax.plot(b, bsg, linestyle="--", label="best single source")
        ax.set_xscale("log")
        ax.set_xlabel(f"budget ({plan.unit.value if plan else unit_label})")
        ax.set_ylabel(f"predicted gain on {metric}")
        ax.set_title("Allocation frontier")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fr_png = out / "frontier.png"
        fig.savefig(fr_png, dpi=110)
        plt.close(fig)
        images.append(fr_png)
        md += ["![frontier](frontier.png)", ""]

    # ------------------------------------------------------------------ reproducibility
    md += ["## Reproducibility", ""]
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

    md_path = out / "report.md"
    md_path.write_text("\n".join(md))
    html_path = out / "report.html"
    html_path.write_text(_to_html("\n".join(md), title))
    return ReportFiles(markdown=md_path, html=html_path, images=tuple(images), findings=findings)


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
