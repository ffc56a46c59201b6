"""One story of a plan, told the same way by the report, the CLI and the TUI.

Plain text, no markup: each function returns short lines (at most :data:`WIDTH` columns
where the names allow) or whole sentences that the caller wraps. What a plan predicts
(under its combination rule and had the gains simply added), its KKT certificate, the
confirmation anneal, the trust region, and what the fitted laws say about the ranking.
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from planner.laws.decision import undecided
from planner.units import Unit, format_quantity

if TYPE_CHECKING:
    from planner.domain import CertificateEntry, Plan
    from planner.laws.crossover import Crossover
    from planner.laws.decision import PairBelief

#: the terminal width the CLI's lines are kept to
WIDTH = 80
#: a crossover is claimed when at least this share of the bootstrap draws cross
PROBABLE = 0.5
#: what the confirmation command is called with when the plan's id is not known
PLAN_PLACEHOLDER = "PLAN"

_PER = {Unit.USD: "$", Unit.GPU_HOURS: "GPU-h", Unit.FLOPS: "FLOP", Unit.TOKENS: "token"}
_STATUS_WORDS = {
    "interior": "= λ",
    "zero": "< λ, not bought",
    "capped": "> λ",
}
_LIMIT_WORDS = {"supply": "supply cap", "trust": "trust region"}


def known(v: float | None) -> bool:
    """A number that was set and is finite."""
    return isinstance(v, int | float) and math.isfinite(v)


def gain_text(v: float | None) -> str:
    """A signed gain with four significant digits (``–`` when unknown)."""
    return f"{v:+.4g}" if known(v) else "–"


def interval_text(low: float | None, high: float | None) -> str:
    """``[+0.03, +0.05]``, or empty when the interval is unknown."""
    if not (known(low) and known(high)):
        return ""
    return f"[{low:+.3g}, {high:+.3g}]"


def _with_interval(v: float | None, low: float | None, high: float | None) -> str:
    band = interval_text(low, high)
    return gain_text(v) + (f" {band}" if band else "")


def per_unit(unit: Unit) -> str:
    """The cost unit a marginal utility is counted per (``$``, ``GPU-h``…)."""
    return _PER.get(unit, unit.value)


def tokens_text(tokens: float) -> str:
    return format_quantity(tokens, Unit.TOKENS)


def wrap(text: str, indent: str = "  ", width: int = WIDTH) -> list[str]:
    """``text`` as lines of at most ``width`` columns, continuation lines indented more."""
    return textwrap.wrap(
        text,
        width=width,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_long_words=False,
        break_on_hyphens=False,
    )


# --------------------------------------------------------------------- predictions


def rule_text(plan: Plan) -> str:
    """The combination rule in words: ``coverage rule, H = 0.38, θ = 0`` (empty: unknown).

    θ is the rule's interaction: 0 for sources that cover the headroom independently, above
    0 where they overlap, below 0 where they complement each other."""
    c = plan.combination
    if c is None:
        return ""
    if c.rule != "coverage":
        return f"{c.rule} rule"
    parts = ["coverage rule"]
    if known(c.headroom):
        parts.append(f"H = {c.headroom:.3g}")
    p = f"θ = {c.interaction:.3g}"
    if known(c.interaction_low) and known(c.interaction_high):
        p += f" [{c.interaction_low:.3g}, {c.interaction_high:.3g}]"
    if c.mixtures:
        p += f" from {c.mixtures} mixture{'s' if c.mixtures != 1 else ''}"
    parts.append(p)
    return ", ".join(parts)


def prediction_lines(plan: Plan) -> list[str]:
    """The plan's gain under its combination rule and the additive prediction, each with
    its 90% interval."""
    rule = rule_text(plan)
    head = f"predicted gain ({rule})" if rule else "predicted gain"
    lines = [f"{head}: {_with_interval(plan.gain, plan.gain_low, plan.gain_high)}"]
    if plan.additive_gain is not None and (
        plan.combination is None or plan.combination.rule != "additive"
    ):
        lines.append(
            "additive prediction (gains summed): "
            + _with_interval(plan.additive_gain, plan.additive_low, plan.additive_high)
        )
    return lines


# --------------------------------------------------------------------- KKT certificate


@dataclass(frozen=True, slots=True)
class CertificateRow:
    """One source's certificate line as text: its marginal utility beside λ."""

    source: str
    status: str
    marginal_utility: str
    versus_lambda: str
    tokens: str


