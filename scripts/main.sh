#!/usr/bin/env bash
# The main job on the built-in dataset, from a fresh clone: set up, masked pretraining (stage 1),
# autoregressive fine-tuning from its weights (stage 2), evaluation, pictures. About 6 minutes on
# 2 CPU cores. Each run writes a new folder under runs/ (nothing is overwritten).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export WANDB_MODE=${WANDB_MODE:-offline} HF_HUB_OFFLINE=1
PY=.venv/bin/python
RUN=${RUN_DIR:-runs/main-$(date +%Y%m%d-%H%M%S)}
STAGE1_STEPS=${MAIN_STAGE1_STEPS:-120}
STAGE2_STEPS=${MAIN_STAGE2_STEPS:-280}
COMMON=(--genie_config configs/tiny.json --learning_rate 1e-3 --lr_scheduler_type cosine --num_warmup_steps 20
        --per_device_train_batch_size 8 --log_every_n_steps 20 --max_eval_steps 4)

echo "== stage 1: masked pretraining ($STAGE1_STEPS steps, mask ratio 0.8 -> 0.1 cosine) -> $RUN/masked_pretrain"
$PY masked_pretrain.py "${COMMON[@]}" --output_dir "$RUN/masked_pretrain" --max_train_steps "$STAGE1_STEPS" \
  --initial_mask_ratio 0.8 --final_mask_ratio 0.1 --mask_schedule cosine --eval_every_n_steps 60

echo "== stage 2: autoregressive fine-tuning ($STAGE2_STEPS steps) from the stage-1 weights -> $RUN/autoregressive"
$PY train.py "${COMMON[@]}" --output_dir "$RUN/autoregressive" --max_train_steps "$STAGE2_STEPS" \
  --masked_pretrain_checkpoint "$RUN/masked_pretrain" --eval_every_n_steps 1000

echo "== evaluation (temporally teacher-forced, all val windows)"
$PY scripts/evaluate.py --checkpoint_dir "$RUN/autoregressive/final_model" --output_dir "$RUN"

echo "== generation: 4 prompt frames -> 4 new frames, 4 MaskGIT steps"
$PY scripts/generate.py --checkpoint_dir "$RUN/autoregressive/final_model" --output_dir "$RUN/generated" \
  --num_prompt_frames 4 --maskgit_steps 4 --num_examples 3
echo "== done: numbers in $RUN/eval.md (and eval.json, eval.png); pictures in $RUN/generated/strip.png and $RUN/masked_pretrain/pictures/"
