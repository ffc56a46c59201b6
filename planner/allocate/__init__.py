"""Cost-optimal allocation of a budget across data sources (see ``solve`` for the method)."""

from __future__ import annotations
