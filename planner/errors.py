"""Errors that annealplan shows to people.

Every message says what happened and what to do next. Expected failures of a
computation (a fit that does not converge, an infeasible budget) are data, not
exceptions; these classes are for bad input and broken environments.
"""

from __future__ import annotations


class AnnealplanError(Exception):
    """Base class: ``msg`` is shown verbatim; ``title`` heads a modal or log line."""

    default_title = "annealplan error"

    def __init__(self, msg: str, *, title: str = "") -> None:
        super().__init__(msg)
        self.msg = msg
        self.title = title or self.default_title

    def __str__(self) -> str:
        return self.msg


class ConfigError(AnnealplanError):
    default_title = "Configuration problem"


class UnitError(ConfigError):
    default_title = "Cannot read that quantity"


class PluginError(AnnealplanError):
    default_title = "Plugin problem"


class StoreError(AnnealplanError):
    default_title = "Store problem"


class ImportDataError(StoreError):
    default_title = "Cannot import that file"


class FitError(AnnealplanError):
    default_title = "Fitting problem"


class SolveError(AnnealplanError):
    default_title = "Allocation problem"


class ExecutorError(AnnealplanError):
    default_title = "Executor problem"
