"""Kill train.py at random moments (SIGKILL), resume it with --resume_from_checkpoint latest until it
finishes, and count the trials that end bit-identical to an uninterrupted run (final weights and the
logged training losses).

    python scripts/chaos.py --trials 20          # ~10 min on 2 CPU cores (small config, 40 steps)
"""
from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from genie.checkpointing.checkpoint import same_weights
from genie.cli import parse, run_cli
from genie.errors import check_flag
from genie.training.run_logging import training_losses

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Trial:
    kills: int
    kills_during_save: int
    identical_weights: bool
    identical_losses: bool


def launch(train_argv: list[str], out: Path, resume: bool, cwd: Path) -> subprocess.Popen:
    """train.py in a child process; its output is appended to <out>.log (a pipe could fill and block it)."""
    extra = ["--resume_from_checkpoint", "latest"] if resume else []
    with open(log_of(out), "a") as log:
        return subprocess.Popen([sys.executable, "train.py", *train_argv, "--output_dir", str(out), *extra], cwd=cwd,
                                stdout=log, stderr=subprocess.STDOUT)


def log_of(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.with_name(f"{out.name}.log")


def run_to_end(train_argv: list[str], out: Path, cwd: Path) -> float:
    start = time.perf_counter()
    if launch(train_argv, out, resume=False, cwd=cwd).wait() != 0:
        raise RuntimeError(f"the reference run failed; see {log_of(out)}")
    return time.perf_counter() - start


def chaos_trial(train_argv: list[str], out: Path, reference: Path, duration: float, rng: random.Random,
                max_kills: int, cwd: Path) -> Trial:
    """Kill the run up to `max_kills` times at uniform random moments, resuming each time; then let it finish."""
    shutil.rmtree(out, ignore_errors=True)
    log_of(out).unlink(missing_ok=True)
    kills = during_save = 0
    while True:
        process = launch(train_argv, out, resume=(out / "config.json").is_file(), cwd=cwd)
        try:
            process.wait(timeout=rng.uniform(0.5, duration) if kills < max_kills else None)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            during_save += any(out.glob(".tmp-*"))
            continue
        if process.returncode != 0:
            raise RuntimeError(f"a resumed run failed; see {log_of(out)}")
        break
    return Trial(kills, during_save, same_weights(out / "final_model", reference / "final_model"),
                 training_losses(out) == training_losses(reference))


def run_chaos(train_argv: list[str], workdir: Path, trials: int, seed: int, max_kills: int, cwd: Path) -> list[Trial]:
    reference = workdir / "reference"
    shutil.rmtree(reference, ignore_errors=True)
    duration = run_to_end(train_argv, reference, cwd)
    rng, results = random.Random(seed), []
    for number in range(trials):
        trial = chaos_trial(train_argv, workdir / f"trial{number}", reference, duration, rng, max_kills, cwd)
        results.append(trial)
        print(f"trial {number + 1}/{trials}: {trial.kills} kill(s) ({trial.kills_during_save} while a checkpoint was "
              f"being written): weights {'identical' if trial.identical_weights else 'DIFFERENT'}, losses "
              f"{'identical' if trial.identical_losses else 'DIFFERENT'}", flush=True)
    return results


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
    (args,) = parse([ChaosArguments], __doc__, argv)
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
