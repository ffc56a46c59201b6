"""Experiment design: the first sweep, and which run to do next (value of information)."""

from __future__ import annotations
