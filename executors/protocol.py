"""The executor's wire protocol: pydantic models for JSON over HTTP.

Everything that crosses the wire is validated here, and unknown fields are errors, never
ignored (``extra="forbid"``). The planner's dispatcher imports this module and nothing else
from ``executors``.

A job spec is validated strictly: a number is a JSON number (``"100"`` and ``true`` are not
tokens), a float is finite, a string is valid Unicode (no lone surrogates), and the free
JSON of a source's config and of ``ds_config_extra`` nests at most :data:`MAX_JSON_DEPTH`
levels, holding only JSON values. Everything a daemon accepts can be stored, hashed and
sent back.

Paths in a job are *relative* to the daemon's allow-listed root. This module rejects what is
wrong whatever the root (absolute paths, ``..``, NUL, backslashes, leading dashes); the daemon
then resolves each path against its root and rejects symlinks that escape it.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)

PROTOCOL_VERSION = "1"

#: A client-chosen job id: letters, digits, ``.``, ``_`` and ``-``; starts alphanumeric.
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
#: Names of source kinds and lm-eval tasks: no spaces, quotes or shell metacharacters.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

JobId = Annotated[str, StringConstraints(pattern=JOB_ID_PATTERN)]
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]

# ds_config keys that decide where files go or how processes launch: the executor owns them.
FORBIDDEN_DS_KEYS = frozenset(
    {
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "optimizer",
        "scheduler",
        "zero_optimization",
        "bf16",
        "fp16",
        "checkpoint",
        "tensorboard",
        "wandb",
        "csv_monitor",
        "comet",
        "flops_profiler",
        "aio",
        "nebula",
        "data_efficiency",
        "compile",
        "autotuning",
        "elasticity",
    }
)


#: how deep the free JSON of a job (a source's config, ``ds_config_extra``) may nest
MAX_JSON_DEPTH = 32


def check_text(value: str) -> str:
    """Refuse a string that is not valid Unicode (a lone surrogate such as ``"\\ud800"``,
    which JSON can spell but nothing can store or encode).

    Raises:
        ValueError: naming the first bad character.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"holds a lone surrogate (U+{ord(value[e.start]):04X} at character {e.start}); "
            "send valid Unicode"
        ) from None
    return value


def check_json_value(value: Any) -> Any:
    """Refuse free JSON that nests deeper than :data:`MAX_JSON_DEPTH`, or holds anything
    but JSON values: non-finite floats, lone surrogates, keys that are not strings.

    Raises:
        ValueError: naming where, as a dotted path inside the value.
    """
    pending: list[tuple[Any, str, int]] = [(value, "", 0)]
    while pending:
        item, where, depth = pending.pop()
        at = f"at {where[:120]}: " if where else ""
        if isinstance(item, dict | list | tuple) and depth >= MAX_JSON_DEPTH:
            raise ValueError(f"{at}nests deeper than {MAX_JSON_DEPTH} levels; flatten it")
        if isinstance(item, dict):
            for k, v in item.items():
                if not isinstance(k, str):
                    raise ValueError(f"{at}a key is not a string")
                try:
                    check_text(k)
                except ValueError as e:
                    raise ValueError(f"{at}a key {e}") from None
                pending.append((v, f"{where}.{k}" if where else k, depth + 1))
        elif isinstance(item, list | tuple):
            for i, v in enumerate(item):
                pending.append((v, f"{where}.{i}" if where else str(i), depth + 1))
        elif isinstance(item, str):
            try:
                check_text(item)
            except ValueError as e:
                raise ValueError(f"{at}{e}") from None
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError(f"{at}{item} is not a JSON number (send a finite number)")
        elif item is not None and not isinstance(item, bool | int):
            raise ValueError(f"{at}a {type(item).__name__} is not a JSON value")
    return value


def check_relative_path(value: str) -> str:
    """Reject paths that could leave an allow-listed root whatever the root is.

    Args:
        value: a path as sent by a client.

    Returns:
        The path, normalised to forward slashes without ``.`` parts.

    Raises:
        ValueError: absolute, contains ``..``, NUL, a backslash, a control character, a lone
            surrogate, starts with ``-`` or ``~``, or is empty.
    """
    if not value or len(value) > 1024:
        raise ValueError("must be a non-empty path of at most 1024 characters")
    check_text(value)
    if any(ord(c) < 32 or c == "\x7f" for c in value):
        raise ValueError("must not contain NUL or control characters")
    if "\\" in value:
        raise ValueError("must use forward slashes")
    if value.startswith(("/", "~", "-")):
        raise ValueError("must be relative to the executor's root (no leading /, ~ or -)")
    if "%" in value:
        raise ValueError("must not contain percent-encoded characters")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if not parts:
        raise ValueError("must name something under the executor's root")
    if any(p == ".." for p in parts):
        raise ValueError("must not contain '..'")
    return "/".join(parts)


