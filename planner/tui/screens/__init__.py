"""One screen per task: sources, jobs, laws, allocation, executors, plugins."""

from __future__ import annotations
