"""Built-in cost models: ``linear``, ``generation`` and ``filtering``.

Each is a sympy expression in the number of tokens with its unit; the allocation solver
differentiates the expression, and ``cost`` evaluates the same formula numerically.
"""

from __future__ import annotations