RelPath = Annotated[str, AfterValidator(check_relative_path)]
#: a JSON object given by a client: at most :data:`MAX_JSON_DEPTH` deep, JSON values only
JSONObject = Annotated[dict[str, Any], AfterValidator(check_json_value)]
#: free text: valid Unicode
Text = Annotated[str, AfterValidator(check_text)]

JSONScalar = str | int | float | bool | None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Spec(_Model):
    """A part of a job spec: what a client sends, validated strictly (no coercion: a
    number must be a JSON number, a flag a JSON boolean; floats finite)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class SourceRef(_Spec):
    """A data source the executor materialises through its installed plugins."""

    kind: Name
    """The registered source kind (``files``, ``synthetic``…)."""
    config: JSONObject = Field(default_factory=dict)
    """The kind's configuration; the executor validates it with the kind's own model.
    Path-like values are relative to the executor's root."""


class SourceSpec(SourceRef):
    """The source a job anneals on, and how many of its tokens."""

    tokens: int = Field(gt=0, le=10**14)
    """Tokens of this source in the mixture."""


class MixturePart(SourceSpec):
    """One of the domain sources a mixed anneal trains on together, with its tokens."""

    name: Annotated[Text, StringConstraints(min_length=1, max_length=256)]
    """The source's name (the planner's): labels its curation; unique in the mixture."""


#: the most domain sources one mixed anneal may name
MAX_MIXTURE_PARTS = 64


class ReplaySpec(_Spec):
    """Replay data mixed in to keep general ability (Llama 3 anneals used ~70 %)."""

    source: SourceRef
    fraction: float = Field(default=0.7, ge=0.0, lt=1.0)
    """Share of replay tokens in the mixture (ignored by a control job)."""
    tokens: int | None = Field(default=None, gt=0, le=10**14)
    """Replay tokens; required for a control job, derived from ``fraction`` otherwise."""


class TrainingSpec(_Spec):
    """How to anneal: the learning rate warms up, then decays linearly to zero."""

    seq_len: int = Field(default=128, ge=8, le=131072)
    micro_batch: int = Field(default=8, ge=1, le=4096)
    grad_accum: int = Field(default=1, ge=1, le=4096)
    peak_lr: float = Field(default=1e-4, gt=0.0, le=1.0)
    warmup_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    decay: Literal["linear"] = "linear"
    """The schedule after warm-up: linear to zero at the last step (annealing)."""
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    zero_stage: int = Field(default=0, ge=0, le=3)
    bf16: bool = False
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    checkpoint_every_steps: int = Field(default=50, ge=1, le=10**9)
    ds_config_extra: JSONObject = Field(default_factory=dict)
    """Extra DeepSpeed config keys, passed through (keys the executor owns are refused)."""

    @model_validator(mode="after")
    def _no_owned_keys(self) -> TrainingSpec:
        bad = sorted(set(self.ds_config_extra) & FORBIDDEN_DS_KEYS)
        if bad:
            raise ValueError(
                f"ds_config_extra may not set {', '.join(bad)}: the executor sets these "
                "from the job's training fields"
            )
        return self


class EvaluationSpec(_Spec):
    """lm-eval on the final model."""

    tasks: list[Name] = Field(default_factory=list, max_length=64)
    task_dirs: list[RelPath] = Field(default_factory=list, max_length=16)
    """Folders of task YAMLs under the executor's root; empty: lm-eval's built-in tasks."""
    num_fewshot: int | None = Field(default=None, ge=0, le=64)
    limit: int | None = Field(default=None, ge=1, le=10**7)
    batch_size: int = Field(default=8, ge=1, le=1024)


