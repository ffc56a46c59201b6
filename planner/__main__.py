"""``python -m planner`` is ``annealplan``."""

from __future__ import annotations

from planner.cli import main

if __name__ == "__main__":
    main()
