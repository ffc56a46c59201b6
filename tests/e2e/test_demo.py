"""The main job end to end, reduced (``annealplan demo --quick``): the example domain in a
fresh project folder, a real local executor, real DeepSpeed anneals and lm-eval, fits, the
allocation, the report — then a second run that reuses every finished job."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _annealplan(project: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("ANNEALPLAN_DB", None)
    return subprocess.run(
        [sys.executable, "-m", "planner", "--project", str(project), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_quick_demo_end_to_end(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(
        REPO / "examples" / "domain",
        project / "examples" / "domain",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    first = _annealplan(project, "demo", "--quick", "--no-tui")
    assert first.returncode == 0, first.stderr[-4000:]
    report = (project / "report" / "report.md").read_text()
    assert "## Runs and fitted laws" in report and "## Allocation" in report
    assert "point estimate (one micro-anneal)" in report or "No allocation could be made" in report
    assert (project / "report" / "report.html").exists()
    assert "the ranking" in first.stdout or "no crossing" in first.stdout

    runs = _sweep_runs(project)
    # 2 sources × 3 budgets and the control anneal (the quick demo runs no second seed):
    # each with lm-eval metrics, exactly once
    assert len(runs) == 7
    assert all(r["metrics"] > 0 for r in runs)
    by_source: dict[str, int] = {}
    for r in runs:
        by_source[r["source"]] = by_source.get(r["source"], 0) + 1
    assert by_source == {"web": 3, "textbook": 3, "control": 1}
    assert {r["seed"] for r in runs} == {0}

    # the plan is made on a continuous metric (the domain task's p_gold), for the budget
    # the auto rule gives (half of what the trust region could buy)
    plan = _stored_plan(project)
    assert plan.metric.startswith("demo_domain_dose/prob_correct")
    assert "budget auto: $" in first.stderr

    # a bounded prediction, a certificate, and the confirmation anneal run and scored
    assert plan.success, plan.message
    head = plan.combination.headroom
    assert plan.combination.rule == "coverage" and 0 < head <= 1
    for v in (plan.gain, plan.gain_low, plan.gain_high):
        assert -head <= v <= head
    assert "KKT certificate" in first.stdout
    assert {c.source for c in plan.certificate} == {"web", "textbook"}
    conf = plan.confirmation
    assert conf is not None and conf.measured_gain is not None and conf.run_id
    assert f"measured gain {conf.measured_gain:+.4g}" in first.stderr
    mixed = [r for r in json.loads(_annealplan(project, "runs", "list", "--json").stdout)]
    assert sum("@" in (r["source"] or "") for r in mixed) <= 1  # one mix (none: one source)

    again = _annealplan(project, "demo", "--quick", "--no-tui")
    assert again.returncode == 0, again.stderr[-4000:]
    assert "7 succeeded (7 reused)" in again.stderr
    assert len(_sweep_runs(project)) == 7
    # the confirmed plan is shown again: no new plan, no second confirmation anneal
    assert "reusing plan-" in again.stderr and "confirmation anneal" not in again.stderr
    again_runs = json.loads(_annealplan(project, "runs", "list", "--json").stdout)
    assert len(again_runs) == len(mixed)


def _sweep_runs(project: Path) -> list[dict]:
    """The stored runs but the plan's confirmation anneal (a mixture, ``a@0.6+b@0.4``)."""
    runs = json.loads(_annealplan(project, "runs", "list", "--json").stdout)
    return [r for r in runs if "@" not in (r["source"] or "")]


def _stored_plan(project: Path):
    from planner.store import open_store

    store = open_store(project / "annealplan.duckdb")
    try:
        return store.plans(limit=1)[0][1]
    finally:
        store.close()
