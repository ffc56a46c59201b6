"""Translation at the dispatcher's two edges.

- :func:`build_job`: an experiment's meta + one ``AnnealSpec`` (+ its ``Source``) → the
  executor's ``AnnealJobSpec`` (the meta keys are listed in :mod:`planner.dispatch`).
- :func:`build_mixed_job`: the same meta + several sources with their tokens → one mixed
  anneal (a plan's confirmation), packed with the same replay share.
- :func:`result_to_run`: a job's ``JobResult`` → a ``Run`` and its ``Metric`` rows, with the
  compute in the experiment's unit (training FLOPs 6·N·D + measured curation cost).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from executors.protocol import AnnealJobSpec, JobResult
from planner.domain import CONTROL_SOURCE, AnnealSpec, Metric, Run, Source
from planner.errors import ConfigError
from planner.units import Rates, Unit, convert

_UNITS = {u.value: u for u in Unit}


def _replay_ref(value: Any, lookup: Callable[[str], Source]) -> dict[str, Any]:
    if isinstance(value, str):
        src = lookup(value)
        return {"kind": src.kind, "config": dict(src.config)}
    if isinstance(value, Mapping) and "kind" in value:
        return {"kind": value["kind"], "config": dict(value.get("config") or {})}
    raise ConfigError(
        "the experiment names no replay data: give --replay SOURCE to `annealplan sweep run` "
        "or store meta['replay'] = {'kind': ..., 'config': {...}}"
    )


def build_job(
    spec: AnnealSpec, meta: Mapping[str, Any], lookup: Callable[[str], Source]
) -> AnnealJobSpec:
    """The executor job for one planned anneal.

    Args:
        spec: the planned run.
        meta: the experiment's meta merged with command-line overrides.
        lookup: finds a registered source by name (``store.source``).

    Raises:
        ConfigError: a required key is missing or a value is invalid (names the field).
    """
    _require_base_model(meta)
    replay = _replay_ref(meta.get("replay"), lookup)
    training = {**dict(meta.get("training") or {}), "seed": spec.seed}
    labels = {"experiment": spec.experiment, "source": spec.source or CONTROL_SOURCE}
    if spec.is_control:
        source = None
        replay_block = {"source": replay, "tokens": round(spec.tokens)}
    else:
        src = lookup(spec.source)
        source = {"kind": src.kind, "config": dict(src.config), "tokens": round(spec.tokens)}
        replay_block = (
            {"source": replay, "fraction": spec.replay_fraction}
            if spec.replay_fraction > 0
            else None
        )
    raw = {
        "job_id": spec.job_id,
        "base_model": meta["base_model"],
        "tokenizer": meta.get("tokenizer"),
        "source": source,
        "replay": replay_block,
        "training": training,
        "evaluation": dict(meta.get("evaluation") or {}),
        "labels": labels,
    }
    return _validated(spec.job_id, raw)


def _validated(job_id: str, raw: Mapping[str, Any]) -> AnnealJobSpec:
    try:
        return AnnealJobSpec.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            f"job {job_id}: {where}: {err['msg']}; fix the experiment's meta or the flags"
        ) from None


def _require_base_model(meta: Mapping[str, Any]) -> None:
    if not meta.get("base_model"):
        raise ConfigError(
            "the experiment names no base model: give --base-model PATH (relative to the "
            "executor's root) to `annealplan sweep run`"
        )


#: the longest label value the executor keeps
_LABEL_CHARS = 256


def build_mixed_job(
    spec: AnnealSpec,
    tokens_per_source: Mapping[str, int],
    meta: Mapping[str, Any],
    lookup: Callable[[str], Source],
) -> AnnealJobSpec:
    """The executor job for one mixed anneal: several sources, each with its tokens, plus
    replay, trained and evaluated as the experiment's sweep was.

    Args:
        spec: the planned run; its ``source`` is the mixture's name (``a@0.6+b@0.4``), its
            ``tokens`` their sum, ``replay_fraction`` and ``seed`` as a sweep's spec.
        tokens_per_source: each source's tokens (two or more, each at least 1).
        meta: the experiment's meta (see :mod:`planner.dispatch`).
        lookup: finds a registered source by name (``store.source``).

    Raises:
        ConfigError: a required meta key is missing, a source has under one token, or a
            value is invalid (names the field).
        StoreError: a source is not registered.
    """
    _require_base_model(meta)
    small = [name for name, tokens in tokens_per_source.items() if tokens < 1]
    if small:
        raise ConfigError(
            f"job {spec.job_id}: the mixture gives {', '.join(small)} under one token; "
            "confirm a plan of a larger budget"
        )
    replay = _replay_ref(meta.get("replay"), lookup)
    mixture = []
    for name, tokens in tokens_per_source.items():
        src = lookup(name)
        mixture.append(
            {"name": name, "kind": src.kind, "config": dict(src.config), "tokens": int(tokens)}
        )
    raw = {
        "job_id": spec.job_id,
        "base_model": meta["base_model"],
        "tokenizer": meta.get("tokenizer"),
        "source": None,
        "mixture": mixture,
        "replay": (
            {"source": replay, "fraction": spec.replay_fraction}
            if spec.replay_fraction > 0
            else None
        ),
        "training": {**dict(meta.get("training") or {}), "seed": spec.seed},
        "evaluation": dict(meta.get("evaluation") or {}),
        "labels": {
            "experiment": spec.experiment[:_LABEL_CHARS],
            "source": spec.run_source[:_LABEL_CHARS],
        },
    }
    return _validated(spec.job_id, raw)


def _rates(meta: Mapping[str, Any]) -> Rates:
    raw = meta.get("rates") or {}
    return Rates(**{k: float(v) for k, v in raw.items() if k in Rates.__dataclass_fields__})


def compute_unit(meta: Mapping[str, Any]) -> Unit:
    """The unit runs of this experiment are measured in (default FLOPs)."""
    name = meta.get("compute_unit") or meta.get("unit") or Unit.FLOPS.value
    if name not in _UNITS:
        raise ConfigError(f"unknown compute unit {name!r}; use flops, gpu_hours, usd or tokens")
    return _UNITS[name]


def result_to_run(
    spec: AnnealSpec, result: JobResult, meta: Mapping[str, Any], *, executor: str = ""
) -> tuple[Run, list[Metric], dict[str, Any]]:
    """A finished job as a run, its metrics and the meta stored beside it.

    The compute is the run's total cost: training (6·N·D FLOPs, converted) plus the
    curation the executor measured (converted from each source's unit). In ``tokens`` the
    compute is the tokens trained on.
    """
    unit = compute_unit(meta)
    rates = _rates(meta)
    notes = []
    if unit is Unit.TOKENS:
        training = float(result.training_tokens)
        curation = 0.0
    else:
        training = convert(result.training_flops, Unit.FLOPS, unit, rates)
        curation = 0.0
        for c in result.curation:
            if c.cost == 0:
                continue
            if c.unit in ("usd", "flops", "gpu_hours"):
                curation += convert(c.cost, _UNITS[c.unit], unit, rates)
            else:
                notes.append(f"{c.role} curation in {c.unit} left out of compute")
    run = Run(
        run_id=spec.job_id,
        source=spec.source or CONTROL_SOURCE,
        compute=training + curation,
        study=str(meta.get("study") or spec.experiment),
        params=float(result.params),
        tokens=float(spec.tokens),
        seed=spec.seed,
        cost_curation=curation,
        cost_training=training,
        origin="sweep",
    )
    metrics = [Metric(spec.job_id, name, float(v)) for name, v in result.metrics.items()]
    metrics += [Metric(spec.job_id, name, float(v)) for name, v in result.continuous.items()]
    run_meta = {
        "compute_unit": unit.value,
        "experiment": spec.experiment,
        "executor": executor,
        "training_tokens": result.training_tokens,
        "training_flops": result.training_flops,
        "tokens_per_s": result.tokens_per_s,
        "mfu": result.mfu,
        "versions": result.versions,
        "seeds": result.seeds,
        "data_hash": result.data_hash,
        "checkpoint_hash": result.checkpoint_hash,
        "curation": [c.model_dump(mode="json") for c in result.curation],
        "notes": notes,
    }
    return run, metrics, run_meta
