from __future__ import annotations

import numpy as np
import pytest
import sympy

from planner.allocate.problem import CostSetup
from planner.design.sweep import DesignSource, design_sweep
from planner.errors import SolveError
from planner.units import Unit

SETUP = CostSetup(Unit.GPU_HOURS, model_params=135e6)


class _Price:
    unit = Unit.USD

    def __init__(self, fee, per_token):
        self.fee, self.per_token = fee, per_token

    def expr(self, n):
        return sympy.Float(self.fee) + sympy.Float(self.per_token) * n


SOURCES = [
    DesignSource("web"),
    DesignSource("synth", _Price(100.0, 2e-7)),
    DesignSource("lic", None, 3e9),
]


def test_sweep_spans_a_decade_costs_the_fraction_and_includes_the_control():
    d = design_sweep(SOURCES, SETUP, 2000.0, fraction=0.05, points=4, seeds=2)
    assert d.grid[-1] / d.grid[0] >= 10 - 1e-9
    assert d.cost == pytest.approx(100.0, rel=0.02)  # rounding tokens to 3 digits moves it a little
    controls = [s for s in d.specs if s.is_control]
    assert len(controls) == 2 and {s.seed for s in controls} == {0, 1}
    web = sorted(s.tokens for s in d.specs if s.source == "web" and s.seed == 0)
    assert len(web) == 4 and np.all(np.diff(np.log(web)) > 0)
    assert max(s.tokens for s in d.specs if s.source == "lic") <= 3e9  # the cap clips the grid
    assert d.meta["fixed_costs"]  # synth's licence fee is counted once
    assert len({s.job_id for s in d.specs}) == len(d.specs)


def test_redesigning_reuses_job_ids():
    a = design_sweep(SOURCES, SETUP, 2000.0, experiment="x")
    b = design_sweep(SOURCES, SETUP, 2000.0, experiment="y")
    assert [s.job_id for s in a.specs] == [s.job_id for s in b.specs]
    c = design_sweep(SOURCES, SETUP, 4000.0)
    assert {s.job_id for s in a.specs} != {s.job_id for s in c.specs}


def test_bad_arguments_are_plain_errors():
    with pytest.raises(SolveError, match="points"):
        design_sweep(SOURCES, SETUP, 2000.0, points=1)
    with pytest.raises(SolveError, match="fraction"):
        design_sweep(SOURCES, SETUP, 2000.0, fraction=0.0)
    with pytest.raises(SolveError, match="evaluations"):
        design_sweep(SOURCES, SETUP, 10.0, fraction=0.01, eval_cost=1.0)


def test_one_seed_repeats_each_sources_largest_budget_with_a_second_seed():
    d = design_sweep(SOURCES, SETUP, 2000.0, fraction=0.05, points=4)
    for name in ("web", "synth", "lic"):
        runs = [s for s in d.specs if s.source == name]
        top = max(s.tokens for s in runs)
        assert sorted(s.seed for s in runs if s.tokens == top) == [0, 1]
        assert all(s.seed == 0 for s in runs if s.tokens < top)
    assert [s.seed for s in d.specs if s.is_control] == [0]
    assert d.meta["repeat_top"] is True
    assert len({s.job_id for s in d.specs}) == len(d.specs)
    # the repeats are paid from the same sweep budget
    assert d.cost == pytest.approx(100.0, rel=0.02)

    plain = design_sweep(SOURCES, SETUP, 2000.0, fraction=0.05, points=4, repeat_top=False)
    assert {s.seed for s in plain.specs} == {0}
    assert len(d.specs) == len(plain.specs) + 3
    # with several seeds every run is repeated already: nothing is added
    two = design_sweep(SOURCES, SETUP, 2000.0, seeds=2)
    assert len(two.specs) == len(
        design_sweep(SOURCES, SETUP, 2000.0, seeds=2, repeat_top=False).specs
    )
