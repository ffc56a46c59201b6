"""Fixtures for the TUI tests: a real DuckDB store in tmp_path, the real plugin registry."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from planner.config import load_settings
from planner.store import open_store, read_runs_table
from planner.units import Rates

#: the annealing model's size in the synthetic runs
MODEL_PARAMS = 135e6
#: (ceiling, scale, exponent) of acc = ceiling − scale·(tokens/1e7)^−exponent per source
LAWS = {"pubmed": (0.55, 0.30, 0.35), "textbooks": (0.62, 0.25, 0.20)}
TOKENS = (2e7, 5e7, 1e8, 2e8, 5e8)


def write_runs(path: Path, seed: int = 0) -> Path:
    """A small synthetic runs table: two sources on five budgets and a control anneal,
    compute in GPU-hours of 6·N·D training."""
    rng = np.random.default_rng(seed)
    per_gpuh = Rates().flops_per_gpu_hour
    rows = []
    for source, (ceil, scale, alpha) in LAWS.items():
        for tokens in TOKENS:
            rows.append(
                {
                    "source": source,
                    "compute": 6 * MODEL_PARAMS * tokens / per_gpuh,
                    "metric": "domain_acc",
                    "value": ceil - scale * (tokens / 1e7) ** -alpha + rng.normal(0, 0.004),
                    "params": MODEL_PARAMS,
                    "tokens": tokens,
                    "seed": 0,
                    "compute_unit": "gpu_hours",
                }
            )
    for seed_ in range(3):
        rows.append(
            {
                "source": "control",
                "compute": 6 * MODEL_PARAMS * 2e8 / per_gpuh,
                "metric": "domain_acc",
                "value": 0.30 + rng.normal(0, 0.003),
                "params": MODEL_PARAMS,
                "tokens": 2e8,
                "seed": seed_,
                "compute_unit": "gpu_hours",
            }
        )
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def registry():
    from plugins.manager import load_registry

    return load_registry(entry_points=False)


@pytest.fixture
def settings(tmp_path):
    return load_settings(project_dir=tmp_path)


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "annealplan.duckdb")
    yield s
    s.close()


@pytest.fixture
def runs_store(store, tmp_path):
    """A store with the synthetic runs imported."""
    store.import_runs(read_runs_table(write_runs(tmp_path / "runs.csv")))
    return store


@pytest.fixture
def docs(tmp_path) -> Path:
    """A folder of JSONL documents for a ``files`` source."""
    folder = tmp_path / "docs"
    folder.mkdir()
    with (folder / "a.jsonl").open("w") as f:
        for i in range(40):
            f.write(f'{{"text": "Document {i} about clinical trials and patient dose."}}\n')
    return folder
