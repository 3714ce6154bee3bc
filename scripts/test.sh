#!/usr/bin/env bash
# Set up the environment and run the test suite: all of it (about 16 minutes on 2 CPU cores), or the
# folders or files given, e.g. `bash scripts/test.sh tests/unit` (the fast set, well under a minute).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export WANDB_MODE=offline HF_HUB_OFFLINE=1 PYTHONHASHSEED=0
if [ $# -eq 0 ]; then set -- tests; fi
.venv/bin/python -m pytest -q "$@"
