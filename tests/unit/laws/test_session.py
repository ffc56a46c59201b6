"""The fitting session shared by ``annealplan fit`` and the TUI, and the laws' drawing range."""

from __future__ import annotations

import math

import pytest

from planner.errors import FitError
from planner.laws.session import (
    describe_fit,
    draw_grid,
    draw_range,
    family_candidates,
    fit_store,
)
from planner.store import open_store


def test_a_law_is_drawn_over_its_runs_and_one_decade_beyond():
    assert draw_range([3.0, 30.0, 300.0]) == (2.0, 3000.0)
    # no run of its own: the largest fitted compute stands in
    low, high = draw_range([], fallback=6.0)
    assert math.isclose(low, 4.0) and math.isclose(high, 60.0)
    assert all(math.isnan(v) for v in draw_range([0.0, -1.0]))
    grid = draw_grid([3.0, 300.0], points=7)
    assert grid.size == 7 and math.isclose(grid[0], 2.0) and math.isclose(grid[-1], 3000.0)
    assert draw_grid([]).size == 0


def test_a_fits_table_shows_the_law_chosen_and_a_failed_fit_without_parameters():
    import numpy as np

    from planner.laws.joint import GroupData, fit_joint

    x = np.array([1e18, 2e18, 4e18, 8e18])
    data = {"a": (x, 0.3 + 0.01 * np.log(x / 1e18)), "b": (x, 0.32 + 0.012 * np.log(x / 1e18))}
    ok = fit_joint(GroupData("s", "acc", False, data), n_boot=0).fits[0]
    law, params = describe_fit(ok, lambda v: f"{v:.3g}")
    assert law == ok.candidate and "=" in params and "nan" not in params
    one_point = {s: (x[:1], y[:1]) for s, (_, y) in data.items()}
    failed = fit_joint(GroupData("s", "acc", False, one_point), n_boot=0).fits[0]
    assert not failed.success and describe_fit(failed, str) == ("-", "-")


def test_family_candidates():
    assert family_candidates("auto") is None
    assert {c.family for c in family_candidates("power")} == {"power"}
    assert family_candidates("from-a-plugin") == ["from-a-plugin"]


def test_fit_store_without_runs_says_what_to_do(tmp_path):
    store = open_store(tmp_path / "s.duckdb")
    try:
        with pytest.raises(FitError, match="study=s1 metric=acc: import some"):
            fit_store(store, study="s1", metric="acc")
    finally:
        store.close()


@pytest.mark.parametrize("method", ["joint", "independent"])
def test_fits_from_worker_processes_are_those_of_one_process(tmp_path, method):
    """Groups spread over spawned workers fit exactly as in one process, in the same order,
    and are saved by this process alone."""
    import numpy as np

    from planner.domain import Metric, Run
    from planner.store import RunsTable

    runs, metrics = [], []
    for study in ("s1", "s2", "s3"):
        for source, a in (("web", 1.0), ("books", 1.3)):
            for i, c in enumerate(np.logspace(18, 20, 5)):
                rid = f"{study}-{source}-{i}"
                runs.append(Run(rid, source, float(c), study=study))
                metrics.append(Metric(rid, "loss", 2.0 + a * (c / 1e18) ** -0.3 + 0.01 * i % 3))
    table = RunsTable(tuple(runs), tuple(metrics), {})
    results = []
    for jobs in (1, 2):
        store = open_store(tmp_path / f"jobs{jobs}.duckdb")
        try:
            store.import_runs(table)
            ids, fits = fit_store(store, method=method, n_boot=50, jobs=jobs)
            assert len(store.fits()) == len(ids) == len(fits) == 6
            with pytest.raises(FitError, match="--jobs"):
                fit_store(store, jobs=-1)
        finally:
            store.close()
        results.append(fits)
    one, two = results
    assert [(f.study, f.source) for f in two] == [(f.study, f.source) for f in one]
    for a, b in zip(one, two, strict=True):
        assert a.params == b.params and a.success and b.success
        assert np.array_equal(a.boot, b.boot)
