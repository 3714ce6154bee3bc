"""Smoke test of the benchmark program (python -m scripts.bench) at tiny sizes: every benchmark prints a JSON
line with its figures."""
import json
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_bench_smoke_prints_one_json_line_per_benchmark():
    # no PYTHONPATH; no time limit: a benchmark on a busy machine is slow, not wrong
    result = subprocess.run([sys.executable, "-m", "scripts.bench", "--smoke"], cwd=REPO_ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    names = [line["benchmark"] for line in lines]
    assert names == ["train_step_tiny", "train_step_mid", "masking_random", "dataset_index",
                     "generation_tiny_2steps", "generation_tiny_8steps", "eval_teacher_forced_2steps",
                     "eval_teacher_forced_loss_only", "eval_action_sensitivity_overhead", "token_check_whole_file",
                     *[name for size in ("tiny", "tiny_s16", "mid") for name in (
                         f"onnx_exporter_{size}_2steps", *[f"onnxruntime_generation_{size}_{steps}steps"
                                                           for steps in (2, 8)])],
                     "ort_attention_tiny", "ort_attention_mid", "v2_open_and_index", "train_step_v2_tiny",
                     "bf16_train_step_mid", "bf16_generation_tiny_2steps", "eval_in_training_masked_pretrain",
                     "eval_in_training_autoregressive"]
    for line in lines:
        assert line["ours"] > 0 and line["naive"] > 0 and line["ratio"] > 0 and line["peak_rss_mb"] > 0
        assert line["ratio_min"] <= line["ratio"] <= line["ratio_max"] and line["rounds"] == 2
        assert line["threads"] == 1 and line["cpu"] and len(line["load_avg"]) == 3
    for line in [line for line in lines if line["benchmark"].startswith("onnxruntime_")]:  # parity before timing
        assert line["identical_greedy_tokens"] and line["max_abs_logit_diff_cached_step"] <= 1e-4
    for line in [line for line in lines if line["benchmark"].startswith("onnx_exporter_")]:  # both exports checked
        assert line["torchscript_parity"]["identical_greedy_tokens"]
