"""Dependencies split by use: ``pip install annealplan`` is the planner and its TUI, and
``annealplan[executor]`` adds what runs a model. The metadata says so, and the planner's
verbs run in an interpreter where the executor extra's packages cannot be imported."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
#: what only the executor extra brings (distribution names)
EXECUTOR_ONLY = {"torch", "transformers", "deepspeed", "lm-eval", "datasets", "accelerate", "gguf"}
#: their import names, which a planner-only interpreter must never import
BLOCKED = {
    "torch",
    "transformers",
    "tokenizers",
    "deepspeed",
    "lm_eval",
    "datasets",
    "accelerate",
    "gguf",
    "sklearn",
}


def _split(requirements: list[str]) -> tuple[dict[str, Requirement], dict[str, Requirement]]:
    """(base, executor extra) requirements by normalised name."""
    base, executor = {}, {}
    for text in requirements:
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        if req.marker is None:
            base[name] = req
        elif req.marker.evaluate({"extra": "executor"}):
            executor[name] = req
    return base, executor


def test_the_installed_metadata_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"])
    for extra, reqs in project["optional-dependencies"].items():
        declared |= {f'{r}; extra == "{extra}"' for r in reqs}
    installed = set(importlib.metadata.requires("annealplan") or [])
    assert {str(Requirement(r)) for r in installed} == {str(Requirement(r)) for r in declared}, (
        "the installed metadata is stale: reinstall with `pip install --no-deps -e .`"
    )


def test_the_base_install_has_no_model_stack_and_the_executor_extra_has_it():
    base, executor = _split(importlib.metadata.requires("annealplan") or [])
    assert not EXECUTOR_ONLY & set(base), sorted(EXECUTOR_ONLY & set(base))
    assert set(executor) >= EXECUTOR_ONLY | {"scikit-learn", "tokenizers"}
    assert {"textual", "httpx", "duckdb", "scipy", "sympy", "pluggy", "click"} <= set(base)
    # torch pinned, always: an unpinned torch pulls a multi-GB CUDA build on CPU machines
    assert str(executor["torch"].specifier) == "==2.13.0"
    assert all(str(r.specifier).startswith("==") for r in [*base.values(), *executor.values()])
    assert "hf" in executor["lm-eval"].extras


def test_the_make_install_still_installs_everything():
    makefile = (ROOT / "Makefile").read_text()
    torch_first = makefile.index("pip install --quiet torch==2.13.0")
    assert torch_first < makefile.index("pip install --quiet -e '.[executor,dev]'")


#: prepended to each script: executor-extra packages cannot be imported (as in a base
#: install), and every attempt is recorded, even one a library catches
BLOCKER = f"""
import atexit, importlib.abc, json, sys

BLOCKED = {sorted(BLOCKED)!r}
ATTEMPTS = []


class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            ATTEMPTS.append(name)
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())


@atexit.register
def _report():
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print("IMPORTS " + json.dumps({{"attempts": ATTEMPTS, "loaded": loaded}}), file=sys.stderr)
"""


def _run(script: str, cwd: Path) -> tuple[subprocess.CompletedProcess, dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ANNEALPLAN_LOAD_PLUGINS": ""}
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("IMPORTS ")]
    assert lines, f"the script did not finish: {proc.stderr[-3000:]}"
    return proc, json.loads(lines[-1].removeprefix("IMPORTS "))


def _runs_csv(path: Path) -> Path:
    rows = []
    for source, (ceiling, scale, alpha) in {
        "web": (0.6, 0.3, 0.3),
        "books": (0.65, 0.2, 0.2),
    }.items():
        for i, tokens in enumerate((2e7, 5e7, 1e8, 2e8, 5e8)):
            value = ceiling - scale * (tokens / 1e7) ** -alpha + 0.003 * (-1) ** i
            rows.append({"source": source, "compute": 6 * 1.35e8 * tokens, "metric": "acc",
                         "value": value, "params": 1.35e8, "tokens": tokens})  # fmt: skip
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("planner-only")
    _runs_csv(folder / "runs.csv")
    return folder


def _verb(project: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    argv = ["--project", str(project), *args]
    return _run(f"from planner.cli import main\nmain({argv!r})\n", project)


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("runs", "import", "runs.csv"),
        ("fit", "--bootstrap", "50", "--jobs", "1"),
        ("sources", "add", "files", "--name", "web", "--set", "paths=runs.csv"),
    ],
    ids=["help", "runs-import", "fit", "sources-add"],
)
def test_the_planner_verbs_never_import_the_model_stack(project: Path, args: tuple[str, ...]):
    proc, seen = _verb(project, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert seen == {"attempts": [], "loaded": []}


def test_the_tui_opens_every_screen_without_the_model_stack(project: Path):
    # The app as `annealplan tui --no-executors` builds it, every screen shown in turn.
    script = f"""
    import asyncio
    from pathlib import Path

    from planner.cli import Context
    from planner.commands.tui import SCREEN_NAMES
    from planner.tui.app import make_app

    obj = Context(project_dir=Path({str(project)!r}))
    app = make_app(obj.settings, obj.store, obj.registry, None)

    async def visit():
        async with app.run_test(size=(120, 40)) as pilot:
            for mode in SCREEN_NAMES:
                await app.switch_mode(mode)
                await pilot.pause()
                await app.workers.wait_for_complete()
                await pilot.pause()
                print("shown", mode, type(app.screen).__name__, flush=True)

    asyncio.run(visit())
    obj.close()
    """
    _verb(project, "runs", "import", "runs.csv")
    proc, seen = _run(script, project)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("shown ") == 6, proc.stdout
    assert seen == {"attempts": [], "loaded": []}


def test_the_embedded_daemon_starts_without_the_model_stack(project: Path):
    # The planner starts it when no executor is registered; only its jobs need the extra.
    proc, seen = _run("import executors.daemon, plugins.backends.local.launcher\n", project)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert seen == {"attempts": [], "loaded": []}


def test_the_blocker_sees_an_import_that_a_library_catches(project: Path):
    proc, seen = _run("try:\n    import torch\nexcept ImportError:\n    pass\n", project)
    assert proc.returncode == 0 and seen == {"attempts": ["torch"], "loaded": []}
