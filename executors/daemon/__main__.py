"""``python -m executors.daemon serve …``: the same as ``annealplan-executor serve …``."""

from __future__ import annotations

from executors.daemon.cli import main

if __name__ == "__main__":
    main()
