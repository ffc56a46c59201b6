"""The allocate/frontier/crossovers/design/next verbs against a real DuckDB store."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from planner.cli import cli
from planner.domain import CostSpec, LawFit, Metric, Run, Source
from planner.store import open_store
from planner.units import Unit
from tests.helpers.fits import loglinear_fit


def _sources_and_control(store, metric: str, control: tuple[float, ...]) -> None:
    """web (capped, free) and synth (paid per token), and control anneals of ``metric``."""
    store.add_source(Source("web", "files", {}, cap_tokens=2e11))
    store.add_source(
        Source(
            "synth",
            "files",
            {},
            CostSpec("linear", {"per_token": 1e-8, "unit": "gpu_hours"}, Unit.GPU_HOURS),
        )
    )
    for i, v in enumerate(control):
        rid = f"ctl-{i}"
        store.ingest_result(
            Run(rid, "control", 1e9, seed=i, params=135e6),
            [Metric(rid, metric, v)],
            {"compute_unit": "tokens"},
        )


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "a.duckdb"
    store = open_store(path)
    rng = np.random.default_rng(0)
    store.save_fits(
        [loglinear_fit("web", 0.42, 0.010, rng), loglinear_fit("synth", 0.40, 0.025, rng)]
    )
    _sources_and_control(store, "acc", (0.40, 0.401, 0.399))
    store.ingest_result(
        Run("mix-0", "web+synth", 2e9, params=135e6),
        [Metric("mix-0", "acc", 0.45)],
        {"compute_unit": "tokens"},
    )
    store.close()
    return str(path)


def _run(db, *args):
    return CliRunner().invoke(cli, ["--db", db, *args], catch_exceptions=False)


def test_allocate_json_stores_the_plan_with_its_fits(db):
    r = _run(db, "allocate", "--budget", "500gpuh", "--json")
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    assert plan["success"] and plan["gain"] > 0
    assert {a["source"] for a in plan["allocations"]} == {"web", "synth"}
    web = next(a for a in plan["allocations"] if a["source"] == "web")
    assert web["tokens"] <= 2e11 * (1 + 1e-9)
    assert len(plan["fit_ids"]) == 2
    assert plan["mixed_runs"][0]["source"] == "web+synth"
    store = open_store(db)
    try:
        [(pid, stored)] = store.plans()
        assert pid == plan["plan_id"] and stored.gain == pytest.approx(plan["gain"])
    finally:
        store.close()


def test_allocate_text_and_an_infeasible_budget_give_messages(db):
    r = _run(db, "allocate", "--budget", "500gpuh")
    assert r.exit_code == 0 and "predicted gain" in r.output and "note:" in r.output
    r = _run(db, "allocate", "--budget", "500gpuh", "--eval-cost", "600gpuh", "--no-save")
    assert r.exit_code == 0 and "no plan" in r.output and "Traceback" not in r.output


def test_bad_input_is_one_line_on_stderr(db):
    r = CliRunner().invoke(cli, ["--db", db, "allocate", "--budget", "40B"])
    assert r.exit_code == 2 and "GPU-hours" in r.output
    r = CliRunner().invoke(cli, ["--db", db, "allocate", "--budget", "5gpuh", "--metric", "nope"])
    assert r.exit_code == 2 and "fitted metrics" in r.output


def test_frontier_crossovers_design_and_next(db):
    r = _run(db, "frontier", "--from", "10gpuh", "--to", "1000gpuh", "--points", "4", "--json")
    assert r.exit_code == 0
    rows = json.loads(r.stdout)["rows"]
    assert len(rows) == 4 and rows[-1]["gain"] >= rows[0]["gain"]
    r = _run(db, "crossovers", "--from", "0.01gpuh", "--to", "1000gpuh", "--points", "12", "--json")
    assert r.exit_code == 0
    cross = json.loads(r.stdout)
    assert "p_best" in cross
    # every pair of sources, with P(a beats b) at the range's end
    assert cross["pairs_at"] == pytest.approx(1000.0)
    assert {(p["a"], p["b"]) for p in cross["pairs"]} and all(
        0 <= p["p_a_beats_b"] <= 1 for p in cross["pairs"]
    )
    r = _run(
        db,
        "design",
        "--budget",
        "500gpuh",
        "--model-params",
        "135M",
        "--experiment",
        "e1",
        "--json",
    )
    assert r.exit_code == 0
    d = json.loads(r.stdout)
    assert d["cost"] == pytest.approx(25.0, rel=0.02) and any(
        x["source"] is None for x in d["runs"]
    )
    store = open_store(db)
    try:
        _meta, specs = store.experiment("e1")
        assert len(specs) == len(d["runs"])
    finally:
        store.close()
    r = _run(db, "next", "--budget", "500gpuh", "--json")
    assert r.exit_code == 0
    nxt = json.loads(r.stdout)
    assert nxt["recommendations"] and 0.0 <= nxt["p_wrong_now"] <= 1.0
    # runs are weighed for the sources of undecided pairs only, when there are some
    undecided = {s for p in nxt["pairs"] if p["undecided"] for s in (p["a"], p["b"])}
    assert set(nxt["targeted_sources"]) == undecided
    if undecided:
        assert {r["source"] for r in nxt["recommendations"]} <= undecided


def test_a_perplexity_law_gives_a_plan(tmp_path):
    """A perplexity's law is exp(E + A·x^-α); the allocator derives its marginal utility
    with sympy like any family's, and lower perplexity is the gain."""
    path = tmp_path / "ppl.duckdb"
    store = open_store(path)
    rng = np.random.default_rng(1)

    def fit(source, A, alpha):
        boot = np.column_stack(
            [rng.normal(2.5, 0.002, 80), rng.normal(A, 0.01, 80), rng.normal(alpha, 0.005, 80)]
        )
        return LawFit(
            study="default",
            metric="val_ppl",
            source=source,
            family="exppower",
            lower_is_better=True,
            method="test",
            params={"E": 2.5, "A": A, "alpha": alpha},
            x_ref=1e9,
            boot=boot,
            x_max=3e9,
            n_points=5,
        )

    store.save_fits([fit("web", 0.8, 0.3), fit("synth", 1.0, 0.5)])
    _sources_and_control(store, "val_ppl", (40.0, 40.2, 39.8))
    store.close()
    r = _run(str(path), "allocate", "--budget", "500gpuh", "--metric", "val_ppl", "--json")
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    assert plan["success"] and plan["gain"] > 0, plan
    tokens = {a["source"]: a["tokens"] for a in plan["allocations"]}
    assert tokens["web"] == pytest.approx(2e11) and tokens["synth"] > 1e10  # web is capped
    # the gain is the fall in perplexity from the control (40) towards exp(E) ≈ 12.2
    assert all(0 < a["gain"] < 40 - np.exp(2.5) for a in plan["allocations"])


