"""Smoke test of the benchmark script at tiny sizes: every benchmark prints a JSON line with its figures."""
import json
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_bench_smoke_prints_one_json_line_per_benchmark():
    result = subprocess.run([sys.executable, "scripts/bench.py", "--smoke"], cwd=REPO_ROOT, capture_output=True,
                            text=True)  # no time limit: a benchmark on a busy machine is slow, not wrong
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    names = [line["benchmark"] for line in lines]
    assert names == ["train_step_tiny", "train_step_mid", "masking_random", "dataset_index",
                     "generation_tiny_2steps", "generation_tiny_8steps", "eval_teacher_forced_2steps",
                     "eval_teacher_forced_loss_only", "token_check_whole_file", "onnxruntime_generation_tiny_2steps",
                     "onnxruntime_generation_tiny_8steps", "onnxruntime_generation_mid_2steps",
                     "onnxruntime_generation_mid_8steps", "v2_open_and_index", "train_step_v2_tiny"]
    for line in lines:
        assert line["ours"] > 0 and line["naive"] > 0 and line["ratio"] > 0 and line["peak_rss_mb"] > 0
