"""Settings of masked pretraining (stage 1): the mask-ratio schedule and the mask pattern.

Also the command-line flags of masked_pretrain.py (parsed by transformers.HfArgumentParser).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from genie.config import ConfigError
from genie.schedules import MASK_SCHEDULES

MASK_PATTERNS = ("random", "block", "tube")


@dataclass
class MaskedPretrainConfig:
    initial_mask_ratio: float = field(default=0.8, metadata={"help": "Mask ratio at step 0."})
    final_mask_ratio: float = field(default=0.1, metadata={"help": "Mask ratio at the last step."})
    mask_schedule: str = field(default="cosine", metadata={"help": "cosine | linear | exponential"})
    exponential_k: float = field(default=5.0, metadata={"help": "Steepness of the exponential schedule."})
    mask_all_frames: bool = field(default=False, metadata={"help": "Also mask frame 0 (default: frame 0 visible)."})
    mask_pattern: str = field(default="random", metadata={
        "help": "random (exactly ratio*S tokens per frame) | block (rectangles) | tube (same rectangles in every frame)"})
    block_count: int = field(default=2, metadata={"help": "Rectangles per frame for block/tube; each covers ratio/count."})
    block_aspect_min: float = 0.75
    block_aspect_max: float = 1.5
    prompt_frame_period: int = field(default=0, metadata={
        "help": "If > 0, every k-th frame (t % k == 0) stays fully visible."})
    lattice_stride: int = field(default=0, metadata={"help": "If > 0, a spatial lattice of this stride stays visible."})
    lattice_offset: int = 0
    temporal_attention: str = field(default="bidirectional", metadata={
        "help": "bidirectional (default) or causal (ablation) temporal attention during stage 1."})
    eval_mask_ratios: str = field(default="0.25,0.5,0.75", metadata={
        "help": "Comma-separated fixed ratios at which eval reports masked-reconstruction loss."})

    def __post_init__(self) -> None:
        for name in ("initial_mask_ratio", "final_mask_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"--{name} {value} must be in [0, 1]")
        if self.mask_schedule not in MASK_SCHEDULES:
            raise ConfigError(f"--mask_schedule {self.mask_schedule!r} is unknown; choose one of {MASK_SCHEDULES}")
        if self.exponential_k <= 0:
            raise ConfigError(f"--exponential_k {self.exponential_k} must be > 0")
        if self.mask_pattern not in MASK_PATTERNS:
            raise ConfigError(f"--mask_pattern {self.mask_pattern!r} is unknown; choose one of {MASK_PATTERNS}")
        if self.block_count < 1:
            raise ConfigError(f"--block_count {self.block_count} must be >= 1")
        if not 0 < self.block_aspect_min <= self.block_aspect_max:
            raise ConfigError("--block_aspect_min and --block_aspect_max must satisfy 0 < min <= max")
        if self.prompt_frame_period < 0 or self.lattice_stride < 0:
            raise ConfigError("--prompt_frame_period and --lattice_stride must be >= 0 (0 = off)")
        if self.lattice_stride and not 0 <= self.lattice_offset < self.lattice_stride:
            raise ConfigError(f"--lattice_offset {self.lattice_offset} must be in [0, lattice_stride)")
        if self.temporal_attention not in ("bidirectional", "causal"):
            raise ConfigError(f"--temporal_attention {self.temporal_attention!r} must be bidirectional or causal")
        try:
            ratios = self.ratios_for_eval()
        except ValueError:
            raise ConfigError(f"--eval_mask_ratios {self.eval_mask_ratios!r} must be comma-separated numbers") from None
        if not ratios or any(not 0 < r <= 1 for r in ratios):
            raise ConfigError(f"--eval_mask_ratios {self.eval_mask_ratios!r} must hold ratios in (0, 1]")

    def ratios_for_eval(self) -> list[float]:
        return [float(r) for r in self.eval_mask_ratios.split(",") if r.strip()]
