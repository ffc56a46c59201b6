"""Confirming a plan: its mixed anneal runs as a real job on a local daemon on loopback
(started as users start it: the ``local`` backend through the plugin registry), the run is
stored once as a mixed run with its tokens per source, and the measured gain lands in the
stored plan; a rerun reuses the run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from planner.cli import cli
from planner.dispatch.confirm import confirm_plan, prepare_confirmation
from planner.domain import (
    AnnealSpec,
    Combination,
    Confirmation,
    Metric,
    Plan,
    ProblemOptions,
    Run,
    Source,
    SourceAllocation,
)
from planner.errors import ConfigError, StoreError
from planner.store import open_store
from planner.units import Unit
from plugins.manager import load_registry
from tests.dispatch.conftest import sweep_meta
from tests.helpers.tiny import documents, write_jsonl

METRIC = "tiny_mc/logprob_correct"
CONTROL_VALUE = -3.0


def _plan(metric: str = METRIC, *, confirmation: bool = True) -> Plan:
    conf = Confirmation(
        source="domain@0.6+other@0.4",
        tokens=500.0,
        tokens_per_source={"domain": 300.0, "other": 200.0},
        predicted_gain=0.02,
        predicted_low=0.01,
        predicted_high=0.03,
        additive_gain=0.025,
        additive_low=0.012,
        additive_high=0.04,
    )
    return Plan(
        budget=1.0,
        unit=Unit.USD,
        metric=metric,
        allocations=(
            SourceAllocation("domain", 3000.0, 0.6, 0.01),
            SourceAllocation("other", 2000.0, 0.4, 0.01),
        ),
        gain=0.04,
        confirmation=conf if confirmation else None,
        options=ProblemOptions(metric=metric, study="tiny"),
        combination=Combination(rule="coverage", headroom=1.0),
    )


def _project(root: Path):
    """A store with the study's sweep (its settings), its control anneal's run, and the
    mixture's two sources registered."""
    write_jsonl(root / "data" / "other.jsonl", documents(1500, seed=3))
    store = open_store(root / "annealplan.duckdb")
    store.add_source(Source("domain", "files", {"paths": ["data/domain.jsonl"]}))
    store.add_source(Source("other", "files", {"paths": ["data/other.jsonl"]}))
    store.save_experiment(
        "tiny",
        [
            AnnealSpec("job-domain-600", "tiny", "domain", 600.0, 0.5, 0),
            AnnealSpec("job-control-1200", "tiny", None, 1200.0, 1.0, 0),
        ],
        sweep_meta(),
    )
    # The control anneal's measurement, as its sweep stored it (its anneal is not what
    # this test is about; the sweep's own test runs it).
    control = Run("job-control-1200", "control", 1.0, study="tiny", tokens=1200.0, origin="sweep")
    store.ingest_result(
        control,
        [Metric(control.run_id, METRIC, CONTROL_VALUE), Metric(control.run_id, "x/loss", 2.5)],
        {"compute_unit": "usd", "experiment": "tiny"},
    )
    return store


def _cli(root: Path, *args: str):
    return CliRunner().invoke(
        cli, ["--project", str(root), "--db", str(root / "annealplan.duckdb"), *args]
    )


