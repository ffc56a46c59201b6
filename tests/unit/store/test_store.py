from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from planner.domain import (
    AnnealSpec,
    AveragedLaw,
    BestSingle,
    Confirmation,
    CostSpec,
    GainRange,
    GuardCheck,
    LawFit,
    LeaveLastOut,
    Metric,
    MixedRunCheck,
    ModelAverage,
    Plan,
    PlanUncertainty,
    PointEstimate,
    ProblemOptions,
    Run,
    Source,
    SourceAllocation,
)
from planner.errors import StoreError
from planner.store import open_store, read_runs_table
from planner.units import Unit

CSV = "source,compute,metric,value,study\na,1,loss,3,s\na,2,loss,2.5,s\nb,1,loss,3.1,s\nb,2,acc,0.3,s\n"


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "p.duckdb")
    yield s
    s.close()


def test_migrations_are_recorded_and_idempotent(tmp_path):
    path = tmp_path / "m.duckdb"
    with open_store(path) as s:
        v = s.schema_version()
        assert v >= 1
    with open_store(path) as s:
        assert s.schema_version() == v


def test_import_is_idempotent(store, tmp_path):
    p = tmp_path / "r.csv"
    p.write_text(CSV)
    first = store.import_runs(read_runs_table(p))
    assert (first.runs_added, first.metrics_added) == (4, 4)
    again = store.import_runs(read_runs_table(p))
    assert (again.runs_added, again.metrics_added, again.runs_unchanged) == (0, 0, 4)
    assert store.counts()["metrics"] == 4
    assert len(store.observations(metric="loss")) == 3
    assert store.studies_metrics() == [("s", "acc"), ("s", "loss")]


def test_export_round_trip(store, tmp_path):
    p = tmp_path / "r.csv"
    p.write_text(CSV)
    store.import_runs(read_runs_table(p))
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"out.{fmt}"
        assert store.export_runs(out) == 4
        with open_store(tmp_path / f"copy-{fmt}.duckdb") as other:
            other.import_runs(read_runs_table(out))
            assert sorted(
                (o.source, o.compute, o.metric, o.value) for o in other.observations()
            ) == sorted((o.source, o.compute, o.metric, o.value) for o in store.observations())


def test_evaluation_size_and_chance_are_stored_and_exported(store, tmp_path):
    p = tmp_path / "r.csv"
    p.write_text(
        "source,compute,metric,value,n_items,chance\na,1,acc,0.5,100,0.25\na,1,loss,3.0,,\n"
    )
    store.import_runs(read_runs_table(p))
    got = {o.metric: (o.n_items, o.chance) for o in store.observations()}
    assert got == {"acc": (100.0, 0.25), "loss": (None, None)}
    out = tmp_path / "out.csv"
    store.export_runs(out)
    again = {o.metric: (o.n_items, o.chance) for o in read_runs_table(out).observations()}
    assert again == got


def test_ingest_result_exactly_once(store):
    run = Run(run_id="job-1", source="a", compute=5.0, origin="sweep")
    metrics = [Metric("job-1", "acc", 0.5), Metric("job-1", "loss", 2.0)]
    assert (
        store.ingest_result(run, metrics, {"compute_unit": "gpu_hours", "data_hash": "x"}) is True
    )
    assert store.ingest_result(run, metrics, {"compute_unit": "gpu_hours"}) is False
    assert store.counts()["runs"] == 1 and store.counts()["metrics"] == 2
    assert store.run_meta("job-1")["data_hash"] == "x"
    assert store.compute_units() == {"default": "gpu_hours"}


def test_failed_ingest_leaves_nothing(store):
    run = Run(run_id="job-2", source="a", compute=5.0)
    with pytest.raises(StoreError):
        store.ingest_result(run, [Metric("job-2", "acc", float("nan"))])
    with pytest.raises(StoreError):
        store.ingest_result(run, [Metric("job-2", "acc", 0.1), Metric("other", "acc", 0.1)])
    assert store.counts()["runs"] == 0 and store.counts()["metrics"] == 0


