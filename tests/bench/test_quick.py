"""Every benchmark in bench/ still runs: its ``--quick`` mode (tiny sizes, seconds) in a
subprocess, as ``make bench`` runs the full one.

The benches are found by a glob, so a new one is covered without editing this file; a bench
without ``--quick`` fails here (argparse refuses the flag).
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHES = sorted((ROOT / "bench").glob("*.py"))
#: the line every bench ends with: "speed-up: 12.3x", "ratio executor/plain: 0.950"…
RATIO = re.compile(r"^(?:.*\bratio\b|speed-up)[^:\n]*:\s*([0-9][0-9.e+-]*)x?\b", re.MULTILINE)


def test_benches_are_found() -> None:
    assert len(BENCHES) >= 5, [p.name for p in BENCHES]


@pytest.mark.slow
@pytest.mark.parametrize("bench", BENCHES, ids=lambda p: p.stem)
def test_quick_mode_runs_and_prints_its_ratio(bench: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(bench), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, f"{bench.name} --quick failed:\n{out.stdout}\n{out.stderr[-4000:]}"
    ratios = [float(m) for m in RATIO.findall(out.stdout)]
    assert ratios, f"{bench.name} --quick printed no ratio:\n{out.stdout}"
    assert all(math.isfinite(r) and r > 0 for r in ratios), out.stdout
