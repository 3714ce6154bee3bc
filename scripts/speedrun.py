"""Time to dynamics: steps, training windows and training seconds until a recipe's model predicts the
tokens that change (genie/studies/speedrun.py).

    python scripts/speedrun.py                                    # built-in world: main_job vs stage2_only, 3 seeds
    python scripts/speedrun.py --variants main_job,muon,lr1e-2    # the first variant is the timing baseline
    python scripts/speedrun.py --world breakout --data_dir runs/atari-<time>/data

Writes speedrun.jsonl (every scored checkpoint, the timing, the summaries), speedrun.md (the table) and
speedrun.png (changed-token CE against training seconds) to --output_dir.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from genie.cli import parse, run_cli
from genie.errors import ConfigError
from genie.studies.speedrun import SpeedrunSettings
from genie.studies.speedrun_recipes import TRACKS, VARIANTS


@dataclass
class SpeedrunArguments:
    world: str = field(default="builtin", metadata={"help": f"One of {', '.join(TRACKS)}."})
    variants: str = field(default="main_job,stage2_only", metadata={
        "help": f"Comma-separated, the first is the timing baseline; from {', '.join(VARIANTS)}."})
    seeds: str = field(default="0,1,2", metadata={"help": "Comma-separated training seeds (3 or more)."})
    output_dir: str = field(default="runs/speedrun", metadata={"help": "Where runs, scores and the table go."})
    data_dir: str | None = field(default=None, metadata={"help": "A folder with train/ and val/ (Atari worlds)."})
    genie_config: str | None = field(default=None, metadata={"help": "Another model config than the world's."})
    eval_every: int = field(default=50, metadata={"help": "Score a checkpoint every N stage-2 steps."})
    eval_windows: int = field(default=64, metadata={"help": "The first N val windows are scored."})
    steps: int | None = field(default=None, metadata={
        "help": "The main job's stage-2 steps instead of 800; every variant's steps (both stages) scale with it."})
    timing_rounds: int = field(default=6, metadata={"help": "ABBA rounds per timed stage."})
    timing_steps: int = field(default=5, metadata={"help": "Optimizer steps per timed round."})

    def settings(self) -> SpeedrunSettings:
        try:
            seeds = [int(s) for s in self.seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds {self.seeds!r} must be comma-separated integers, e.g. 0,1,2") from None
        return SpeedrunSettings(world=self.world, variants=[v for v in self.variants.split(",") if v],
                                seeds=seeds, output_dir=Path(self.output_dir),
                                data_dir=self.data_dir, genie_config=self.genie_config, eval_every=self.eval_every,
                                eval_windows=self.eval_windows, timing_steps=self.timing_steps,
                                timing_rounds=self.timing_rounds, steps=self.steps)


def main(argv: list[str] | None = None) -> str:
    from genie.studies.speedrun import run_speedrun

    (args,) = parse([SpeedrunArguments], __doc__, argv)
    table = run_speedrun(args.settings())
    print(table)
    return table


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "offline")
    run_cli(main)