class AnnealJobSpec(_Spec):
    """One annealing job: continue pretraining ``base_model`` on its domain data (one
    ``source``, or several in a ``mixture``) plus replay, then evaluate."""

    kind: Literal["anneal"] = "anneal"
    job_id: JobId
    base_model: RelPath
    """A Hugging Face checkpoint folder under the executor's root."""
    tokenizer: RelPath | None = None
    """Tokenizer folder under the root; defaults to ``base_model``."""
    source: SourceSpec | None
    """The source annealed on; None for a control job (replay only) or a mixed one."""
    mixture: list[MixturePart] | None = None
    """Several domain sources annealed on together, each with its tokens, instead of
    ``source`` (a plan's confirmation anneal); the replay share is taken of their sum.
    None (left out): a one-source or control job, exactly as before mixtures existed."""
    replay: ReplaySpec | None = None
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    labels: dict[Name, Annotated[Text, StringConstraints(max_length=256)]] = Field(
        default_factory=dict, max_length=32
    )
    """Free labels for people and the planner (experiment, source name…); never executed."""

    @model_validator(mode="after")
    def _mixture(self) -> AnnealJobSpec:
        if self.mixture is not None:
            if self.source is not None:
                raise ValueError(
                    "give the domain data once: one source in `source`, or several in "
                    "`mixture` (then send `source: null`)"
                )
            if len(self.mixture) < 2:
                raise ValueError(
                    "a mixture names two or more sources; send a single source as `source`"
                )
            if len(self.mixture) > MAX_MIXTURE_PARTS:
                raise ValueError(
                    f"a mixture names at most {MAX_MIXTURE_PARTS} sources; "
                    f"this one names {len(self.mixture)}: drop the smallest"
                )
            seen: set[str] = set()
            for part in self.mixture:
                if part.name in seen:
                    raise ValueError(
                        f"mixture names source {part.name!r} twice; give it once, "
                        "with its tokens summed"
                    )
                seen.add(part.name)
        elif self.source is None and (self.replay is None or self.replay.tokens is None):
            raise ValueError(
                "a control job (source and mixture null) needs replay with tokens; "
                "or give a source to anneal on"
            )
        return self

    @model_serializer(mode="wrap")
    def _without_absent_mixture(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A job without a mixture serialises as it did before mixtures existed: the same
        # JSON on the wire (a daemon that predates them forbids unknown fields) and the
        # same spec hash (a journaled job resubmitted after an upgrade is no conflict).
        data = handler(self)
        if self.mixture is None:
            data.pop("mixture", None)
        return data

    def replay_tokens(self) -> int:
        """Replay tokens in the mixture (0 without replay)."""
        if self.replay is None:
            return 0
        if self.replay.tokens is not None:
            return self.replay.tokens
        domain = self.source_tokens()
        if domain == 0:
            return 0
        f = self.replay.fraction
        return round(domain * f / (1.0 - f))

    def source_tokens(self) -> int:
        """Domain tokens: the source's, or the mixture's sum (0 for a control job)."""
        if self.mixture is not None:
            return sum(part.tokens for part in self.mixture)
        return 0 if self.source is None else self.source.tokens

    def spec_hash(self) -> str:
        """sha256 of the canonical JSON: same job id + different hash → conflict."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


class JobState(StrEnum):
    QUEUED = "queued"
    MATERIALIZING = "materializing"
    TRAINING = "training"
    EVALUATING = "evaluating"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
RUNNING_STATES = frozenset({JobState.MATERIALIZING, JobState.TRAINING, JobState.EVALUATING})


class Progress(_Model):
    """Training progress (the last reported optimizer step)."""

    step: int = 0
    total_steps: int = 0
    tokens: int = 0
    loss: float | None = None
    tokens_per_s: float | None = None
    mfu: float | None = None


class JobError(_Model):
    """Why a job failed: ``code`` is machine-readable, ``message`` is for people."""

    code: str
    message: str


class JobRecord(_Model):
    """What the executor knows about a job."""

    job_id: str
    state: JobState
    progress: Progress = Field(default_factory=Progress)
    attempts: int = 0
    """How many times a worker was started for it (restarts and retries included)."""
    cancel_requested: bool = False
    error: JobError | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class CurationSpent(_Model):
    """Curation cost measured while materialising one source."""

    role: Literal["source", "replay"]
    kind: str
    tokens: int
    cost: float
    unit: str
    seconds: float
    content_hash: str
    details: dict[str, Any] = Field(default_factory=dict)


class JobResult(_Model):
    """A finished job's measurements."""

    job_id: str
    metrics: dict[str, float]
    """lm-eval's own metrics, ``task/metric`` (filter suffix kept when not ``none``)."""
    continuous: dict[str, float]
    """Continuous metrics from the logged samples (log-probability of the correct choice)."""
    params: int
    training_tokens: int
    """Tokens actually trained on (whole optimizer steps)."""
    source_tokens: int
    replay_tokens: int
    training_flops: float
    """6·N·D with N = parameters, D = training tokens."""
    curation: list[CurationSpent]
    steps: int
    tokens_per_s: float | None = None
    mfu: float | None = None
    train_seconds: float
    """Training seconds of the attempt that finished training."""
    eval_seconds: float
    train_seconds_total: float | None = None
    """Training seconds of every attempt, those killed or crashed included (each loses at
    most its last second); None from an executor that did not count them."""
    versions: dict[str, str]
    seeds: dict[str, int]
    data_hash: str
    checkpoint_hash: str
    world_size: int = 1

    @model_validator(mode="after")
    def _finite(self) -> JobResult:
        for name, value in {**self.metrics, **self.continuous}.items():
            if not math.isfinite(value):
                raise ValueError(f"metric {name} is not finite")
        return self


class LogChunk(_Model):
    """A slice of a job's log: bytes ``offset`` to ``next_offset``."""

    offset: int
    next_offset: int
    text: str
    final: bool
    """True when the job is final and ``next_offset`` is the end of the log."""


class Health(_Model):
    """What /v1/health reveals: nothing beyond liveness and the protocol version."""

    ok: bool = True
    protocol: str = PROTOCOL_VERSION


class ErrorBody(_Model):
    """Every 4xx/5xx body: ``code`` machine-readable, ``field`` the offending field (dotted)
    or null, ``message`` what to do."""

    code: str
    field: str | None = None
    message: str
