"""Write the demo's source files and describe its sources for the real plugin kinds.

``prepare_data(cache_dir)`` writes deterministic JSONL files (a few MB in all) under
``<cache_dir>/demo-data`` and skips the work when a completion marker with the same key is
there. ``source_specs(cache_dir)`` returns, per source, the kind and the configuration the
built-in kinds (``files``, ``licensed``, ``synthetic``, ``filtered``) validate.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from examples.domain import kb as kbm

DATA_VERSION = 6
MARKER = "COMPLETE"

# How many documents each file holds (enough that no sweep budget runs out).
N_GENERAL = 8000
N_WEB = 9000
TEXTBOOK_EDITIONS = 12
N_POOL = 16000
N_LABELLED = 800

# Licensed terms: a price per token and a hard cap below what the files hold.
TEXTBOOK_USD_PER_TOKEN = 2e-4
# The demo's rule (README): a licensed token costs this many times the compute of training
# the demo's model on one token, so prices compare in one currency at any model size.
TEXTBOOK_COMPUTE_MULTIPLE = 10.0
TEXTBOOK_FIXED_FEE_USD = 0.0
TEXTBOOK_MAX_TOKENS = 40_000


@dataclass(frozen=True, slots=True)
class DemoData:
    """Paths of the files ``prepare_data`` wrote."""

    root: Path
    general: Path
    web: Path
    textbook: Path
    seeds: Path
    pool: Path
    labels: Path
    counts: dict[str, int] = field(default_factory=dict)


def _key(seed: int) -> str:
    blob = json.dumps(
        [DATA_VERSION, seed, N_GENERAL, N_WEB, TEXTBOOK_EDITIONS, N_POOL, N_LABELLED]
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _paths(root: Path) -> dict[str, Path]:
    return {
        "general": root / "general.jsonl",
        "web": root / "web.jsonl",
        "textbook": root / "textbook.jsonl",
        "seeds": root / "seeds.jsonl",
        "pool": root / "pool.jsonl",
        "labels": root / "labels.jsonl",
    }


def prepare_data(cache_dir: Path, *, seed: int = kbm.DEFAULT_SEED) -> DemoData:
    """Write the source files once (deterministic for a seed) and return their paths.

    Files (JSONL, field ``text``):

    * ``general.jsonl``: everyday stories and facts (the replay source, ``files``).
    * ``web.jsonl``: forum posts, a few with drug mentions (``files``).
    * ``textbook.jsonl``: monographs and worked questions (``licensed``).
    * ``seeds.jsonl``: one fact card per drug (``synthetic`` seeds).
    * ``pool.jsonl``: the mixed pool to filter (``filtered``); ``labels.jsonl``: a
      separate labelled sample (``text``, ``label``: 1 clean domain text, 0 otherwise).

    Args:
        cache_dir: the cache folder; files go to ``<cache_dir>/demo-data``.
        seed: the knowledge base and text seed.

    Returns:
        The paths and document counts.
    """
    root = Path(cache_dir) / "demo-data"
    paths = _paths(root)
    key = _key(seed)
    marker = root / MARKER
    if not (marker.exists() and marker.read_text().strip() == key):
        tmp = root.with_name(root.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        kb = kbm.make_kb(seed)
        rng = random.Random(f"data:{seed}")
        tmp_paths = _paths(tmp)
        _write_jsonl(
            tmp_paths["general"], [{"text": kbm.general_document(rng)} for _ in range(N_GENERAL)]
        )
        _write_jsonl(tmp_paths["web"], [{"text": kbm.web_document(kb, rng)} for _ in range(N_WEB)])
        _write_jsonl(
            tmp_paths["textbook"],
            [{"text": t} for t in kbm.textbook_documents(kb, rng, editions=TEXTBOOK_EDITIONS)],
        )
        _write_jsonl(tmp_paths["seeds"], [{"text": kbm.seed_card(d)} for d in kb.drugs])
        pool = [kbm.pool_document(kb, rng) for _ in range(N_POOL)]
        _write_jsonl(tmp_paths["pool"], [{"text": t} for t, _ in pool])
        labelled = [kbm.pool_document(kb, rng) for _ in range(N_LABELLED)]
        _write_jsonl(tmp_paths["labels"], [{"text": t, "label": y} for t, y in labelled])
        (tmp / MARKER).write_text(key + "\n")
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    counts = {name: sum(1 for _ in p.open()) for name, p in paths.items()}
    return DemoData(root=root, counts=counts, **paths)


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One demo source: what to register with ``annealplan sources add``."""

    name: str
    kind: str
    config: dict[str, Any]
    description: str


