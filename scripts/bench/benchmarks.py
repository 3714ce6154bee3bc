"""The benchmarks of `python -m scripts.bench` on PyTorch (the ONNX Runtime ones are in onnx_benchmarks.py):
each times our code against a naive reference (scripts/bench/harness.py) for `rounds` ABBA rounds and returns
its JSON lines; `smoke` shrinks the work to seconds for the test suite."""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from genie.model.stmaskgit import STMaskGIT

from .harness import (DEVICE, MID, REPO_ROOT, TINY, bench_config, compare, figures, generation_setup, greedy,
                      make_batch, make_naive, peak_memory_mb, training_step_fn)


def bench_train(size: str, smoke: bool, rounds: int) -> dict:
    batch_size = 1 if size == "mid" else 2
    specs = {"tiny": TINY, "mid": MID, "v2_tiny": json.loads((REPO_ROOT / "configs" / "cosmos_v2_tiny.json").read_text())}
    config = bench_config(specs[size], smoke)
    torch.manual_seed(0)
    batch = make_batch(config, batch_size)
    tokens = batch_size * config.T * config.S
    ours_model = STMaskGIT(config).to(DEVICE)
    naive_model = STMaskGIT(config)
    naive_model.load_state_dict(ours_model.state_dict())
    naive_model = make_naive(naive_model).to(DEVICE)
    with torch.no_grad():  # the naive reference computes the same function
        assert torch.allclose(ours_model(**batch).loss, naive_model(**batch).loss, atol=1e-4)
    naive_step = training_step_fn(naive_model, batch)
    timing = compare(training_step_fn(ours_model, batch), naive_step, rounds)
    result = {"benchmark": f"train_step_{size}", "unit": "tokens/s", **figures(timing, tokens, rate=True),
              "batch": batch_size, "T": config.T, "S": config.S, "d_model": config.d_model,
              "num_layers": config.num_layers}
    if not smoke and size == "mid":
        compiled = compare(training_step_fn(ours_model, batch, compile_model=True), naive_step, rounds, warmup=2)
        result.update(ours_compiled=tokens / compiled["ours_s"], ratio_compiled=compiled["ratio"],
                      ratio_compiled_min=compiled["ratio_min"], ratio_compiled_max=compiled["ratio_max"])
    return result


def bench_masking(smoke: bool, rounds: int) -> dict:
    from genie.masking.masks import random_mask

    shape = (4, 4, 16) if smoke else (32, 16, 256)
    ratio = 0.5

    def loop():
        g = torch.Generator().manual_seed(0)
        mask = torch.zeros(shape, dtype=torch.bool)
        count = round(ratio * shape[2])
        for b in range(shape[0]):
            for t in range(shape[1]):
                mask[b, t, torch.randperm(shape[2], generator=g)[:count]] = True
        return mask

    timing = compare(lambda: random_mask(shape, ratio, torch.Generator().manual_seed(0)), loop, rounds)
    return {"benchmark": "masking_random", "unit": "masks/s (batch x T x S)", "shape": list(shape),
            **figures(timing, rate=True)}


