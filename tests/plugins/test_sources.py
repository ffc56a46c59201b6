"""The files, hf-disk and licensed kinds: exact tokens, determinism, caps, clean failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from planner.errors import ConfigError, PluginError
from plugins.manager import load_registry
from plugins.sources.packing import PoolTooSmall, content_hash, load_tokens, read_manifest

REGISTRY = load_registry(entry_points=False)


def leftovers(folder: Path) -> list[str]:
    """Hidden partial folders that a failed materialisation must not leave behind."""
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def files_config(pool: Path, **extra):
    kind = REGISTRY.source_kind("files")
    raw = {"paths": [str(pool / "*.jsonl"), str(pool / "*.parquet"), str(pool / "*.txt")]}
    return kind, kind.parse_config({**raw, "split": "paragraph", **extra})


def test_files_reads_every_format_and_drops_exact_duplicates(pool):
    kind, config = files_config(pool)
    docs = kind.documents(config)
    assert len(docs) == 80  # 30 + 20 (+10 duplicates dropped) + 20 parquet + 10 paragraphs
    _, no_dedup = files_config(pool, dedup=False)
    assert len(kind.documents(no_dedup)) == 90


def test_files_materialises_exactly_and_deterministically(pool, tmp_path, tiny_tokenizer):
    kind, config = files_config(pool)
    a = kind.materialize(config, 1234, tmp_path / "a", 7, tiny_tokenizer)
    b = kind.materialize(config, 1234, tmp_path / "b", 7, tiny_tokenizer)
    c = kind.materialize(config, 1234, tmp_path / "c", 8, tiny_tokenizer)
    ids = load_tokens(a.dest)
    assert len(ids) == a.tokens == 1234
    assert a.content_hash == b.content_hash == content_hash(ids)
    for name in a.shards:
        assert np.array_equal(np.load(a.dest / name), np.load(b.dest / name))
    assert c.content_hash != a.content_hash  # another seed, another sample
    manifest = read_manifest(a.dest)
    assert manifest["tokens"] == 1234 and manifest["documents_used"] == a.documents_used
    assert manifest["eos_token_id"] == tiny_tokenizer.eos_token_id
    # Documents are joined with EOS: the first document's ids are followed by EOS.
    eos_positions = np.flatnonzero(ids == tiny_tokenizer.eos_token_id)
    assert len(eos_positions) in (a.documents_used - 1, a.documents_used)
    first = tiny_tokenizer.decode(ids[: eos_positions[0]].tolist())
    assert first in kind.documents(config)


def test_files_splits_into_shards(pool, tmp_path, tiny_tokenizer):
    from plugins.contract import CurationCost
    from plugins.sources.packing import pack_documents, write_shards

    kind, config = files_config(pool)
    packed = pack_documents(kind.documents(config), tokens=1000, tokenizer=tiny_tokenizer)
    done = write_shards(
        packed.ids,
        tmp_path / "s",
        documents_used=packed.documents_used,
        curation=CurationCost(),
        kind="files",
        seed=0,
        tokenizer=tiny_tokenizer,
        shard_tokens=300,
    )
    assert done.shards == tuple(f"shard-{i:05d}.npy" for i in range(4))
    assert [len(np.load(done.dest / s)) for s in done.shards] == [300, 300, 300, 100]
    assert done.content_hash == content_hash(packed.ids)


def test_files_cap_is_the_pool_and_too_much_says_so(pool, tmp_path, tiny_tokenizer):
    kind, config = files_config(pool)
    cap = int(kind.cap_tokens(config, tiny_tokenizer))
    assert kind.cap_tokens(config) == pytest.approx(cap, rel=0.6)  # estimate without tokenizer
    whole = kind.materialize(config, cap, tmp_path / "all", 0, tiny_tokenizer)
    assert whole.documents_used == 80
    with pytest.raises(PoolTooSmall, match=rf"holds only {cap:,} tokens") as e:
        kind.materialize(config, cap + 1, tmp_path / "more", 0, tiny_tokenizer)
    assert e.value.cap == cap
    assert not (tmp_path / "more").exists() and leftovers(tmp_path) == []


def test_a_failure_while_writing_leaves_nothing(pool, tmp_path, tiny_tokenizer, monkeypatch):
    kind, config = files_config(pool)
    import plugins.sources.packing as packing

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(packing.np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        kind.materialize(config, 100, tmp_path / "x", 0, tiny_tokenizer)
    assert not (tmp_path / "x").exists() and leftovers(tmp_path) == []


def test_rematerialising_replaces_only_a_materialised_folder(pool, tmp_path, tiny_tokenizer):
    kind, config = files_config(pool)
    first = kind.materialize(config, 100, tmp_path / "x", 0, tiny_tokenizer)
    again = kind.materialize(config, 200, tmp_path / "x", 0, tiny_tokenizer)
    assert read_manifest(again.dest)["tokens"] == 200 and first.dest == again.dest
    assert leftovers(tmp_path) == []
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(PluginError, match="is not a materialised source"):
        kind.materialize(config, 100, tmp_path / "mine", 0, tiny_tokenizer)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_missing_files_and_fields_are_clear(pool, tmp_path, tiny_tokenizer):
    kind = REGISTRY.source_kind("files")
    with pytest.raises(PluginError, match=r"no file matches '.*nowhere/\*\.jsonl'"):
        kind.cap_tokens(kind.parse_config({"paths": str(tmp_path / "nowhere/*.jsonl")}))
    config = kind.parse_config({"paths": str(pool / "a.jsonl"), "text_field": "body"})
    with pytest.raises(PluginError, match=r"has no field 'body' \(fields: text\); set text_field"):
        kind.materialize(config, 10, tmp_path / "x", 0, tiny_tokenizer)
    with pytest.raises(ConfigError, match=r"paths: Field required"):
        kind.parse_config({})


def test_hf_disk_reads_save_to_disk_and_parquet(tmp_path, tiny_tokenizer):
    import datasets

    from tests.helpers.tiny import documents

    docs = documents(40, seed=21)
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"content": docs[:30] + docs[:5]}),
            "test": datasets.Dataset.from_dict({"content": docs[30:]}),
        }
    )
    dd.save_to_disk(str(tmp_path / "ds"))
    dd["train"].to_parquet(str(tmp_path / "train.parquet"))
    kind = REGISTRY.source_kind("hf-disk")
    saved = kind.parse_config({"path": str(tmp_path / "ds"), "text_field": "content"})
    parquet = kind.parse_config({"path": str(tmp_path / "*.parquet"), "text_field": "content"})
    assert kind.documents(saved) == kind.documents(parquet) == docs[:30]
    a = kind.materialize(saved, 500, tmp_path / "a", 3, tiny_tokenizer)
    b = kind.materialize(parquet, 500, tmp_path / "b", 3, tiny_tokenizer)
    assert a.content_hash == b.content_hash and a.tokens == 500
    test_split = kind.parse_config(
        {"path": str(tmp_path / "ds"), "text_field": "content", "split": "test"}
    )
    assert kind.cap_tokens(test_split, tiny_tokenizer) < kind.cap_tokens(saved, tiny_tokenizer)
    with pytest.raises(PluginError, match=r"no split 'valid' \(splits: train, test\)"):
        kind.documents(kind.parse_config({"path": str(tmp_path / "ds"), "split": "valid"}))
    with pytest.raises(PluginError, match=r"does not exist"):
        kind.documents(kind.parse_config({"path": str(tmp_path / "nope")}))


def test_licensed_prices_tokens_and_enforces_its_cap(pool, tmp_path, tiny_tokenizer):
    kind = REGISTRY.source_kind("licensed")
    config = kind.parse_config(
        {
            "paths": str(pool / "a.jsonl"),
            "usd_per_token": 1e-4,
            "fixed_fee_usd": 50,
            "max_tokens": 800,
        }
    )
    assert kind.cap_tokens(config, tiny_tokenizer) == 800
    choice = kind.default_cost(config)
    model = REGISTRY.build_cost_model(choice.model, choice.params)
    done = kind.materialize(config, 600, tmp_path / "lic", 1, tiny_tokenizer)
    assert (
        done.curation.cost
        == pytest.approx(50 + 600 * 1e-4)
        == pytest.approx(float(model.cost(600)))
    )
    assert json.loads((done.dest / "manifest.json").read_text())["curation"]["unit"] == "usd"
    with pytest.raises(PoolTooSmall, match=r"holds only 800 tokens \(the licence's max_tokens\)"):
        kind.materialize(config, 801, tmp_path / "over", 1, tiny_tokenizer)
