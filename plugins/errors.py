"""Errors that annealplan shows to people.

Every message says what happened and what to do next. Expected failures of a
computation (a fit that does not converge, an infeasible budget) are data, not
exceptions; these classes are for bad input and broken environments.

They live in the plugin contract, the bottom layer, so that plugins and executors raise
them without importing the planner; :mod:`planner.errors` re-exports them.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Iterator


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


#: reply statuses that mean "try again later" (the executor is busy or briefly away)
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class ExecutorReplyError(ExecutorError):
    """An executor answered with an error, or could not be reached.

    Every executor backend raises it, so dispatch can tell "this executor does not know
    the job" (``status`` 404) and "it is away for now" (:attr:`unreachable`) from a
    refusal, whatever transport the backend uses. The statuses are HTTP's.

    Attributes:
        status: the reply's status (0: no reply at all).
        code, field: the executor's error code and the field it names, if any.
        retry_after: seconds the executor asked the caller to wait (0: none).
    """

    def __init__(
        self,
        msg: str,
        *,
        status: int = 0,
        code: str = "",
        field: str | None = None,
        retry_after: float = 0.0,
    ) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.field = field
        self.retry_after = retry_after

    @property
    def unreachable(self) -> bool:
        """True when trying again later may succeed (no reply, or a busy/away status)."""
        return self.status == 0 or self.status in RETRY_STATUSES


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """A ``"; did you mean 'x'?"`` suffix for an unknown ``name`` (empty when nothing is close).

    The one spelling of the hint, for every "unknown X" message of the project.
    """
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


#: how to install what the executors and the model-based source kinds need
EXECUTOR_EXTRA = "pip install 'annealplan[executor]'"
#: the import names the executor extra provides (``pip install annealplan`` has none)
EXECUTOR_PACKAGES = frozenset(
    {"torch", "transformers", "tokenizers", "datasets", "accelerate", "deepspeed", "lm_eval"}
    | {"gguf", "sklearn"}
)


@contextlib.contextmanager
def executor_extra(what: str) -> Iterator[None]:
    """Turn a missing package of the executor extra into one error that names the extra.

    A planner-only install (``pip install annealplan``) has no torch, transformers…; code
    that needs them imports them inside this block::

        with executor_extra("the synthetic kind's generator"):
            import torch

    Args:
        what: what needs the package, for the message.

    Raises:
        ConfigError: a package of the extra is missing (other import errors pass through).
    """
    try:
        yield
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in EXECUTOR_PACKAGES:
            raise
        raise ConfigError(
            f"{what} needs {e.name}, which is not installed here; install it with {EXECUTOR_EXTRA}"
        ) from e
