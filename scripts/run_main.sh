#!/usr/bin/env bash
# The main job on the built-in dataset, from a fresh clone: set up, train, evaluate, draw predictions.
# About 7-8 minutes on 2 CPU cores. Each run writes a new folder under runs/ (nothing is overwritten).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export WANDB_MODE=${WANDB_MODE:-offline} HF_HUB_OFFLINE=1
PY=.venv/bin/python
RUN=${RUN_DIR:-runs/main-$(date +%Y%m%d-%H%M%S)}
STEPS=${MAIN_TRAIN_STEPS:-350}

echo "== stage 2: autoregressive training ($STEPS steps, tiny config, built-in dataset) -> $RUN/autoregressive"
$PY train.py --genie_config configs/tiny.json --output_dir "$RUN/autoregressive" \
  --max_train_steps "$STEPS" --learning_rate 1e-3 --lr_scheduler_type cosine --num_warmup_steps 20 \
  --per_device_train_batch_size 8 --log_every_n_steps 25 --eval_every_n_steps 1000 --max_eval_steps 4

echo "== evaluation (temporally teacher-forced, all val windows)"
$PY scripts/evaluate.py --checkpoint_dir "$RUN/autoregressive/final_model" --output_json "$RUN/eval.json" | tee "$RUN/eval.md"

echo "== generation: 4 prompt frames -> 4 new frames, 4 MaskGIT steps"
$PY scripts/generate.py --checkpoint_dir "$RUN/autoregressive/final_model" --output_dir "$RUN/generated" \
  --num_prompt_frames 4 --maskgit_steps 4 --num_examples 3
echo "== done: numbers in $RUN/eval.md, picture in $RUN/generated/strip.png"