def lambda_of(plan: Plan) -> float | None:
    """λ: the plan's multiplier, else the marginal utility its interior sources share."""
    if known(plan.marginal_utility):
        return float(plan.marginal_utility)
    interior = [c.marginal_utility for c in plan.certificate if c.status == "interior"]
    interior = [v for v in interior if known(v)]
    return float(sum(interior) / len(interior)) if interior else None


def _versus(entry: CertificateEntry) -> str:
    words = _STATUS_WORDS.get(entry.status, entry.status)
    if entry.status == "capped" and entry.limit:
        words += f", {_LIMIT_WORDS.get(entry.limit, entry.limit)}"
    return words


def certificate_rows(plan: Plan) -> list[CertificateRow]:
    """The certificate as text, one row per source (marginal utility per unit of cost)."""
    return [
        CertificateRow(
            source=c.source,
            status=c.status,
            marginal_utility=f"{c.marginal_utility:.3g}" if known(c.marginal_utility) else "–",
            versus_lambda=_versus(c),
            tokens=tokens_text(c.tokens).replace(" tokens", ""),
        )
        for c in plan.certificate
    ]


def certificate_sentence(plan: Plan) -> str:
    """The certificate in words: which sources share λ, which sit lower, which higher."""
    if not plan.certificate:
        return ""
    per = per_unit(plan.unit)
    lam = lambda_of(plan)
    by = {s: [c for c in plan.certificate if c.status == s] for s in ("interior", "zero")}
    capped = [c for c in plan.certificate if c.status == "capped"]
    names = {s: ", ".join(c.source for c in cs) for s, cs in by.items()}
    parts = []
    lam_text = f"λ = {lam:.3g} per {per}" if lam is not None else "λ"
    if by["interior"]:
        parts.append(
            f"the sources bought inside their limits ({names['interior']}) share the same "
            f"marginal gain per {per}, {lam_text}"
        )
    else:
        parts.append(f"no source is bought inside its limits, so none sets {lam_text}")
    if by["zero"]:
        parts.append(
            f"those left at zero ({names['zero']}) earn less: the next {per} there gains less than λ"
        )
    if capped:
        held = ", ".join(
            f"{c.source} at its {_LIMIT_WORDS.get(c.limit, c.limit or 'limit')}" for c in capped
        )
        parts.append(f"capped ones earn more ({held}): they would get more were the limit higher")
    return "KKT certificate: " + "; ".join(parts) + "."


def certificate_lines(plan: Plan) -> list[str]:
    """The certificate as a small fixed-width table (fits 80 columns for names up to 20)."""
    rows = certificate_rows(plan)
    if not rows:
        return []
    name_w = max(6, *(len(r.source) for r in rows))
    lam = lambda_of(plan)
    head = f"KKT certificate (marginal gain per {per_unit(plan.unit)}"
    head += f"; λ = {lam:.3g})" if lam is not None else ")"
    out = [head, f"{'source':<{name_w}}  {'tokens':>7}  {'d gain/d cost':>13}  vs λ"]
    for r in rows:
        out.append(
            f"{r.source:<{name_w}}  {r.tokens:>7}  {r.marginal_utility:>13}  {r.versus_lambda}"
        )
    return out


# --------------------------------------------------------------------- confirmation


