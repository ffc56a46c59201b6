"""The core never imports UI, HTTP or executor code (checked in a fresh interpreter)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

CORE = [
    "planner.domain",
    "planner.units",
    "planner.errors",
    "planner.config",
    "planner.store",
    "planner.laws",
    "planner.allocate",
    "planner.design",
    "planner.backtest",
    "planner.sources",
    "planner.sources.session",
]
FORBIDDEN = [
    "textual",
    "rich",
    "httpx",
    "fastapi",
    "uvicorn",
    "executors",
    "deepspeed",
    "lm_eval",
    "torch",
    "transformers",
]


def test_core_imports_no_ui_http_or_executors():
    code = (
        "import importlib, json, sys\n"
        f"for m in {CORE!r}:\n"
        "    importlib.import_module(m)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    leaked = json.loads(out.stdout.strip().splitlines()[-1])
    assert leaked == [], f"core modules pulled in {leaked}"


def test_only_the_store_imports_duckdb():
    """Only planner/store may import duckdb (checked on the source, every package)."""
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for package in ("planner", "plugins", "executors"):
        for path in (root / package).rglob("*.py"):
            if (root / "planner" / "store") in path.parents:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                if any(n.split(".")[0] == "duckdb" for n in names):
                    offenders.append(str(path.relative_to(root)))
    assert offenders == []
