"""Does the demo domain show real signal? Anneal on each source at a few budgets and look.

Usage (from the repository root)::

    .venv/bin/python -m examples.domain.signal_check [--cache .annealplan/cache]
        [--budgets 8000,20000,40000] [--replay 0.5] [--threads 2] [--json out.json]

For each source (web, textbook, synthetic, filtered) and budget it materialises the
source's tokens through the real plugin kind, mixes in replay text, anneals the base model
with a plain PyTorch loop (AdamW, LR linearly to zero), evaluates with lm-eval and prints
one row per run, plus a control anneal on replay text only. Timings are per run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Runnable as a file too: make the repository importable.
_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from examples.domain import anneal as an  # noqa: E402
from examples.domain import base_model as bm  # noqa: E402
from examples.domain import evaluation as ev  # noqa: E402
from examples.domain.data import source_specs  # noqa: E402

SOURCES = ("web", "textbook", "synthetic", "filtered")
COLUMNS = (
    ("domain_mc acc", f"{ev.DOMAIN_MC}/acc"),
    ("domain_mc p", f"{ev.DOMAIN_MC}/p_gold"),
    ("dose EM", f"{ev.DOMAIN_GEN}/exact_match"),
    ("general acc", f"{ev.GENERAL_MC}/acc"),
    ("general p", f"{ev.GENERAL_MC}/p_gold"),
)


def run_one(
    name: str,
    source_tokens: int,
    total_tokens: int,
    *,
    specs,
    kinds,
    tokenizer,
    base: Path,
    work: Path,
    tm,
    seed: int,
    lr: float,
) -> dict:
    """One anneal + evaluation; ``name`` None means the control (replay only)."""
    t0 = time.perf_counter()
    row: dict = {"source": name or "control", "source_tokens": source_tokens}
    src = None
    if name is not None:
        src = an.materialize(specs[name], source_tokens, work / "src", seed, tokenizer, kinds)
        row.update(curation_cost=src.curation_cost, curation_unit=src.curation_unit)
        row["materialize_s"] = round(src.seconds, 2)
    replay_tokens = total_tokens - source_tokens
    rep = an.materialize(specs["replay"], replay_tokens, work / "replay", seed, tokenizer, kinds)
    rows = an.mix_rows(src.ids if src else None, rep.ids, bm.SEQ_LEN)
    row["train_tokens"] = int(rows.numel())
    trained = an.anneal(base, rows, work / "model", lr=lr, seed=seed)
    row["final_loss"] = round(trained["final_loss"], 4)
    row["train_s"] = round(trained["train_seconds"], 2)
    t1 = time.perf_counter()
    row.update(ev.evaluate(work / "model", tm=tm))
    row["eval_s"] = round(time.perf_counter() - t1, 2)
    row["total_s"] = round(time.perf_counter() - t0, 2)
    return row


def format_table(rows: list[dict]) -> str:
    """A Markdown table of the runs."""
    head = ["source", "src tokens", *(c for c, _ in COLUMNS), "train s", "eval s", "total s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        vals = [r["source"], f"{r['source_tokens']:,}"]
        vals += [f"{r[k]:.3f}" if k in r else "-" for _, k in COLUMNS]
        vals += [f"{r.get('train_s', 0):.1f}", f"{r.get('eval_s', 0):.1f}", f"{r['total_s']:.1f}"]
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, default=Path(".annealplan/cache"))
    p.add_argument("--budgets", default="8000,20000,40000", help="source tokens per anneal")
    p.add_argument("--replay", type=float, default=0.5, help="replay share of each anneal")
    p.add_argument("--sources", default=",".join(SOURCES))
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=int(os.environ.get("DEMO_THREADS", "1")))
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args(argv)

    import torch
    from transformers import AutoTokenizer

    from plugins.sources.packing import PoolTooSmall

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    t_start = time.perf_counter()
    base = bm.prepare_base_model(args.cache)
    gen = bm.prepare_generator_model(args.cache)
    specs = source_specs(args.cache, generator=gen)
    t_prep = time.perf_counter() - t_start
    print(f"prepared base, generator and data in {t_prep:.1f} s", file=sys.stderr)
    kinds = an.source_kinds()
    tokenizer = AutoTokenizer.from_pretrained(base)
    tm = ev.task_manager()
    work = args.cache / "signal-check"
    budgets = [int(b) for b in args.budgets.split(",")]
    totals = {b: round(b / (1 - args.replay)) for b in budgets}
    common = dict(
        specs=specs,
        kinds=kinds,
        tokenizer=tokenizer,
        base=base,
        work=work,
        tm=tm,
        seed=args.seed,
        lr=args.lr,
    )
    rows: list[dict] = []
    t0 = time.perf_counter()
    row = {"source": "base", "source_tokens": 0, **ev.evaluate(base, tm=tm)}
    row["total_s"] = round(time.perf_counter() - t0, 2)
    rows.append(row)
    print(json.dumps(row), file=sys.stderr)
    mid = budgets[len(budgets) // 2]
    rows.append(run_one(None, 0, totals[mid], **common))
    print(json.dumps(rows[-1]), file=sys.stderr)
    for name in args.sources.split(","):
        if specs[name].kind not in kinds:
            print(f"skipping {name}: kind {specs[name].kind!r} not available", file=sys.stderr)
            continue
        for b in budgets:
            try:
                rows.append(run_one(name, b, totals[b], **common))
            except PoolTooSmall as e:
                # A budget above the source's cap is a fact about the source, not a crash.
                print(f"skipping {name} at {b}: {e}", file=sys.stderr)
                continue
            print(json.dumps(rows[-1]), file=sys.stderr)
    wall = time.perf_counter() - t_start
    print(format_table(rows))
    sweep = sum(r["total_s"] for r in rows[1:])
    print(
        f"\nsweep (control + anneals, each with lm-eval): {sweep:.1f} s; "
        f"whole script incl. preparation: {wall:.1f} s; threads={args.threads}"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
