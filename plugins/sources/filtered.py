"""The ``filtered`` kind: a pool of documents scored by a quality classifier, the best kept.

The classifier is either a local transformers sequence-classification model (``classifier``)
or a light classifier trained here from labelled examples (``labelled``: character n-grams
hashed into a scikit-learn logistic regression). A document is kept when its probability of
being good is at least ``threshold``.

Materialisation streams the pool in a seeded order, scoring documents until the kept ones
hold the requested tokens: the scan costs about tokens / keep(θ), the ``filtering`` cost
model. Documents are taken in the seeded order among those above the threshold, not best
first, so every budget sees the same filtered distribution (best-first would make small
budgets look better than large ones and bend the scaling law). The cap is what the pool
holds above the threshold.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from plugins.contract import CostChoice, CurationCost, Materialized, PluginConfig, Tokenizer
from plugins.costs.base import PricedConfig
from plugins.errors import PluginError, executor_extra
from plugins.hookspecs import hookimpl
from plugins.sources.documents import StrList, TextSplit, expand, read_documents, seeded_order
from plugins.sources.files import FilesKind, PoolConfig, estimate_tokens
from plugins.sources.packing import count_tokens, encode, pack_documents, write_shards
from plugins.units import Unit

# A hashed n-gram logistic regression does a few dozen multiply-adds per token; this rough
# figure keeps its cost model nonzero. Set scan_flops_per_token to a measured value if known.
LIGHT_FLOPS_PER_TOKEN = 100.0


class FilteredConfig(PoolConfig, PricedConfig):
    """Configuration of the ``filtered`` kind."""

    path_fields = ("pool", "classifier", "labelled")

    pool: StrList = Field(min_length=1)
    """The documents to filter: files or globs (JSONL, Parquet or text)."""
    split: TextSplit = "file"
    """Plain-text pool files: one document per file, paragraph or line."""
    classifier: str | None = None
    """A local transformers sequence-classification model folder (with its tokenizer)."""
    labelled: StrList | None = None
    """Or: labelled examples (JSONL/Parquet with text_field and label_field) to train a light
    classifier (hashed character n-grams + logistic regression)."""
    label_field: str = "label"
    """The label's field in the labelled examples."""
    positive_label: int | str = 1
    """The label (labelled) or class index (classifier) that means good."""
    threshold: float = Field(default=0.5, ge=0, lt=1)
    """Keep documents whose probability of being good is at least this."""
    batch_size: int = Field(default=16, gt=0)
    """Documents scored per batch."""
    max_length: int = Field(default=512, gt=0)
    """A transformers classifier reads at most this many tokens per document."""
    device: str = "auto"
    """torch device for a transformers classifier: auto, cpu, cuda…"""
    scan_flops_per_token: float | None = Field(default=None, gt=0)
    """FLOPs to score one pool token; None: 2·N_classifier, or a small figure for the light
    classifier."""
    keep_rate: float | None = Field(default=None, gt=0, le=1)
    """The cost model's keep rate at the threshold; None: the curve (1 − θ)^sharpness."""
    sharpness: float = Field(default=1.0, ge=0)
    """The keep-rate curve's steepness (cost model only)."""
    cost_unit: Unit = Unit.FLOPS
    """The unit the cost is stated in: flops, gpu_hours or usd."""
    flops_per_gpu_hour: float | None = Field(default=None, gt=0)
    """For gpu_hours/usd (default: planner.units.Rates)."""
    usd_per_gpu_hour: float | None = Field(default=None, gt=0)
    """For usd (default: planner.units.Rates)."""

    @model_validator(mode="after")
    def _one_classifier(self) -> FilteredConfig:
        if (self.classifier is None) == (self.labelled is None):
            raise ValueError(
                "set exactly one of classifier (a model folder) or labelled (examples)"
            )
        return self


def read_labelled(
    patterns: Sequence[str], text_field: str, label_field: str
) -> tuple[list[str], list[Any]]:
    """Texts and labels from JSONL/JSON or Parquet files."""
    texts: list[str] = []
    labels: list[Any] = []
    for path in expand(patterns):
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            missing = {text_field, label_field} - set(table.column_names)
            if missing:
                raise PluginError(
                    f"{path} lacks column(s) {', '.join(sorted(missing))}; set text_field/label_field"
                )
            rows = zip(
                table.column(text_field).to_pylist(),
                table.column(label_field).to_pylist(),
                strict=True,
            )
        else:
            rows = []
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise PluginError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
                if text_field not in rec or label_field not in rec:
                    raise PluginError(
                        f"{path}:{lineno}: needs fields {text_field!r} and {label_field!r}"
                    )
                rows.append((rec[text_field], rec[label_field]))
        for text, label in rows:
            if isinstance(text, str):
                texts.append(text)
                labels.append(label)
    return texts, labels


