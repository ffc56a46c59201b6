"""Errors that annealplan shows to people (defined in the plugin contract, re-exported here).

The classes live in :mod:`plugins.errors` so that plugins and executors can raise them
without importing the planner; the planner's code imports them from here.
"""

from __future__ import annotations

from plugins.errors import (
    AnnealplanError,
    ConfigError,
    ExecutorError,
    ExecutorReplyError,
    FitError,
    ImportDataError,
    PluginError,
    SolveError,
    StoreError,
    UnitError,
    did_you_mean,
    executor_extra,
)

__all__ = [
    "AnnealplanError",
    "ConfigError",
    "ExecutorError",
    "ExecutorReplyError",
    "FitError",
    "ImportDataError",
    "PluginError",
    "SolveError",
    "StoreError",
    "UnitError",
    "did_you_mean",
    "executor_extra",
]
