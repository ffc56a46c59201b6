"""Helpers for textual-plotext plots with a logarithmic compute or budget axis.

plotext's own log scale transforms the data inside ``build`` and a failed or repeated
build can take the log of logged values; so the x data are passed as log10 values on a
linear axis, with tick labels written in the original units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def log_x(xs: Sequence[float] | np.ndarray) -> list[float]:
    """log10 of positive values (others become NaN, which :func:`line` drops)."""
    arr = np.asarray(xs, dtype=float)
    with np.errstate(all="ignore"):
        return np.where(arr > 0, np.log10(arr), np.nan).tolist()


def tick_label(value: float) -> str:
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e4:
        return f"{value:.3g}"
    return f"{value:.0e}".replace("e+0", "e").replace("e-0", "e-")


def log_ticks(plt: Any, low: float, high: float, n: int = 5) -> None:
    """Put about ``n`` ticks between ``low`` and ``high`` (original units, > 0)."""
    if not (low > 0 and high > low):
        return
    a, b = math.log10(low), math.log10(high)
    step = max((b - a) / (n - 1), 1e-9)
    ticks = [a + i * step for i in range(n)]
    plt.xticks(ticks, [tick_label(10**t) for t in ticks])


def line(
    plt: Any, xs: Sequence[float], ys: Sequence[float], color: str, marker: str, **kw: Any
) -> None:
    """Plot the finite points of (log10 x, y), if at least two."""
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() >= 2:
        plt.plot(x[keep].tolist(), y[keep].tolist(), color=color, marker=marker, **kw)


def points(plt: Any, xs: Sequence[float], ys: Sequence[float], color: str, marker: str) -> None:
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.any():
        plt.scatter(x[keep].tolist(), y[keep].tolist(), color=color, marker=marker)
