#!/usr/bin/env bash
# Set up the environment and run the whole test suite (a few minutes on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export WANDB_MODE=offline HF_HUB_OFFLINE=1 PYTHONHASHSEED=0
.venv/bin/python -m pytest -q tests "$@"
