"""The plugin contract and manager: hooks, loading, problems, duplicates, lookups."""

from __future__ import annotations

import importlib.metadata
import inspect
import sys
import types

import pytest
import sympy

from planner.errors import ConfigError, PluginError
from plugins import hookspecs, manager
from plugins.contract import (
    BackendSettings,
    CurationCost,
    ExecutorBackend,
    LawFamily,
    PluginConfig,
    SourceKind,
)
from plugins.hookspecs import hookimpl
from plugins.manager import BUILTINS, collect, make_plugin_manager
from plugins.registry import Registry


class _NoopKind(SourceKind):
    name = "noop"
    description = "a kind that holds nothing"
    Config = PluginConfig

    def cap_tokens(self, config, tokenizer=None):
        return 0.0

    def materialize(self, config, tokens, dest, seed, tokenizer):
        raise PluginError("noop holds nothing")


def fresh(*plugins: object) -> Registry:
    """A registry from the built-ins plus in-test plugins, no entry points."""
    pm, problems = make_plugin_manager(entry_points=False)
    for p in plugins:
        pm.register(p)
    pm.check_pending()
    return collect(pm, {}, problems=problems)


# -- one test per hookspec (the meta-test below insists) ----------------------------------


def test_hook_register_source_kinds():
    class Plugin:
        @hookimpl
        def register_source_kinds(self, register, settings):
            assert settings == {}
            register(_NoopKind())

    reg = fresh(Plugin())
    assert reg.source_kind("noop").description == "a kind that holds nothing"
    assert {"files", "hf-disk", "synthetic", "filtered", "licensed"} <= set(reg.source_kinds)


def test_hook_register_cost_models():

    class Plugin:
        @hookimpl
        def register_cost_models(self, register):
            from plugins.costs.linear import LinearCost

            register("flat", lambda **p: LinearCost.from_params(per_token=0.0, **p))

    reg = fresh(Plugin())
    model = reg.build_cost_model("flat", {"fixed": 5.0})
    assert float(model.cost(1e9)) == 5.0
    assert {"linear", "generation", "filtering"} <= set(reg.cost_models)


def test_hook_register_law_families():
    x, a, b = sympy.symbols("x a b", positive=True)
    family = LawFamily("toy", a * x**b, x, (a, b), ((0, 10), (0, 1)), [[1.0, 0.5]])

    class Plugin:
        @hookimpl
        def register_law_families(self, register):
            register(family)

    reg = fresh(Plugin())
    assert reg.law_family("toy") is family


def test_hook_register_executor_backends(tmp_path):
    class ToySettings(BackendSettings):
        queue: str

    class Backend(ExecutorBackend):
        name = "toy"
        Settings = ToySettings

        def connect(self, settings, *, name, project_dir, retries=None):
            return (name, settings.queue, project_dir)

    class Plugin:
        @hookimpl
        def register_executor_backends(self, register, settings):
            register(Backend())

    reg = fresh(Plugin())
    toy = reg.executor_backend("toy")
    settings = toy.parse_settings({"queue": "gpu"})
    assert toy.connect(settings, name="t", project_dir=tmp_path) == ("t", "gpu", tmp_path)
    with pytest.raises(ConfigError, match="settings of executor backend 'toy': qeue: Extra"):
        toy.parse_settings({"queue": "gpu", "qeue": "x"})
    # The built-in backends come through the same hook, from their own plugin modules.
    assert reg.owner("executor_backend", "http").name == "plugins.backends.http"
    assert reg.owner("executor_backend", "local").name == "plugins.backends.local"


def test_every_hookspec_has_a_test():
    specs = [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, "annealplan_spec")
    ]
    assert specs, "no hookspecs found"
    here = sys.modules[__name__]
    missing = [s for s in specs if not hasattr(here, f"test_hook_{s}")]
    assert not missing, f"hookspecs without a test_hook_<name>: {missing}"


# -- the manager ---------------------------------------------------------------------------


def test_builtins_register_through_the_hooks():
    pm, problems = make_plugin_manager(entry_points=False)
    assert problems == []
    names = [name for name, _ in pm.list_name_plugin()]
    assert names == list(BUILTINS)
    reg = collect(pm, {})
    info = reg.owner("source_kind", "files")
    assert info is not None and info.builtin and "register_source_kinds" in info.hooks


def test_settings_reach_each_plugin():
    seen = {}

    class Plugin:
        @hookimpl
        def register_source_kinds(self, register, settings):
            seen.update(settings)

    pm, _ = make_plugin_manager(entry_points=False)
    pm.register(Plugin(), name="mine")
    collect(pm, {"mine": {"token": "x"}, "other": {"no": 1}})
    assert seen == {"token": "x"}


