#!/usr/bin/env bash
# The main job on the built-in dataset, from a fresh clone: set up, masked pretraining (stage 1),
# autoregressive training from its weights (stage 2), evaluation beside copy-the-last-frame, pictures.
# About 5 minutes on 2 CPU cores, set-up included. Each run writes a new folder under runs/.
# Stage 1: 200 steps at batch 16, AdamW 3e-3. Stage 2: 600 steps at batch 8, Muon 0.02 on the blocks'
# weight matrices and AdamW 1e-2 on the rest, cosine (the speedrun's choice, docs/performance.md).
#   MAIN_STAGE2_RECIPE=adamw   stage 2 as before 2026-12-07: 800 steps at batch 16, AdamW 3e-3 throughout
#   MAIN_COMPARE=1   also trains stage 2 alone on as many training windows and evaluates it (+4 min)
#   MAIN_CONFIG=configs/tiny.json   the 16x16-token, 2^18-vocabulary world instead (slower, learns less)
#   MAIN_SEED, MAIN_STAGE1_STEPS, MAIN_STAGE2_STEPS, RUN_DIR   override the defaults
#   MAIN_DATA_DIR=D   train on D/train and D/val instead of the built-in world (scripts/atari.sh sets it)
#   MAIN_PYTHON=P     use the interpreter P (an environment that has the package) and skip the set-up
set -euo pipefail
source "$(dirname "$0")/usage.sh" && usage_or_refuse "$0" "$@"
cd "$(dirname "$0")/.."
# The two stages' recipes, checked before the set-up so that a wrong name costs nothing
STAGE1_BATCH=16
STAGE1=(--learning_rate 3e-3 --per_device_train_batch_size "$STAGE1_BATCH")
case "${MAIN_STAGE2_RECIPE:-muon}" in
  muon) STAGE2_BATCH=8 STAGE2_STEPS=${MAIN_STAGE2_STEPS:-600}
        STAGE2=(--optimizer muon --muon_learning_rate 0.02 --learning_rate 1e-2
                --per_device_train_batch_size "$STAGE2_BATCH") ;;
  adamw) STAGE2_BATCH=$STAGE1_BATCH STAGE2_STEPS=${MAIN_STAGE2_STEPS:-800} STAGE2=("${STAGE1[@]}") ;;
  *) echo "error: MAIN_STAGE2_RECIPE=$MAIN_STAGE2_RECIPE is unknown; use muon (the default) or adamw" >&2; exit 2 ;;
esac
if [ -z "${MAIN_PYTHON:-}" ]; then bash scripts/setup_env.sh; fi
export WANDB_MODE=${WANDB_MODE:-offline} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1  # lines reach a log as they come
PY=${MAIN_PYTHON:-.venv/bin/python}
RUN=${RUN_DIR:-runs/main-$(date +%Y%m%d-%H%M%S)}
CONFIG=${MAIN_CONFIG:-configs/small.json}
STAGE1_STEPS=${MAIN_STAGE1_STEPS:-200}
COMMON=(--genie_config "$CONFIG" --seed "${MAIN_SEED:-42}" --lr_scheduler_type cosine --num_warmup_steps 20
        --log_every_n_steps 50 --max_eval_steps 4 --eval_every_n_steps 100000 --checkpointing_steps 100000)
TRAIN_DATA=() VAL_DATA=() EVAL_STRIDE=()
if [ -n "${MAIN_DATA_DIR:-}" ]; then  # windows of consecutive frames, in training and in evaluation alike
  TRAIN_DATA=(--train_data_dir "$MAIN_DATA_DIR/train") VAL_DATA=(--val_data_dir "$MAIN_DATA_DIR/val") EVAL_STRIDE=(--stride 1)
  COMMON+=("${TRAIN_DATA[@]}" "${VAL_DATA[@]}")
fi
# Keep the log readable: progress-bar updates (carriage-return separated) are dropped, every other
# line (results, errors, progress lines) is kept and reaches a log file as it comes (line-buffered
# filters), and a failing command still stops the job (pipefail + set -e).
LINE_BUFFERED=(); if command -v stdbuf > /dev/null; then LINE_BUFFERED=(stdbuf -oL); fi
quiet() { "$@" 2>&1 | ${LINE_BUFFERED[@]+"${LINE_BUFFERED[@]}"} tr '\r' '\n' | { grep --line-buffered -v -E "it/s|s/it" || true; }; }

echo "== stage 1: masked pretraining ($STAGE1_STEPS steps, mask ratio 0.8 -> 0.1 cosine) -> $RUN/masked_pretrain"
quiet $PY masked_pretrain.py "${COMMON[@]}" "${STAGE1[@]}" --output_dir "$RUN/masked_pretrain" \
  --max_train_steps "$STAGE1_STEPS" --initial_mask_ratio 0.8 --final_mask_ratio 0.1 --mask_schedule cosine

echo "== stage 2: autoregressive training ($STAGE2_STEPS steps, ${MAIN_STAGE2_RECIPE:-muon}) from the stage-1 weights" \
  "-> $RUN/autoregressive"
quiet $PY train.py "${COMMON[@]}" "${STAGE2[@]}" --output_dir "$RUN/autoregressive" --max_train_steps "$STAGE2_STEPS" \
  --masked_pretrain_checkpoint "$RUN/masked_pretrain"

echo "== evaluation: the challenge metric (teacher-forced) and rollouts, beside copying the last frame"
$PY scripts/evaluate.py --checkpoint_dir "$RUN/autoregressive/final_model" --output_dir "$RUN" \
  ${TRAIN_DATA[@]+"${TRAIN_DATA[@]}"} ${VAL_DATA[@]+"${VAL_DATA[@]}"} ${EVAL_STRIDE[@]+"${EVAL_STRIDE[@]}"}

echo "== generation: 4 prompt frames -> 4 new frames (prompt | prediction | truth)"
$PY scripts/generate.py --checkpoint_dir "$RUN/autoregressive/final_model" --output_dir "$RUN/generated" \
  --num_prompt_frames 4 --num_examples 3 ${VAL_DATA[@]+"${VAL_DATA[@]}"}

if [ "${MAIN_COMPARE:-0}" = "1" ]; then
  TOTAL=$((STAGE1_STEPS * STAGE1_BATCH / STAGE2_BATCH + STAGE2_STEPS))  # the two stages' training windows, at stage 2's batch
  echo "== comparison: stage 2 alone, from scratch, for the same training windows ($TOTAL steps) -> $RUN/stage2_only"
  quiet $PY train.py "${COMMON[@]}" "${STAGE2[@]}" --output_dir "$RUN/stage2_only" --max_train_steps "$TOTAL"
  $PY scripts/evaluate.py --checkpoint_dir "$RUN/stage2_only/final_model" --output_dir "$RUN/stage2_only_eval" \
    ${TRAIN_DATA[@]+"${TRAIN_DATA[@]}"} ${VAL_DATA[@]+"${VAL_DATA[@]}"} ${EVAL_STRIDE[@]+"${EVAL_STRIDE[@]}"}
fi
$PY -c "
import json
from genie.evaluation.report import headline
print('== result:', headline(json.load(open('$RUN/eval.json'))))
"
echo "== done: numbers in $RUN/eval.md (eval.json, eval.png); pictures in $RUN/generated/strip.png and $RUN/masked_pretrain/pictures/"