def test_killed_ingest_leaves_no_partial_rows(tmp_path):
    """A planner killed in the middle of an ingest transaction leaves no rows behind."""
    path = tmp_path / "k.duckdb"
    open_store(path).close()
    script = textwrap.dedent(
        f"""
        import os, signal
        from planner.store import open_store
        s = open_store({str(path)!r})
        with s.transaction() as con:
            con.execute("INSERT INTO runs (run_id, study, source, compute, origin) VALUES ('r', 's', 'a', 1, 'x')")
            con.execute("INSERT INTO metrics (run_id, name, value) VALUES ('r', 'acc', 0.5)")
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ}, capture_output=True)
    assert proc.returncode == -9
    with open_store(path) as s:
        assert s.counts()["runs"] == 0 and s.counts()["metrics"] == 0


def test_sources_round_trip_and_suggest(store):
    src = Source(
        name="web-noisy",
        kind="files",
        config={"paths": ["a.jsonl"]},
        cost=CostSpec("linear", {"usd_per_token": 1e-6}, Unit.USD),
        cap_tokens=1e9,
        plugin="annealplan.files",
        plugin_version="0.1.0",
    )
    store.add_source(src)
    assert store.source("web-noisy") == src
    with pytest.raises(StoreError, match="already exists"):
        store.add_source(src)
    store.add_source(src, replace=True)
    with pytest.raises(StoreError, match="did you mean 'web-noisy'"):
        store.source("web-nosy")
    store.remove_source("web-noisy")
    assert store.sources() == []


def test_experiments(store):
    specs = [AnnealSpec("j1", "e", "a", 1e6, 0.7, 0), AnnealSpec("j0", "e", None, 1e6, 1.0, 0)]
    store.save_experiment("e", specs, {"base_model": "base"})
    meta, got = store.experiment("e")
    assert meta == {"base_model": "base"} and got == specs
    with pytest.raises(StoreError, match="known: e"):
        store.experiment("f")
    store.save_experiment("sweep-small", [], {})
    with pytest.raises(StoreError, match="did you mean 'sweep-small'"):
        store.experiment("sweep-smal")


def _power_fit(**fields) -> LawFit:
    """A saturating power-law fit of metric "loss" for source "a" in study "s"."""
    return LawFit(
        study="s",
        metric="loss",
        source="a",
        family="power",
        method="joint",
        params={"E": 1.0, "A": 2.0, "alpha": 0.3},
        x_ref=1e18,
        **fields,
    )


def test_fits_round_trip_with_bootstrap(store):
    fit = _power_fit(
        covariance=np.eye(3),
        boot=np.arange(12.0).reshape(4, 3),
        n_points=5,
        lower_is_better=True,
    )
    [fid] = store.save_fits([fit])
    store.save_fits([fit])
    [(fid2, got)] = store.fits(metric="loss")
    assert fid2 != fid  # the newest fit wins
    assert got.params == fit.params and got.x_ref == 1e18
    assert np.array_equal(got.boot, fit.boot) and np.array_equal(got.covariance, np.eye(3))
    assert len(store.fits(latest=False)) == 2


def _plan() -> Plan:
    return Plan(
        budget=2000.0,
        unit=Unit.GPU_HOURS,
        metric="acc",
        allocations=(
            SourceAllocation(
                "a", 1e9, 1500.0, 0.02, 0.01, 0.03, 0.9, tokens_low=9e8, tokens_high=1.1e9
            ),
        ),
        gain=0.02,
        gain_low=0.01,
        gain_high=0.03,
        notes=("gains are assumed to add across sources",),
    )


def test_plans_round_trip(store):
    plan = _plan()
    pid = store.save_plan(plan, ["fit-1"])
    [(got_id, got)] = store.plans()
    assert got_id == pid and got == plan


def _detailed_plan() -> Plan:
    """A plan with every detail the allocation gives it (finite numbers, so it compares)."""
    return dataclasses.replace(
        _plan(),
        message="spend 1500 GPU-hours of 2000 GPU-hours",
        fit_ids=("fit-1",),
        marginal_utility=1.5e-5,
        eval_cost=5.0,
        guards=(GuardCheck("general_acc>=-0.01", -0.004, 0.25),),
        best_single=BestSingle("a", 1.2e9, 0.018, {"a": 0.018, "b": 0.011}),
        point_estimate=PointEstimate(
            micro_budget=100.0,
            choice="b",
            predicted_gain_at_micro={"a": 0.001, "b": 0.002},
            gain_if_followed=0.011,
            gain_lost=0.009,
            differs_from_best_single=True,
            gain_lost_low=0.002,
            gain_lost_high=0.015,
        ),
        uncertainty=PlanUncertainty(
            samples=200,
            optimal_gain=GainRange(0.021, 0.012, 0.031),
            p_plan_near_optimal=0.8,
            p_beats_best_single=0.7,
            p_beats_point_estimate_choice=0.9,
            p_in_optimal={"a": 0.9, "b": 0.3},
            quantiles=(5.0, 95.0),
        ),
        confirmation=Confirmation("a@1", 5e7, {"a": 5e7}, 0.004),
        mixed_runs=(
            MixedRunCheck("a+b", 2e9, 0.03, 0.025, 0.005),
            MixedRunCheck("a+c", skipped="unknown source(s) c"),
        ),
        options=ProblemOptions(metric="acc", guards=("general_acc>=-0.01",), study="s"),
    )


def test_a_plans_details_round_trip_typed(store):
    plan = _detailed_plan()
    store.save_plan(plan)
    [(_, got)] = store.plans()
    assert got == plan
    assert isinstance(got.point_estimate, PointEstimate) and got.options.guards == (
        "general_acc>=-0.01",
    )


#: a plan's body as it was stored before the plan's details were typed: they were one
#: ``extra`` mapping then, with the budget's multiplier under ``lambda``
OLD_PLAN_BODY = {
    "budget": 2000.0,
    "unit": "gpu_hours",
    "metric": "acc",
    "allocations": [
        {"source": "a", "tokens": 4e10, "cost": 22.7503, "gain": 0.0945332, "gain_low": 0.0808983,
         "gain_high": 0.105342, "p_in_optimal": 1.0, "capped": True, "tokens_low": 4e10,
         "tokens_high": 4e10},
    ],
    "gain": 0.268525,
    "gain_low": 0.248674,
    "gain_high": 0.281717,
    "success": True,
    "message": "spend 1,995 GPU-h of 2,000 GPU-h",
    "notes": ["The solver assumes gains add across sources."],
    "fit_ids": [],
    "extra": {
        "lambda": 3.95612e-06,
        "eval_cost": 5.0,
        "guards": [{"guard": "gen>=-0.06", "value": -0.0319208, "multiplier": 0.0}],
        "best_single": {"source": "b", "tokens": 3.50765e12, "gain": 0.174081,
                        "gain_by_source": {"a": 0.0945332, "b": 0.174081}},
        "point_estimate": {"micro_budget": 99.75, "choice": "b",
                           "predicted_gain_at_micro": {"a": 0.0945332, "b": 0.136331},
                           "gain_if_followed": 0.174081, "gain_lost": 0.0944439,
                           "differs_from_best_single": False, "gain_lost_low": 0.0808144,
                           "gain_lost_high": 0.105241},
        "uncertainty": {"samples": 20,
                        "optimal_gain": {"median": 0.269915, "low": 0.248674, "high": 0.281717},
                        "p_plan_near_optimal": 1.0, "p_beats_best_single": 1.0,
                        "p_beats_point_estimate_choice": 1.0, "p_in_optimal": {"a": 1.0, "b": 1.0},
                        "quantiles": [5.0, 95.0]},
        "confirmation": {"source": "a@0.0114+b@0.989", "tokens": 1.75383e11,
                         "tokens_per_source": {"a": 2e9, "b": 1.73383e11},
                         "predicted_gain": 0.203124,
                         "note": "run it as one anneal; compare its measured gain with the prediction"},
        "mixed_runs": [
            {"source": "a+b", "tokens": 2e9, "measured_gain": 0.07, "predicted_gain": -0.05,
             "difference": 0.12},
            {"source": "a+c", "skipped": "unknown source(s) c"},
        ],
        "options": {"metric": "acc", "weights": None, "guards": ["gen>=-0.06"],
                    "model_params": None, "control": None, "study": "s", "sources": None,
                    "replay_fraction": 0.0, "eval_cost": None, "max_extrapolation": 10.0},
    },
}  # fmt: skip


def test_a_plan_stored_with_its_details_in_extra_still_loads(store):
    """A body written before the details were typed reads as a typed plan; a failed plan
    then had an empty ``extra``."""
    import json

    failed = {**OLD_PLAN_BODY, "allocations": [], "success": False, "extra": {}}
    ids = [store.save_plan(_detailed_plan()) for _ in range(2)]
    for plan_id, body in zip(ids, (OLD_PLAN_BODY, failed), strict=True):
        store._con.execute(
            "UPDATE plans SET body = ? WHERE plan_id = ?", [json.dumps(body), plan_id]
        )
    got = dict(store.plans())
    old = got[ids[0]]
    assert old.unit is Unit.GPU_HOURS and old.allocations[0].capped
    assert old.marginal_utility == 3.95612e-06 and old.eval_cost == 5.0
    assert old.guards == (GuardCheck("gen>=-0.06", -0.0319208, 0.0),)
    assert old.best_single.gain_by_source == {"a": 0.0945332, "b": 0.174081}
    assert old.point_estimate.choice == "b" and old.point_estimate.gain_lost_high == 0.105241
    assert old.uncertainty.optimal_gain == GainRange(0.269915, 0.248674, 0.281717)
    assert old.uncertainty.quantiles == (5.0, 95.0)
    assert old.confirmation.tokens_per_source == {"a": 2e9, "b": 1.73383e11}
    assert old.mixed_runs == (
        MixedRunCheck("a+b", 2e9, 0.07, -0.05, 0.12),
        MixedRunCheck("a+c", skipped="unknown source(s) c"),
    )
    assert old.options == ProblemOptions(
        metric="acc", guards=("gen>=-0.06",), study="s", max_extrapolation=10.0
    )
    # stored again, it reads back the same
    store.save_plan(old)
    assert store.plans(limit=1)[0][1] == old
    none = got[ids[1]]
    assert not none.success and none.allocations == () and none.guards == ()
    assert none.point_estimate is None and none.confirmation is None and none.options is None


def test_open_store_errors(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "missing" / "x.duckdb")
    bad = tmp_path / "bad.duckdb"
    bad.write_text("not a database")
    with pytest.raises(StoreError, match="cannot open"):
        open_store(bad)


def _averaged_fit(rng) -> LawFit:
    """A fit that averages a power law and a constant, with every typed field set."""
    members = tuple(
        AveragedLaw(
            candidate=cand,
            family=family,
            weight=weight,
            params=params,
            boot=rng.normal(size=(200, len(params))),
            noise_sd_boot=np.abs(rng.normal(size=200)),
            llo=LeaveLastOut(rmse=0.1 * weight, n=2, log_dist=0.7, noise_rmse=0.01),
        )
        for cand, family, weight, params in (
            ("power[E]", "power", 0.7, {"E": 1.0, "A": 2.0, "alpha": 0.3}),
            ("constant", "constant", 0.3, {"c": 1.5}),
        )
    )
    return _power_fit(
        boot=members[0].boot,
        x_max=1e18,  # a prediction beyond it carries the leave-last-out shape error
        noise_sd=0.02,
        dof=3,
        f_scale=0.5,
        noise_sd_boot=members[0].noise_sd_boot,
        x_refs=(1e18,),
        candidate="power[E]",
        llo_scores={"power[E]": 0.2, "constant": 0.4, "loglinear": math.inf},
        llo=LeaveLastOut(rmse=0.05, n=2, log_dist=0.7, noise_rmse=math.nan),
        average=ModelAverage(members),
        compute_unit="gpu_hours",
    )


def test_an_averaged_fit_keeps_its_members_draws_exactly(store):
    """The members' bootstrap draws are stored as bytes, not lists of numbers, and come back
    as the same arrays with every typed field; a body written as lists (before) still loads."""
    import json

    fit = _averaged_fit(np.random.default_rng(0))
    [fid] = store.save_fits([fit])
    [(_, got)] = store.fits()
    for want, back in zip(fit.average.members, got.average.members, strict=True):
        assert np.array_equal(back.boot, want.boot) and back.boot.dtype == np.float64
        assert np.array_equal(back.noise_sd_boot, want.noise_sd_boot)
        assert (back.candidate, back.family, back.params, back.weight, back.llo) == (
            want.candidate,
            want.family,
            want.params,
            want.weight,
            want.llo,
        )
    assert got.average.weights == {"power[E]": 0.7, "constant": 0.3}
    assert np.array_equal(got.noise_sd_boot, fit.noise_sd_boot)
    assert (got.noise_sd, got.dof, got.f_scale, got.x_refs) == (0.02, 3, 0.5, (1e18,))
    assert (got.candidate, got.law, got.compute_unit) == ("power[E]", "power[E]", "gpu_hours")
    assert got.llo_scores == fit.llo_scores and got.llo_error == 0.2
    assert got.llo.rmse == 0.05 and got.llo.n == 2 and math.isnan(got.llo.noise_rmse)
    [(body,)] = store._all("SELECT body FROM fits WHERE fit_id = ?", [fid])
    assert '"x_refs": [1e+18]' in body  # short lists stay lists
    assert len(body) < 0.6 * len(json.dumps(json.loads(body, object_hook=_as_lists)))
    # a body stored as plain lists, as before
    store._con.execute(
        "UPDATE fits SET body = ? WHERE fit_id = ?",
        [json.dumps(json.loads(body, object_hook=_as_lists)), fid],
    )
    [(_, old)] = store.fits()
    assert np.array_equal(old.average.members[1].boot, fit.average.members[1].boot)
    assert store.fitted_groups() == [("s", "loss")]


def test_a_fit_body_written_with_an_extra_mapping_loads_into_the_typed_fields(store):
    """Bodies written before the typed fields kept them in one ``extra`` mapping (members as
    dicts, draws as lists, leave-last-out errors as ``llo_*`` keys): they load into the same
    fields and predict exactly as the fit they were written from."""
    import json

    from planner.laws.predict import predict, predict_interval

    fit = _averaged_fit(np.random.default_rng(1))

    def legacy_llo(llo):
        return {
            "llo_rmse": llo.rmse,
            "llo_n": llo.n,
            "llo_log_dist": llo.log_dist,
            "llo_noise_rmse": llo.noise_rmse,
        }

    extra = {
        "noise_sd": fit.noise_sd,
        "dof": fit.dof,
        "f_scale": fit.f_scale,
        "x_refs": list(fit.x_refs),
        "noise_sd_boot": fit.noise_sd_boot.tolist(),
        "candidate": fit.candidate,
        "llo_error": fit.llo_error,
        "llo_scores": dict(fit.llo_scores),
        **legacy_llo(fit.llo),
        "weights": fit.average.weights,
        "members": [
            {
                "weight": m.weight,
                "family": m.family,
                "params": dict(m.params),
                "boot": m.boot.tolist(),
                "noise_sd_boot": m.noise_sd_boot.tolist(),
                "candidate": m.candidate,
                **legacy_llo(m.llo),
            }
            for m in fit.average.members
        ],
        "compute_unit": "gpu_hours",
    }
    plain = {"study", "metric", "source", "family", "method", "params", "x_ref", "y_ref"}
    plain |= {"loss", "success", "message", "nfev", "n_points", "x_max", "lower_is_better"}
    body = {k: getattr(fit, k) for k in plain} | {"covariance": None, "extra": extra}
    [fid] = store.save_fits([fit])
    store._con.execute(
        "UPDATE fits SET body = ? WHERE fit_id = ?", [json.dumps(body, allow_nan=True), fid]
    )
    [(_, old)] = store.fits()
    assert (old.candidate, old.llo_scores, old.llo_error) == (
        fit.candidate,
        fit.llo_scores,
        fit.llo_error,
    )
    assert old.llo.rmse == fit.llo.rmse and math.isnan(old.llo.noise_rmse)
    assert (old.x_refs, old.noise_sd, old.dof, old.compute_unit) == (
        fit.x_refs,
        fit.noise_sd,
        fit.dof,
        "gpu_hours",
    )
    assert old.average.weights == fit.average.weights
    assert [m.llo for m in old.average.members] == [m.llo for m in fit.average.members]
    x = [2e18, 5e19]
    assert np.array_equal(predict(old, x), predict(fit, x))
    for a, b in zip(predict_interval(old, x), predict_interval(fit, x), strict=True):
        assert np.array_equal(a, b)


def _as_lists(d):
    from planner.store.db import _unpack

    out = _unpack(d)
    return out.tolist() if isinstance(out, np.ndarray) else out


def test_every_writer_turns_a_duckdb_error_into_a_store_error(tmp_path):
    """A write the database refuses (here: the file opened read-only) is one StoreError that
    says nothing was written and what to check, from every writer, and the handle stays
    usable (each failure rolled back its transaction)."""
    path = tmp_path / "ro.duckdb"
    csv = tmp_path / "r.csv"
    csv.write_text(CSV)
    with open_store(path) as s:
        s.add_source(Source("a", "files", {}))
    plan = Plan(budget=1.0, unit=Unit.USD, metric="acc", allocations=(), gain=0.0)
    writers = {
        "add_source": lambda s: s.add_source(Source("b", "files", {})),
        "remove_source": lambda s: s.remove_source("a"),
        "import_runs": lambda s: s.import_runs(read_runs_table(csv), directions={"loss": True}),
        "ingest_result": lambda s: s.ingest_result(
            Run("job-1", "a", 1.0), [Metric("job-1", "acc", 0.5)]
        ),
        "save_experiment": lambda s: s.save_experiment("e", [], {}),
        "save_fits": lambda s: s.save_fits([_power_fit()]),
        "save_plan": lambda s: s.save_plan(plan),
    }
    with open_store(path, read_only=True) as s:
        for name, write in writers.items():
            with pytest.raises(
                StoreError, match="nothing was written; check that the file is writable"
            ):
                write(s)
            assert s.counts()["sources"] == 1, name


def test_csv_export_quotes_formula_cells_and_reads_them_back(store, tmp_path):
    """A text cell a spreadsheet would run (=, +, -, @, tab, CR first) gets a ' before it
    in a CSV export (OWASP); numbers and number-like names are left alone; importing the
    CSV takes the quote off again, and Parquet keeps every cell as it is."""
    import csv

    names = ["=cmd|' /C calc'!A0", "+1+2", "-x", "@SUM(A1)", "\tx", "'=already", "-1.5", "web"]
    for i, name in enumerate(names):
        run = Run(run_id=f"job-{i}", source=name, compute=1.0 + i, origin="sweep")
        store.ingest_result(run, [Metric(f"job-{i}", "loss", -1.5 - i)])
    out = tmp_path / "out.csv"
    assert store.export_runs(out) == len(names)
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    by_value = {float(r["value"]): r for r in rows}
    cells = [by_value[-1.5 - i]["source"] for i in range(len(names))]
    assert cells == ["'" + n for n in names[:6]] + ["-1.5", "web"]
    assert by_value[-1.5]["value"] == "-1.5"  # numbers are numbers, unquoted
    for fmt in ("csv", "parquet"):
        path = tmp_path / f"again.{fmt}"
        store.export_runs(path)
        with open_store(tmp_path / f"again-{fmt}.duckdb") as other:
            other.import_runs(read_runs_table(path))
            # (a runs table's cells are read stripped of spaces and tabs, quoted or not)
            assert sorted(r.source for r in other.runs()) == sorted(n.strip() for n in names)


def test_an_import_is_a_few_bulk_statements_whatever_its_size(store, tmp_path):
    """Runs and metrics go in by one bulk statement per table, as DuckDB's own query log
    shows, not one statement per row (executemany: about 1 ms a row, minutes for 200k
    runs). The time itself is measured by bench/import_runs.py."""
    store._con.execute("CALL enable_logging('QueryLog')")

    def logged() -> int:
        return store._all("SELECT count(*) FROM duckdb_logs WHERE type = 'QueryLog'")[0][0]

    statements = []
    for runs in (10, 400):
        path = tmp_path / f"runs-{runs}.csv"
        src = f"source-{runs}"  # new runs in each table
        rows = "".join(
            f"{src},{1 + i % 7},loss,2.5,{i}\n{src},{1 + i % 7},acc,0.5,{i}\n" for i in range(runs)
        )
        path.write_text("source,compute,metric,value,seed\n" + rows)
        table = read_runs_table(path)
        before = logged()
        summary = store.import_runs(table, directions={"loss": True})
        statements.append(logged() - before)
        assert (summary.runs_added, summary.metrics_added) == (runs, 2 * runs)
    assert statements[0] == statements[1] < 20, statements  # (before: [38, 410])


def test_a_closed_store_says_so(tmp_path):
    s = open_store(tmp_path / "c.duckdb")
    s.close()
    for use in (s.sources, s.counts, s.cursor, lambda: s.add_source(Source("a", "files", {}))):
        with pytest.raises(StoreError, match="was closed: open the store again"):
            use()


def test_a_mixed_run_keeps_its_tokens_per_source(store):
    run = Run(run_id="job-mix", source="a@0.75+b@0.25", compute=3.0, tokens=400.0)
    mix = {"a": 300.0, "b": 100.0}
    metrics = [Metric("job-mix", "acc", 0.4)]
    assert store.ingest_result(run, metrics, {"compute_unit": "usd"}, tokens_per_source=mix)
    assert not store.ingest_result(run, metrics, {"compute_unit": "usd"}, tokens_per_source=mix)
    store.ingest_result(Run(run_id="job-a", source="a", compute=1.0), [Metric("job-a", "acc", 0.3)])
    [got] = store.mixtures()
    assert (got.run_id, got.source, dict(got.tokens_per_source)) == ("job-mix", run.source, mix)
    assert got.tokens == 400.0 and got.study == "default" and got.compute == 3.0
    assert store.mixtures(study="other") == []
    # its metric values are read like any run's
    assert [o.value for o in store.observations(source=run.source)] == [0.4]
    with pytest.raises(StoreError, match="two or more sources"):
        store.ingest_result(
            Run(run_id="job-bad", source="a", compute=1.0), [], tokens_per_source={"a": 1.0}
        )
    assert store.counts()["runs"] == 2


def test_a_plan_is_read_by_id_or_latest_and_updated_whole(store):
    first = store.save_plan(_plan())
    second = store.save_plan(dataclasses.replace(_plan(), budget=10.0))
    assert store.plan(first) == (first, _plan())
    assert store.plan("latest")[0] == second
    with pytest.raises(StoreError, match="annealplan plans") as e:
        store.plan("plan-nope")
    assert str(e.value).count("no plan") == 1
    with pytest.raises(StoreError, match=f"did you mean '{first}'"):
        store.plan(first[:-1])
    conf = Confirmation("a@0.5+b@0.5", 100.0, {"a": 50.0, "b": 50.0}, 0.01)
    done = dataclasses.replace(_plan(), confirmation=dataclasses.replace(conf, measured_gain=0.02))
    store.update_plan(first, done)
    assert store.plan(first) == (first, done)
    assert store.plan(second)[1].confirmation is None
    with pytest.raises(StoreError, match="no plan"):
        store.update_plan("plan-nope", done)


def test_an_empty_store_says_how_to_make_a_plan(store):
    with pytest.raises(StoreError, match="annealplan allocate"):
        store.plan("latest")


def test_the_study_of_fits_by_id(store):
    fit = LawFit("s", "acc", "a", "power", "joint", params={}, success=True)
    [fid] = store.save_fits([fit])
    assert store.fit_studies([fid, "fit-unknown"]) == ["s"]
    assert store.fit_studies([]) == []
