"""The one rule by which ``sweep run``'s flags and the TUI's run form override an
experiment's meta."""

from __future__ import annotations

import copy

from planner.dispatch.session import SweepOverrides, merge_overrides

META = {
    "base_model": "models/base",
    "replay": {"kind": "files", "config": {"paths": ["data/general.jsonl"]}},
    "training": {"seq_len": 128, "peak_lr": 1e-3},
    "evaluation": {"tasks": ["medqa"], "limit": 50, "batch_size": 4},
    "unit": "gpu_hours",
}


def test_nothing_given_overrides_nothing():
    assert merge_overrides(META, SweepOverrides()) == {}
    assert merge_overrides(META, SweepOverrides(base_model="", tasks=(), training={})) == {}


def test_a_given_field_wins_and_nested_tables_merge_key_by_key():
    before = copy.deepcopy(META)
    got = merge_overrides(
        META,
        SweepOverrides(
            base_model="models/other",
            replay="general",
            tasks=("pubmedqa", "medmcqa"),
            training={"seq_len": 512, "grad_accum": 2},
            compute_unit="flops",
        ),
    )
    assert got == {
        "base_model": "models/other",
        "replay": "general",
        "compute_unit": "flops",
        "evaluation": {"tasks": ["pubmedqa", "medmcqa"], "limit": 50, "batch_size": 4},
        "training": {"seq_len": 512, "peak_lr": 1e-3, "grad_accum": 2},
    }
    assert before == META  # the stored meta is not changed in place


def test_a_limit_of_its_own_and_a_meta_without_tables():
    got = merge_overrides({}, SweepOverrides(limit=8, task_dirs=("tasks/med",)))
    assert got == {"evaluation": {"task_dirs": ["tasks/med"], "limit": 8}}
