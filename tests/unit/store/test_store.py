from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from planner.domain import AnnealSpec, CostSpec, LawFit, Metric, Plan, Run, Source, SourceAllocation
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


def test_plans_round_trip(store):
    plan = Plan(
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
    pid = store.save_plan(plan, ["fit-1"])
    [(got_id, got)] = store.plans()
    assert got_id == pid and got == plan


def test_open_store_errors(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "missing" / "x.duckdb")
    bad = tmp_path / "bad.duckdb"
    bad.write_text("not a database")
    with pytest.raises(StoreError, match="cannot open"):
        open_store(bad)


def test_an_averaged_fit_keeps_its_members_draws_exactly(store):
    """The members' bootstrap draws are stored as bytes, not lists of numbers, and come back
    as the same arrays; a body written as lists (before) still loads."""
    import json

    rng = np.random.default_rng(0)
    members = [
        {"weight": 0.7, "family": "power", "params": {"E": 1.0, "A": 2.0, "alpha": 0.3}},
        {"weight": 0.3, "family": "constant", "params": {"c": 1.5}},
    ]
    for m in members:
        m["boot"] = rng.normal(size=(200, len(m["params"])))
        m["noise_sd_boot"] = np.abs(rng.normal(size=200))
    fit = _power_fit(
        boot=members[0]["boot"],
        extra={"members": members, "noise_sd_boot": members[0]["noise_sd_boot"], "n": [1, 2]},
    )
    [fid] = store.save_fits([fit])
    [(_, got)] = store.fits()
    for want, back in zip(members, got.extra["members"], strict=True):
        assert np.array_equal(back["boot"], want["boot"]) and back["boot"].dtype == np.float64
        assert np.array_equal(back["noise_sd_boot"], want["noise_sd_boot"])
        assert back["params"] == want["params"] and back["weight"] == want["weight"]
    assert got.extra["n"] == [1, 2]  # short lists stay lists
    [(body,)] = store._all("SELECT body FROM fits WHERE fit_id = ?", [fid])
    assert len(body) < 0.6 * len(json.dumps(json.loads(body, object_hook=_as_lists)))
    # a body stored as plain lists, as before
    store._con.execute(
        "UPDATE fits SET body = ? WHERE fit_id = ?",
        [json.dumps(json.loads(body, object_hook=_as_lists)), fid],
    )
    [(_, old)] = store.fits()
    assert np.allclose(np.asarray(old.extra["members"][1]["boot"]), members[1]["boot"])
    assert store.fitted_groups() == [("s", "loss")]


def _as_lists(d):
    from planner.store.db import _unpack

    out = _unpack(d)
    return out.tolist() if isinstance(out, np.ndarray) else out
