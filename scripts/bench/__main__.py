"""Benchmarks: one JSON line per benchmark with our figure, a reference's figure measured in the same
process, their ratio, the machine (CPU model, load average, threads) and the process's peak memory.
Run from the repository root, so that this checkout's genie/ is the one measured:

    python -m scripts.bench                 # all benchmarks, CPU sizes (several minutes on 2 cores)
    python -m scripts.bench --only onnx     # ONNX Runtime vs PyTorch per size, parity checked first
    python -m scripts.bench --only ort_attention   # ONNX Runtime's fused attention op vs MatMul/Softmax/MatMul
    python -m scripts.bench --only generation --threads 2 --rounds 9
    python -m scripts.bench --only eval_in_training   # an evaluation inside training against 40 steps
    python -m scripts.bench --only generation --baseline /tmp/base   # our code vs an older checkout's

Every comparison alternates its two sides round by round in one process (A B, B A, A B, ...), so that
a load change on a shared machine hits both; it reports the median of the per-round ratios with their
min-max. Both sides run with the same number of threads (`--threads`, default 1; ONNX Runtime gets
the same). Each benchmark runs in its own child process, so its peak memory (RSS on CPU, max allocated
on GPU) is its own. The benchmarks live in scripts/bench/benchmarks.py and onnx_benchmarks.py (ONNX
Runtime), the shared sizes, timing and naive references in scripts/bench/harness.py (not in the library):
a model with hand-written softmax attention and boolean-index embedding gathers, per-sample per-frame
Python mask loops, a Python loop over frames for the window index, and MaskGIT decoding (generation and
the teacher-forced evaluation) that recomputes the whole prefix every step. `--baseline DIR` also times
generation and the teacher-forced metric of the `genie/` in DIR (e.g. a `git worktree` of an older
commit), imported side by side under another name.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch

from .benchmarks import (bench_baseline, bench_bf16, bench_dynamics, bench_eval, bench_eval_in_training,
                         bench_generation, bench_index, bench_masking, bench_token_check, bench_train, bench_v2_index)
from .harness import DEVICE, REPO_ROOT, machine, peak_memory_mb
from .onnx_benchmarks import bench_onnx, bench_ort_attention

DEFAULT_ROUNDS = 5  # rounds of each comparison (--rounds; --smoke: 2)

# name (--only) -> the benchmark, called with (smoke, rounds); run in this order
BENCHMARKS = {"train_tiny": lambda smoke, rounds: [bench_train("tiny", smoke, rounds)],
              "train_mid": lambda smoke, rounds: [bench_train("mid", smoke, rounds)],
              "masking": lambda smoke, rounds: [bench_masking(smoke, rounds)],
              "index": lambda smoke, rounds: [bench_index(smoke, rounds)],
              "generation": bench_generation, "eval": bench_eval, "dynamics": bench_dynamics,
              "token_check": lambda smoke, rounds: [bench_token_check(smoke, rounds)],
              "onnx": bench_onnx, "ort_attention": bench_ort_attention,
              "v2_index": lambda smoke, rounds: [bench_v2_index(smoke, rounds)],
              "v2_tokens": lambda smoke, rounds: [bench_train("v2_tiny", smoke, rounds)],
              "bf16": bench_bf16, "eval_in_training": bench_eval_in_training}


def run_one(name: str, smoke: bool, rounds: int, baseline: str | None = None) -> list[dict]:
    results = BENCHMARKS[name](smoke, rounds)
    if baseline and name in ("generation", "eval"):
        results += bench_baseline(smoke, rounds, baseline, name)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=list(BENCHMARKS), help="run one benchmark in this process")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and 2 rounds, for the test suite")
    parser.add_argument("--threads", type=int, default=1, help="threads of both sides of every comparison (default 1)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of each comparison (default 5; --smoke: 2)")
    parser.add_argument("--baseline", help="a checkout whose genie/ generation and evaluation are timed against ours")
    args = parser.parse_args()
    if args.threads < 1 or (args.rounds is not None and args.rounds < 1):
        parser.error("--threads and --rounds must be >= 1")
    if args.only:
        torch.set_num_threads(args.threads)
        rounds = args.rounds or (2 if args.smoke else DEFAULT_ROUNDS)
        for result in run_one(args.only, args.smoke, rounds, args.baseline):
            print(json.dumps({**result, **peak_memory_mb(), "device": DEVICE, **machine()}), flush=True)
        return
    passed = [f"--{k}={v}" for k, v in (("threads", args.threads), ("rounds", args.rounds), ("baseline", args.baseline))
              if v is not None] + (["--smoke"] if args.smoke else [])
    for name in BENCHMARKS:  # each in a fresh process: its own peak memory, no warm caches between them
        subprocess.run([sys.executable, "-m", "scripts.bench", "--only", name, *passed], check=True, cwd=REPO_ROOT)


if __name__ == "__main__":
    main()