class _LightScorer:
    """Hashed character n-grams + logistic regression, trained from labelled examples."""

    def __init__(self, texts: list[str], labels: list[Any], positive: Any) -> None:
        with executor_extra("the filtered kind's light classifier"):
            from sklearn.feature_extraction.text import HashingVectorizer
            from sklearn.linear_model import LogisticRegression

        y = np.array([str(lab) == str(positive) for lab in labels], dtype=int)
        if len(set(y.tolist())) < 2:
            raise PluginError(
                f"the labelled examples need both good (label {positive!r}) and other labels; "
                f"found {int(y.sum())} good of {len(y)}"
            )
        self.vectorizer = HashingVectorizer(
            analyzer="char_wb", ngram_range=(3, 5), n_features=2**18, alternate_sign=False
        )
        self.model = LogisticRegression(C=4.0, max_iter=2000, random_state=0)
        self.model.fit(self.vectorizer.transform(texts), y)
        self.flops_per_token = LIGHT_FLOPS_PER_TOKEN
        self.n_examples = len(texts)

    def score(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """P(good) per text, and the classifier tokens processed (0: not a token model)."""
        return self.model.predict_proba(self.vectorizer.transform(texts))[:, 1], 0


class _ModelScorer:
    """A local transformers sequence-classification model."""

    def __init__(
        self, *, classifier: str, positive_label: int | str, max_length: int, device: str, **_: Any
    ) -> None:
        with executor_extra("the filtered kind's classifier"):
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(classifier)
        if not (path / "config.json").exists():
            raise PluginError(
                f"classifier {classifier!r} is not a local model folder (no config.json); "
                "point classifier at a save_pretrained folder"
            )
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.torch, self.device, self.max_length = torch, device, max_length
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(str(path)).to(device)
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.eval()
        labels = self.model.config.num_labels
        self.index = int(positive_label)
        if not 0 <= self.index < labels:
            raise PluginError(f"positive_label {self.index} is not a class of {path} ({labels})")
        n_params = sum(p.numel() for p in self.model.parameters())
        self.flops_per_token = 2.0 * n_params

    def score(self, texts: list[str]) -> tuple[np.ndarray, int]:
        torch = self.torch
        enc = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )
        processed = int(enc["attention_mask"].sum())
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.no_grad():
            logits = self.model(**enc).logits.float()
        return torch.softmax(logits, dim=-1)[:, self.index].cpu().numpy(), processed


_SCORER_FIELDS = {
    "classifier",
    "labelled",
    "text_field",
    "label_field",
    "positive_label",
    "max_length",
    "device",
}


@lru_cache(maxsize=4)
def _scorer(key: str) -> _LightScorer | _ModelScorer:
    # Keyed by the classifier part of the config (plus file stamps): cap_tokens and
    # materialize, several thresholds or several budgets in one job share one classifier.
    fields = json.loads(key)["fields"]
    if fields["classifier"] is not None:
        return _ModelScorer(**fields)
    texts, labels = read_labelled(fields["labelled"], fields["text_field"], fields["label_field"])
    return _LightScorer(texts, labels, fields["positive_label"])


def get_scorer(config: FilteredConfig) -> _LightScorer | _ModelScorer:
    """The (cached) classifier for this configuration."""
    if config.labelled is not None:
        stamp = [(str(p), p.stat().st_mtime_ns) for p in expand(config.labelled)]
    else:
        stamp = []
    fields = config.model_dump(mode="json", include=_SCORER_FIELDS)
    return _scorer(json.dumps({"fields": fields, "stamp": stamp}, sort_keys=True))


