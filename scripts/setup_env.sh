#!/usr/bin/env bash
# Create .venv (if missing) and install the genie package with its dependencies (pyproject.toml),
# editable, with the dev (tests), onnx (ONNX export and ONNX Runtime) and atari (recording Atari games,
# fitting their codebook) extras. torch goes first and pinned, so that no CUDA build is pulled in.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev,onnx,atari]"