def confirmation_lines(plan: Plan, plan_id: str | None = None) -> list[str]:
    """The mixed anneal's measured gain beside both predictions, or how to run it."""
    conf = plan.confirmation
    if conf is None:
        return []
    out = [f"confirmation anneal: {conf.source} at {tokens_text(conf.tokens)}"]
    if conf.measured_gain is not None:
        run = f" (run {conf.run_id})" if conf.run_id else ""
        out.append(f"measured gain: {gain_text(conf.measured_gain)}{run}")
    else:
        out.append(f"not run yet; run it with: annealplan confirm {plan_id or PLAN_PLACEHOLDER}")
    rule = plan.combination.rule if plan.combination is not None else ""
    out.append(
        f"predicted{f' ({rule})' if rule else ''}: "
        + _with_interval(conf.predicted_gain, conf.predicted_low, conf.predicted_high)
    )
    if conf.additive_gain is not None:
        out.append(
            "additive: " + _with_interval(conf.additive_gain, conf.additive_low, conf.additive_high)
        )
    return out


# --------------------------------------------------------------------- trust region


def trust_limit_tokens(plan: Plan, source: str) -> float | None:
    """Where the trust region stops ``source``: trust_multiple × its largest measured
    budget (a plan without that figure: its tokens, since a trust-limited source sits at its
    limit)."""
    for a in plan.allocations:
        if a.source == source:
            return a.trust_tokens if a.trust_tokens is not None else a.tokens
    for c in plan.certificate:
        if c.source == source:
            return c.tokens
    return None


def trust_lines(plan: Plan) -> list[str]:
    """The trust multiple, and one warning per source the trust region held back."""
    if plan.trust_multiple is None:
        out = ["trust region: none (the laws are extrapolated without a limit)"]
    else:
        out = [
            f"trust region: each law is trusted up to {plan.trust_multiple:g}× its "
            "largest measured budget"
        ]
    for source in plan.trust_limited:
        n = trust_limit_tokens(plan, source)
        where = tokens_text(n) if n is not None else "the trust limit in tokens"
        out.append(f"the laws are not trusted past {where} of {source}; measure larger first")
    return out


# --------------------------------------------------------------------- the ranking


def compute_text(value: float, unit: str | None) -> str:
    """A compute in the runs' unit, as a person writes it (``$3``, ``12 GPU-h``)."""
    try:
        return format_quantity(value, Unit(unit)) if unit else f"{value:.3g}"
    except ValueError:
        return f"{value:.3g} {unit}"


def probable(c: Crossover) -> bool:
    """The laws cross (point fits) and most bootstrap draws cross too."""
    return known(c.compute) and known(c.probability) and c.probability >= PROBABLE


def ranking_text(order: Sequence[str], ties: Sequence[PairBelief] = ()) -> str:
    """``a > b ≈ c``: ``≈`` between neighbours whose laws cannot be told apart."""
    tied = {frozenset((t.a, t.b)) for t in ties if undecided(t.p)}
    if not order:
        return ""
    out = order[0]
    for prev, cur in itertools.pairwise(order):
        out += (" ≈ " if frozenset((prev, cur)) in tied else " > ") + cur
    return out


@dataclass(frozen=True, slots=True)
class RankingStory:
    """What the fitted laws say about the ranking, as sentences.

    Attributes:
        changes: a crossover is probable (P ≥ 0.5) before the target: the ranking changes.
        sentences: the story, plain text.
    """

    changes: bool
    sentences: tuple[str, ...]


