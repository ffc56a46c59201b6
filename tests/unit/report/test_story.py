"""The plan's story in words: both predictions, the KKT certificate, the confirmation, the
trust region, and what the fitted laws say about the ranking."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from planner.laws.crossover import Crossover
from planner.laws.decision import PairBelief
from planner.report import story
from tests.helpers.plans import story_plan


def _cross(a, b, compute, p, after):
    return Crossover(a, b, 0.1, 100.0, compute, p, np.empty(0), after)


def test_both_predictions_name_the_rule_and_headroom_with_intervals():
    lines = story.prediction_lines(story_plan())
    assert lines == [
        "predicted gain (coverage rule, H = 0.38, θ = 0.4 [0.1, 0.9] from 2 mixtures): "
        "+0.071 [+0.058, +0.083]",
        "additive prediction (gains summed): +0.083 [+0.069, +0.097]",
    ]
    # a plan stored before the rule was recorded names none rather than guessing
    old = dataclasses.replace(story_plan(), combination=None, additive_gain=None)
    assert story.prediction_lines(old) == ["predicted gain: +0.071 [+0.058, +0.083]"]


def test_an_additive_plan_is_not_shown_twice():
    from planner.domain import Combination

    plan = dataclasses.replace(story_plan(), combination=Combination(rule="additive"))
    assert story.prediction_lines(plan) == [
        "predicted gain (additive rule): +0.071 [+0.058, +0.083]"
    ]


def test_certificate_in_words_and_as_a_table():
    plan = story_plan()
    words = story.certificate_sentence(plan)
    assert "(web) share the same marginal gain per $, λ = 0.000412 per $" in words
    assert "those left at zero (textbook) earn less" in words
    assert "capped ones earn more (synthetic at its trust region)" in words
    rows = {r.source: r for r in story.certificate_rows(plan)}
    assert rows["web"].versus_lambda == "= λ"
    assert rows["textbook"].versus_lambda == "< λ, not bought"
    assert rows["synthetic"].versus_lambda == "> λ, trust region"
    supply = dataclasses.replace(
        plan,
        certificate=(dataclasses.replace(plan.certificate[1], limit="supply"),),
        marginal_utility=None,
    )
    assert "synthetic at its supply cap" in story.certificate_sentence(supply)
    # no interior source and no multiplier: λ is not invented
    assert "no source is bought inside its limits" in story.certificate_sentence(supply)
    table = story.certificate_lines(plan)
    assert all(len(line) <= story.WIDTH - 2 for line in table)
    assert any("0.000733" in line and "trust region" in line for line in table)


def test_confirmation_not_run_says_how_and_measured_shows_both_predictions():
    waiting = story.confirmation_lines(story_plan(), "plan-1")
    assert "not run yet; run it with: annealplan confirm plan-1" in waiting
    assert "annealplan confirm PLAN" in "\n".join(story.confirmation_lines(story_plan()))
    done = story.confirmation_lines(story_plan(measured_gain=0.0105))
    assert done[1:] == [
        "measured gain: +0.0105 (run mix-1)",
        "predicted (coverage): +0.012 [+0.008, +0.016]",
        "additive: +0.014 [+0.01, +0.018]",
    ]


def test_every_plan_prints_its_trust_multiple_and_warns_per_limited_source():
    lines = story.trust_lines(story_plan())
    assert lines[0] == "trust region: each law is trusted up to 10× its largest measured budget"
    assert lines[1] == (
        "the laws are not trusted past 1.2M tokens of synthetic; measure larger first"
    )
    assert story.trust_lines(story_plan(trust_multiple=None)) == [
        "trust region: none (the laws are extrapolated without a limit)"
    ]


def test_a_probable_crossover_says_the_ranking_changes_with_its_probability():
    told = story.ranking_story(
        small=["web", "synthetic"],
        target=["synthetic", "web"],
        crossovers=[_cross("synthetic", "web", 3.0, 0.8, "synthetic")],
        compute_unit="usd",
        target_compute=60.0,
    )
    assert told.changes
    assert told.sentences[0] == (
        "By the fitted laws the ranking changes: synthetic overtakes web at ≈ $3 with P = 0.80."
    )


def test_a_raw_order_the_laws_do_not_cross_into_is_put_down_to_noise():
    told = story.ranking_story(
        small=["web", "synthetic"],
        target=["synthetic", "web"],
        crossovers=[
            _cross("synthetic", "web", 3.0, 0.3, "synthetic"),
            _cross("synthetic", "textbook", math.nan, 0.1, None),
        ],
        compute_unit="usd",
    )
    assert not told.changes
    assert "the laws attribute the difference to noise" in told.sentences[0]
    assert "no crossover is probable (P < 0.5)" in told.sentences[0]
    assert "few draws agree (P = 0.30): not claimed" in told.sentences[1]
    assert not any("ranking changes" in s for s in told.sentences)


def test_a_crossover_past_the_target_is_not_claimed():
    told = story.ranking_story(
        small=["web", "synthetic"],
        target=["web", "synthetic"],
        crossovers=[_cross("synthetic", "web", 300.0, 0.9, "synthetic")],
        compute_unit="usd",
        target_compute=60.0,
    )
    assert not told.changes
    assert told.sentences[0].startswith("No crossing: the ranking measured")


def test_indistinguishable_laws_are_tied_not_ranked():
    ties = [
        PairBelief("web", "textbook", 60.0, 0.52, 0.001),
        PairBelief("web", "x", 60.0, 0.9, 0.1),
    ]
    told = story.ranking_story(
        small=["web", "textbook"], target=["web", "textbook"], crossovers=[], beliefs=ties
    )
    assert "(web ≈ textbook)" in told.sentences[0]
    assert told.sentences[-1] == (
        "web and textbook are tied at the target: P(web beats textbook) = 0.52; their laws "
        "cannot be told apart (measure more), so they are not ranked."
    )
    assert sum("tied" in s for s in told.sentences) == 1


def test_following_the_point_estimate_is_labelled_predicted_and_shows_the_measured_gain():
    waiting = story.measured_choice_sentence("web", 0.04, 0.031, story_plan())
    assert "predicted under the laws to gain +0.04: 0.031 less" in waiting
    assert "measured" not in waiting.replace("the measured smallest", "")
    done = story.measured_choice_sentence("web", 0.04, 0.031, story_plan(measured_gain=0.0105))
    assert done.endswith("The allocation's mixed anneal measured +0.0105 (run mix-1).")


def test_seed_spread_lists_budgets_with_several_seeds():
    rows = story.seed_spread(
        {("control", 1.0): [(0, 0.30), (1, 0.31), (2, 0.295)], ("web", 1.0): [(0, 0.4)]}
    )
    assert len(rows) == 1
    source, budget, seeds, values, spread = rows[0]
    assert (source, budget, seeds, values) == ("control", 1.0, [0, 1, 2], [0.30, 0.31, 0.295])
    assert math.isclose(spread, 0.015)