def bench_index(smoke: bool, rounds: int) -> dict:
    from genie.data import window_start_indices

    num_frames = 100_000 if smoke else 10_000_000
    rng = np.random.default_rng(0)
    lengths = rng.integers(500, 1500, num_frames // 500 + 1)  # segments of 500-1500 frames, enough to cover
    segment_ids = np.repeat(np.arange(len(lengths)), lengths)[:num_frames].astype(np.int32)
    window, stride = 16, 15
    span = (window - 1) * stride

    def loop():
        starts = []
        for s in range(num_frames - span):  # the reference's per-frame loop
            if segment_ids[s] == segment_ids[s + span]:
                starts.append(s)
        return starts

    fast = window_start_indices(segment_ids, num_frames, window, stride)
    assert len(fast) == len(loop())
    timing = compare(lambda: window_start_indices(segment_ids, num_frames, window, stride), loop, rounds, warmup=0)
    return {"benchmark": "dataset_index", "unit": "s", "frames": num_frames, **figures(timing), "windows": len(fast)}


def bench_generation(smoke: bool, rounds: int) -> list[dict]:
    """Generation through the KV cache vs the naive reference: the same loop recomputing every prefix."""
    from genie.decoding import generate

    model, prompt, new = generation_setup(TINY, smoke)
    results = []
    for steps in (2, 8):
        cfg = greedy(steps)
        with torch.no_grad():
            cached, _ = generate(model, prompt, new, cfg, use_cache=True)
            assert torch.equal(cached, generate(model, prompt, new, cfg, use_cache=False)[0])
            timing = compare(lambda c=cfg: generate(model, prompt, new, c, use_cache=True),
                             lambda c=cfg: generate(model, prompt, new, c, use_cache=False), rounds)
        results.append({"benchmark": f"generation_tiny_{steps}steps", "unit": "s/frame", "prompt_frames": prompt.shape[1],
                        "new_frames": new, "maskgit_steps": steps, "batch": 1, **figures(timing, new),
                        "reference": "prefix recompute (no KV cache), same loop"})
    return results


def eval_setup(smoke: bool):
    model, _, _ = generation_setup(TINY, smoke)
    batch = 1 if smoke else 4
    tokens = torch.randint(0, model.config.image_vocab_size, (batch, model.config.T, model.config.S)).to(DEVICE)
    return model, tokens


def teacher_forced(scores_module, model, tokens, loss_only: bool, use_cache: bool) -> dict:
    options = scores_module.EvalOptions(loss_only=loss_only, use_cache=use_cache)
    return scores_module.teacher_forced_sums(model, tokens, None, options, torch.Generator(DEVICE).manual_seed(0))


def bench_eval(smoke: bool, rounds: int) -> list[dict]:
    """The teacher-forced challenge metric through the KV cache vs recomputing every prefix (T = 16)."""
    from genie.evaluation import scores

    model, tokens = eval_setup(smoke)
    results = []
    for loss_only in (False, True):
        run = lambda use_cache, lo=loss_only: teacher_forced(scores, model, tokens, lo, use_cache)  # noqa: E731
        assert torch.allclose(run(True)["tf_ce"], run(False)["tf_ce"], rtol=1e-4), "cache and recompute disagree"
        timing = compare(lambda: run(True), lambda: run(False), rounds)
        name = "eval_teacher_forced_loss_only" if loss_only else "eval_teacher_forced_2steps"
        results.append({"benchmark": name, "unit": "s/window", "T": model.config.T, "batch": tokens.shape[0],
                        **figures(timing, tokens.shape[0]), "reference": "prefix recompute (no KV cache)"})
    return results


def bench_dynamics(smoke: bool, rounds: int) -> list[dict]:
    """What the action-sensitivity pass adds to scoring a batch (score_windows with it vs without it; the
    changed/static split rides on the passes both make: `--baseline` times it against an older checkout)."""
    from genie.evaluation.scores import EvalOptions, score_windows

    model, _ = eval_setup(smoke)
    config = model.config.replace(action_dims={"action": 2})
    model = STMaskGIT(config).to(DEVICE).eval()
    batch = 2 if smoke else 4
    tokens = torch.randint(0, config.image_vocab_size, (batch, config.T, config.S)).to(DEVICE)
    actions = torch.randn(batch, config.T, 2).to(DEVICE)
    log_probs = np.log(np.full(config.image_vocab_size, 1.0 / config.image_vocab_size))
    run = lambda on: score_windows(model, tokens, actions, EvalOptions(action_sensitivity=on), 0, log_probs)  # noqa
    with torch.no_grad():
        timing = compare(lambda: run(True), lambda: run(False), rounds)
    return [{"benchmark": "eval_action_sensitivity_overhead", "unit": "s/window", "T": config.T, "batch": batch,
             **figures(timing, batch), "reference": "the same scoring without the shuffled-actions pass "
             "(ratio < 1: the share of time the pass costs is 1 - ratio)"}]


def import_baseline(source: str):
    """The genie/ package of checkout `source`, imported as `genie_baseline` (its own imports rewritten)."""
    import importlib.util
    import re

    folder = Path(tempfile.mkdtemp(prefix="genie-baseline-"))
    shutil.copytree(Path(source) / "genie", folder / "genie_baseline")
    for path in (folder / "genie_baseline").rglob("*.py"):
        path.write_text(re.sub(r"\b(from|import) genie\b", r"\1 genie_baseline", path.read_text()))
    package = folder / "genie_baseline"
    spec = importlib.util.spec_from_file_location("genie_baseline", package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    sys.modules["genie_baseline"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules["genie_baseline"])
    return {name: importlib.import_module(f"genie_baseline.{name}")
            for name in ("decoding", "model.stmaskgit", "evaluation.scores")}


def bench_baseline(smoke: bool, rounds: int, source: str, kind: str) -> list[dict]:
    """Our cached generation (`kind` "generation") or teacher-forced metric ("eval") vs the same computation
    in an older checkout's genie/ (same weights, inputs and threads), alternating round by round."""
    from genie.decoding import generate
    from genie.evaluation import scores

    base = import_baseline(source)
    model, prompt, new = generation_setup(TINY, smoke)
    old = base["model.stmaskgit"].STMaskGIT(model.config).to(DEVICE).eval()
    old.load_state_dict(model.state_dict())
    results = []
    for steps in (2, 8) if kind == "generation" else ():
        cfg, old_cfg = greedy(steps), base["decoding"].SamplingConfig(maskgit_steps=steps, temperature=0.0,
                                                                        unmask_mode="confidence")
        with torch.no_grad():
            ours_tokens, ours_logits = generate(model, prompt, new, cfg)
            old_tokens, old_logits = base["decoding"].generate(old, prompt, new, old_cfg)
            assert torch.equal(ours_tokens, old_tokens) and (ours_logits - old_logits).abs().max() <= 1e-4
            timing = compare(lambda c=cfg: generate(model, prompt, new, c),
                             lambda c=old_cfg: base["decoding"].generate(old, prompt, new, c), rounds)
        results.append({"benchmark": f"generation_tiny_{steps}steps_vs_baseline", "unit": "s/frame",
                        **figures(timing, new), "reference": f"KV-cached generation of {source}"})
    _, tokens = eval_setup(smoke)
    for loss_only in (False, True) if kind == "eval" else ():
        ours = lambda lo=loss_only: teacher_forced(scores, model, tokens, lo, True)  # noqa: E731
        theirs = lambda lo=loss_only: teacher_forced(base["evaluation.scores"], old, tokens, lo, True)  # noqa: E731
        assert torch.allclose(ours()["tf_ce"], theirs()["tf_ce"], rtol=1e-4)
        timing = compare(ours, theirs, rounds)
        name = "eval_teacher_forced_loss_only" if loss_only else "eval_teacher_forced_2steps"
        results.append({"benchmark": f"{name}_vs_baseline", "unit": "s/window", **figures(timing, tokens.shape[0]),
                        "reference": f"KV-cached teacher-forced metric of {source}"})
    return results


def bench_token_check(smoke: bool, rounds: int) -> dict:
    """The whole-file token-range check over a 10M-frame video.bin (4x4 uint32 tokens, 640 MB), made and
    removed here; the naive reference reads the whole file into memory at once."""
    from genie.data.checks import first_token_out_of_range

    num_frames = 100_000 if smoke else 10_000_000
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/video.bin"
        rng = np.random.default_rng(0)
        with open(path, "wb") as f:
            for start in range(0, num_frames, 1_000_000):
                rng.integers(0, 2 ** 18, (min(1_000_000, num_frames - start), 4, 4), dtype=np.uint32).tofile(f)
        video = np.memmap(path, dtype=np.uint32, mode="r", shape=(num_frames, 4, 4))
        assert first_token_out_of_range(video, 2 ** 18) is None
        rss_after_ours = peak_memory_mb()
        timing = compare(lambda: first_token_out_of_range(video, 2 ** 18),
                         lambda: (np.fromfile(path, dtype=np.uint32) >= 2 ** 18).any(), rounds, warmup=0)
        size = video.nbytes
    return {"benchmark": "token_check_whole_file", "unit": "s", "frames": num_frames, "bytes": size,
            **figures(timing), "ours_gb_per_s": size / timing["ours_s"] / 1e9,
            "peak_rss_mb_after_ours": rss_after_ours.get("peak_rss_mb")}


def bench_bf16(smoke: bool, rounds: int) -> list[dict]:
    """bf16 autocast vs fp32 on this device: the mid training step (loss difference recorded) and
    cached generation (logit difference and token agreement recorded)."""
    from genie.decoding import generate

    config = bench_config(MID, smoke)
    torch.manual_seed(0)
    batch = make_batch(config, 1)
    fp32_model = STMaskGIT(config).to(DEVICE)
    bf16_model = STMaskGIT(config).to(DEVICE)
    bf16_model.load_state_dict(fp32_model.state_dict())
    with torch.no_grad():
        loss32 = fp32_model(**batch).loss.item()
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            loss16 = bf16_model(**batch).loss.item()
    timing = compare(training_step_fn(bf16_model, batch, bf16=True), training_step_fn(fp32_model, batch), rounds)
    tokens = batch["input_ids"].numel()
    results = [{"benchmark": "bf16_train_step_mid", "unit": "tokens/s", **figures(timing, tokens, rate=True),
                "loss_fp32": loss32, "loss_bf16": loss16, "note": "ours = bf16 autocast, naive = fp32"}]
    model, prompt, new = generation_setup(TINY, smoke)

    def bf16_generate():
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            return generate(model, prompt, new, greedy(2))

    with torch.no_grad():
        (tok16, logits16), (tok32, logits32) = bf16_generate(), generate(model, prompt, new, greedy(2))
        timing = compare(bf16_generate, lambda: generate(model, prompt, new, greedy(2)), rounds)
    results.append({"benchmark": "bf16_generation_tiny_2steps", "unit": "s/frame", **figures(timing, new),
                    "max_abs_logit_diff": (logits16.float() - logits32).abs().max().item(),
                    "token_agreement": (tok16 == tok32)[:, prompt.shape[1]:].float().mean().item(),
                    "note": "ours = bf16 autocast, naive = fp32"})
    return results


def bench_v2_index(smoke: bool, rounds: int) -> dict:
    """Opening a v2.0 train split of 11.25M raw frames in 100 shards (tiny 1x1 latent frames; the states
    files are sparse): every size and content check plus the window index. Made and removed here; the
    naive reference is a Python loop over clips."""
    import tempfile

    from genie.data.cosmos_v2 import CosmosV2Dataset

    shards, frames = (4, 20_000) if smoke else (100, 112_500)  # 100 x 112,500 = 11.25M raw frames
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for i in range(shards):
            for sub in ("videos", "robot_states", "segment_indices", "metadata"):
                (root / sub).mkdir(exist_ok=True)
            clips = -(-frames // 17)
            rng.integers(0, 64000, (clips, 3, 1, 1), dtype=np.int32).tofile(root / "videos" / f"video_{i}.bin")
            lengths = rng.integers(300, 3000, frames // 300 + 1)
            np.repeat(np.arange(len(lengths)), lengths)[:frames].astype(np.int32).tofile(
                root / "segment_indices" / f"segment_idx_{i}.bin")
            with open(root / "robot_states" / f"states_{i}.bin", "wb") as f:
                f.truncate(frames * 25 * 4)  # sparse zeros
            (root / "metadata" / f"metadata_{i}.json").write_text(json.dumps({"shard_num_frames": frames, "shard_ind": i}))
        (root / "metadata.json").write_text(json.dumps({"num_shards": shards, "hz": 30, "num_images": shards * frames,
                                                        "s": 1}))
        def loop():
            count = 0
            for shard in dataset.shards:
                seg = np.asarray(shard.segment_idx)
                for c in range(len(shard.video) - 1):
                    last = 17 * (c + 2) - 1
                    count += last < frames and seg[17 * c] == seg[last] and len(np.unique(seg[17 * c:last + 1])) == 1
            return count

        dataset = CosmosV2Dataset(root, window_size=6)
        assert loop() == len(dataset)
        timing = compare(lambda: CosmosV2Dataset(root, window_size=6), loop, rounds, warmup=0)
    return {"benchmark": "v2_open_and_index", "unit": "s", "raw_frames": shards * frames, "shards": shards,
            "windows": len(dataset), **figures(timing)}


def bench_eval_in_training(smoke: bool, rounds: int) -> list[dict]:
    """What an evaluation inside training costs against training steps, side by side in one process
    (ABBA): stage 1's final validation (20 batches of 8 windows by default) against 40 training steps
    of batch 8, on held-out built-in windows of 16 frames (d64, T 16, 16x16 tokens, the 2^18
    vocabulary); and the in-training evaluation of stage 2 (loss and teacher-forced CE, one pass per
    frame) against the same 40 steps. The target: an evaluation costs at most what 40 steps cost."""
    import tempfile

    from genie.studies.timing import stepping_trainer
    from genie.training.arguments import TrainingArguments
    from genie.training.banner import evaluation_kind
    from genie.training.masked_pretrain_config import MaskedPretrainConfig
    from genie.training.objectives import AutoregressiveObjective, MaskedPretrainObjective

    config = bench_config(dict(TINY, d_model=64, T=16, num_prompt_frames=2, action_dims={"driving_command": 2}), smoke)
    eval_batches, steps = (2, 2) if smoke else (20, 40)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for stage, final in (("masked_pretrain", True), ("autoregressive", False)):
            torch.manual_seed(0)
            model = STMaskGIT(config)
            objective = (MaskedPretrainObjective(config, MaskedPretrainConfig()) if stage == "masked_pretrain"
                         else AutoregressiveObjective(config))
            args = TrainingArguments(output_dir=f"{scratch}/{stage}", max_train_steps=10 ** 6,
                                     per_device_train_batch_size=8, max_eval_steps=eval_batches)
            trainer, train_steps = stepping_trainer(args, objective, model, steps)
            timing = compare(lambda: trainer.evaluate(final=final), train_steps, rounds)
            trainer.close()
            results.append({"benchmark": f"eval_in_training_{stage}", "evaluation": "final" if final else "in training",
                            "kind": evaluation_kind(trainer, final),
                            "eval_batches": eval_batches, "eval_batch_size": args.per_device_eval_batch_size,
                            "eval_s": timing["ours_s"], "train_steps": steps, "train_steps_s": timing["reference_s"],
                            "ours": timing["ours_s"], "naive": timing["reference_s"],  # the reference: the steps
                            "eval_in_train_steps": steps * timing["ours_s"] / timing["reference_s"],
                            "ratio": timing["ratio"], "ratio_min": timing["ratio_min"],
                            "ratio_max": timing["ratio_max"], "rounds": rounds,
                            "T": config.T, "S": config.S, "d_model": config.d_model})
    return results
