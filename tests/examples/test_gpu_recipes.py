"""Every config in examples/gpu parses and validates: JSON, task names, ds_config, job specs."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import yaml

from executors.protocol import AnnealJobSpec

GPU = Path(__file__).resolve().parents[2] / "examples" / "gpu"
JOBS = sorted(GPU.glob("job_*.json"))
MEDICAL = {
    "medqa_4options",
    "medmcqa",
    "pubmedqa",
    "mmlu_anatomy",
    "mmlu_clinical_knowledge",
    "mmlu_college_medicine",
    "mmlu_medical_genetics",
    "mmlu_professional_medicine",
    "mmlu_college_biology",
}


def _group(name: str) -> dict:
    return yaml.safe_load((GPU / "tasks" / f"{name}.yaml").read_text())


@pytest.fixture(scope="module")
def task_index() -> set[str]:
    # Indexing every built-in task folder takes a few seconds: once per module.
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(GPU / "tasks"))
    return set(tm.all_tasks)


def test_every_file_parses() -> None:
    files = [p for p in GPU.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= {".json", ".yaml", ".md", ""}
    for p in files:
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".yaml":
            assert isinstance(yaml.safe_load(p.read_text()), dict)


def test_ds_config_is_zero3_bf16() -> None:
    cfg = json.loads((GPU / "ds_config_zero3_bf16.json").read_text())
    assert cfg["zero_optimization"]["stage"] == 3
    assert cfg["bf16"]["enabled"] is True
    assert "fp16" not in cfg or not cfg["fp16"].get("enabled")
    assert cfg["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    sched = cfg["scheduler"]
    assert sched["type"] == "WarmupDecayLR"  # warm-up then linear decay to zero
    assert sched["params"]["warmup_max_lr"] == cfg["optimizer"]["params"]["lr"]
    assert sched["params"]["warmup_num_steps"] < sched["params"]["total_num_steps"]
    assert cfg["train_micro_batch_size_per_gpu"] >= 1
    assert cfg["gradient_accumulation_steps"] >= 1


def test_ds_config_keys_are_known_to_deepspeed() -> None:
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    cfg = json.loads((GPU / "ds_config_zero3_bf16.json").read_text())
    zero = DeepSpeedZeroConfig(**cfg["zero_optimization"])  # pydantic: unknown keys fail
    assert int(zero.stage) == 3


def test_hostfile_lines() -> None:
    lines = [
        line.split("#")[0].strip()
        for line in (GPU / "hostfile").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert len(lines) >= 2
    for line in lines:
        host, slots = line.split()
        assert host and slots.startswith("slots=") and int(slots.split("=")[1]) > 0


def test_task_groups_name_installed_tasks(task_index: set[str]) -> None:
    medical = _group("annealplan_medical")
    assert set(medical["task"]) == MEDICAL
    math = _group("annealplan_math")
    assert "gsm8k" in math["task"]
    assert sum(t.startswith("minerva_math_") for t in math["task"]) == 7
    for group in (medical, math):
        assert group["group"] in task_index
        missing = [t for t in group["task"] if t not in task_index]
        assert not missing, f"not lm-eval tasks: {missing}"


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_job_tasks_exist(path: Path, task_index: set[str]) -> None:
    job = json.loads(path.read_text())
    missing = [t for t in job["evaluation"]["tasks"] if t not in task_index]
    assert not missing, f"not lm-eval tasks: {missing}"


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_job_spec_validates(path: Path) -> None:
    spec = AnnealJobSpec.model_validate_json(path.read_text())
    assert spec.training.zero_stage == 3
    assert spec.training.bf16 is True
    assert spec.replay is not None and spec.replay.fraction == pytest.approx(0.7)


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_job_source_configs_validate(path: Path) -> None:
    """The source and replay configs pass their kinds' own validation."""
    job = json.loads(path.read_text())
    kinds: dict = {}
    for module in ("files", "hf_disk", "synthetic", "licensed", "filtered"):
        mod = importlib.import_module(f"plugins.sources.{module}")
        mod.register_source_kinds(lambda k: kinds.__setitem__(k.name, k))
    for ref in (job["source"], job["replay"]["source"]):
        assert ref["kind"] in kinds, f"{path.name}: no built-in source kind {ref['kind']!r}"
        kinds[ref["kind"]].parse_config(ref["config"])


def test_tokens_per_step_of_the_8gpu_job() -> None:
    job = json.loads((GPU / "job_7b_medical_8gpu.json").read_text())
    t = job["training"]
    assert 8 * t["micro_batch"] * t["grad_accum"] * t["seq_len"] == 1_048_576