class FilteredKind(FilesKind):
    """Documents from a local pool kept by a quality classifier."""

    name = "filtered"
    description = (
        "a local pool scored by a quality classifier (transformers model, or a light one "
        "trained from labelled examples); keeps documents above a threshold"
    )
    Config = FilteredConfig

    def documents(self, config: Any) -> list[str]:
        assert isinstance(config, FilteredConfig)
        return read_documents(
            config.pool,
            text_field=config.text_field,
            split=config.split,
            min_chars=config.min_chars,
            dedup=config.dedup,
        )

    def _what(self, config: Any) -> str:
        return f"the filtered source over {', '.join(config.pool)} at threshold {config.threshold}"

    def scores(self, config: FilteredConfig) -> np.ndarray:
        """P(good) for every pool document, in pool order."""
        scorer = get_scorer(config)
        docs = self.documents(config)
        out = [
            scorer.score(docs[i : i + config.batch_size])[0]
            for i in range(0, len(docs), config.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros(0)

    def _flops_per_token(self, config: FilteredConfig) -> float:
        if config.scan_flops_per_token:
            return float(config.scan_flops_per_token)
        if config.classifier is None:
            return LIGHT_FLOPS_PER_TOKEN
        with executor_extra("counting the filtered kind's classifier parameters"):
            import torch
            from transformers import AutoConfig, AutoModelForSequenceClassification

        cfg = AutoConfig.from_pretrained(config.classifier)
        with torch.device("meta"):
            model = AutoModelForSequenceClassification.from_config(cfg)
        return 2.0 * sum(p.numel() for p in model.parameters())

    def default_cost(self, config: PluginConfig) -> CostChoice | None:
        assert isinstance(config, FilteredConfig)
        return CostChoice(
            "filtering",
            {
                "scan_cost_per_token": self._flops_per_token(config),
                "scan_unit": "flops",
                "threshold": config.threshold,
                "keep_rate": config.keep_rate,
                "sharpness": config.sharpness,
                "unit": config.cost_unit.value,
                # Rates only when the config sets them: the planner fills in the project's.
                **config.explicit_rates(),
            },
        )

    def cap_tokens(self, config: PluginConfig, tokenizer: Tokenizer | None = None) -> float | None:
        """The tokens of the pool documents scoring at least the threshold (scores the pool)."""
        assert isinstance(config, FilteredConfig)
        docs = self.documents(config)
        kept = [d for d, s in zip(docs, self.scores(config), strict=True) if s >= config.threshold]
        if tokenizer is None:
            return float(estimate_tokens(kept, config.chars_per_token))
        return float(count_tokens(tokenizer, kept))

    def materialize(
        self, config: PluginConfig, tokens: int, dest: Path, seed: int, tokenizer: Tokenizer
    ) -> Materialized:
        assert isinstance(config, FilteredConfig)
        start = time.perf_counter()
        docs = self.documents(config)
        scorer = get_scorer(config)
        order = seeded_order(len(docs), seed)
        state = {"scored": 0, "kept": 0, "scanned_tokens": 0, "kept_tokens": 0, "cls_tokens": 0}

        def kept_docs() -> Iterator[str]:
            for i in range(0, len(order), config.batch_size):
                batch = [docs[j] for j in order[i : i + config.batch_size]]
                probs, processed = scorer.score(batch)
                lengths = [len(ids) + 1 for ids in encode(tokenizer, batch)]
                state["scored"] += len(batch)
                state["scanned_tokens"] += sum(lengths)
                state["cls_tokens"] += processed
                for text, p, n in zip(batch, probs, lengths, strict=True):
                    if p >= config.threshold:
                        state["kept"] += 1
                        state["kept_tokens"] += n
                        yield text

        packed = pack_documents(
            kept_docs(),
            tokens=tokens,
            tokenizer=tokenizer,
            what=self._what(config),
            hint="lower the threshold or add documents to the pool",
        )
        # A transformers classifier's real work is the tokens it read (its own tokenizer,
        # truncated); the light one is charged per pool token.
        per_token = self._flops_per_token(config)
        basis = state["cls_tokens"] if state["cls_tokens"] else state["scanned_tokens"]
        flops = per_token * basis
        curation = CurationCost(
            cost=config.price_flops(flops),
            unit=config.cost_unit.value,
            documents_scored=state["scored"],
            seconds=time.perf_counter() - start,
            details={
                "flops": flops,
                "scan_flops_per_token": per_token,
                "tokens_scanned": state["scanned_tokens"],
                "classifier_tokens": state["cls_tokens"],
                "documents_kept": state["kept"],
                "tokens_kept": state["kept_tokens"],
                "keep_rate": state["kept_tokens"] / max(state["scanned_tokens"], 1),
                "threshold": config.threshold,
                "classifier": config.classifier or "light (hashed n-grams + logistic regression)",
            },
        )
        return write_shards(
            packed.ids,
            dest,
            documents_used=packed.documents_used,
            curation=curation,
            kind=self.name,
            seed=seed,
            tokenizer=tokenizer,
            config=config.model_dump(mode="json"),
            extra={"pool_documents": len(docs)},
        )


@hookimpl
def register_source_kinds(register: Callable[[Any], None]) -> None:
    register(FilteredKind())
