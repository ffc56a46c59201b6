"""Every bench's ``--quick`` mode: tiny sizes that run in seconds, so the suite can check
that the bench still runs (its figures then mean nothing)."""

from __future__ import annotations

import argparse
from typing import Any


def parse_args(ap: argparse.ArgumentParser, quick: dict[str, Any]) -> argparse.Namespace:
    """``ap``'s arguments plus ``--quick``, whose sizes (``quick``) become the defaults;
    a flag given on the command line still wins over them."""
    ap.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, seconds: checks that the bench still runs (figures mean nothing)",
    )
    known, _ = ap.parse_known_args()
    if known.quick:
        ap.set_defaults(**quick)
    return ap.parse_args()
