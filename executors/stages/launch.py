"""How the trainer is launched: the DeepSpeed config, the launcher's command and
environment, and the clean-up of the shared-memory buffers a launch leaves behind.

The trainer is ``executors/anneal.py`` under the chosen launcher (``deepspeed`` or
``torchrun``). Setting ``ANNEALPLAN_EXECUTOR_TRAINER`` (in the daemon's environment, which
its workers inherit) to a Python script runs ``python SCRIPT --plan PLAN`` instead, with
the same plan, heartbeat and checkpoint contract: fault-injection tests use it to stop a
trainer between two shard writes, which real DeepSpeed cannot be made to do on cue.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path
from typing import Any

from executors.processes import with_package_on_path
from executors.protocol import AnnealJobSpec
from executors.stages.context import JobFiles, WorkerConfig

TRAINER_ENV = "ANNEALPLAN_EXECUTOR_TRAINER"
#: where DeepSpeed's CPU communication op keeps its all-reduce buffers
SHM_DIR = Path("/dev/shm")
#: their name: {prefix}_{uid}_{master addr}_{master port}_{rank} (deepspeed/ops/csrc/cpu/comm)
SHM_BUFFER = "deepspeed_allreduce_buffer"


def world_size(cfg: WorkerConfig) -> int:
    """Processes the launcher starts: slots in the hostfile, else ``--gpus``."""
    if cfg.hostfile is None:
        return max(1, cfg.gpus)
    total = 0
    for line in cfg.hostfile.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        slots = [p for p in line.split() if p.startswith("slots=")]
        total += int(slots[0].split("=", 1)[1]) if slots else 1
    return max(1, total)


def ds_config(spec: AnnealJobSpec, total_steps: int) -> dict[str, Any]:
    """The DeepSpeed config: AdamW (torch's), warm-up then linear decay to zero."""
    t = spec.training
    zero: dict[str, Any] = {"stage": t.zero_stage}
    if t.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        **t.ds_config_extra,
        "train_micro_batch_size_per_gpu": t.micro_batch,
        "gradient_accumulation_steps": t.grad_accum,
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": t.peak_lr,
                "betas": [0.9, 0.95],
                "eps": 1e-8,
                "weight_decay": t.weight_decay,
                # torch's AdamW: DeepSpeed's FusedAdam would JIT-compile for ~40 s on CPU.
                "torch_adam": True,
            },
        },
        "scheduler": {
            "type": "WarmupDecayLR",
            "params": {
                "total_num_steps": total_steps,
                "warmup_min_lr": 0.0,
                "warmup_max_lr": t.peak_lr,
                "warmup_num_steps": max(1, round(t.warmup_fraction * total_steps)),
                "warmup_type": "linear",
            },
        },
        "zero_optimization": zero,
        "bf16": {"enabled": t.bf16},
        "gradient_clipping": t.ds_config_extra.get("gradient_clipping", 1.0),
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def free_port() -> int:
    """A free loopback port (for the launch's master)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(cfg: WorkerConfig, plan_path: Path, port: int) -> list[str]:
    """The command that runs the trainer on ``plan_path`` with master port ``port``."""
    if override := os.environ.get(TRAINER_ENV):
        return [sys.executable, override, "--plan", str(plan_path)]
    script = str(Path(__file__).resolve().parent.parent / "anneal.py")
    if cfg.launcher == "torchrun":
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={max(1, cfg.gpus)}",
            f"--master_port={port}",
            script,
            "--plan",
            str(plan_path),
        ]
    launcher = Path(sys.executable).with_name("deepspeed")
    cmd = [str(launcher) if launcher.exists() else "deepspeed"]
    if cfg.hostfile is not None:
        cmd += ["--hostfile", str(cfg.hostfile)]
    else:
        cmd += ["--num_gpus", str(max(1, cfg.gpus))]
    return [*cmd, "--master_port", str(port), script, "--plan", str(plan_path)]


def trainer_env(cfg: WorkerConfig, world: int) -> dict[str, str]:
    """The launcher's environment: this checkout importable, offline, threads shared."""
    import torch

    env = with_package_on_path(dict(os.environ))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not torch.cuda.is_available():
        env.setdefault("DS_ACCELERATOR", "cpu")
        if world > 1:
            # The job's thread budget (set by the daemon) is shared by its ranks.
            budget = int(env.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
            env["OMP_NUM_THREADS"] = str(max(1, budget // world))
    return env


def remove_shm_buffers(port: int) -> list[Path]:
    """Remove the shared-memory all-reduce buffers of the launch that used ``port``.

    DeepSpeed's CPU communication op creates one buffer per rank (about 70 MB of RAM each,
    in ``/dev/shm``) and never unlinks it, so every CPU launch would keep 70 MB per rank
    until the machine reboots. Only this user's buffers of that launch are touched.

    Returns:
        The files removed.
    """
    if not SHM_DIR.is_dir():
        return []
    prefix = f"{SHM_BUFFER}_{os.getuid()}_"
    removed = []
    for p in SHM_DIR.glob(f"{prefix}*_{port}_*"):
        if p.name.split("_")[-2] == str(port):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


def clean_up_launch(folder: Path) -> list[Path]:
    """Remove the buffers of the job's last launch (its port is in its ``master_port`` file).

    Called by the worker when its launch ends, before a new attempt launches (a killed
    attempt could not clean up), and by the daemon when it reaps or kills a worker that
    was killed with its trainers. The launch's ranks must have exited.
    """
    port_file = JobFiles(folder).master_port
    try:
        port = int(port_file.read_text())
    except (OSError, ValueError):
        return []
    removed = remove_shm_buffers(port)
    port_file.unlink(missing_ok=True)
    return removed
