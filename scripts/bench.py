"""Benchmarks: one JSON line per benchmark with our figure, a naive reference's figure measured in the
same process, and their ratio; plus the benchmark process's peak memory.

    python scripts/bench.py                 # all benchmarks, CPU sizes (a few minutes on 2 cores)
    python scripts/bench.py --only generation --smoke

Each benchmark runs in its own child process, so its peak memory (RSS on CPU, max allocated on GPU)
is its own. The naive references live here, not in the library: a model with hand-written softmax
attention and boolean-index embedding gathers, per-sample per-frame Python mask loops, a Python loop
over frames for the window index, and MaskGIT decoding (generation and the teacher-forced evaluation)
that recomputes the whole prefix every step.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from genie.model.config import GenieConfig
from genie.model.stmaskgit import STMaskGIT

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

TINY = dict(num_layers=2, num_heads=4, d_model=128, T=16, S=256, image_vocab_size=2 ** 18, num_factored_vocabs=2,
            qk_norm=False)
MID = dict(num_layers=4, num_heads=8, d_model=256, T=16, S=256, image_vocab_size=2 ** 18, num_factored_vocabs=2,
           qk_norm=False)


# ----------------------------------------------------------------------------- naive references
class NaiveAttention(torch.nn.Module):
    """Same parameters as genie.model.attention.SelfAttention; explicit softmax(QK^T)V with a materialised mask."""

    def __init__(self, fast):
        super().__init__()
        self.fast = fast

    def forward(self, x, causal=False):
        f = self.fast
        b, n, c = x.shape
        qkv = f.qkv(x).reshape(b, n, 3, f.num_heads, f.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if f.qk_norm:
            q, k = f.norm(q), f.norm(k)
        scores = (q * f.head_dim ** -0.5) @ k.transpose(-2, -1)
        if causal:
            future = ~torch.tril(torch.ones(n, n, device=x.device)).bool()
            scores = scores.masked_fill(future, -torch.finfo(scores.dtype).max)
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
        return f.proj(out)

    def attend(self, x, causal=False, cache=None):
        assert cache is None, "the naive reference has no KV cache"
        return self.forward(x, causal)


def naive_embed(module, ids):
    """Boolean-index gather: data-dependent shapes, as in the reference embedding."""
    out = module.mask_token_embed.repeat(*ids.shape, 1)
    keep = ids != module.mask_token_id  # True = keep: a real token, not the mask token
    kept = ids[keep]
    powers = module.factored_vocab_size ** torch.arange(module.num_factored_vocabs, device=ids.device)
    factors = (kept.unsqueeze(-1) // powers) % module.factored_vocab_size
    out[keep] = sum(e(factors[:, i]) for i, e in enumerate(module.factored_embeds))
    return out


def make_naive(model: STMaskGIT) -> STMaskGIT:
    """The same weights, run through the naive attention and embedding."""
    for block in model.decoder.layers:
        block.spatial_attn = NaiveAttention(block.spatial_attn)
        block.temporal_attn = NaiveAttention(block.temporal_attn)
    embed = model.token_embed
    embed.forward = lambda ids: naive_embed(embed, ids)
    return model


# ----------------------------------------------------------------------------- timing helpers
def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int, warmup: int = 1) -> float:
    """Median seconds of `fn()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def training_step_fn(model, batch, compile_model=False, bf16=False):
    model.train()
    fused = DEVICE == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)
    run = torch.compile(model) if compile_model else model

    def step():
        with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=bf16):
            loss = run(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def make_batch(config: GenieConfig, batch_size: int):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, config.image_vocab_size, (batch_size, config.T, config.S), generator=g)
    mask = torch.rand(labels.shape, generator=g) < 0.5
    mask[:, 0] = False
    batch = {"input_ids": labels.masked_fill(mask, config.mask_token_id), "labels": labels, "loss_mask": mask}
    if config.action_dims:
        batch["actions"] = torch.randn(batch_size, config.T, config.action_dim, generator=g)
    return {k: v.to(DEVICE) for k, v in batch.items()}


# ----------------------------------------------------------------------------- benchmarks
def bench_config(spec: dict, smoke: bool) -> GenieConfig:
    """The benchmark's model config; `smoke` shrinks it to seconds-sized work for the test suite."""
    return GenieConfig(**{**spec, **(dict(T=4, S=16, d_model=32, num_heads=2, num_layers=1) if smoke else {})})


def bench_train(size: str, smoke: bool) -> dict:
    batch_size = 1 if size == "mid" else 2
    specs = {"tiny": TINY, "mid": MID,
             "v2_tiny": json.loads((Path(__file__).resolve().parents[1] / "configs" / "cosmos_v2_tiny.json").read_text())}
    config = bench_config(specs[size], smoke)
    torch.manual_seed(0)
    batch = make_batch(config, batch_size)
    tokens = batch_size * config.T * config.S
    repeats = 2 if smoke else 5
    ours_model = STMaskGIT(config).to(DEVICE)
    naive_model = STMaskGIT(config)
    naive_model.load_state_dict(ours_model.state_dict())
    naive_model = make_naive(naive_model).to(DEVICE)
    with torch.no_grad():  # the naive reference computes the same function
        assert torch.allclose(ours_model(**batch).loss, naive_model(**batch).loss, atol=1e-4)
    ours = timed(training_step_fn(ours_model, batch), repeats)
    naive = timed(training_step_fn(naive_model, batch), repeats)
    result = {"benchmark": f"train_step_{size}", "unit": "tokens/s", "ours": tokens / ours, "naive": tokens / naive,
              "ratio": naive / ours, "batch": batch_size, "T": config.T, "S": config.S, "d_model": config.d_model,
              "num_layers": config.num_layers}
    if not smoke and size == "mid":
        compiled = timed(training_step_fn(ours_model, batch, compile_model=True), repeats, warmup=2)
        result.update(ours_compiled=tokens / compiled, ratio_compiled=naive / compiled)
    return result


def bench_masking(smoke: bool) -> dict:
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

    ours = timed(lambda: random_mask(shape, ratio, torch.Generator().manual_seed(0)), 5 if smoke else 20)
    naive = timed(loop, 2 if smoke else 5)
    return {"benchmark": "masking_random", "unit": "masks/s (batch x T x S)", "shape": list(shape),
            "ours": 1 / ours, "naive": 1 / naive, "ratio": naive / ours}


def bench_index(smoke: bool) -> dict:
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

    start = time.perf_counter()
    fast = window_start_indices(segment_ids, num_frames, window, stride)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    slow = loop()
    naive = time.perf_counter() - start
    assert len(fast) == len(slow)
    return {"benchmark": "dataset_index", "unit": "s", "frames": num_frames, "ours": ours, "naive": naive,
            "ratio": naive / ours, "windows": len(fast)}


def bench_generation(smoke: bool) -> list[dict]:
    from genie.decoding import SamplingConfig, generate

    config = bench_config(TINY, smoke)
    torch.manual_seed(0)
    model = STMaskGIT(config).to(DEVICE).eval()
    num_prompt = config.T // 2
    new = config.T - num_prompt
    prompt = torch.randint(0, config.image_vocab_size, (1, num_prompt, config.S)).to(DEVICE)
    results = []
    for steps in (2, 8):
        cfg = SamplingConfig(maskgit_steps=steps, temperature=0.0, unmask_mode="confidence")
        dtype = torch.bfloat16 if DEVICE == "cuda" else torch.float32
        with torch.autocast(DEVICE, dtype=dtype, enabled=DEVICE == "cuda"):
            cached = timed(lambda c=cfg: generate(model, prompt, new, c, use_cache=True), 1 if smoke else 3)
            full = timed(lambda c=cfg: generate(model, prompt, new, c, use_cache=False), 1 if smoke else 2)
        results.append({"benchmark": f"generation_tiny_{steps}steps", "unit": "s/frame", "prompt_frames": num_prompt,
                        "new_frames": new, "maskgit_steps": steps, "batch": 1, "ours": cached / new,
                        "naive": full / new, "ratio": full / cached})
    return results


def bench_eval(smoke: bool) -> list[dict]:
    """The teacher-forced challenge metric through the KV cache vs recomputing every prefix (T = 16)."""
    from genie.evaluation.scores import EvalOptions, teacher_forced_sums

    config = bench_config(TINY, smoke)
    torch.manual_seed(0)
    model = STMaskGIT(config).to(DEVICE).eval()
    batch = 1 if smoke else 4
    tokens = torch.randint(0, config.image_vocab_size, (batch, config.T, config.S)).to(DEVICE)
    results = []
    for loss_only in (False, True):
        def run(use_cache, loss_only=loss_only):
            options = EvalOptions(loss_only=loss_only, use_cache=use_cache)
            return teacher_forced_sums(model, tokens, None, options, torch.Generator(DEVICE).manual_seed(0))
        cached, full = run(True), run(False)
        assert torch.allclose(cached["tf_ce"], full["tf_ce"], rtol=1e-4), "cache and recompute disagree"
        ours = timed(lambda: run(True), 1 if smoke else 3)
        naive = timed(lambda: run(False), 1 if smoke else 2)
        name = "eval_teacher_forced_loss_only" if loss_only else "eval_teacher_forced_2steps"
        results.append({"benchmark": name, "unit": "s/window", "T": config.T, "batch": batch,
                        "ours": ours / batch, "naive": naive / batch, "ratio": naive / ours})
    return results


def bench_token_check(smoke: bool) -> dict:
    """The whole-file token-range check over a 10M-frame video.bin (4x4 uint32 tokens, 640 MB), made and
    removed here; the naive reference reads the whole file into memory at once."""
    import tempfile

    from genie.data.checks import first_token_out_of_range

    num_frames = 100_000 if smoke else 10_000_000
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/video.bin"
        rng = np.random.default_rng(0)
        with open(path, "wb") as f:
            for start in range(0, num_frames, 1_000_000):
                rng.integers(0, 2 ** 18, (min(1_000_000, num_frames - start), 4, 4), dtype=np.uint32).tofile(f)
        video = np.memmap(path, dtype=np.uint32, mode="r", shape=(num_frames, 4, 4))
        start = time.perf_counter()
        assert first_token_out_of_range(video, 2 ** 18) is None
        ours = time.perf_counter() - start
        rss_after_ours = peak_memory_mb()
        start = time.perf_counter()
        assert not (np.asarray(np.fromfile(path, dtype=np.uint32)) >= 2 ** 18).any()
        naive = time.perf_counter() - start
        size = video.nbytes
    return {"benchmark": "token_check_whole_file", "unit": "s", "frames": num_frames, "bytes": size,
            "ours": ours, "naive": naive, "ratio": naive / ours, "ours_gb_per_s": size / ours / 1e9,
            "peak_rss_mb_after_ours": rss_after_ours.get("peak_rss_mb")}


def bench_onnx(smoke: bool) -> list[dict]:
    """MaskGIT generation (8 prompt -> 8 new frames, KV cache) on ONNX Runtime vs PyTorch, same loop, CPU."""
    import tempfile

    from genie.decoding import SamplingConfig, generate
    from genie.export.onnx_export import export_onnx
    from genie.export.ort_backend import OnnxRuntimeModel

    results = []
    for size, spec in (("tiny", TINY), ("mid", MID)):
        config = bench_config(spec, smoke)
        torch.manual_seed(0)
        model = STMaskGIT(config).eval()
        num_prompt = config.T // 2
        new = config.T - num_prompt
        prompt = torch.randint(0, config.image_vocab_size, (1, num_prompt, config.S))
        with tempfile.TemporaryDirectory() as folder:
            export_onnx(model, folder)
            ort_model = OnnxRuntimeModel(folder)
            for steps in (2, 8):
                cfg = SamplingConfig(maskgit_steps=steps, temperature=0.0, unmask_mode="confidence")
                with torch.no_grad():
                    torch_s = timed(lambda c=cfg: generate(model, prompt, new, c), 1 if smoke else 3)
                ort_s = timed(lambda c=cfg: generate(ort_model, prompt, new, c), 1 if smoke else 3)
                results.append({"benchmark": f"onnxruntime_generation_{size}_{steps}steps", "unit": "s/frame",
                                "layers": config.num_layers, "d_model": config.d_model, "prompt_frames": num_prompt,
                                "new_frames": new, "ours": ort_s / new, "naive": torch_s / new,
                                "ratio": torch_s / ort_s, "note": "ours = ONNX Runtime, naive = PyTorch eager"})
    return results


def bench_v2_index(smoke: bool) -> dict:
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
        start = time.perf_counter()
        dataset = CosmosV2Dataset(root, window_size=6)
        ours = time.perf_counter() - start
        start = time.perf_counter()
        loop = 0
        for shard in dataset.shards:
            seg = np.asarray(shard.segment_idx)
            for c in range(len(shard.video) - 1):
                last = 17 * (c + 2) - 1
                loop += last < frames and seg[17 * c] == seg[last] and len(np.unique(seg[17 * c:last + 1])) == 1
        naive = time.perf_counter() - start
        assert loop == len(dataset)
    return {"benchmark": "v2_open_and_index", "unit": "s", "raw_frames": shards * frames, "shards": shards,
            "windows": len(dataset), "ours": ours, "naive": naive, "ratio": naive / ours}


def run_one(name: str, smoke: bool) -> list[dict]:
    if name == "train_tiny":
        return [bench_train("tiny", smoke)]
    if name == "train_mid":
        return [bench_train("mid", smoke)]
    if name == "masking":
        return [bench_masking(smoke)]
    if name == "index":
        return [bench_index(smoke)]
    if name == "generation":
        return bench_generation(smoke)
    if name == "eval":
        return bench_eval(smoke)
    if name == "token_check":
        return [bench_token_check(smoke)]
    if name == "onnx":
        return bench_onnx(smoke)
    if name == "v2_index":
        return [bench_v2_index(smoke)]
    if name == "v2_tokens":
        return [bench_train("v2_tiny", smoke)]
    raise SystemExit(f"unknown benchmark {name!r}")


BENCHMARKS = ["train_tiny", "train_mid", "masking", "index", "generation", "eval", "token_check", "onnx",
              "v2_index", "v2_tokens"]


def peak_memory_mb() -> dict:
    if DEVICE == "cuda":
        return {"peak_gpu_allocated_mb": torch.cuda.max_memory_allocated() / 2 ** 20}
    return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=BENCHMARKS, help="run one benchmark in this process")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    args = parser.parse_args()
    if args.only:
        for result in run_one(args.only, args.smoke):
            print(json.dumps({**result, **peak_memory_mb(), "device": DEVICE}), flush=True)
        return
    for name in BENCHMARKS:  # each in a fresh process: its own peak memory, no warm caches between them
        command = [sys.executable, __file__, "--only", name] + (["--smoke"] if args.smoke else [])
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
