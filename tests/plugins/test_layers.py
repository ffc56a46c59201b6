"""The plugin layer is the bottom layer: read every module's imports with ``ast`` (those
inside functions and under ``TYPE_CHECKING`` too, which import-linter and a ``sys.modules``
check can miss) and hold them to the layering rules."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"

#: the contract: what a plugin author implements and what the planner re-exports
CONTRACT = ("contract", "hookspecs", "errors", "units", "registry")
CONTRACT_MODULES = {f"plugins.{name}" for name in CONTRACT}
#: third-party packages the contract may import at run time
CONTRACT_PACKAGES = {"pluggy", "pydantic", "sympy"}
#: what the contract may name for type checkers only: the executor protocol's wire models
#: (the one definition of a job) and numpy arrays in cost signatures
TYPE_ONLY = {"executors.protocol", "numpy"}


def imports(source: str) -> Iterator[tuple[str, bool, int]]:
    """(imported module, under ``if TYPE_CHECKING:``, line) for every import in ``source``."""
    tree = ast.parse(source)
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in typing_only, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, id(node) in typing_only, node.lineno


def contract_violations(source: str) -> list[str]:
    """Imports a contract module may not make."""
    bad = []
    for module, typing_only, line in imports(source):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top in CONTRACT_PACKAGES:
            continue
        if module in CONTRACT_MODULES:
            continue
        if typing_only and any(module == t or module.startswith(t + ".") for t in TYPE_ONLY):
            continue
        bad.append(f"line {line}: {module}{' (under TYPE_CHECKING)' if typing_only else ''}")
    return bad


def planner_imports(source: str) -> list[str]:
    return [
        f"line {line}: {module}"
        for module, _, line in imports(source)
        if module == "planner" or module.startswith("planner.")
    ]


@pytest.mark.parametrize("name", CONTRACT)
def test_the_contract_imports_only_the_stdlib_pluggy_pydantic_sympy_and_itself(name: str):
    path = PLUGINS / f"{name}.py"
    assert contract_violations(path.read_text()) == [], path


def test_no_module_of_the_plugin_layer_imports_the_planner():
    modules = sorted(PLUGINS.rglob("*.py"))
    assert len(modules) > 10 and PLUGINS / "backends" / "http" / "__init__.py" in modules
    found = {
        str(p.relative_to(ROOT)): bad for p in modules if (bad := planner_imports(p.read_text()))
    }
    assert found == {}


def test_the_checks_see_imports_in_functions_and_under_type_checking():
    source = (
        "from typing import TYPE_CHECKING\n"
        "import pluggy\n"
        "if TYPE_CHECKING:\n"
        "    from executors.protocol import JobRecord\n"
        "    from planner.domain import Source\n"
        "def f():\n"
        "    import httpx\n"
        "    from planner.errors import ConfigError\n"
    )
    assert contract_violations(source) == [
        "line 5: planner.domain (under TYPE_CHECKING)",
        "line 7: httpx",
        "line 8: planner.errors",
    ]
    assert planner_imports(source) == ["line 5: planner.domain", "line 8: planner.errors"]
    # executors.protocol only for type checkers, never at run time
    assert contract_violations("from executors.protocol import JobRecord\n") == [
        "line 1: executors.protocol"
    ]
