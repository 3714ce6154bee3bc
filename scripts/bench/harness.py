"""What every benchmark of `python -m scripts.bench` shares: the device, the model sizes and their inputs, the
figures a benchmark reports, and the naive reference model (hand-written softmax attention and boolean-index
embedding gathers, the same weights as ours). ABBA timing of two sides in one process and the machine record
come from genie/studies/timing.py."""
from __future__ import annotations

import resource
from pathlib import Path

import torch

from genie.model.config import GenieConfig
from genie.model.stmaskgit import STMaskGIT
from genie.studies.timing import compare_abba as compare  # noqa: F401 (the benchmarks' name for it)
from genie.studies.timing import machine  # noqa: F401

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
REPO_ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- sizes, models and inputs
TINY = dict(num_layers=2, num_heads=4, d_model=128, T=16, S=256, image_vocab_size=2 ** 18, num_factored_vocabs=2,
            qk_norm=False)
MID = dict(num_layers=4, num_heads=8, d_model=256, T=16, S=256, image_vocab_size=2 ** 18, num_factored_vocabs=2,
           qk_norm=False)


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


def bench_config(spec: dict, smoke: bool) -> GenieConfig:
    """The benchmark's model config; `smoke` shrinks it to seconds-sized work for the test suite."""
    return GenieConfig(**{**spec, **(dict(T=4, S=16, d_model=32, num_heads=2, num_layers=1) if smoke else {})})


def generation_setup(spec: dict, smoke: bool, batch: int = 1):
    config = bench_config(spec, smoke)
    torch.manual_seed(0)
    model = STMaskGIT(config).to(DEVICE).eval()
    num_prompt = config.T // 2
    prompt = torch.randint(0, config.image_vocab_size, (batch, num_prompt, config.S)).to(DEVICE)
    return model, prompt, config.T - num_prompt


def greedy(steps: int):
    from genie.decoding import SamplingConfig

    return SamplingConfig(maskgit_steps=steps, temperature=0.0, unmask_mode="confidence")


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
# ABBA timing (`compare`) and the machine record are the library's (genie/studies/timing.py), shared
# with the time-to-dynamics benchmark.


def figures(timing: dict, work: float = 1.0, rate: bool = False) -> dict:
    """ours / naive in the benchmark's unit: seconds per `work` unit, or `work` per second with `rate`."""
    to_unit = (lambda s: work / s) if rate else (lambda s: s / work)
    return {"ours": to_unit(timing["ours_s"]), "naive": to_unit(timing["reference_s"]),
            **{k: timing[k] for k in ("ratio", "ratio_min", "ratio_max", "rounds")}}


def peak_memory_mb() -> dict:
    """The process's peak memory so far: max allocated on the GPU, or the peak RSS on CPU."""
    if DEVICE == "cuda":
        return {"peak_gpu_allocated_mb": torch.cuda.max_memory_allocated() / 2 ** 20}
    return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
