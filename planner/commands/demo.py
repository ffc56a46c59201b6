"""``annealplan demo``: the main job on the built-in example domain (what ``make run`` runs).

Stages, each visible as it runs:

1. prepare the example domain (data files, a tiny base model pretrained on general text,
   the synthetic source's generator), cached under ``.annealplan/cache``;
2. register the candidate sources through the real plugin kinds;
3. design the sweep: three token budgets per source on a geometric grid spanning a decade,
   each source's largest budget again with a second seed (the noise a retraining adds),
   plus the control anneal (replay only);
4. start a local executor daemon on 127.0.0.1 and run the sweep — real DeepSpeed anneals,
   each followed by lm-eval — ingesting every result into DuckDB exactly once (finished jobs
   are reused when the demo runs again);
5. fit the laws, allocate the budget (by default ``auto``: half of what the trust region
   could buy) on the domain task's probability of the right answer, write the report;
6. run the plan's confirmation anneal (the mixed anneal it proposes) as a real job and
   rebuild the report with its measured gain beside the predictions;
7. open the TUI on the results, or print a summary when stdout is not a terminal.

The metric, price and budget rules are stated, with their reasons, in
``examples/domain/README.md``.

The embedded default's executor root is the project folder, so the paths in the sources'
configurations (relative to it) mean the same to the planner and to the executor.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

EXPERIMENT = "demo"
STUDY = "demo"
CANDIDATES = ("web", "textbook", "synthetic", "filtered")
# Source tokens per anneal: a decade, three budgets (the CPU time budget of `make run`).
GRID_TOKENS = (4_000, 12_600, 40_000)
QUICK_GRID_TOKENS = (1_000, 3_200, 10_000)
QUICK_CANDIDATES = ("web", "textbook")
REPLAY_FRACTION = 0.5
# The second seed run at each source's largest budget (the sweep's own seed noise).
REPEAT_SEED = 1
# The decision metric, first fitted one wins (README: the metric rule).
DECISION_METRICS = (
    "demo_domain_dose/prob_correct",
    "demo_domain_mc/prob_correct",
    "demo_domain_mc/acc",
    "demo_domain_gen/exact_match",
)
# Bootstrap draws per fit (the intervals of the laws, the report's bands).
N_BOOT = 400
# --budget auto: this share of what the trust region could buy (README: the budget rule).
AUTO_BUDGET_FRACTION = 0.5
# The plan may not take a source past this multiple of its largest measured budget.
MAX_EXTRAPOLATION = 10.0


def _repo_examples(project: Path) -> Path:
    """The example domain: ``<project>/examples/domain`` (the repository's own folder)."""
    here = project / "examples" / "domain"
    if (here / "data.py").exists():
        return here
    from planner.errors import ConfigError

    raise ConfigError(
        f"the example domain is not in {project}/examples/domain; run `annealplan demo` "
        "(or `make run`) from a checkout of the annealplan repository"
    )


def _relative(value: Any, root: Path) -> Any:
    """Absolute paths under ``root`` → relative to it (recursively through a config)."""
    if isinstance(value, dict):
        return {k: _relative(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_relative(v, root) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        p = Path(value)
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            return value
    return value


def _say(console, text: str) -> None:
    console.print(f"[bold cyan]▶[/] {text}")


@click.command("demo")
@click.option(
    "--budget",
    default="auto",
    show_default=True,
    help="Target budget to allocate (auto: half of what the trust region could buy).",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Two sources, smaller budgets, no second seed, fewer eval docs (tests, CI).",
)
@click.option("--no-tui", is_flag=True, help="Print the summary instead of opening the TUI.")
@click.option(
    "--report-dir", type=click.Path(path_type=Path), default=Path("report"), show_default=True
)
@click.pass_context
def demo(ctx: click.Context, budget: str, quick: bool, no_tui: bool, report_dir: Path) -> None:
    """Run the main job end to end on the example domain in examples/."""
    from rich.console import Console

    obj = ctx.obj
    console = Console(stderr=True)
    started = time.perf_counter()
    stages: dict[str, float] = {}
    project = obj.settings.project_dir
    bm, dm, ev = _example_domain(project)
    cache = project / ".annealplan" / "cache"

    _say(console, "preparing the example domain (cached after the first run)")
    t0 = time.perf_counter()
    base, gen = _prepare(bm, dm, cache, quick, console)
    params = _param_count(base)
    stages["prepare"] = time.perf_counter() - t0

    _say(console, "registering the candidate sources through their plugin kinds")
    candidates = QUICK_CANDIDATES if quick else CANDIDATES
    rates = obj.settings.rates.as_rates()
    licence = dm.licence_usd_per_token(params, _usd_per_flop(rates))
    specs = dm.source_specs(cache, generator=gen, textbook_usd_per_token=licence)
    _register_sources(obj, specs, base, candidates, console)

    _say(
        console,
        "designing the sweep: 3 budgets per source (a decade)"
        + ("" if quick else ", the largest with a second seed")
        + ", + the control anneal",
    )
    grid = QUICK_GRID_TOKENS if quick else GRID_TOKENS
    anneals = _anneals(candidates, grid, quick)
    meta = _experiment_meta(obj, bm, ev, base, params, grid, quick)
    obj.store.save_experiment(EXPERIMENT, anneals, meta)
    console.print(
        f"  {len(anneals)} anneals: {len(candidates)} sources × {len(grid)} budgets, "
        + ("" if quick else f"{len(candidates)} second seeds, ")
        + "the control"
    )

    _say(console, "running the sweep on a local executor (DeepSpeed anneal + lm-eval per job)")
    t0 = time.perf_counter()
    summary = _run(obj.store, project, console, obj.registry)
    stages["sweep"] = time.perf_counter() - t0
    console.print(
        f"  {summary.succeeded} succeeded ({summary.reused} reused), {len(summary.failed)} failed"
    )
    for f in summary.failed:
        console.print(f"  [red]failed[/] {f}")

    _say(console, "fitting the laws with bootstrap intervals")
    t0 = time.perf_counter()
    from planner.commands.laws import fit

    with _quiet():
        ctx.invoke(
            fit,
            study=STUDY,
            metric=None,
            family="auto",
            method="joint",
            n_boot=N_BOOT,
            as_json=True,
        )
    stages["fit"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    metric = _decision_metric(obj.store)
    if budget.strip().lower() == "auto":
        budget = _auto_budget(obj, metric, params)
        console.print(
            f"  budget auto: {budget}, {AUTO_BUDGET_FRACTION:g} × what the trust region "
            f"({MAX_EXTRAPOLATION:g}× each source's largest run, or its cap) could buy"
        )
    confirmed = _confirmed_plan(obj.store, metric, budget)
    if confirmed is not None:
        # a rerun: the plan this budget gave is stored and its confirmation measured, so
        # the same plan is shown (planning again would learn from its own confirmation,
        # propose another mix and run another anneal; `annealplan allocate` does that)
        _say(
            console, f"reusing {confirmed}, planned for {budget} and confirmed; writing the report"
        )
        files = _report(obj, project, report_dir, None, metric, params)
    else:
        _say(console, f"allocating {budget} on {metric} and writing the report")
        files = _report(obj, project, report_dir, budget, metric, params)
    stages["report"] = time.perf_counter() - t0
    console.print(f"  report: {files.markdown} and {files.html}")

    plan_id, plan = obj.store.plans(limit=1)[0]
    t0 = time.perf_counter()
    if confirmed is None and _confirm(obj, project, plan_id, plan, console):
        # the stored plan now carries the measured gain: write the report again
        files = _report(obj, project, report_dir, None, metric, params)
        plan = obj.store.plans(limit=1)[0][1]
    stages["confirm"] = time.perf_counter() - t0
    console.print(
        "  stages: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items())
        + f"; the main job took {time.perf_counter() - started:.0f} s"
    )

    if sys.stdout.isatty() and not no_tui and "tui" in ctx.parent.command.commands:
        ctx.invoke(ctx.parent.command.commands["tui"])
        return
    _print_summary(plan, files)


def _example_domain(project: Path) -> tuple[Any, Any, Any]:
    """The example domain's modules (base model, data, evaluation), from the checkout."""
    examples = _repo_examples(project)
    if str(examples.parents[1]) not in sys.path:
        sys.path.insert(0, str(examples.parents[1]))
    from examples.domain import base_model, data, evaluation

    return base_model, data, evaluation


def _prepare(bm: Any, dm: Any, cache: Path, quick: bool, console) -> tuple[Path, Path]:
    """The data files, the base model and the synthetic source's generator (cached).

    Returns:
        The base model's and the generator's folders.
    """
    t0 = time.perf_counter()
    dm.prepare_data(cache)
    if quick:
        # A shorter pretraining for tests: the same code path, fewer steps.
        short = bm.PretrainRecipe(steps=40, warmup_steps=4)
        base = bm.prepare_base_model(cache, recipe=short, name="base-model-quick")
        gen = bm.prepare_generator_model(
            cache,
            recipe=bm.PretrainRecipe(steps=20, warmup_steps=2),
            name="generator-quick",
            base_name="base-model-quick",
            base_recipe=short,
        )
    else:
        base = bm.prepare_base_model(cache)
        gen = bm.prepare_generator_model(cache)
    console.print(f"  data, base model and generator ready in {time.perf_counter() - t0:.1f} s")
    return base, gen


def _register_sources(
    obj: Any, specs: dict[str, Any], base: Path, candidates: Sequence[str], console
) -> None:
    """Register the candidates and the replay source through their plugin kinds, with
    paths relative to the project (the executor's root)."""
    from transformers import AutoTokenizer

    from planner.sources.session import build_source

    project = obj.settings.project_dir
    tokenizer = AutoTokenizer.from_pretrained(base)
    for name in (*candidates, "replay"):
        spec = specs[name]
        src = build_source(
            obj.registry,
            obj.settings.rates.as_rates(),
            kind_name=spec.kind,
            name=name,
            raw_config=spec.config,
            tokenizer=tokenizer,
            description=spec.description,
        )
        src = dataclasses.replace(src, config=_relative(dict(src.config), project))
        obj.store.add_source(src, replace=True)
        cost = obj.registry.cost_model_for(src)
        console.print(
            f"  {name:<10} {src.kind:<10} cap {src.cap_tokens or math.inf:.3g} tokens, "
            f"curation {cost.describe() if cost else 'free'}"
        )


def _anneals(candidates: Sequence[str], grid: Sequence[int], quick: bool) -> list[Any]:
    """Every candidate at every grid budget, its largest budget again with a second seed
    (not in the quick demo, which keeps the test suite's time down), plus the control
    anneal at the middle budget."""
    from planner.domain import AnnealSpec, stable_id

    anneals = []
    for name in candidates:
        for tokens in grid:
            jid = stable_id("job", EXPERIMENT, name, tokens, REPLAY_FRACTION, 0, quick)
            anneals.append(AnnealSpec(jid, EXPERIMENT, name, float(tokens), REPLAY_FRACTION, 0))
        if quick:
            continue
        top, seed = grid[-1], REPEAT_SEED
        jid = stable_id("job", EXPERIMENT, name, top, REPLAY_FRACTION, seed, quick)
        anneals.append(AnnealSpec(jid, EXPERIMENT, name, float(top), REPLAY_FRACTION, seed))
    control_tokens = float(grid[1] / (1 - REPLAY_FRACTION))
    anneals.append(
        AnnealSpec(
            stable_id("job", EXPERIMENT, None, control_tokens, quick),
            EXPERIMENT,
            None,
            control_tokens,
            1.0,
            0,
        )
    )
    return anneals


def _experiment_meta(
    obj: Any,
    bm: Any,
    ev: Any,
    base: Path,
    params: float,
    grid: Sequence[int],
    quick: bool,
) -> dict[str, Any]:
    """What every job of the sweep shares: the study, base model, replay source, training
    and evaluation settings, compute unit and rates."""
    project = obj.settings.project_dir
    replay = obj.store.source("replay")
    rates = obj.settings.rates
    return {
        "study": STUDY,
        "base_model": base.relative_to(project).as_posix(),
        "replay": {"kind": replay.kind, "config": dict(replay.config)},
        "training": {
            "seq_len": bm.SEQ_LEN,
            "micro_batch": 4,
            "grad_accum": 1,
            "peak_lr": 5e-3,
            "warmup_fraction": 0.0,
            "zero_stage": 0,
            "bf16": False,
            "checkpoint_every_steps": 100,
        },
        "evaluation": {
            "tasks": list(ev.TASKS),
            "task_dirs": [ev.TASKS_DIR.relative_to(project).as_posix()],
            "batch_size": 96,
            **({"limit": 32} if quick else {}),
        },
        "compute_unit": "usd",
        "rates": {
            "flops_per_gpu_hour": rates.flops_per_gpu_hour,
            "usd_per_gpu_hour": rates.usd_per_gpu_hour,
        },
        "model_params": params,
        "grid_tokens": list(grid),
        "replay_fraction": REPLAY_FRACTION,
    }


def _print_summary(plan: Any, files: Any) -> None:
    """The plan and the report's findings, on stdout: the same story as the report's."""
    from planner.commands.allocate import render_plan
    from planner.report.story import wrap

    click.echo(render_plan(plan))
    click.echo("")
    for sentence in files.findings.story:
        click.echo("\n".join(wrap(sentence, indent="")))
    click.echo(f"report: {files.markdown}")


def _param_count(base: Path) -> float:
    from transformers import AutoConfig, AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base))
    return float(sum(p.numel() for p in model.parameters()))


def _decision_metric(store) -> str:
    """The domain's continuous metric: the probability of the right dose among the eight
    (``p_gold`` of ``demo_domain_dose``), else the condition task's, else its accuracy,
    else the dose exact match — the first of these that has fitted laws for at least two
    sources. Accuracy and exact match move in steps (exact match is 0 at most of the
    sweep's budgets), so they come last."""
    fitted: dict[str, int] = {}
    from planner.domain import is_control

    for _, f in store.fits(study=STUDY):
        if f.success and not is_control(f.source):
            fitted[f.metric] = fitted.get(f.metric, 0) + 1
    # A metric every source stayed flat on (e.g. all zeros) has no law to allocate with.
    names = sorted(m for m, n in fitted.items() if n >= 2)
    for prefix in DECISION_METRICS:
        hits = [n for n in names if n.startswith(prefix)]
        if hits:
            return hits[0]
    from planner.errors import SolveError

    raise SolveError(
        f"no domain metric could be fitted for two sources (fitted: {', '.join(names) or 'none'}); "
        "look at the runs with `annealplan runs list`"
    )


def _usd_per_flop(rates: Any) -> float:
    from planner.units import Unit, convert

    return convert(1.0, Unit.FLOPS, Unit.USD, rates)


def _options(metric: str, params: float) -> Any:
    from planner.allocate.session import ProblemOptions

    # The example's laws come from tiny runs; do not trust them beyond 10x the largest.
    return ProblemOptions(
        metric=metric, model_params=str(int(params)), max_extrapolation=MAX_EXTRAPOLATION
    )


def _auto_budget(obj: Any, metric: str, params: float) -> str:
    """``--budget auto``: ``AUTO_BUDGET_FRACTION`` × what buying every source up to its
    trust-region limit (its cap, or ``MAX_EXTRAPOLATION`` × its largest run) would cost."""
    from planner.allocate.session import load_for
    from planner.errors import SolveError
    from planner.units import Unit

    loaded = load_for(
        obj.store, obj.registry, obj.settings.rates.as_rates(), Unit.USD, _options(metric, params)
    )
    full = 0.0
    for c in loaded.problem.curves:
        if not math.isfinite(c.cap_tokens):
            raise SolveError(f"--budget auto: {c.name} has no limit; give --budget $X instead")
        full += float(c.cost(c.cap_tokens))
    return f"${AUTO_BUDGET_FRACTION * full:.3g}"


def _report(
    obj: Any, project: Path, report_dir: Path, budget: str | None, metric: str, params: float
) -> Any:
    """Plan for ``budget`` (None: rebuild the newest stored plan) and write the report."""
    from planner.commands.report import make_report

    return make_report(
        obj,
        out=project / report_dir,
        budget=budget,
        metric=metric,
        model_params=str(int(params)),
        title="annealplan demo: a fictional pharmacology domain",
        max_extrapolation=MAX_EXTRAPOLATION,
        # the dose question asked as a generation, scored by exact match
        companions=("demo_domain_gen/exact_match",),
    )


def _confirmed_plan(store: Any, metric: str, budget: str) -> str | None:
    """The newest stored plan's id when it is this demo's plan for ``budget`` on ``metric``
    and its confirmation anneal was measured; else None."""
    from planner.units import parse_quantity

    plans = store.plans(limit=1)
    if not plans:
        return None
    plan_id, plan = plans[0]
    q = parse_quantity(budget)
    conf = plan.confirmation
    same = (
        plan.metric == metric
        and plan.unit is q.unit
        and math.isclose(plan.budget, q.value, rel_tol=1e-9)
    )
    return plan_id if same and conf is not None and conf.measured_gain is not None else None


def _confirm(obj: Any, project: Path, plan_id: str, plan: Any, console) -> bool:
    """Run the plan's confirmation anneal (a real job on the embedded local executor, as
    the sweep's) and store its measured gain on the plan. False when there is nothing to
    confirm."""
    if getattr(plan, "confirmation", None) is None:
        console.print("  the plan proposes no confirmation anneal")
        return False
    from planner.dispatch import confirm

    _say(console, "running the plan's confirmation anneal (the mixed anneal it proposes)")
    prepared = confirm.prepare_confirmation(obj.store, plan_id)

    def work(on_update):
        async def go():
            if obj.store.has_run(prepared.spec.job_id):
                return confirm.record_confirmation(obj.store, prepared)
            async with _local_executor(project, obj.registry) as clients:
                return await confirm.run_confirmation(
                    obj.store, prepared, clients, on_update=on_update
                )

        return asyncio.run(go())

    done = _with_progress(console, work)
    if done.measured_gain is not None:
        console.print(f"  measured gain {done.measured_gain:+.4g}")
    return True


class _quiet:
    """Swallow a verb's stdout (its JSON) while the demo prints its own progress."""

    def __enter__(self):
        import contextlib
        import io

        self._cm = contextlib.redirect_stdout(io.StringIO())
        return self._cm.__enter__()

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def _run(store, project: Path, console, registry):
    """Run the sweep with a live progress bar per job (or a line per state change when
    stderr is not a terminal)."""
    return _with_progress(
        console, lambda on_update: _sweep_on_local_executor(store, project, registry, on_update)
    )


def _with_progress(console, work):
    """``work(on_update)`` with a live progress bar per job (or a line per state change
    when stderr is not a terminal)."""
    import contextlib

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    live = console.is_terminal
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
        console=console,
    )
    tasks: dict[str, int] = {}
    last_state: dict[str, str] = {}

    def on_update(record) -> None:
        jid = record.job_id
        label = (record.labels or {}).get("source", "") or jid[:12]
        p = record.progress
        state = record.state.value
        if not live:
            if last_state.get(jid) != state:
                last_state[jid] = state
                console.print(f"  {jid} {label:<10} {state}")
            return
        if jid not in tasks:
            tasks[jid] = progress.add_task(f"{label:<10} {jid[-8:]}", total=1.0, state="")
        done = p.step / p.total_steps if p and p.total_steps else 0.0
        if state in ("succeeded", "failed", "cancelled"):
            done = 1.0
        extra = f" loss {p.loss:.3f}" if p and p.loss is not None else ""
        progress.update(tasks[jid], completed=done, state=f"{state}{extra}")

    with progress if live else contextlib.nullcontext():
        return work(on_update)


def _local_executor(project: Path, registry):
    """The embedded local executor (a daemon on 127.0.0.1 rooted at the project), reached
    as any executor is: through the plugin registry's ``local`` backend. Two jobs at a
    time, one CPU thread each: on a shared 2-core machine a job with two threads runs far
    slower than two jobs with one."""
    from planner.dispatch.registry import embedded_entry, open_submitters

    # DeepSpeed's own launcher, as on a GPU box (the local backend's `launcher` setting
    # can name torchrun: one Python process fewer per job)
    local = embedded_entry(registry, max_jobs=2)
    return open_submitters(project, registry, [local])


def _sweep_on_local_executor(store, project: Path, registry, on_update) -> Any:
    """Run the demo's sweep on the embedded local executor."""
    from planner.dispatch.scheduler import run_sweep

    async def go():
        async with _local_executor(project, registry) as clients:
            return await run_sweep(store, EXPERIMENT, clients, on_update=on_update)

    return asyncio.run(go())


COMMANDS = [demo]