def test_a_plans_mixed_anneal_runs_once_and_its_gain_is_stored(executor_root: Path):
    store = _project(executor_root)
    plan_id = store.save_plan(_plan())
    registry = load_registry(entry_points=False)
    seen = []

    # No executors.toml: the embedded local daemon, rooted at the project folder.
    conf = confirm_plan(store, registry, executor_root, "latest", on_update=seen.append, poll_s=0.5)
    assert any(r.state.value == "succeeded" for r in seen)
    [run] = [r for r in store.runs(study="tiny") if r.run_id == conf.run_id]
    assert (run.source, run.origin, run.tokens) == ("domain@0.6+other@0.4", "confirm", 500.0)
    # the measured gain: the run's value over the control's (higher is better here)
    [value] = [o.value for o in store.observations(metric=METRIC) if o.run_id == run.run_id]
    assert conf.measured_gain == pytest.approx(value - CONTROL_VALUE)
    # kept as a mixed run: its tokens per source, and each source materialised for it
    [mix] = store.mixtures(study="tiny")
    assert (mix.run_id, dict(mix.tokens_per_source)) == (run.run_id, {"domain": 300, "other": 200})
    curation = store.run_meta(run.run_id)["curation"]
    assert [(c["role"], c["details"].get("mixture_source"), c["tokens"]) for c in curation] == [
        ("source", "domain", 300),
        ("source", "other", 200),
        ("replay", None, 500),
    ]
    # the stored plan now carries it, beside both predictions
    stored = store.plan(plan_id)[1].confirmation
    assert stored == conf and stored.predicted_gain == 0.02 and stored.additive_gain == 0.025
    counts = store.counts()

    # A rerun reuses the stored run: nothing is trained or ingested again; no executor is
    # even reached (this one is not registered, and is never looked up).
    again = confirm_plan(store, registry, executor_root, plan_id, executor="not-registered")
    assert again == conf and store.counts() == counts
    # the verb prints the measured gain beside both predictions and their intervals
    store.close()
    out = _cli(executor_root, "confirm", plan_id)
    assert out.exit_code == 0, out.output
    assert f"measured gain over control  {conf.measured_gain:+.4g}" in out.output
    assert "predicted (coverage rule)" in out.output and "+0.01 to +0.03" in out.output
    assert "predicted if gains added" in out.output and "+0.012 to +0.04" in out.output
    listed = json.loads(_cli(executor_root, "plans", "--json").output)
    assert listed[0]["confirmation"]["run_id"] == conf.run_id


def test_a_stored_run_is_reused_and_a_loss_gains_when_it_falls(executor_root: Path):
    """The job id is stable: a run already stored under it is the confirmation's (no
    executor is reached), and for a lower-is-better metric the gain is the drop."""
    store = _project(executor_root)
    plan_id = store.save_plan(_plan("x/loss"))
    prepared = prepare_confirmation(store, plan_id)
    assert prepared.job.mixture is not None and prepared.job.source is None
    assert [(p.name, p.tokens) for p in prepared.job.mixture] == [("domain", 300), ("other", 200)]
    assert prepared.job.replay_tokens() == 500  # the sweep's replay share, 0.5
    assert prepared.spec.job_id == prepare_confirmation(store, "latest").spec.job_id
    jid = prepared.spec.job_id
    run = Run(jid, "domain@0.6+other@0.4", 1.0, study="tiny", tokens=500.0, origin="confirm")
    store.ingest_result(
        run, [Metric(jid, "x/loss", 2.0)], tokens_per_source={"domain": 300, "other": 200}
    )
    conf = confirm_plan(store, load_registry(entry_points=False), executor_root, plan_id,
                        executor="not-registered")  # fmt: skip
    assert (conf.run_id, conf.measured_gain) == (jid, pytest.approx(0.5))
    # a second plan proposing the same mixture shares the run
    other = store.save_plan(dataclasses.replace(_plan("x/loss"), budget=2.0))
    assert prepare_confirmation(store, other).spec.job_id == jid


def test_an_unknown_plan_is_one_error_naming_how_to_list_plans(executor_root: Path):
    store = _project(executor_root)
    store.save_plan(_plan())
    with pytest.raises(StoreError, match="annealplan plans"):
        prepare_confirmation(store, "plan-nope")
    store.close()
    out = _cli(executor_root, "confirm", "plan-nope")
    assert out.exit_code == 2
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no plan 'plan-nope'")
    assert "`annealplan plans`" in lines[0]


def test_a_plan_that_funds_nothing_has_nothing_to_confirm(executor_root: Path):
    store = _project(executor_root)
    plan_id = store.save_plan(_plan(confirmation=False))
    with pytest.raises(ConfigError, match="funds no source"):
        prepare_confirmation(store, plan_id)
    store.close()
    out = _cli(executor_root, "confirm", plan_id)
    assert out.exit_code == 2 and "funds no source" in out.output
    assert "nothing to confirm" in _cli(executor_root, "plans").output


def test_a_study_without_a_control_says_to_run_it(executor_root: Path):
    store = _project(executor_root)
    plan_id = store.save_plan(_plan("never/measured"))
    with pytest.raises(ConfigError, match="no control anneal of study 'tiny' measured"):
        prepare_confirmation(store, plan_id)
