"""The stages' typed records: files written before (as plain dicts) still read, and a bad
file says what is wrong with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executors.stages.records import (
    Manifest,
    RecordUnreadable,
    TrainPlan,
    TrainState,
    record_train_seconds,
    total_train_seconds,
)

# Written by the executor before its records were typed (the same keys, as plain dicts).
OLD_MANIFEST = {
    "data_hash": "ab" * 32,
    "sequences": 42,
    "seq_len": 128,
    "curation": [
        {
            "role": "source",
            "kind": "files",
            "tokens": 5000,
            "cost": 0.0,
            "unit": "usd",
            "seconds": 0.25,
            "content_hash": "cd" * 32,
            "details": {"generator_tokens": None, "documents_scored": None, "documents_used": 9},
        }
    ],
}
OLD_PLAN = {
    "job_id": "job-1",
    "attempt_token": "f" * 32,
    "journal": "/state/journal.sqlite3",
    "job_dir": "/state/jobs/job-1",
    "ckpt_dir": "/state/jobs/job-1/ckpt",
    "final_dir": "/state/jobs/job-1/final",
    "heartbeat": "/state/jobs/job-1/heartbeat",
    "data": "/state/jobs/job-1/data/train.npy",
    "model": "/root/model",
    "tokenizer": "/root/model",
    "micro_batch": 8,
    "grad_accum": 1,
    "total_steps": 5,
    "seed": 0,
    "checkpoint_every": 50,
    "ds_config": {"train_micro_batch_size_per_gpu": 8},
    "peak_flops": None,
}
OLD_STATE = {
    "params": 1000,
    "steps": 5,
    "steps_this_run": 5,
    "resumed_from": 0,
    "training_tokens": 5120,
    "tokens_per_s": 812.5,
    "train_seconds": 6.3,
    "world_size": 1,
    "checkpoint_hash": "ef" * 32,
    "mfu": None,
}


@pytest.mark.parametrize(
    ("record", "old"), [(Manifest, OLD_MANIFEST), (TrainPlan, OLD_PLAN), (TrainState, OLD_STATE)]
)
def test_files_written_before_still_read_and_write_back_the_same(tmp_path: Path, record, old):
    path = tmp_path / "record.json"
    path.write_text(json.dumps(old))
    read = record.read(path)
    read.write(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == {
        **old,
        **({"dist_backend": None} if record is TrainPlan else {}),
    }


def test_a_plan_without_a_journal_is_not_fenced(tmp_path: Path):
    path = tmp_path / "anneal.json"
    path.write_text(json.dumps({**OLD_PLAN, "journal": ""}))
    assert TrainPlan.read(path).journal is None


def test_a_state_from_before_mfu_was_recorded_reads(tmp_path: Path):
    path = tmp_path / "train_state.json"
    path.write_text(json.dumps({k: v for k, v in OLD_STATE.items() if k != "mfu"}))
    assert TrainState.read(path).mfu is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"data_hash": "x", "sequences": 1', "Invalid JSON"),
        (json.dumps({**OLD_MANIFEST, "sequences": "many"}), "sequences:"),
        (
            json.dumps({k: v for k, v in OLD_MANIFEST.items() if k != "seq_len"}),
            "seq_len: Field required",
        ),
        (json.dumps({**OLD_MANIFEST, "surprise": 1}), "surprise:"),
    ],
)
def test_a_bad_record_names_its_file_and_first_problem(tmp_path: Path, text: str, says: str):
    path = tmp_path / "manifest.json"
    path.write_text(text)
    with pytest.raises(RecordUnreadable, match="not a valid record") as e:
        Manifest.read(path)
    assert str(path) in str(e.value) and says in str(e.value)


def test_a_missing_record_says_so(tmp_path: Path):
    with pytest.raises(RecordUnreadable, match=r"cannot read .*No such file"):
        TrainState.read(tmp_path / "nothing.json")


def test_every_attempts_training_seconds_add_up(tmp_path: Path):
    ledger = tmp_path / "train_seconds"
    assert total_train_seconds(ledger) == 0.0
    record_train_seconds(ledger, "attempt-a", 1.0)
    record_train_seconds(ledger, "attempt-a", 2.5)  # the same attempt, later: replaced
    record_train_seconds(ledger, "attempt-b", 4.0)
    (ledger / "attempt-c.tmp").write_text("100")  # a write cut short is not counted
    (ledger / "attempt-d").write_text("garbage")
    assert total_train_seconds(ledger) == 6.5
