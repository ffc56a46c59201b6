"""The Textual app: a planning session from sources to allocation.

Every action here is also a CLI verb; screens call the same core functions in workers.
"""

from __future__ import annotations
