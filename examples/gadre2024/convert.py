"""Convert the over-training study of Gadre et al. (2024) into annealplan's runs table.

Reads ``<repo>/../shared/data/overtraining-gadre2024`` (runs_flat.csv and
downstream_flat.csv; MIT licensed) in place — nothing is copied into the repository — and
writes one row per (run, metric): source = training data set, study = architecture (model
size), compute = 6·N·D FLOPs, params and tokens from the study, metric = each of the 8
validation losses and each of the 46 downstream accuracies. A downstream accuracy's row also
gives its evaluation size (``n_items``, the task's number of items) and its chance level
(``chance``, the task's random baseline), both from the study's eval_metadata.csv.

Usage: ``python examples/gadre2024/convert.py [OUT.csv] [--data DIR]``
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "overtraining-gadre2024"
COLUMNS = (
    "study",
    "source",
    "compute",
    "params",
    "tokens",
    "metric",
    "value",
    "run_id",
    "n_items",
    "chance",
)


def task_metadata(data_dir: Path) -> dict[str, tuple[str, str]]:
    """Per downstream task: (number of items, chance level as a fraction), as strings."""
    out = {}
    path = data_dir / "eval_metadata.csv"
    if not path.exists():
        return out
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            items, baseline = r.get("#datapoints", ""), r.get("Random baseline", "")
            chance = f"{float(baseline) / 100:g}" if baseline not in ("", None) else ""
            out[r["Eval Task"]] = (items or "", chance)
    return out


def convert(data_dir: Path) -> list[dict[str, str]]:
    """The runs table rows for the study in ``data_dir``."""
    runs = {}
    rows = []
    meta = task_metadata(data_dir)
    with open(data_dir / "runs_flat.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            runs[r["name"]] = r
            base = {
                "study": r["arch"],
                "source": r["dataset"],
                "compute": r["flops_6ND"],
                "params": r["params"],
                "tokens": r["tokens"],
                "run_id": r["name"],
            }
            for col, value in r.items():
                if col.startswith("loss_") and value not in ("", None):
                    rows.append({**base, "metric": col, "value": value})
    with open(data_dir / "downstream_flat.csv", newline="") as fh:
        for d in csv.DictReader(fh):
            r = runs.get(d["name"])
            if r is None or d["value"] in ("", None):
                continue
            rows.append(
                {
                    "study": r["arch"],
                    "source": r["dataset"],
                    "compute": r["flops_6ND"],
                    "params": r["params"],
                    "tokens": r["tokens"],
                    "run_id": r["name"],
                    "metric": d["task"],
                    "value": d["value"],
                    "n_items": meta.get(d["task"], ("", ""))[0],
                    "chance": meta.get(d["task"], ("", ""))[1],
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default="gadre2024_runs.csv", help="runs table to write")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the study's folder")
    args = ap.parse_args(argv)
    if not (args.data / "runs_flat.csv").exists():
        print(f"error: {args.data} has no runs_flat.csv; pass --data DIR", file=sys.stderr)
        return 2
    rows = convert(args.data)
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
