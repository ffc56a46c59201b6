"""A metric row's evaluation size and chance level (optional runs-table columns)."""

from __future__ import annotations

VERSION = 2

SQL = """
ALTER TABLE metrics ADD COLUMN n_items DOUBLE;
ALTER TABLE metrics ADD COLUMN chance DOUBLE;
"""
