"""How many threads the fits' linear algebra (BLAS) may use while they run."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

from planner.errors import ConfigError

#: Threads the fits' linear algebra (BLAS) may use; 0 leaves the library's own default.
#: A fit's matrices are small (thousands of rows, at most a few hundred columns): BLAS
#: threads gain little on them when the machine is idle and cost 20x and more when its cores
#: are busy (the backtest's own worker processes, a training job beside the planner), as
#: ``bench/blas_threads.py`` shows. Raise it for one very large fit on an idle many-core box.
BLAS_THREADS_ENV = "ANNEALPLAN_BLAS_THREADS"


@functools.cache
def blas_limit() -> Callable[[], object] | None:
    """A context-manager factory holding BLAS to its thread count, None for no limit."""
    raw = os.environ.get(BLAS_THREADS_ENV, "1").strip()
    if not raw.isdigit():
        raise ConfigError(
            f"{BLAS_THREADS_ENV}={raw!r} is not a thread count: set it to a whole number "
            "(1, the default, suits fits; 0 leaves the BLAS library's own default)."
        )
    if int(raw) == 0:
        return None
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401
    from threadpoolctl import ThreadpoolController

    # built once numpy's and scipy's BLAS are loaded (the imports above), so it holds both
    controller = ThreadpoolController()
    return functools.partial(controller.limit, limits=int(raw), user_api="blas")


def limited_blas(fn):
    """Run ``fn`` with BLAS held to :data:`BLAS_THREADS_ENV` threads (default 1)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        limit = blas_limit()
        if limit is None:
            return fn(*args, **kwargs)
        with limit():
            return fn(*args, **kwargs)

    return run