def ranking_story(
    *,
    small: Sequence[str],
    target: Sequence[str],
    crossovers: Sequence[Crossover],
    beliefs: Sequence[PairBelief] = (),
    compute_unit: str | None = None,
    target_compute: float | None = None,
) -> RankingStory:
    """The ranking told from the laws: crossovers with their probability, a measured
    order the laws put down to noise, and ties between laws that cannot be told apart.

    Args:
        small: the measured order at each source's smallest budget.
        target: the laws' order at the target budget (same sources).
        crossovers: the pairs' crossovers (``planner.laws.crossover``).
        beliefs: P(a beats b) at the target for each pair (undecided pairs are ties).
        compute_unit: the runs' compute unit (where the crossovers are).
        target_compute: the target in that unit; crossovers beyond it are not claimed.
    """
    ties = [b for b in beliefs if undecided(b.p)]
    within = [
        c
        for c in crossovers
        if target_compute is None or not known(c.compute) or c.compute <= target_compute
    ]
    claimed = [c for c in within if probable(c)]
    out: list[str] = []
    small_txt, target_txt = ranking_text(small), ranking_text(target, ties)
    if claimed:
        crossings = "; ".join(
            f"{c.better_after} overtakes {c.b if c.better_after == c.a else c.a} at "
            f"≈ {compute_text(c.compute, compute_unit)} with P = {c.probability:.2f}"
            for c in claimed
        )
        out.append(f"By the fitted laws the ranking changes: {crossings}.")
        if small_txt:
            out.append(
                f"Measured at the smallest budgets: {small_txt}; the laws at the target: "
                f"{target_txt}."
            )
    elif small and list(small) != list(target):
        out.append(
            f"At the smallest budgets the ranking measured ({small_txt}) differs from the "
            f"laws' order at the target ({target_txt}), but no crossover is probable "
            f"(P < {PROBABLE:g}): the laws attribute the difference to noise."
        )
    elif small:
        out.append(
            f"No crossing: the ranking measured at the smallest budgets ({small_txt}) is "
            f"the order the laws predict at the target ({target_txt})."
        )
    for c in within:
        if known(c.compute) and not probable(c):
            p = f"P = {c.probability:.2f}" if known(c.probability) else "P unknown"
            out.append(
                f"The point laws of {c.a} and {c.b} cross at ≈ "
                f"{compute_text(c.compute, compute_unit)}, but few draws agree ({p}): "
                "not claimed."
            )
    for t in ties:
        out.append(
            f"{t.a} and {t.b} are tied at the target: P({t.a} beats {t.b}) = {t.p:.2f}; "
            "their laws cannot be told apart (measure more), so they are not ranked."
        )
    return RankingStory(changes=bool(claimed), sentences=tuple(out))


def measured_choice_sentence(
    choice: str, gain_if_followed: float, gain_lost: float, plan: Plan | None
) -> str:
    """Following the measured smallest-budget winner, labelled as predicted under the laws,
    with the confirmation's measured gain where there is one."""
    text = (
        f"Following the measured smallest-budget winner, the whole budget on {choice}, is "
        f"predicted under the laws to gain {gain_text(gain_if_followed)}: "
        f"{gain_lost:.4g} less than the allocation's predicted {gain_text(plan.gain if plan else None)}."
    )
    conf = plan.confirmation if plan is not None else None
    if conf is not None and conf.measured_gain is not None:
        run = f" (run {conf.run_id})" if conf.run_id else ""
        text += f" The allocation's mixed anneal measured {gain_text(conf.measured_gain)}{run}."
    return text


def seed_spread(
    values: Mapping[tuple[str, float], Sequence[tuple[int, float]]],
) -> list[tuple[str, float, list[int], list[float], float]]:
    """(source, budget, seeds, values, spread = max − min) where a budget has several seeds.

    Args:
        values: (source, budget) → the (seed, value) pairs measured there.
    """
    out = []
    for (source, budget), rows in sorted(values.items()):
        seeds = sorted({s for s, _ in rows})
        if len(seeds) < 2:
            continue
        vals = [v for _, v in sorted(rows)]
        out.append((source, budget, seeds, vals, max(vals) - min(vals)))
    return out


def certificate_compact(plan: Plan) -> list[str]:
    """The certificate for a narrow panel: one short line per source, ``web: 3.1e-4/$ = λ``."""
    rows = certificate_rows(plan)
    if not rows:
        return []
    per = per_unit(plan.unit)
    lam = lambda_of(plan)
    out = [f"KKT: λ = {lam:.3g} per {per}" if lam is not None else "KKT certificate"]
    out += [f"{r.source}: {r.marginal_utility}/{per} {r.versus_lambda}" for r in rows]
    return out


def plan_panel_lines(plan: Plan, plan_id: str | None = None) -> list[str]:
    """What a narrow panel shows beside the plan table: the certificate (compact), the
    confirmation and the trust region."""
    return [
        *certificate_compact(plan),
        *confirmation_lines(plan, plan_id),
        *trust_lines(plan),
    ]
