"""A mixed run's tokens per source (the runs of a plan's confirmation anneal).

A later fit learns the combination rule's interaction from (tokens per source, measured
gain) pairs; the mixture's name alone (``a@0.6+b@0.4``) rounds its shares.
"""

from __future__ import annotations

VERSION = 3

SQL = """
ALTER TABLE runs ADD COLUMN tokens_per_source VARCHAR; -- JSON {source: tokens}; NULL: one source
"""
