"""``annealplan allocate``'s printout and the demo's summary: the story the report tells,
in 80 columns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from planner.commands.allocate import render_plan
from planner.report import Findings, ReportFiles
from planner.report.story import WIDTH
from tests.helpers.plans import story_plan


def test_the_printout_tells_the_whole_story_in_80_columns():
    text = render_plan(story_plan(), "plan-7")
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    for expected in (
        # both predictions: the rule, H and each interval
        "  predicted gain (coverage rule, H = 0.38, θ = 0.4 [0.1, 0.9] from 2 mixtures):",
        "    +0.071 [+0.058, +0.083]",
        "  additive prediction (gains summed): +0.083 [+0.069, +0.097]",
        # the certificate, one row per source, against λ
        "  KKT certificate (marginal gain per $; λ = 0.000412)",
        "  web             4M       0.000412  = λ",
        "  synthetic     1.2M       0.000733  > λ, trust region",
        "  textbook         0       0.000151  < λ, not bought",
        # the confirmation anneal, not run yet: how to run it
        "  not run yet; run it with: annealplan confirm plan-7",
        "  predicted (coverage): +0.012 [+0.008, +0.016]",
        "  additive: +0.014 [+0.01, +0.018]",
        # the trust region
        "  trust region: each law is trusted up to 10× its largest measured budget",
        "  the laws are not trusted past 1.2M tokens of synthetic; measure larger first",
    ):
        assert expected in lines, expected
    assert "following it loses 0.031 of\n    gain, predicted under the laws" in text


def test_the_printout_shows_a_measured_confirmation_and_a_plan_without_trust_region():
    text = render_plan(story_plan(measured_gain=0.0105, trust_multiple=None))
    assert "  measured gain: +0.0105 (run mix-1)" in text.splitlines()
    assert "trust region: none (the laws are extrapolated without a limit)" in text
    assert "not trusted past" not in text


def test_a_failed_plan_says_why():
    plan = dataclasses.replace(story_plan(), success=False, message="the budget is too small")
    assert render_plan(plan).splitlines()[1] == "  no plan: the budget is too small"


def test_the_demo_summary_prints_the_reports_story(capsys, tmp_path):
    from planner.commands.demo import _print_summary

    story = (
        "By the fitted laws the ranking changes: synthetic overtakes web at ≈ $3 with P = 0.80.",
        "Following the measured smallest-budget winner, the whole budget on web, is "
        "predicted under the laws to gain +0.04: 0.031 less than the allocation's predicted "
        "+0.071.",
    )
    files = ReportFiles(
        markdown=Path("report/report.md"),
        html=Path("report/report.html"),
        images=(),
        findings=Findings(metric="acc", lower_is_better=False, story=story),
    )
    _print_summary(story_plan(), files)
    out = capsys.readouterr().out
    assert out.startswith(render_plan(story_plan()))
    flat = " ".join(out.split())
    assert all(" ".join(s.split()) in flat for s in story)
    assert max(len(line) for line in out.splitlines()) <= WIDTH
    assert out.rstrip().endswith("report: report/report.md")
