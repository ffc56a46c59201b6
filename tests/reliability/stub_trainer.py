"""A stand-in trainer for fault injection, run through ``ANNEALPLAN_EXECUTOR_TRAINER``.

It keeps the real trainer's contract (plan file, ``@@progress`` lines, heartbeat file,
fencing by attempt token, ``step_N`` checkpoints with a ``COMPLETE`` marker written last, a
``final`` folder with ``train_state.json``) and uses the real helpers for the parts under
test (the typed ``TrainPlan`` and ``TrainState``, ``complete_checkpoints``, ``write_marker``,
``_fenced``, ``record_train_seconds``). Unlike DeepSpeed it writes
each checkpoint shard by shard, slowly, so a test can kill it between two shard writes.

It appends what it sees to ``<job_dir>/trace.txt``, one line per event:

- ``start PID TOKEN8 FROM_STEP``: an attempt began, resuming after step FROM_STEP;
- ``overlap PID OTHER``: another live trainer of this job was found (never allowed);
- ``partial STEP``: the checkpoint chosen for resuming had a missing or short shard;
- ``ckpt STEP``: a checkpoint became complete; ``final STEPS``: training finished.

Knobs (environment): ``STUB_STEP_S`` seconds per step (0.02), ``STUB_SHARD_S`` seconds
between shard writes (0.05), ``STUB_SHARDS`` shards per checkpoint (4),
``STUB_FULL_DISK_AT`` a step whose checkpoint hits ENOSPC halfway (0: never),
``STUB_FINAL_FROM`` a model folder copied as the final model (default: stub weights that
only a job without evaluation tasks can use).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

from executors.anneal import (
    EXIT_FENCED,
    MARKER,
    PROGRESS_PREFIX,
    _fenced,
    complete_checkpoints,
    write_marker,
)
from executors.stages.context import JobFiles
from executors.stages.records import TrainPlan, TrainState, record_train_seconds

SHARD_BYTES = 4096


def _trace(job_dir: Path, line: str) -> None:
    with (job_dir / "trace.txt").open("a") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not a trainer
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--plan", required=True)
    plan = TrainPlan.read(Path(p.parse_args().plan))
    job_dir = plan.job_dir
    ckpt_dir = plan.ckpt_dir
    final_dir = plan.final_dir
    total = plan.total_steps
    every = plan.checkpoint_every
    step_s = float(os.environ.get("STUB_STEP_S", "0.02"))
    shard_s = float(os.environ.get("STUB_SHARD_S", "0.05"))
    shards = int(os.environ.get("STUB_SHARDS", "4"))
    full_disk_at = int(os.environ.get("STUB_FULL_DISK_AT", "0"))
    final_from = os.environ.get("STUB_FINAL_FROM", "")
    me = os.getpid()

    alive_dir = job_dir / "trainers"
    alive_dir.mkdir(exist_ok=True)
    (alive_dir / str(me)).touch()
    for other in alive_dir.iterdir():
        pid = int(other.name)
        if pid != me and _alive(pid):
            _trace(job_dir, f"overlap {me} {pid}")
        elif pid != me:
            other.unlink(missing_ok=True)

    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            plan.heartbeat.touch()
            stop.wait(0.5)

    threading.Thread(target=beat, daemon=True).start()

    start = 0
    done = complete_checkpoints(ckpt_dir)
    if done:
        start, path = done[-1]
        for i in range(shards):
            shard = path / f"shard_{i}.bin"
            if not shard.is_file() or shard.stat().st_size != SHARD_BYTES:
                _trace(job_dir, f"partial {start}")
                return 1
    _trace(job_dir, f"start {me} {plan.attempt_token[:8]} {start}")
    started = time.perf_counter()
    ledger = JobFiles(job_dir).train_seconds
    for step in range(start, total):
        time.sleep(step_s)
        record_train_seconds(ledger, plan.attempt_token, time.perf_counter() - started)
        done_steps = step + 1
        payload = {"step": done_steps, "total_steps": total, "tokens": done_steps, "loss": 1.0}
        print(PROGRESS_PREFIX + json.dumps(payload), flush=True)
        if done_steps % every == 0 and done_steps < total:
            if _fenced(plan):
                print("attempt token is stale", flush=True)
                return EXIT_FENCED
            tag = ckpt_dir / f"step_{done_steps}"
            tag.mkdir(parents=True, exist_ok=True)
            for i in range(shards):
                if done_steps == full_disk_at and i == shards // 2:
                    raise OSError(errno.ENOSPC, "No space left on device (injected)")
                with (tag / f"shard_{i}.bin").open("wb") as fh:
                    fh.write(bytes([done_steps % 256]) * (SHARD_BYTES // 2))
                    fh.flush()
                    time.sleep(shard_s)  # a kill here leaves a short shard
                    fh.write(bytes([done_steps % 256]) * (SHARD_BYTES - SHARD_BYTES // 2))
                time.sleep(shard_s)
            write_marker(tag / MARKER, {"step": done_steps})
            _trace(job_dir, f"ckpt {done_steps}")
            for old_step, old in complete_checkpoints(ckpt_dir):
                if old_step < done_steps:
                    shutil.rmtree(old, ignore_errors=True)
    tmp = final_dir.with_name(final_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if final_from:
        # A real (tiny) model, so the worker's lm-eval stage has something to load.
        shutil.copytree(final_from, tmp)
    else:
        tmp.mkdir(parents=True)
        (tmp / "model.safetensors").write_bytes(b"stub-weights-" + str(total).encode())
    state = TrainState(
        params=1000,
        steps=total,
        steps_this_run=total - start,
        resumed_from=start,
        training_tokens=total * 8,
        tokens_per_s=None,
        train_seconds=time.perf_counter() - started,
        world_size=1,
        checkpoint_hash="stub-" + str(total),
    )
    state.write(tmp / "train_state.json")
    write_marker(tmp / MARKER, {"steps": total})
    shutil.rmtree(final_dir, ignore_errors=True)
    os.replace(tmp, final_dir)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    _trace(job_dir, f"final {total}")
    (alive_dir / str(me)).unlink(missing_ok=True)
    stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