def test_a_raising_plugin_is_a_problem_and_the_others_still_register():
    class Broken:
        @hookimpl
        def register_source_kinds(self, register):
            register(_NoopKind())  # staged, then dropped because the hook raises
            raise RuntimeError("boom")

    class Good:
        @hookimpl
        def register_cost_models(self, register):
            from plugins.costs.linear import LinearCost

            register("good", LinearCost.from_params)

    pm, _ = make_plugin_manager(entry_points=False)
    pm.register(Broken(), name="broken")
    pm.register(Good(), name="good")
    reg = collect(pm, {})
    assert [(p.plugin, p.hook) for p in reg.problems] == [("broken", "register_source_kinds")]
    assert "boom" in reg.problems[0].message
    assert "noop" not in reg.source_kinds and "good" in reg.cost_models


def test_duplicate_kind_names_both_plugins():
    class Twin:
        @hookimpl
        def register_source_kinds(self, register):
            from plugins.sources.files import FilesKind

            register(FilesKind())

    pm, _ = make_plugin_manager(entry_points=False)
    pm.register(Twin(), name="twin-plugin")
    with pytest.raises(PluginError, match=r"'plugins.sources.files' and 'twin-plugin'"):
        collect(pm, {})


class _FakeEntryPoint:
    """Stands in for an installed package's entry point (to inject import faults)."""

    def __init__(self, name: str, target: object | Exception) -> None:
        self.name, self.value, self._target = name, f"fake_{name}", target
        self.dist = types.SimpleNamespace(name=f"fake-{name}", version="9.9")

    def load(self):
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


def _with_entry_points(monkeypatch, *eps: _FakeEntryPoint) -> None:
    monkeypatch.setattr(
        importlib.metadata, "entry_points", lambda group=None: list(eps) if group else []
    )


def test_entry_points_load_and_failures_become_problems(monkeypatch):
    class Kinds:
        @hookimpl
        def register_source_kinds(self, register):
            register(_NoopKind())

    class Misspelt:
        @hookimpl
        def register_source_kind(self, register):  # no such hook
            pass

    _with_entry_points(
        monkeypatch,
        _FakeEntryPoint("ok", Kinds()),
        _FakeEntryPoint("bad-import", ImportError("No module named 'missingdep'")),
        _FakeEntryPoint("misspelt", Misspelt()),
    )
    pm, problems = make_plugin_manager()
    by_name = {p.plugin: p.message for p in problems}
    assert set(by_name) == {"bad-import", "misspelt"}
    assert "missingdep" in by_name["bad-import"]
    assert "register_source_kind" in by_name["misspelt"]
    reg = collect(pm, {}, problems=problems)
    assert reg.plugin("ok").version == "9.9"
    assert reg.owner("source_kind", "noop").name == "ok"
    assert len(reg.problems) == 2


def test_only_narrows_loading(monkeypatch):
    class Kinds:
        @hookimpl
        def register_source_kinds(self, register):
            register(_NoopKind())

    _with_entry_points(monkeypatch, _FakeEntryPoint("a", Kinds()), _FakeEntryPoint("b", Kinds()))
    pm, problems = make_plugin_manager(only=["b", "ghost"])
    assert pm.get_plugin("a") is None and pm.get_plugin("b") is not None
    assert [p.plugin for p in problems] == ["ghost"]
    monkeypatch.setenv(manager.ENV_LOAD, "")
    pm, problems = make_plugin_manager()
    assert pm.get_plugin("a") is None and pm.get_plugin("b") is None and problems == []


def test_lookups_suggest_close_names():
    reg = fresh()
    with pytest.raises(PluginError, match=r"did you mean 'files'"):
        reg.source_kind("filez")
    with pytest.raises(PluginError, match=r"did you mean 'linear'"):
        reg.cost_model_factory("linaer")
    with pytest.raises(ConfigError, match=r"per_token: Field required"):
        reg.build_cost_model("linear", {})


def test_invalid_config_is_reported_field_by_field():
    kind = fresh().source_kind("synthetic")
    with pytest.raises(ConfigError) as e:
        kind.parse_config({"seeds": "x.jsonl", "batch_size": 0, "colour": "red"})
    msg = str(e.value)
    assert "generator: Field required" in msg
    assert "batch_size: Input should be greater than 0" in msg
    assert "colour: Extra inputs are not permitted" in msg


def test_curation_cost_defaults_are_zero():
    c = CurationCost()
    assert (c.cost, c.generator_tokens, c.documents_scored) == (0.0, 0, 0)


def test_builtin_kind_names():
    assert sorted(fresh().source_kinds) == ["files", "filtered", "hf-disk", "licensed", "synthetic"]
