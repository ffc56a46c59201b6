"""The executor's own source-kind loader: the same kinds as the planner's registry, through
the same hook, without importing anything of the planner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from executors.kinds import load_source_kinds
from plugins.errors import PluginError

REPO = Path(__file__).resolve().parents[2]


def test_the_executor_and_the_planner_see_the_same_built_in_kinds():
    from plugins.manager import load_registry

    ours = load_source_kinds(entry_points=False)
    planner_side = load_registry(entry_points=False)
    assert set(ours.kinds) == set(planner_side.source_kinds)
    assert {"files", "synthetic", "filtered", "licensed", "hf-disk"} <= set(ours.kinds)
    assert ours.problems == ()
    assert ours.owners["files"] == "plugins.sources.files"


def test_running_jobs_imports_nothing_of_the_planner():
    """No loophole: the daemon, the worker, the stages and the trainer's module, with the
    built-in kinds loaded, leave no ``planner`` module in ``sys.modules``. (Entry points are
    off: a third party's plugin may import what it likes.)"""
    code = (
        "import json, sys\n"
        "import executors.daemon, executors.worker, executors.anneal\n"
        "import executors.stages.pipeline\n"
        "from executors.kinds import load_source_kinds\n"
        "from executors.paths import declared_path_fields\n"
        "load_source_kinds(); declared_path_fields()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'planner')))\n"
    )
    env = {**os.environ, "ANNEALPLAN_LOAD_PLUGINS": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO, env=env
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


PLUGIN = """
from plugins.hookspecs import hookimpl
from plugins.sources.files import FilesKind


class Again(FilesKind):
    name = "{name}"


@hookimpl
def register_source_kinds(register):
    {body}
"""


def _plugin(tmp_path: Path, file: str, name: str, body: str) -> str:
    path = tmp_path / file
    path.write_text(PLUGIN.format(name=name, body=body))
    return str(path)


def test_an_extra_module_adds_a_kind(tmp_path: Path):
    extra = _plugin(tmp_path, "more.py", "more-files", "register(Again())")
    found = load_source_kinds([extra], entry_points=False)
    assert "more-files" in found.kinds and "files" in found.kinds
    assert found.owners["more-files"].endswith(f":{extra}")


def test_a_kind_registered_twice_names_both_plugins(tmp_path: Path):
    extra = _plugin(tmp_path, "dup.py", "files", "register(Again())")
    with pytest.raises(PluginError, match=r"'files' is registered by both 'plugins.sources.files'"):
        load_source_kinds([extra], entry_points=False)


def test_a_plugin_that_raises_is_left_out_and_reported(tmp_path: Path):
    extra = _plugin(tmp_path, "boom.py", "x", 'raise RuntimeError("exploded")')
    found = load_source_kinds([extra], entry_points=False)
    assert "files" in found.kinds
    [problem] = found.problems
    assert problem.hook == "register_source_kinds" and "RuntimeError: exploded" in problem.message


def test_what_is_registered_must_be_a_source_kind(tmp_path: Path):
    extra = _plugin(tmp_path, "odd.py", "x", "register(object())")
    [problem] = load_source_kinds([extra], entry_points=False).problems
    assert "has no name" in problem.message


def test_naming_a_plugin_that_is_not_installed_is_reported(monkeypatch):
    monkeypatch.setenv("ANNEALPLAN_LOAD_PLUGINS", "no-such-plugin")
    found = load_source_kinds()
    assert "files" in found.kinds
    assert [p.plugin for p in found.problems] == ["no-such-plugin"]