def source_specs(
    cache_dir: Path,
    *,
    seed: int = kbm.DEFAULT_SEED,
    generator: Path | None = None,
    relative_to: Path | None = None,
    textbook_usd_per_token: float = TEXTBOOK_USD_PER_TOKEN,
) -> dict[str, SourceSpec]:
    """The demo's sources, configured for the built-in kinds.

    Args:
        cache_dir: the cache folder given to ``prepare_data`` (and the generator's home).
        seed: the data seed.
        generator: the synthetic generator's folder (default:
            ``<cache_dir>/generator-model``, see ``base_model.prepare_generator_model``).
        relative_to: write paths relative to this folder (an executor's root: job specs
            accept only paths under it); None writes absolute paths.
        textbook_usd_per_token: the licence's price (see :func:`licence_usd_per_token`
            for the demo's rule).

    Returns:
        ``{name: SourceSpec}`` for ``replay`` (files), ``web`` (files), ``textbook``
        (licensed), ``synthetic`` (synthetic) and ``filtered`` (filtered).
    """
    data = prepare_data(cache_dir, seed=seed)
    gen_path = Path(generator) if generator else Path(cache_dir) / "generator-model"

    def place(path: Path) -> str:
        if relative_to is None:
            return str(Path(path).resolve())
        return Path(path).resolve().relative_to(Path(relative_to).resolve()).as_posix()

    return {
        "replay": SourceSpec(
            "replay",
            "files",
            {"paths": [place(data.general)]},
            "general everyday text (the replay mixed into every anneal)",
        ),
        "web": SourceSpec(
            "web",
            "files",
            {"paths": [place(data.web)]},
            "free forum text: a few drug mentions, a quarter of the drugs, 15% wrong",
        ),
        "textbook": SourceSpec(
            "textbook",
            "licensed",
            _textbook_config(place(data.textbook), textbook_usd_per_token),
            "licensed monographs and worked questions: every drug, correct; priced, capped",
        ),
        "synthetic": SourceSpec(
            "synthetic",
            "synthetic",
            _synthetic_config(
                place(gen_path), place(data.seeds), place(Path(cache_dir) / "synthetic-batches")
            ),
            "notes written by a small generator from one fact card per drug",
        ),
        "filtered": SourceSpec(
            "filtered",
            "filtered",
            {"pool": [place(data.pool)], "labelled": [place(data.labels)], "threshold": 0.5},
            "a mixed pool filtered by a quality classifier trained on a labelled sample",
        ),
    }


def licence_usd_per_token(model_params: float, usd_per_flop: float) -> float:
    """The demo's licence price: ``TEXTBOOK_COMPUTE_MULTIPLE`` × the compute of training a
    model of ``model_params`` on one token (6·N FLOPs), at ``usd_per_flop``."""
    return TEXTBOOK_COMPUTE_MULTIPLE * 6.0 * float(model_params) * float(usd_per_flop)


def _textbook_config(path: str, usd_per_token: float) -> dict[str, Any]:
    """The licensed textbook: a price per token and a hard cap below what the file holds."""
    return {
        "paths": [path],
        "usd_per_token": usd_per_token,
        "fixed_fee_usd": TEXTBOOK_FIXED_FEE_USD,
        "max_tokens": TEXTBOOK_MAX_TOKENS,
    }


def _synthetic_config(generator: str, seeds: str, cache: str) -> dict[str, Any]:
    """The synthetic source: the small generator writes notes from the seed cards."""
    return {
        "generator": generator,
        "seeds": [seeds],
        "styles": list(kbm.SYNTHETIC_STYLES),
        "template": kbm.SYNTHETIC_TEMPLATE,
        "max_new_tokens": 72,
        "batch_size": 32,
        "temperature": 0.7,
        "top_p": 0.95,
        "device": "cpu",
        "dtype": "float32",
        # One cache for every budget: a budget's batches are a prefix of the larger
        # budgets' (batch b is a function of the seed and b), so a sweep generates the
        # largest budget once. Each run is still charged for all the tokens it uses.
        "cache_dir": cache,
    }
