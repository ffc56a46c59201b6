"""Stage 1: materialise the domain tokens (one source, or each source of a mixture) and the
replay tokens through the plugins, and pack them together.

Writes ``data/train.npy`` (``[sequences, seq_len]`` int32, rows shuffled with the job's
seed) and ``data/manifest.json``. Both are made in ``data.tmp`` and the folder is renamed
when complete, so a readable manifest means the stage is done.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from executors.protocol import AnnealJobSpec, CurationSpent
from executors.stages.context import JobFailed, WorkerConfig
from executors.stages.records import Manifest, RecordUnreadable

if TYPE_CHECKING:
    import numpy as np

    from plugins.contract import Materialized, SourceKind


@dataclass(frozen=True, slots=True)
class _Part:
    """One part of the packed data: the domain source, one source of a mixture, or the
    replay data.

    Attributes:
        role: ``source`` (domain data) or ``replay``, as its curation is reported.
        field: the spec's field it comes from (``source``, ``mixture.1``, ``replay``), which
            its errors name.
        folder: its folder under the work folder while it is materialised.
        name: a mixture source's name (empty otherwise).
    """

    role: str
    field: str
    folder: str
    kind: str
    config: Mapping[str, Any]
    tokens: int
    name: str = ""


def _parts(spec: AnnealJobSpec) -> list[_Part]:
    parts = []
    if spec.source is not None:
        src = spec.source
        parts.append(_Part("source", "source", "source", src.kind, src.config, src.tokens))
    for i, mix in enumerate(spec.mixture or ()):
        parts.append(
            _Part(
                "source", f"mixture.{i}", f"source-{i}", mix.kind, mix.config, mix.tokens, mix.name
            )
        )
    if spec.replay is not None and spec.replay_tokens() > 0:
        replay = spec.replay.source
        parts.append(
            _Part("replay", "replay", "replay", replay.kind, replay.config, spec.replay_tokens())
        )
    return parts


def materialize(
    spec: AnnealJobSpec, cfg: WorkerConfig, tokenizer: Any, kinds: Mapping[str, SourceKind]
) -> Manifest:
    """Materialise and pack the job's mixture, or read the manifest of a finished run.

    Args:
        spec: the job.
        cfg: the attempt's configuration (its job folder).
        tokenizer: the job's tokenizer (a Hugging Face tokenizer).
        kinds: the installed source kinds, by name.

    Returns:
        The manifest of the packed data.

    Raises:
        JobFailed: an unknown kind, an invalid source config, or a plugin that failed.
    """
    import numpy as np  # not at import: the daemon imports the stages, and starts fast

    files = cfg.files
    if files.manifest.is_file():
        try:
            return Manifest.read(files.manifest)
        except RecordUnreadable as e:
            print(f"{e}; materialising the data again", flush=True)
    shutil.rmtree(files.data, ignore_errors=True)
    work = files.data_work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    seed, seq_len = spec.training.seed, spec.training.seq_len
    parts = _parts(spec)
    blocks, curation = [], []
    for part in parts:
        mat, seconds = _materialize_part(part, kinds, work, seed, tokenizer)
        blocks.append(_blocks(mat, seq_len))
        curation.append(_curation(part, mat, seconds))
    packed = np.concatenate(blocks) if blocks else np.zeros((0, seq_len), np.int32)
    packed = np.ascontiguousarray(packed[np.random.default_rng(seed).permutation(len(packed))])
    digest = hashlib.sha256(f"{packed.shape}".encode() + packed.tobytes()).hexdigest()
    np.save(work / files.train_data.name, packed)
    for part in parts:
        shutil.rmtree(work / part.folder, ignore_errors=True)
    manifest = Manifest(data_hash=digest, sequences=len(packed), seq_len=seq_len, curation=curation)
    manifest.write(work / files.manifest.name)
    os.replace(work, files.data)
    return manifest


def _materialize_part(
    part: _Part, kinds: Mapping[str, SourceKind], work: Path, seed: int, tokenizer: Any
) -> tuple[Materialized, float]:
    """One part through its kind's plugin; what it wrote and the seconds it took."""
    kind = kinds.get(part.kind)
    if kind is None:
        raise JobFailed(
            "unknown_source_kind",
            f"{part.field}: no installed plugin provides source kind {part.kind!r}; "
            f"installed: {', '.join(sorted(kinds)) or 'none'}",
        )
    try:
        config = kind.parse_config(part.config)
    except Exception as e:
        raise JobFailed("invalid_source_config", f"{part.field}.config: {e}") from None
    t0 = time.perf_counter()
    try:
        mat = kind.materialize(config, int(part.tokens), work / part.folder, seed, tokenizer)
    except Exception as e:
        # A plugin's error (missing files, too few tokens) will not fix itself on retry.
        raise JobFailed("materialize_failed", f"{part.field} ({part.kind}): {e}") from None
    return mat, time.perf_counter() - t0


def _blocks(mat: Materialized, seq_len: int) -> np.ndarray:
    """The part's tokens cut into whole sequences (``[n, seq_len]`` int32)."""
    import numpy as np

    ids = np.concatenate(
        [np.load(Path(mat.dest) / shard).astype(np.int32).ravel() for shard in mat.shards]
    )
    n = len(ids) // seq_len
    return ids[: n * seq_len].reshape(n, seq_len)


def _curation(part: _Part, mat: Materialized, seconds: float) -> CurationSpent:
    cur = mat.curation
    return CurationSpent(
        role=part.role,
        kind=part.kind,
        tokens=int(mat.tokens),
        cost=float(cur.cost),
        unit=str(cur.unit),
        seconds=float(cur.seconds or seconds),
        content_hash=mat.content_hash,
        details={
            "generator_tokens": cur.generator_tokens,
            "documents_scored": cur.documents_scored,
            "documents_used": mat.documents_used,
            **dict(cur.details),
            **({"mixture_source": part.name} if part.name else {}),
        },
    )
