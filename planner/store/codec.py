"""How JSON bodies are written to the store and read back: plain JSON for metadata and plans,
and, for a fit's body, JSON in which long float arrays are packed as bytes."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from planner.units import Unit


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, allow_nan=True)


#: a float array in a fit's body with at least this many values is stored as its bytes
PACKED_MIN_SIZE = 64


def _dumps_packed(obj: Any) -> str:
    """JSON in which long float arrays are base64 bytes instead of lists of numbers.

    An averaged fit carries each member's bootstrap draws: as lists of numbers that made a
    fit's body about 190 KB of JSON, and reading a thousand fits back spent seconds parsing
    numbers. :func:`_loads_packed` restores them as arrays.
    """
    return json.dumps(obj, default=_packed_default, allow_nan=True)


def _packed_default(o: Any) -> Any:
    if isinstance(o, np.ndarray) and o.dtype.kind == "f" and o.size >= PACKED_MIN_SIZE:
        a = np.ascontiguousarray(o, dtype="<f8")
        return {"__f8__": base64.b64encode(a.tobytes()).decode("ascii"), "shape": list(a.shape)}
    return _json_default(o)


def _unpack(d: dict[str, Any]) -> Any:
    if "__f8__" in d and len(d) == 2:
        raw = base64.b64decode(d["__f8__"])
        return np.frombuffer(raw, dtype="<f8").reshape(d["shape"]).copy()
    return d


def _loads_packed(text: str) -> Any:
    """Read :func:`_dumps_packed` JSON (bodies written before it, all lists, read as they are)."""
    return json.loads(text, object_hook=_unpack)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Unit):
        return o.value
    if isinstance(o, Path):
        return str(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return {f.name: getattr(o, f.name) for f in dataclasses.fields(o)}
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    raise TypeError(f"cannot store a {type(o).__name__} as JSON")
