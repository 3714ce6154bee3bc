"""Run an ablation study of stage 1: every arm (stage 1 then stage 2) beside stage 2 alone, over seeds.

    python scripts/ablate.py --study configs/studies/schedules.yaml            # -> runs/studies/schedules/
    python scripts/ablate.py --study configs/studies/density.yaml --jobs 2     # two runs at a time
    python scripts/ablate.py --study S --emit_commands > jobs.sh               # one `accelerate launch` per run
    python scripts/ablate.py --study S --seeds 0,1,2,3,4 --stage2_steps 2000   # override the file
    python scripts/ablate.py --study S --launcher submitit --cluster slurm --partition gpu --gpus_per_node 1
                                                                           # one SLURM job per run (docs/scaling_out.md)
    python scripts/ablate.py --study S --status                            # each run: done, queued, running, failed
    python scripts/ablate.py --study S --report                            # the report of what is done (partial)

Runs live in a shared store (--store, default runs/studies/) named by a hash of everything that fixes
their result, so a rerun skips finished runs, a killed run starts over, and studies share the runs
they have in common (e.g. stage 2 alone). Writes results.md, results.csv, runs.csv, curves.png and
swept.png to --output_dir (default runs/studies/<study name>/; the committed results/<study>/
are replaced only when --output_dir names them).
"""
from __future__ import annotations

import os

from genie.cli import parse, run_cli
from genie.studies.cli import AblateArguments, run_ablation


def main(argv: list[str] | None = None) -> str:
    (args,) = parse([AblateArguments], __doc__, argv)
    text = run_ablation(args, args.load())
    print(text)
    return text


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "offline")
    run_cli(main)
