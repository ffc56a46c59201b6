"""DeepSpeed annealing entry point, launched by the ``deepspeed`` launcher (or ``torchrun``).

    deepspeed --num_gpus N executors/anneal.py --plan JOB_DIR/anneal.json

The plan (written by the worker) names the base model, the packed token array
(``[sequences, seq_len]`` int32), the DeepSpeed config and the folders to write. Training
continues from the newest *complete* checkpoint, if any: a checkpoint counts only once its
``COMPLETE`` marker exists, and the marker is written last (after every rank saved). The
data order is a pure function of the step, so a resumed run sees exactly the batches an
uninterrupted run would have seen.

Rank 0 prints one ``@@progress {json}`` line per optimizer step and touches a heartbeat file
every second; the worker turns these into journal progress and stall detection.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PROGRESS_PREFIX = "@@progress "
MARKER = "COMPLETE"
EXIT_FENCED = 76  # our attempt token is no longer current: another attempt owns the job
SHM_OP = "deepspeed_shm_comm"  # the JIT op DeepSpeed loads for CPU collectives


def complete_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """The checkpoints that have their completion marker, oldest first."""
    found = []
    if ckpt_dir.is_dir():
        for d in ckpt_dir.iterdir():
            if d.name.startswith("step_") and (d / MARKER).is_file():
                try:
                    found.append((int(d.name[5:]), d))
                except ValueError:
                    continue
    return sorted(found)


def hash_model_dir(folder: Path) -> str:
    """sha256 over the weight files of a saved model, in name order."""
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.suffix in (".safetensors", ".bin") and f.is_file():
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def write_marker(path: Path, payload: dict[str, Any]) -> None:
    """Write a marker atomically and durably (tmp + fsync + rename + fsync of the folder)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as fh:
        json.dump(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _heartbeat(path: Path, stop: threading.Event) -> None:
    while not stop.is_set():
        path.touch()
        stop.wait(1.0)


@contextlib.contextmanager
def _op_build_guard() -> Iterator[None]:
    """Load DeepSpeed's CPU communication op under a lock that dies with its holder.

    torch builds and loads a JIT op under a *baton*: a ``lock`` file in the op's build
    folder, deleted when the load ends. A trainer killed while holding it (a cancel, a
    kill -9 of its job) leaves the file behind, and every later trainer on the machine
    then waits for it forever. Our trainers load the op while holding an ``flock`` (which
    the kernel releases when its holder dies), so a baton found under the flock was left by
    a dead trainer and is removed.
    """
    import fcntl

    from torch.utils.cpp_extension import get_default_build_root

    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".annealplan-op-build.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        for baton in (*root.glob(f"{SHM_OP}/lock"), *root.glob(f"*/{SHM_OP}/lock")):
            print(f"removing a stale build lock left by a killed trainer: {baton}", flush=True)
            baton.unlink(missing_ok=True)
        yield


def _preload_comm_op() -> None:
    """On CPU, load DeepSpeed's shared-memory communication op before DeepSpeed does.

    DeepSpeed caches a loaded op per process, so its own load during
    ``init_distributed`` returns this one without touching the build folder again.
    """
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() != "cpu":
        return
    from deepspeed.comm.torch import build_shm_op

    with _op_build_guard():
        build_shm_op()


def _fenced(plan: dict[str, Any]) -> bool:
    """True when our attempt is no longer the job's current one."""
    if not plan.get("journal"):
        return False
    from executors.journal import Journal

    journal = Journal(plan["journal"])
    try:
        return not journal.token_is_current(plan["job_id"], plan["attempt_token"])
    finally:
        journal.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plan", required=True, type=Path)
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None)
    args = parser.parse_args(argv)
    plan = json.loads(args.plan.read_text())
    stop = threading.Event()
    # Beat from the start: importing DeepSpeed and building its CPU communication op can
    # take minutes on a busy machine, and that is not a stall. (The launcher sets RANK.)
    if int(os.environ.get("RANK", "0")) == 0:
        threading.Thread(
            target=_heartbeat, args=(Path(plan["heartbeat"]), stop), daemon=True
        ).start()

    import deepspeed
    import numpy as np
    import torch
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM

    _preload_comm_op()
    deepspeed.init_distributed(dist_backend=plan.get("dist_backend"))
    rank = dist.get_rank()
    world = dist.get_world_size()
    seed = int(plan["seed"])
    torch.manual_seed(seed)
    np.random.seed(seed)

    job_dir = Path(plan["job_dir"])
    ckpt_dir = Path(plan["ckpt_dir"])
    final_dir = Path(plan["final_dir"])

    data = np.load(plan["data"], mmap_mode="r")
    micro, accum = int(plan["micro_batch"]), int(plan["grad_accum"])
    per_step = micro * accum * world
    total_steps = int(plan["total_steps"])
    seq_len = int(data.shape[1])

    model = AutoModelForCausalLM.from_pretrained(plan["model"], dtype=torch.float32)
    model.config.use_cache = False
    n_params = sum(p.numel() for p in model.parameters())
    ds_config = plan["ds_config"]
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=model.parameters(), config=ds_config
    )
    engine.train()

    start_step = 0
    done = complete_checkpoints(ckpt_dir)
    if done:
        step, path = done[-1]
        engine.load_checkpoint(str(ckpt_dir), tag=path.name)
        start_step = step
        if rank == 0:
            print(f"resumed from complete checkpoint {path.name}", flush=True)

    def emit(payload: dict[str, Any]) -> None:
        if rank == 0:
            print(PROGRESS_PREFIX + json.dumps(payload), flush=True)

    peak = plan.get("peak_flops")
    t_first: float | None = None
    tokens_since_first = 0
    step = start_step
    t0 = time.perf_counter()
    for step in range(start_step, total_steps):
        losses = []
        for m in range(accum):
            base = ((step * accum + m) * world + rank) * micro
            batch = torch.from_numpy(np.asarray(data[base : base + micro], dtype=np.int64))
            batch = batch.to(engine.device)
            out = engine(input_ids=batch, labels=batch)
            engine.backward(out.loss)
            engine.step()
            losses.append(float(out.loss.detach()))
        now = time.perf_counter()
        if t_first is None:
            # The first step pays for kernel set-up and allocation: measure after it.
            t_first = now
            rate = per_step * seq_len / max(now - t0, 1e-9)
        else:
            tokens_since_first += per_step * seq_len
            rate = tokens_since_first / max(now - t_first, 1e-9)
        mfu = 6.0 * n_params * rate / (float(peak) * world) if peak else None
        emit(
            {
                "step": step + 1,
                "total_steps": total_steps,
                "tokens": (step + 1) * per_step * seq_len,
                "loss": sum(losses) / len(losses),
                "tokens_per_s": rate,
                "mfu": mfu,
                "lr": engine.get_lr()[0],
            }
        )
        done_steps = step + 1
        if done_steps % int(plan["checkpoint_every"]) == 0 and done_steps < total_steps:
            flag = torch.tensor([int(_fenced(plan)) if rank == 0 else 0])
            dist.broadcast(flag, 0)
            if int(flag.item()):
                print("attempt token is stale; another attempt owns this job", flush=True)
                return EXIT_FENCED
            tag = f"step_{done_steps}"
            engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state={"step": done_steps})
            dist.barrier()
            if rank == 0:
                write_marker(ckpt_dir / tag / MARKER, {"step": done_steps})
                # Keep only the newest complete checkpoint; older ones are now redundant.
                for old_step, old in complete_checkpoints(ckpt_dir):
                    if old_step < done_steps:
                        shutil.rmtree(old, ignore_errors=True)
            dist.barrier()

    train_seconds = time.perf_counter() - t0
    steps_run = total_steps - start_step
    tmp = final_dir.with_name(final_dir.name + ".tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    dist.barrier()
    if int(ds_config.get("zero_optimization", {}).get("stage", 0)) == 3:
        engine.save_16bit_model(str(tmp))
        if rank == 0:
            engine.module.config.save_pretrained(tmp)
    elif rank == 0:
        engine.module.save_pretrained(tmp, safe_serialization=True)
    if rank == 0:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(plan["tokenizer"]).save_pretrained(tmp)
        state = {
            "params": n_params,
            "steps": total_steps,
            "steps_this_run": steps_run,
            "resumed_from": start_step,
            "training_tokens": total_steps * per_step * seq_len,
            "tokens_per_s": (
                tokens_since_first / (time.perf_counter() - t_first)
                if t_first and tokens_since_first
                else (steps_run * per_step * seq_len / train_seconds if steps_run else None)
            ),
            "train_seconds": train_seconds,
            "world_size": world,
            "checkpoint_hash": hash_model_dir(tmp),
        }
        state["mfu"] = (
            6.0 * n_params * state["tokens_per_s"] / (float(peak) * world)
            if peak and state["tokens_per_s"]
            else None
        )
        (tmp / "train_state.json").write_text(json.dumps(state))
        write_marker(tmp / MARKER, {"steps": total_steps})
        shutil.rmtree(final_dir, ignore_errors=True)
        os.replace(tmp, final_dir)
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # the final model supersedes them
    dist.barrier()
    stop.set()
    del job_dir
    return 0


if __name__ == "__main__":
    sys.exit(main())
