"""An executor root for real jobs: a tiny Llama, two pools of documents, a tiny lm-eval task."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.helpers.tiny import (  # noqa: F401
    build_causal_lm,
    build_tokenizer,
    documents,
    sentences,
    tiny_causal_lm,
    tiny_root,
    tiny_tokenizer_path,
    write_jsonl,
)

TASKS = Path(__file__).resolve().parents[1] / "executors" / "data" / "tiny_mc"


def make_root(root: Path, model: Path) -> Path:
    """Lay out an executor root: ``model/``, ``data/{domain,general}.jsonl``, ``tasks/``."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(model, root / "model", dirs_exist_ok=True)
    shutil.copytree(TASKS, root / "tasks" / "tiny_mc", dirs_exist_ok=True)
    write_jsonl(root / "data" / "domain.jsonl", documents(1500, seed=1))
    write_jsonl(root / "data" / "general.jsonl", documents(1500, seed=2))
    return root


@pytest.fixture
def executor_root(tmp_path: Path, tiny_causal_lm: Path) -> Path:  # noqa: F811
    return make_root(tmp_path / "project", tiny_causal_lm)


def sweep_meta(**training) -> dict:
    """Experiment meta for the tiny root (see planner.dispatch for the keys)."""
    return {
        "study": "tiny",
        "base_model": "model",
        "replay": {"kind": "files", "config": {"paths": ["data/general.jsonl"]}},
        "training": {
            "seq_len": 32,
            "micro_batch": 4,
            "grad_accum": 1,
            "peak_lr": 1e-3,
            "checkpoint_every_steps": 50,
            **training,
        },
        "evaluation": {
            "tasks": ["tiny_mc"],
            "task_dirs": ["tasks/tiny_mc"],
            "limit": 8,
            "batch_size": 8,
        },
        "compute_unit": "usd",
        "rates": {"flops_per_gpu_hour": 1e15, "usd_per_gpu_hour": 2.0},
    }


def shm_buffers(state_dir: Path) -> set[str]:
    """This user's DeepSpeed all-reduce buffers in shared memory (RAM) now, of the launches
    the jobs under ``state_dir`` made (their master ports are in the jobs' logs); buffers of
    other launches on the machine, e.g. another test's, are not counted."""
    from executors.worker import SHM_BUFFER, SHM_DIR

    ports = {
        port
        for log in state_dir.glob("jobs/*/log.txt")
        for port in re.findall(r"--master_port (\d+)", log.read_text(errors="replace"))
    }
    assert ports, f"no launch found in the job logs under {state_dir}"
    if not SHM_DIR.is_dir():
        return set()
    return {
        p.name
        for p in SHM_DIR.glob(f"{SHM_BUFFER}_{os.getuid()}_*")
        if p.name.split("_")[-2] in ports
    }
