"""Command-line arguments shared by train.py and masked_pretrain.py (parsed by transformers.HfArgumentParser).

Flag names follow the reference `train.py` (github 1x-technologies/1xgpt) where it has them.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from genie.data.sources import DataOptions
from genie.errors import check_flag
from genie.training.curriculum import FrameCurriculum

DATA_OPTION_FIELDS = {f.name: f for f in dataclasses.fields(DataOptions)}

# transformers schedulers that need nothing but the warmup and total steps (others need a metric or extra kwargs)
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt")


OPTIMIZERS = ("adamw", "muon")


@dataclass
class TrainingArguments:
    # Model and data
    genie_config: str | None = field(default=None, metadata={
        "help": "GenieConfig JSON file (it may also hold the stage-1 fields, which train.py ignores). Default: "
                "configs/tiny.json, or for train.py the architecture of --masked_pretrain_checkpoint."})
    train_data_dir: str | None = field(default=None, metadata={
        "help": "One split's token folder (not a parent of train/ and val/), in a 1X layout: v1.1 (metadata.json, "
                "video.bin, segment_ids.bin, optional actions/<name>.bin), v2.0 sharded (metadata.json, videos/, "
                "robot_states/, segment_indices/, metadata/) or v2.0 flat (metadata.json, video_<i>.bin, "
                "states_<i>.bin, segment_idx_<i>.bin, metadata_<i>.json); the layout is read from the files unless "
                "--data_format says. Default: the built-in dataset."})
    val_data_dir: str | None = field(default=None, metadata={"help": "Validation folder, in the same layout as --train_data_dir (none: the built-in dataset)."})
    window_size: int | None = field(default=None, metadata={"help": "Frames per window; must equal the config's T (default T)."})
    stride: int = field(default=1, metadata={"help": "Frames between consecutive window frames (1X v1.1 at 30 Hz: use 15)."})
    filter_overlaps: bool = field(default=False, metadata={"help": "Use each training frame in at most one window."})
    train_segment_fraction: float = field(default=1.0, metadata={
        "help": "Train on this fraction of the train split's segments (whole recordings, chosen by --seed and recorded "
                "in config.json), e.g. 0.1 for a label-scarce run. 1 = all."})
    drop_actions: bool = field(default=False, metadata={
        "help": "Withhold the action labels: every action is 'no action' (NaN rows; the model adds its learned "
                "no_action vector there, never a real command), e.g. for stage 1 of a label-scarce study on "
                "unlabelled video. The model keeps its action input."})
    # the fields of genie.data.DataOptions, declared there (help and default)
    data_format: str = field(default=DATA_OPTION_FIELDS["data_format"].default,
                             metadata=DATA_OPTION_FIELDS["data_format"].metadata)
    state_pooling: str = field(default=DATA_OPTION_FIELDS["state_pooling"].default,
                               metadata=DATA_OPTION_FIELDS["state_pooling"].metadata)
    builtin_world: str | None = field(default=DATA_OPTION_FIELDS["builtin_world"].default,
                                      metadata=DATA_OPTION_FIELDS["builtin_world"].metadata)

    # Run folder
    output_dir: str = field(default="runs/train", metadata={"help": "Run folder: config, step_N/ checkpoints, final model, metrics."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Allow reusing an output_dir that holds another run."})
    resume_from_checkpoint: str | None = field(default=None, metadata={
        "help": "A step_N/ folder of this run, or 'latest', to continue exactly where it stopped."})

    # Optimisation
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Training windows per process and micro-batch (global batch = this x processes x accumulation)."})
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "Validation windows per process and batch."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute block activations in backward."})
    learning_rate: float = field(default=3e-4, metadata={
        "help": "Peak learning rate of AdamW (with --optimizer muon: of the parameters AdamW steps)."})
    optimizer: str = field(default="adamw", metadata={
        "help": "adamw, or muon: Muon for the transformer blocks' weight matrices, AdamW for the rest."})
    muon_learning_rate: float = field(default=0.02, metadata={"help": "Peak learning rate of Muon (--optimizer muon)."})
    muon_momentum: float = field(default=0.95, metadata={"help": "Muon's momentum (--optimizer muon)."})
    changed_token_loss_weight: float = field(default=1.0, metadata={
        "help": "Weight in the loss of the scored tokens that differ from the previous frame (the weighted mean over "
                "scored tokens; 1 = the plain mean). The model's input is unchanged."})
    dynamics_mask_focus: float = field(default=0.0, metadata={
        "help": "Stage 2: mask the tokens that differ from the previous frame more often, keeping each frame's "
                "expected masked count (0 = off, the reference's masking; < 1 keeps static tokens masked too). "
                "Stage 1 has --mask_pattern dynamics instead."})
    curriculum_frames: str = field(default="", metadata={
        "help": "A window-length curriculum: comma-separated frame counts below T, increasing (e.g. 4, or 2,4); the "
                "first steps train on the first that many frames of each window (cheaper steps), the rest on all T. "
                "Needs --curriculum_fractions. Empty = off."})
    curriculum_fractions: str = field(default="", metadata={
        "help": "The share of the optimizer steps for each --curriculum_frames value, in order (e.g. 0.5, or "
                "0.25,0.25); they sum to less than 1 and the steps left train on all T frames."})
    weight_decay: float = field(default=0.0, metadata={"help": "Decoupled weight decay of the Linear matrices (AdamW; Muon's too)."})
    adam_beta_1: float = field(default=0.9, metadata={"help": "AdamW's first-moment decay."})
    adam_beta_2: float = field(default=0.999, metadata={"help": "AdamW's second-moment decay."})
    adam_eps: float = field(default=1e-8, metadata={"help": "AdamW's epsilon."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Clip the gradient norm to this (0 = no clipping)."})
    lr_scheduler_type: str = field(default="linear", metadata={
        "help": "linear, cosine, cosine_with_restarts, polynomial, constant, constant_with_warmup or inverse_sqrt."})
    num_warmup_steps: int = field(default=0, metadata={"help": "Linear learning-rate warm-up steps."})
    num_train_epochs: int = field(default=1, metadata={"help": "Passes over the training windows (unless --max_train_steps)."})
    max_train_steps: int | None = field(default=None, metadata={"help": "Overrides num_train_epochs when given."})
    mixed_precision: str = field(default="no", metadata={"help": "no, bf16 or fp16 (fp16 needs a GPU)."})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model's training forward (CPU or GPU)."})
    seed: int = field(default=42, metadata={"help": "Seeds the weights, the data order and every mask."})
    skip_nonfinite: bool = field(default=False, metadata={
        "help": "Skip optimizer steps whose loss is NaN/inf (counted in metrics) instead of stopping the run."})
    nonfinite_check: bool = field(default=True, metadata={
        "help": "Check the loss every optimizer step (one scalar to the host); --no_nonfinite_check checks only at "
                "logging steps."})

    # Evaluation, checkpoints, logging
    eval_every_n_steps: int = field(default=1000, metadata={"help": "Evaluate on the val split every N optimizer steps (and at the end)."})
    max_eval_steps: int = field(default=20, metadata={"help": "Validation batches per evaluation (per process)."})
    eval_loss_only: bool = field(default=False, metadata={
        "help": "Also the final evaluation scores the loss and the teacher-forced cross-entropy alone (no MaskGIT "
                "sampling, rollouts or shuffled actions), as evaluations during training do by default; "
                "scripts/evaluate.py gives the full metric afterwards."})
    eval_full: bool = field(default=False, metadata={
        "help": "Evaluations during training (and stage 1's final one) also sample with MaskGIT (accuracy), roll out "
                "and shuffle actions: the full metric, at many times the cost."})
    checkpointing_steps: int = field(default=1000, metadata={"help": "Save a resumable step_N/ every N optimizer steps."})
    log_every_n_steps: int = field(default=10, metadata={"help": "Log the training loss (metrics.jsonl, trackers, a progress line) every N steps."})
    report_to: str = field(default="none", metadata={"help": "none, wandb (offline unless logged in), tensorboard, or all."})
    tracker_project: str | None = field(default=None, metadata={
        "help": "The trackers' project (wandb project, TensorBoard folder under the run). Default: genie-<stage>."})
    run_name: str | None = field(default=None, metadata={"help": "The run's name in wandb. Default: wandb's."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes (masks do not depend on them)."})

    allow_resume_mismatch: bool = field(default=False, metadata={
        "help": "Resume even though the stage, the model config or the arguments that fix the data order differ "
                "from the checkpoint's (by default that is refused)."})

    def __post_init__(self) -> None:
        """Every flag is checked here, before anything is read or written: one line naming the flag."""
        positive = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                    "stride", "num_train_epochs", "eval_every_n_steps", "max_eval_steps", "checkpointing_steps",
                    "log_every_n_steps")
        for name in positive:
            check_flag(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        check_flag(self.max_train_steps is None or self.max_train_steps >= 1, "max_train_steps", self.max_train_steps,
               "must be >= 1")
        check_flag(self.window_size is None or self.window_size >= 2, "window_size", self.window_size, "must be >= 2")
        check_flag(math.isfinite(self.learning_rate) and self.learning_rate > 0, "learning_rate", self.learning_rate,
               "must be a finite number > 0")
        check_flag(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, f"must be one of {', '.join(OPTIMIZERS)}")
        check_flag(math.isfinite(self.muon_learning_rate) and self.muon_learning_rate > 0, "muon_learning_rate",
                   self.muon_learning_rate, "must be a finite number > 0")
        check_flag(math.isfinite(self.changed_token_loss_weight) and self.changed_token_loss_weight > 0,
                   "changed_token_loss_weight", self.changed_token_loss_weight, "must be a finite number > 0")
        check_flag(0.0 <= self.dynamics_mask_focus < 1.0, "dynamics_mask_focus", self.dynamics_mask_focus,
                   "must be in [0, 1) (at 1 only changed tokens are masked, which tells the model where the change is)")
        check_flag(0.0 <= self.muon_momentum < 1.0, "muon_momentum", self.muon_momentum, "must be in [0, 1)")
        check_flag(math.isfinite(self.weight_decay) and self.weight_decay >= 0, "weight_decay", self.weight_decay,
               "must be a finite number >= 0")
        for name in ("adam_beta_1", "adam_beta_2"):
            check_flag(0.0 <= getattr(self, name) < 1.0, name, getattr(self, name), "must be in [0, 1)")
        check_flag(math.isfinite(self.adam_eps) and self.adam_eps > 0, "adam_eps", self.adam_eps, "must be a finite number > 0")
        check_flag(math.isfinite(self.max_grad_norm) and self.max_grad_norm >= 0, "max_grad_norm", self.max_grad_norm,
               "must be a finite number >= 0 (0 turns clipping off)")
        check_flag(0 < self.train_segment_fraction <= 1, "train_segment_fraction", self.train_segment_fraction,
                   "must be in (0, 1]")
        check_flag(0 <= self.seed < 2 ** 32, "seed", self.seed, "must be in [0, 2**32)")
        check_flag(self.dataloader_num_workers >= 0, "dataloader_num_workers", self.dataloader_num_workers, "must be >= 0")
        check_flag(self.num_warmup_steps >= 0, "num_warmup_steps", self.num_warmup_steps, "must be >= 0")
        check_flag(self.lr_scheduler_type in LR_SCHEDULERS, "lr_scheduler_type", self.lr_scheduler_type,
               f"is not supported; choose one of {', '.join(LR_SCHEDULERS)}")
        check_flag(self.mixed_precision in ("no", "bf16", "fp16"), "mixed_precision", self.mixed_precision,
               "must be one of no, bf16, fp16")
        check_flag(self.mixed_precision != "fp16" or torch.cuda.is_available(), "mixed_precision", self.mixed_precision,
               "needs a GPU (there is none here); use bf16 or no")
        check_flag(self.report_to in ("none", "wandb", "tensorboard", "all"), "report_to", self.report_to,
               "must be one of none, wandb, tensorboard, all")
        check_flag(not (self.eval_full and self.eval_loss_only), "eval_full", True,
                   "contradicts --eval_loss_only; pass one of them")
        check_flag(bool(self.output_dir), "output_dir", self.output_dir, "must name a folder")
        self.data_options()  # checks --data_format, --state_pooling and --builtin_world
        self.frame_curriculum()  # the trainer checks it against the config's T too

    def frame_curriculum(self) -> FrameCurriculum:
        return FrameCurriculum.from_flags(self.curriculum_frames, self.curriculum_fractions)

    def data_options(self) -> DataOptions:
        return DataOptions(self.data_format, self.state_pooling, self.builtin_world)

