"""Which mask-ratio schedule of stage 1 helps? Study (a), configs/studies/schedules.yaml, run through
the study runner (scripts/ablate.py, whose flags all apply here).

    python scripts/schedule_ablation.py                                   # ~15 min on 2 CPU cores with --jobs 2
    python scripts/schedule_ablation.py --schedules cosine,exponential --seeds 0,1,2,3,4
    python scripts/schedule_ablation.py --genie_config configs/genie_35m.json --stage1_steps 20000 \
        --stage2_steps 20000 --train_data_dir D --val_data_dir V --emit_commands   # for a cluster
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from genie.cli import parse, run_cli
from genie.config import ConfigError
from genie.schedules import MASK_SCHEDULES
from genie.studies.cli import AblateArguments, run_ablation


@dataclass
class ScheduleAblationArguments(AblateArguments):
    study: str = "configs/studies/schedules.yaml"
    schedules: str | None = field(default=None, metadata={
        "help": f"Comma-separated subset of {MASK_SCHEDULES} (default: all, constant at the mean ratio 0.45)."})


def main(argv: list[str] | None = None) -> str:
    (args,) = parse([ScheduleAblationArguments], __doc__.split("\n")[0], argv)
    spec = args.load()
    if args.schedules is not None:
        names = [s.strip() for s in args.schedules.split(",") if s.strip()]
        unknown = [s for s in names if s not in MASK_SCHEDULES]
        if unknown or not names:
            raise ConfigError(f"--schedules {args.schedules!r}: unknown {unknown}; choose from {MASK_SCHEDULES}")
        rest = [s for s in names if s != "constant"]
        constant = [a for a in spec.arms if "constant" in names and a["stage1"].get("mask_schedule") == "constant"]
        spec = dataclasses.replace(spec, grid={"mask_schedule": rest} if rest else {}, arms=constant)  # re-checked
    extra = (f"--schedules {args.schedules}",) if args.schedules else ()
    text = run_ablation(args, spec, "scripts/schedule_ablation.py", extra)
    print(text)
    return text


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "offline")
    run_cli(main)
