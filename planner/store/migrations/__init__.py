"""Numbered schema migrations. Each ``mNNN_*.py`` module has ``VERSION`` and ``SQL``;
they are applied in order, each in its own transaction, and recorded in ``schema_version``.
Never edit an applied migration: add the next number."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def all_migrations() -> list[ModuleType]:
    mods = [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
        if info.name.startswith("m") and info.name[1:4].isdigit()
    ]
    mods.sort(key=lambda m: m.VERSION)
    versions = [m.VERSION for m in mods]
    if versions != list(range(1, len(mods) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, got {versions}")
    return mods
