#!/usr/bin/env bash
# The one-shot GPU check (examples/gpu/README.md), for a machine with one NVIDIA GPU and no
# network. It uses the machine's own CUDA torch and installs everything else from the wheel
# folder that `make gpu-wheels` prepared elsewhere, in a virtual environment that sees the
# system's packages (for torch) but prefers its own.
#
#   examples/gpu/check.sh [--peak-tflops N] [--json figures.json] [--dry-run]
#
# WHEELS (default: gpu-wheels), VENV (default: .venv-gpu) and PYTHON (default: python3, the
# interpreter whose torch sees the GPU) can be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/../.."
WHEELS=${WHEELS:-gpu-wheels}
VENV=${VENV:-.venv-gpu}
PYTHON=${PYTHON:-python3}

if [ ! -f "$WHEELS/MANIFEST.json" ]; then
    echo "no wheel folder at $WHEELS: run \`make gpu-wheels\` on a machine with network and copy it here" >&2
    exit 2
fi
want=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["python"])' "$WHEELS/MANIFEST.json")
have=$("$PYTHON" -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')
if [ "$want" != "$have" ]; then
    echo "the wheels in $WHEELS are for Python $want, $PYTHON is $have: build them with Python $have" >&2
    exit 2
fi
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "$PYTHON has no torch: this check uses the machine's own CUDA build of torch" >&2
    exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
    # $PYTHON may itself live in a virtual environment, its torch in that environment's own
    # site-packages, which --system-site-packages does not reach: a .pth puts $PYTHON's
    # folders after the new environment's own (whose wheels still win).
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
    "$PYTHON" -c 'import site; print("\n".join(site.getsitepackages()))' >"$site/base-python.pth"
    "$VENV/bin/python" -m pip install --quiet --no-index --no-deps "$WHEELS"/*.whl
fi
exec "$VENV/bin/python" examples/gpu/check.py "$@"
