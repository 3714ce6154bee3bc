"""Kill train.py at random moments (SIGKILL), resume it with --resume_from_checkpoint latest until it
finishes, and count the trials that end bit-identical to an uninterrupted run.

    python scripts/chaos.py --trials 20          # ~10 min on 2 CPU cores (small config, 40 steps)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from genie.chaos import run_chaos
from genie.cli import check_flag, parse, run_cli

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ChaosArguments:
    trials: int = 20
    seed: int = 0
    max_kills: int = 3
    workdir: str = "runs/chaos"
    genie_config: str = "configs/small.json"
    steps: int = 40
    checkpointing_steps: int = 5

    def __post_init__(self) -> None:
        check_flag(self.trials >= 1, "trials", self.trials, "must be >= 1")
        check_flag(self.max_kills >= 1, "max_kills", self.max_kills, "must be >= 1")


def main(argv: list[str] | None = None) -> int:
    (args,) = parse([ChaosArguments], __doc__.split("\n")[0], argv)
    train_argv = ["--genie_config", args.genie_config, "--max_train_steps", str(args.steps), "--checkpointing_steps",
                  str(args.checkpointing_steps), "--per_device_train_batch_size", "4", "--log_every_n_steps", "1",
                  "--eval_every_n_steps", "10", "--max_eval_steps", "1", "--learning_rate", "3e-3", "--seed", "1"]
    results = run_chaos(train_argv, Path(args.workdir).resolve(), args.trials, args.seed, args.max_kills, REPO_ROOT)
    identical = sum(t.identical_weights and t.identical_losses for t in results)
    kills = sum(t.kills for t in results)
    print(f"{identical} of {len(results)} trials ended bit-identical (final weights and logged losses) after "
          f"{kills} SIGKILLs, {sum(t.kills_during_save for t in results)} of them during a checkpoint write")
    return identical


if __name__ == "__main__":
    run_cli(main)
