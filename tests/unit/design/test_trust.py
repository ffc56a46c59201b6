"""Runs that extend the trust region of the sources a plan holds at their trust limit."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from planner.cli import cli
from planner.design.trust import ladder_step, trust_extensions, trust_limited_sources
from planner.design.voi import run_cost
from planner.domain import CostSpec, Metric, Run, Source
from planner.store import open_store
from planner.units import Unit
from tests.helpers.fits import loglinear_fit

from .sim import FeeCost, law, problem_with

TOKS = [1e8, 3e8, 1e9, 3e9]
SIGMA, CONTROL, BUDGET, MULTIPLE = 0.002, 0.38, 200.0, 4.0


def _problem():
    """Two sources priced per token: "good" keeps improving (the budget wants far more of it
    than four times its largest run), "flat" saturates early."""
    rng = np.random.default_rng(0)
    data = {
        "good": (TOKS, [law((0.70, 0.22, 0.30), t) + SIGMA * rng.standard_normal() for t in TOKS]),
        "flat": (TOKS, [law((0.42, 0.02, 1.50), t) + SIGMA * rng.standard_normal() for t in TOKS]),
    }
    costs = {k: FeeCost(0.0, 1e-8) for k in data}
    problem = problem_with(data, SIGMA, CONTROL, rng, costs, n_boot=50)
    capped = tuple(dataclasses.replace(c, cap_tokens=MULTIPLE * max(TOKS)) for c in problem.curves)
    return problem, dataclasses.replace(problem, curves=capped)


def test_the_source_held_at_its_trust_limit_is_found():
    free, capped = _problem()
    assert trust_limited_sources(capped, BUDGET, multiple=MULTIPLE) == ("good",)
    assert trust_limited_sources(capped, BUDGET, multiple=None) == ()
    assert trust_limited_sources(free, BUDGET, multiple=MULTIPLE) == ()  # no cap, no limit


def test_ladder_step_is_the_ratio_of_the_two_largest_runs():
    assert ladder_step(TOKS) == pytest.approx(3.0)
    assert ladder_step([5e8]) == 2.0
    assert ladder_step([1e8, 1e8 * 1.01]) == 1.25  # bounded


def test_extension_is_the_next_ladder_step_up_to_what_the_budget_pays():
    _, capped = _problem()
    measured = {"good": TOKS, "flat": TOKS}
    [e] = trust_extensions(
        capped, BUDGET, ["good"], measured, multiple=MULTIPLE, replay_fraction=0.7
    )
    assert e.source == "good" and e.tokens == pytest.approx(9e9)
    assert e.largest_tokens == 3e9 and e.limit_tokens == pytest.approx(1.2e10)
    assert e.new_limit_tokens == pytest.approx(3.6e10)
    assert "extends the trust region of good" in e.reason
    assert e.cost == pytest.approx(run_cost(capped, "good", 9e9, replay_fraction=0.7))
    # a budget that pays for less than the next step: the largest run it pays for
    small = run_cost(capped, "good", 5e9, replay_fraction=0.7)
    [e] = trust_extensions(
        capped, small, ["good"], measured, multiple=MULTIPLE, replay_fraction=0.7
    )
    assert 3e9 < e.tokens <= 5e9 * (1 + 1e-6) and e.cost <= small * (1 + 1e-9)
    assert e.tokens == pytest.approx(5e9, rel=1e-3)
    # a budget below the largest run's cost: nothing to propose
    tiny = run_cost(capped, "good", 2e9, replay_fraction=0.7)
    assert (
        trust_extensions(capped, tiny, ["good"], measured, multiple=MULTIPLE, replay_fraction=0.7)
        == []
    )


@pytest.fixture
def db(tmp_path):
    """web (free) and synth (paid per token), fitted and measured at four budgets each."""
    path = tmp_path / "t.duckdb"
    store = open_store(path)
    rng = np.random.default_rng(0)
    store.save_fits(
        [loglinear_fit("web", 0.42, 0.010, rng), loglinear_fit("synth", 0.40, 0.025, rng)]
    )
    store.add_source(Source("web", "files", {}))
    store.add_source(
        Source(
            "synth",
            "files",
            {},
            CostSpec("linear", {"per_token": 1e-8, "unit": "gpu_hours"}, Unit.GPU_HOURS),
        )
    )
    for i, v in enumerate((0.40, 0.401, 0.399)):
        rid = f"ctl-{i}"
        store.ingest_result(
            Run(rid, "control", 1e9, seed=i, params=135e6),
            [Metric(rid, "acc", v)],
            {"compute_unit": "tokens"},
        )
    for source, (a, b) in {"web": (0.42, 0.010), "synth": (0.40, 0.025)}.items():
        for i, tokens in enumerate(TOKS):
            rid = f"{source}-{i}"
            store.ingest_result(
                Run(rid, source, tokens, params=135e6, tokens=tokens),
                [Metric(rid, "acc", a + b * float(np.log(tokens / 1e9)))],
                {"compute_unit": "tokens"},
            )
    store.close()
    return str(path)


def _run(db, *args):
    return CliRunner().invoke(cli, ["--db", db, *args], catch_exceptions=False)


def test_next_proposes_the_runs_that_extend_the_trust_region(db):
    args = ("allocate", "--budget", "500gpuh", "--max-extrapolation", "3", "--json")
    plan = json.loads(_run(db, *args, "--no-save").stdout)
    capped = {a["source"] for a in plan["allocations"] if a["capped"]}
    assert capped  # the budget could buy more than three times the largest run
    r = _run(db, "next", "--budget", "500gpuh", "--max-extrapolation", "3", "--json")
    assert r.exit_code == 0, r.output
    ext = json.loads(r.stdout)["trust_extensions"]
    assert {e["source"] for e in ext} == capped
    for e in ext:
        assert e["tokens"] == pytest.approx(9e9)  # the ladder's step (×3) above 3e9
        assert e["reason"].startswith(f"extends the trust region of {e['source']}")
    # a trust region wide enough (1000×) holds nothing back at this budget: nothing proposed
    r = _run(db, "next", "--budget", "500gpuh", "--max-extrapolation", "1000", "--json")
    assert json.loads(r.stdout)["trust_extensions"] == []
    # the latest stored plan's trust region is the default
    _run(db, *args)
    text = _run(db, "next").output
    for source in capped:
        assert f"extends the trust region of {source}" in text


def test_next_extends_the_sources_a_stored_plan_says_its_trust_region_held_back(db):
    """A plan that carries its trust multiple and the sources it held back: ``next`` (no
    options) proposes the extension of exactly those sources."""
    from planner.domain import Plan

    store = open_store(db)
    try:
        store.save_plan(
            Plan(
                budget=500.0,
                unit=Unit.GPU_HOURS,
                metric="acc",
                allocations=(),
                gain=0.1,
                trust_multiple=3.0,
                trust_limited=("web",),
            )
        )
    finally:
        store.close()
    r = _run(db, "next", "--json")
    assert r.exit_code == 0, r.output
    [e] = json.loads(r.stdout)["trust_extensions"]
    assert e["source"] == "web" and e["tokens"] == pytest.approx(9e9)
    assert e["limit_tokens"] == pytest.approx(9e9) and e["new_limit_tokens"] == pytest.approx(
        2.7e10
    )
