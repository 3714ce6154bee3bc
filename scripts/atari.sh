#!/usr/bin/env bash
# The Atari job, from a fresh clone: set up, record Breakout with its actions (about 7 minutes of play,
# tokenized by a patch codebook fitted on the train episodes), then scripts/main.sh on that data: masked
# pretraining (stage 1), autoregressive training from its weights (stage 2), evaluation beside the copy
# and unigram references, pictures (prompt | prediction | truth, and a GIF) in RGB. About 20 minutes on
# 2 CPU cores (see docs/atari.md for the measured time). Each run writes a new folder under runs/.
#   ATARI_ENV_ID=ALE/Pong-v5 (or several, comma-separated)   another game (default ALE/Breakout-v5)
#   ATARI_FRAMES, ATARI_SEED   frames recorded (default 6000 = 400 s of play at 15 Hz), recording seed
#   MAIN_STAGE2_RECIPE   stage 2's recipe: muon (the default since 2026-12-07: 4,000 steps at batch 8), or adamw
#                        (2,000 steps at batch 16: the earlier runs of docs/atari.md)
#   MAIN_STAGE1_STEPS, MAIN_STAGE2_STEPS, MAIN_SEED, MAIN_CONFIG, MAIN_PYTHON, RUN_DIR   as for scripts/main.sh
set -euo pipefail
source "$(dirname "$0")/usage.sh" && usage_or_refuse "$0" "$@"
cd "$(dirname "$0")/.."
if [ -z "${MAIN_PYTHON:-}" ]; then bash scripts/setup_env.sh; fi
PY=${MAIN_PYTHON:-.venv/bin/python}
RUN=${RUN_DIR:-runs/atari-$(date +%Y%m%d-%H%M%S)}
GAME=${ATARI_ENV_ID:-ALE/Breakout-v5}
FRAMES=${ATARI_FRAMES:-6000}
export PYTHONUNBUFFERED=1  # with the line-buffered filters below, lines reach a log as they come
LINE_BUFFERED=(); if command -v stdbuf > /dev/null; then LINE_BUFFERED=(stdbuf -oL); fi

echo "== recording $FRAMES frames of $GAME (frame skip 4, sticky actions 0.25, random policy) -> $RUN/data"
$PY scripts/record_atari.py --env_id "$GAME" --num_frames "$FRAMES" --seed "${ATARI_SEED:-0}" \
  --output_dir "$RUN/data" 2>&1 | ${LINE_BUFFERED[@]+"${LINE_BUFFERED[@]}"} tr '\r' '\n' \
  | { grep --line-buffered -v -E "frame/s|^A.L.E|Powered by Stella" || true; }

RECIPE=${MAIN_STAGE2_RECIPE:-muon}
if [ "$RECIPE" = "adamw" ]; then STAGE2_STEPS=${MAIN_STAGE2_STEPS:-2000}; else STAGE2_STEPS=${MAIN_STAGE2_STEPS:-4000}; fi
MAIN_PYTHON="$PY" MAIN_DATA_DIR="$RUN/data" RUN_DIR="$RUN" MAIN_CONFIG="${MAIN_CONFIG:-configs/atari.json}" \
  MAIN_STAGE2_RECIPE="$RECIPE" MAIN_STAGE1_STEPS="${MAIN_STAGE1_STEPS:-500}" MAIN_STAGE2_STEPS="$STAGE2_STEPS" \
  bash scripts/main.sh

$PY -c "
import json
r = json.load(open('$RUN/eval.json')); h = r['rollout']
print(f\"== references: cross-entropy model {r['cross_entropy']:.3f} vs unigram {r['unigram_cross_entropy']:.3f} nats/token; \"
      f\"accuracy model {r['accuracy']:.3f} vs most frequent token {r['unigram_accuracy']:.3f} vs copy previous frame \"
      f\"{r['copy_previous_accuracy']:.3f}; rollout PSNR at horizon 1: model {h['psnr_per_horizon'][0]:.2f} dB vs \"
      f\"copy last frame {h['copy_psnr_per_horizon'][0]:.2f} dB\")
"
