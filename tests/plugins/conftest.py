"""Fixtures for the plugin tests: tiny local data, tokenizer and models (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.tiny import (  # noqa: F401  (session fixtures)
    documents,
    noise_docs,
    tiny_causal_lm,
    tiny_classifier,
    tiny_root,
    tiny_tokenizer,
    tiny_tokenizer_path,
    write_jsonl,
)


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    """A folder of documents: two JSONL files (with exact duplicates), Parquet, text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = documents(80, seed=5)
    root = tmp_path / "pool"
    write_jsonl(root / "a.jsonl", docs[:30])
    write_jsonl(root / "b.jsonl", docs[30:50] + docs[:10])  # 10 exact duplicates of a.jsonl
    pq.write_table(pa.table({"text": docs[50:70]}), root / "c.parquet")
    (root / "d.txt").write_text("\n\n".join(docs[70:80]))
    return root


@pytest.fixture
def quality_pool(tmp_path: Path) -> dict[str, Path]:
    """A pool of good and junk documents plus labelled examples for a light classifier."""
    good, bad = documents(60, seed=11), noise_docs(60, seed=12)
    root = tmp_path / "quality"
    write_jsonl(root / "pool.jsonl", good + bad)
    labelled = root / "labelled.jsonl"
    with labelled.open("w") as f:
        for t in documents(40, seed=13):
            f.write(json.dumps({"text": t, "label": 1}) + "\n")
        for t in noise_docs(40, seed=14):
            f.write(json.dumps({"text": t, "label": 0}) + "\n")
    return {"pool": root / "pool.jsonl", "labelled": labelled, "good": len(good), "bad": len(bad)}
