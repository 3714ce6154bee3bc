"""Settings of masked pretraining (stage 1): the mask-ratio schedule and the mask pattern.

Also the command-line flags of masked_pretrain.py (parsed by transformers.HfArgumentParser); the
same fields may sit in the model config JSON, where they become the flags' defaults.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genie.errors import ConfigError
from genie.masking.collators import MASK_PATTERNS
from genie.masking.schedules import MASK_SCHEDULES
from genie.model.config import TEMPORAL_ATTENTION_MODES, GenieConfig, read_config_values


@dataclass
class MaskedPretrainConfig:
    initial_mask_ratio: float = field(default=0.8, metadata={"help": "Mask ratio at step 0."})
    final_mask_ratio: float = field(default=0.1, metadata={"help": "Mask ratio at the last step."})
    mask_schedule: str = field(default="cosine", metadata={
        "help": "cosine | linear | exponential | constant (the constant needs initial == final ratio)"})
    exponential_k: float = field(default=5.0, metadata={"help": "Steepness of the exponential schedule."})
    mask_all_frames: bool = field(default=False, metadata={"help": "Also mask frame 0 (off: frame 0 stays visible)."})
    mask_pattern: str = field(default="random", metadata={
        "help": "random (exactly ratio*S tokens per frame) | block (rectangles) | tube (same rectangles in every frame) "
                "| dynamics (the tokens that differ from the previous frame more often; see --dynamics_focus)"})
    dynamics_focus: float = field(default=0.5, metadata={
        "help": "--mask_pattern dynamics: 0 = uniform, towards 1 = only changed tokens (< 1: static tokens stay "
                "masked too, so the mask does not say where the change is)."})
    block_count: int = field(default=2, metadata={"help": "Rectangles per frame for block/tube; each covers ratio/count."})
    block_aspect_min: float = field(default=0.75, metadata={"help": "Smallest height/width ratio of a block."})
    block_aspect_max: float = field(default=1.5, metadata={"help": "Largest height/width ratio of a block."})
    prompt_frame_period: int = field(default=0, metadata={
        "help": "If > 0, every k-th frame (t = 0, k, 2k, ...) stays fully visible."})
    lattice_stride: int = field(default=0, metadata={"help": "If > 0, a spatial lattice of this stride stays visible."})
    lattice_offset: int = field(default=0, metadata={"help": "Where the visible lattice starts (0 .. stride-1)."})
    temporal_attention: str = field(default="bidirectional", metadata={
        "help": "bidirectional, or causal (an ablation): the temporal attention of stage 1."})
    eval_mask_ratios: str = field(default="0.25,0.5,0.75", metadata={
        "help": "Comma-separated fixed ratios at which eval reports masked-reconstruction loss."})

    def __post_init__(self) -> None:
        for name in ("initial_mask_ratio", "final_mask_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"--{name} {value} must be in [0, 1]")
        if self.mask_schedule not in MASK_SCHEDULES:
            raise ConfigError(f"--mask_schedule {self.mask_schedule!r} is unknown; choose one of {MASK_SCHEDULES}")
        if self.mask_schedule == "constant" and self.initial_mask_ratio != self.final_mask_ratio:
            raise ConfigError(f"--mask_schedule constant holds one ratio, but --initial_mask_ratio "
                              f"{self.initial_mask_ratio} != --final_mask_ratio {self.final_mask_ratio}; set both "
                              "to the ratio you want")
        if self.exponential_k <= 0:
            raise ConfigError(f"--exponential_k {self.exponential_k} must be > 0")
        if self.mask_pattern not in MASK_PATTERNS:
            raise ConfigError(f"--mask_pattern {self.mask_pattern!r} is unknown; choose one of {MASK_PATTERNS}")
        if not 0.0 <= self.dynamics_focus < 1.0:
            raise ConfigError(f"--dynamics_focus {self.dynamics_focus} must be in [0, 1): at 1 only the changed tokens "
                              "would be masked, which tells the model where the change is")
        if self.block_count < 1:
            raise ConfigError(f"--block_count {self.block_count} must be >= 1")
        if not 0 < self.block_aspect_min <= self.block_aspect_max:
            raise ConfigError("--block_aspect_min and --block_aspect_max must satisfy 0 < min <= max")
        if self.prompt_frame_period < 0 or self.lattice_stride < 0:
            raise ConfigError("--prompt_frame_period and --lattice_stride must be >= 0 (0 = off)")
        if self.lattice_stride and not 0 <= self.lattice_offset < self.lattice_stride:
            raise ConfigError(f"--lattice_offset {self.lattice_offset} must be in [0, lattice_stride)")
        if self.temporal_attention not in TEMPORAL_ATTENTION_MODES:
            raise ConfigError(f"--temporal_attention {self.temporal_attention!r} must be one of "
                              f"{', '.join(TEMPORAL_ATTENTION_MODES)}")
        try:
            ratios = self.ratios_for_eval()
        except ValueError:
            raise ConfigError(f"--eval_mask_ratios {self.eval_mask_ratios!r} must be comma-separated numbers") from None
        if not ratios or any(not 0 < r <= 1 for r in ratios):
            raise ConfigError(f"--eval_mask_ratios {self.eval_mask_ratios!r} must hold ratios in (0, 1]")

    def check_scores_tokens(self, tokens_per_frame: int) -> None:
        """Refuse settings under which some training batches would mask (and so score) no token at all."""
        if self.prompt_frame_period == 1:
            raise ConfigError("--prompt_frame_period 1 keeps every frame visible, so no token is ever masked; "
                              "use 0 (off) or a period >= 2")
        if self.lattice_stride == 1:
            raise ConfigError("--lattice_stride 1 keeps every token visible, so no token is ever masked; "
                              "use 0 (off) or a stride >= 2")
        for name in ("initial_mask_ratio", "final_mask_ratio"):
            ratio = getattr(self, name)
            masked = round(ratio * tokens_per_frame) if self.mask_pattern == "random" else (1 if ratio > 0 else 0)
            if masked == 0:
                raise ConfigError(f"--{name} {ratio} masks 0 of the {tokens_per_frame} tokens of a frame, so the steps "
                                  f"at that end of the schedule would score nothing; use a ratio >= "
                                  f"{1 / tokens_per_frame:.4g}")

    def ratios_for_eval(self) -> list[float]:
        return [float(r) for r in self.eval_mask_ratios.split(",") if r.strip()]


# In a config file these are stage-1 settings: masked_pretrain.py takes them as its flags' defaults
# and train.py lists them as ignored. temporal_attention is one of them: the objective owns the mode
# (stage 2 is always causal); GenieConfig.temporal_attention only records the mode a model ran in.
STAGE1_FIELDS = tuple(f.name for f in dataclasses.fields(MaskedPretrainConfig))


def read_config_file(path: str | Path) -> tuple[GenieConfig, dict[str, Any]]:
    """A model config file that may also hold stage-1 fields (mask schedule, ratios, pattern), as the
    masked-pretraining write-up puts them: returns (the model config, the stage-1 fields found)."""
    path, values = read_config_values(path)
    stage1 = {k: values.pop(k) for k in STAGE1_FIELDS if k in values}
    return GenieConfig.from_dict(values, source=str(path), also_known=STAGE1_FIELDS), stage1
