"""Command-line arguments shared by train.py and masked_pretrain.py (parsed by transformers.HfArgumentParser).

Flag names follow the reference `train.py` (github 1x-technologies/1xgpt) where it has them.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainingArguments:
    # Model and data
    genie_config: str = field(default="configs/tiny.json", metadata={"help": "GenieConfig JSON file."})
    train_data_dir: str | None = field(default=None, metadata={
        "help": "1X-format token folder (metadata.json, video.bin, segment_ids.bin). Default: the built-in dataset."})
    val_data_dir: str | None = field(default=None, metadata={"help": "Validation folder. Default: the built-in dataset."})
    window_size: int | None = field(default=None, metadata={"help": "Frames per window; must equal the config's T (default T)."})
    stride: int = field(default=1, metadata={"help": "Frames between consecutive window frames (1X v1.1 at 30 Hz: use 15)."})
    filter_overlaps: bool = field(default=False, metadata={"help": "Use each training frame in at most one window."})

    # Run folder
    output_dir: str = field(default="runs/train", metadata={"help": "Run folder: config, step_N/ checkpoints, final model, metrics."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Allow reusing an output_dir that holds another run."})
    resume_from_checkpoint: str | None = field(default=None, metadata={
        "help": "A step_N/ folder of this run, or 'latest', to continue exactly where it stopped."})

    # Optimisation
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute block activations in backward."})
    learning_rate: float = 3e-4
    weight_decay: float = 0.0
    adam_beta_1: float = 0.9
    adam_beta_2: float = 0.999
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0
    lr_scheduler_type: str = field(default="linear", metadata={
        "help": "transformers scheduler name: linear, cosine, constant, constant_with_warmup, polynomial, ..."})
    num_warmup_steps: int = 0
    num_train_epochs: int = 1
    max_train_steps: int | None = field(default=None, metadata={"help": "Overrides num_train_epochs when given."})
    mixed_precision: str = field(default="no", metadata={"help": "no, bf16 or fp16 (fp16 needs a GPU)."})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model's training forward (CPU or GPU)."})
    seed: int = 42
    skip_nonfinite: bool = field(default=False, metadata={
        "help": "Skip optimizer steps whose loss is NaN/inf (counted in metrics) instead of stopping the run."})
    nonfinite_check: bool = field(default=True, metadata={
        "help": "Check the loss every optimizer step (one scalar to the host); --no_nonfinite_check checks only at "
                "logging steps."})

    # Evaluation, checkpoints, logging
    eval_every_n_steps: int = 1000
    max_eval_steps: int = field(default=20, metadata={"help": "Validation batches per evaluation (per process)."})
    checkpointing_steps: int = field(default=1000, metadata={"help": "Save a resumable step_N/ every N optimizer steps."})
    log_every_n_steps: int = 10
    report_to: str = field(default="none", metadata={"help": "none, wandb (offline unless logged in), tensorboard, or all."})
    dataloader_num_workers: int = 0

    def __post_init__(self) -> None:
        from genie.config import ConfigError

        positive = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                    "stride", "num_train_epochs", "eval_every_n_steps", "max_eval_steps", "checkpointing_steps",
                    "log_every_n_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} {getattr(self, name)} must be >= 1")
        if self.max_train_steps is not None and self.max_train_steps < 1:
            raise ConfigError(f"--max_train_steps {self.max_train_steps} must be >= 1")
        if self.learning_rate <= 0:
            raise ConfigError(f"--learning_rate {self.learning_rate} must be > 0")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ConfigError(f"--mixed_precision {self.mixed_precision!r} must be one of no, bf16, fp16")
        if self.report_to not in ("none", "wandb", "tensorboard", "all"):
            raise ConfigError(f"--report_to {self.report_to!r} must be one of none, wandb, tensorboard, all")
        if self.dataloader_num_workers < 0 or self.num_warmup_steps < 0:
            raise ConfigError("--dataloader_num_workers and --num_warmup_steps must be >= 0")
