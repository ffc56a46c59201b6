"""A plugin that raises in every hook, and one that cannot be imported, installed the way a
user installs one (a distribution with ``annealplan`` entry points, found on the path):
the CLI's verbs keep working and say what is wrong; the TUI's plugins screen shows the
problems while the other screens work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from planner.domain import Source
from planner.store import open_store
from tests.tui.conftest import write_runs
from tests.tui.helpers import settle

REPO = Path(__file__).resolve().parents[2]

BROKEN = """
from plugins.hookspecs import hookimpl


@hookimpl
def register_source_kinds(register):
    raise RuntimeError("source kinds exploded")


@hookimpl
def register_cost_models(register):
    raise RuntimeError("cost models exploded")


@hookimpl
def register_law_families(register):
    raise RuntimeError("law families exploded")


@hookimpl
def register_executor_backends(register):
    raise RuntimeError("backends exploded")
"""

HOOKS = (
    "register_source_kinds",
    "register_cost_models",
    "register_law_families",
    "register_executor_backends",
)


def _install(site: Path) -> None:
    """A distribution on ``site``: two entry points of the ``annealplan`` group."""
    site.mkdir(parents=True)
    (site / "broken_ap_plugin.py").write_text(BROKEN)
    (site / "broken_ap_import.py").write_text('raise ImportError("broken on import")\n')
    info = site / "broken_ap_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-ap-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[annealplan]\nbroken = broken_ap_plugin\nbroken_import = broken_ap_import\n"
    )


@pytest.fixture
def project(tmp_path: Path):
    site = tmp_path / "site"
    _install(site)
    proj = tmp_path / "proj"
    proj.mkdir()
    store = open_store(proj / "annealplan.duckdb")
    try:
        store.add_source(Source("domain", "files", {"paths": [str(proj / "a.jsonl")]}))
    finally:
        store.close()
    (proj / "a.jsonl").write_text('{"text": "a document"}\n')
    write_runs(proj / "runs.csv")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]),
        "ANNEALPLAN_LOAD_PLUGINS": "broken,broken_import",
    }
    env.pop("ANNEALPLAN_DB", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        exe = Path(sys.executable).with_name("annealplan")
        return subprocess.run(
            [str(exe), "--project", str(proj), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=proj,
            timeout=120,
        )

    return run


def test_cli_verbs_work_and_report_a_plugin_raising_in_every_hook(project):
    r = project("plugins", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    raised = {(p["plugin"], p["hook"]) for p in data["problems"]}
    assert {("broken", h) for h in HOOKS} <= raised, data["problems"]
    assert any(
        p["plugin"] == "broken_import" and "broken on import" in p["message"]
        for p in data["problems"]
    )
    assert "plugins.sources.files" in {p["name"] for p in data["plugins"]}
    assert "broken" in r.stderr and "annealplan plugins" in r.stderr
    assert "Traceback" not in r.stderr

    r = project("plugins")
    assert r.returncode == 0
    assert "plugins.costs.linear" in r.stdout
    for hook in HOOKS:
        assert f"broken in {hook}: RuntimeError" in r.stderr, r.stderr

    r = project("sources", "list", "--json")
    assert r.returncode == 0, r.stderr
    assert [s["name"] for s in json.loads(r.stdout)] == ["domain"]

    # A verb that needs the plugins: the built-ins still serve it; the problem is named.
    r = project("sources", "show", "domain", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["name"] == "domain"
    warnings = [x for x in r.stderr.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 1 and "broken" in warnings[0] and "broken_import" in warnings[0]

    r = project("runs", "import", "runs.csv", "--json")
    assert r.returncode == 0, r.stderr
    r = project("runs", "list", "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 13, r.stderr
    r = project("fit", "--bootstrap", "20", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)
    assert "Traceback" not in r.stderr

    # Bad input still gets its one clean line and exit code 2, plugins broken or not.
    r = project("sources", "show", "nothing")
    assert r.returncode == 2
    errors = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "no source named 'nothing'" in errors[0], r.stderr


class _Raising:
    """An in-process plugin raising in every hook."""

    def __init__(self) -> None:
        from plugins.hookspecs import hookimpl

        def make(hook: str):
            def boom(register):
                raise RuntimeError("exploded")

            return hookimpl(specname=hook)(boom)

        for hook in HOOKS:
            setattr(self, hook, make(hook))


async def test_tui_plugins_screen_shows_the_problem_and_other_screens_work(tmp_path):
    from planner.config import load_settings
    from planner.tui.app import make_app
    from plugins.manager import collect, make_plugin_manager

    pm, problems = make_plugin_manager(entry_points=False)
    pm.register(_Raising(), name="raising")
    registry = collect(pm, {}, problems=problems)
    assert {p.hook for p in registry.problems if p.plugin == "raising"} == set(HOOKS)
    store = open_store(tmp_path / "annealplan.duckdb")
    try:
        from planner.store import read_runs_table

        store.import_runs(read_runs_table(write_runs(tmp_path / "runs.csv")))
        app = make_app(load_settings(project_dir=tmp_path), store, registry, mode="plugins")
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)
            text = str(app.screen.query_one("#plugins-problems", Static).content)
            for hook in HOOKS:
                assert f"raising in {hook}: RuntimeError: exploded" in text, text
            assert app.screen.query_one("#plugins-problems").has_class("has-problems")
            table = app.screen.query_one("#plugins-table", DataTable)
            assert "plugins.sources.files" in {str(k.value) for k in table.rows}
            # The other screens still open and work on the built-ins.
            for mode in ("sources", "laws", "allocation"):
                app.switch_mode(mode)
                await settle(app, pilot)
                assert app.current_mode == mode
                assert type(app.screen).__name__.lower().startswith(mode[:4])
            assert not app._exception
    finally:
        store.close()
