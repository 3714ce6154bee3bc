#!/usr/bin/env bash
# Create .venv (if missing) and install the genie package with its dependencies (pyproject.toml),
# editable, with the dev (tests), onnx (ONNX export and ONNX Runtime) and atari (recording Atari games,
# fitting their codebook) extras. torch goes first, pinned, as the build that fits the machine (below).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first, pinned, and of the kind that fits this machine: a wheel offered locally (pip's
# find-links, as on the project's CI machines) as it is; else the CUDA build (the package index's
# default for Linux) only where an NVIDIA GPU answers, and the CPU build from PyTorch's CPU index
# everywhere else. TORCH_INDEX_URL overrides the choice.
TORCH="torch==2.13.0"
if .venv/bin/python -c "import torch" 2>/dev/null; then
  :  # already installed
elif [ -n "${TORCH_INDEX_URL:-}" ]; then
  .venv/bin/python -m pip install --quiet "$TORCH" --index-url "$TORCH_INDEX_URL"
elif .venv/bin/python -m pip download --quiet --no-index --no-deps "$TORCH" -d "$(mktemp -d)" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet "$TORCH"  # the local wheel; its dependencies from the index
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "setup: an NVIDIA GPU is present: installing the CUDA build of torch"
  .venv/bin/python -m pip install --quiet "$TORCH"
else
  echo "setup: no NVIDIA GPU: installing the CPU build of torch"
  .venv/bin/python -m pip install --quiet "$TORCH" --index-url https://download.pytorch.org/whl/cpu
fi
.venv/bin/python -m pip install --quiet -e ".[dev,onnx,atari]"