def test_with_the_sources_runs_the_difference_model_reads_crossings_and_plans(db):
    """Runs of both sources stored beside their fits: ``crossovers`` reports the difference
    model's crossing of the pair, and the plan's P(in optimal plan) comes from rows
    recalibrated to it."""
    store = open_store(db)
    rng = np.random.default_rng(1)
    try:
        for source, (a, b) in {"web": (0.42, 0.010), "synth": (0.40, 0.025)}.items():
            for i, tokens in enumerate(np.geomspace(1e8, 3e10, 6)):
                rid = f"{source}-{i}"
                value = a + b * np.log(tokens / 1e9) + 0.001 * rng.standard_normal()
                store.ingest_result(
                    Run(rid, source, float(tokens), params=135e6),
                    [Metric(rid, "acc", float(value))],
                    {"compute_unit": "tokens"},
                )
    finally:
        store.close()
    r = _run(db, "crossovers", "--from", "1gpuh", "--to", "1000gpuh", "--points", "6", "--json")
    assert r.exit_code == 0, r.output
    [pc] = json.loads(r.stdout)["pair_crossings"]
    assert {pc["a"], pc["b"]} == {"web", "synth"} and pc["unit"] == "tokens"
    assert 0.0 <= pc["probability"] <= 1.0 and pc["low"] < pc["high"]
    r = _run(db, "crossovers", "--from", "1gpuh", "--to", "1000gpuh", "--points", "6")
    assert "difference model: " in r.output
    args = ("allocate", "--budget", "500gpuh", "--json", "--no-save")
    # the recalibration shifts gains by levels: it needs the additive rule, and says so
    r = CliRunner().invoke(cli, ["--db", db, *args, "--p-in-optimal-from", "difference"])
    assert r.exit_code != 0 and "--combination additive" in r.output
    r = _run(db, *args, "--p-in-optimal-from", "difference", "--combination", "additive")
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    assert all(0.0 <= a["p_in_optimal"] <= 1.0 for a in plan["allocations"])
    assert plan["options"]["p_in_optimal_from"] == "difference"
    assert json.loads(_run(db, *args).stdout)["options"]["p_in_optimal_from"] == "laws"
