import math

import pytest
import torch
from einops import rearrange
from safetensors.torch import load_file

from genie.decoding import SamplingConfig, decode_frame, generate, sample_tokens, sampling_distribution
from genie.masking.schedules import maskgit_num_masked
from genie.model.stmaskgit import STMaskGIT
from tests.conftest import FIXTURE_DIR


def test_greedy_generation_matches_the_reference():
    fx = load_file(FIXTURE_DIR / "fixture.safetensors")
    model = STMaskGIT.from_pretrained(FIXTURE_DIR / "checkpoint").eval()
    prompt = rearrange(fx["gen_input_ids"], "b (t s) -> b t s", s=16)
    tokens, logits = generate(model, prompt, 2, SamplingConfig(maskgit_steps=1, temperature=0.0))
    assert torch.equal(rearrange(tokens, "b t s -> b (t s)"), fx["gen_output_ids"])
    expected = rearrange(fx["gen_factored_logits"], "b v k t h w -> b t (h w) k v")
    assert (logits - expected).abs().max() <= 1e-5


def entropy(p):
    return float(-(p * p.clamp_min(1e-30).log()).sum(-1).mean())


def test_temperature_changes_the_sampling_entropy():
    logits = torch.randn(4, 16, 2, 32, generator=torch.Generator().manual_seed(0)) * 2
    entropies = [entropy(sampling_distribution(logits, SamplingConfig(temperature=t))) for t in (0.5, 1.0, 2.0)]
    assert entropies[0] < entropies[1] < entropies[2]
    assert abs(entropies[1] - entropy(torch.softmax(logits, -1))) < 1e-5
    # And the samples themselves: hot sampling spreads over more distinct tokens than cold sampling.
    def distinct(t):
        ids, _ = sample_tokens(logits[:1, :1].expand(64, -1, -1, -1), SamplingConfig(temperature=t),
                               torch.Generator().manual_seed(1))
        return len(ids.unique())
    assert distinct(0.3) < distinct(3.0)


def test_top_k_and_top_p_restrict_the_support():
    logits = torch.tensor([[[[4.0, 3.0, 2.0, 1.0, 0.0]]]])
    probs = sampling_distribution(logits, SamplingConfig(temperature=1.0, top_k=2))
    assert (probs[..., 2:] == 0).all() and torch.allclose(probs.sum(-1), torch.ones(1))
    soft = torch.softmax(logits, -1)[0, 0, 0]
    probs = sampling_distribution(logits, SamplingConfig(temperature=1.0, top_p=float(soft[0] + soft[1] / 2)))
    assert (probs[..., :2] > 0).all() and (probs[..., 2:] == 0).all()


def test_cosine_unmasking_schedule():
    assert [maskgit_num_masked(s, 4, 16) for s in range(4)] == [
        math.ceil(math.cos(math.pi / 2 * k / 4) * 16) for k in (1, 2, 3)] + [0]
    assert maskgit_num_masked(0, 1, 256) == 0


class Recorder(torch.nn.Module):
    """A stand-in model that records how many tokens of the decoded frame are masked at each call."""
    def __init__(self, model):
        super().__init__()
        self.model, self.masked_counts = model, []
        self.config, self.mask_token_id = model.config, model.mask_token_id

    def compute_logits(self, tokens, actions=None):
        self.masked_counts.append(int((tokens[:, -1] == self.mask_token_id).sum(-1)[0]))
        return self.model.compute_logits(tokens, actions)


@pytest.mark.parametrize("mode", ["confidence", "gumbel", "random"])
def test_each_step_unmasks_per_the_schedule(tiny_config, mode):
    model = Recorder(STMaskGIT(tiny_config).eval())
    context = torch.randint(0, 256, (3, 3, 16))
    context[:, 2] = 256
    cfg = SamplingConfig(maskgit_steps=4, temperature=1.0, unmask_mode=mode)
    frame, _ = decode_frame(model, context, cfg, torch.zeros(3, 3, 2), torch.Generator().manual_seed(0))
    assert model.masked_counts == [16] + [maskgit_num_masked(s, 4, 16) for s in range(3)]
    assert (frame != 256).all() and frame.max() < 256


def test_confidence_mode_keeps_the_most_confident_tokens(tiny_config):
    model = STMaskGIT(tiny_config).eval()
    context = torch.randint(0, 256, (2, 2, 16))
    context[:, 1] = 256
    actions = torch.zeros(2, 2, 2)
    with torch.no_grad():
        logits = model.compute_logits(context, actions)[:, 1]
    _, confidence = sample_tokens(logits, SamplingConfig(temperature=0.0))
    cfg = SamplingConfig(maskgit_steps=2, temperature=0.0, unmask_mode="confidence")
    with torch.no_grad():
        # After step 0 of 2, ceil(cos(pi/4) * 16) = 12 tokens stay masked: the 12 least confident.
        step0 = {}
        orig = model.compute_logits
        def spy(tokens, actions=None):
            step0.setdefault("calls", []).append(tokens[:, 1].clone())
            return orig(tokens, actions)
        model.compute_logits = spy
        decode_frame(model, context, cfg, actions)
    still_masked = step0["calls"][1] == 256
    assert int(still_masked.sum(-1)[0]) == 12
    least = confidence.argsort(dim=1)[:, :12]
    assert torch.equal(still_masked, torch.zeros_like(still_masked).scatter_(1, least, True))


def test_invalid_sampling_settings():
    for kwargs in ({"maskgit_steps": 0}, {"temperature": -1}, {"top_k": 0}, {"top_p": 1.5}, {"unmask_mode": "x"}):
        with pytest.raises(ValueError):
            SamplingConfig(**kwargs)


@pytest.mark.parametrize("mode, temperature, variant", [("confidence", 0.0, {}), ("random", 0.0, {}), ("gumbel", 1.0, {}),
                                                         ("confidence", 0.0, {"spatial_rope": True}),
                                                         ("confidence", 0.0, {"action_placement": "previous"})])
def test_kv_cached_generation_equals_full_recompute(mode, temperature, variant):
    from genie.model.config import GenieConfig
    from tests.conftest import REPO_ROOT

    torch.manual_seed(0)
    config = GenieConfig.from_json_file(REPO_ROOT / "configs" / "tiny.json").replace(**variant)
    model = STMaskGIT(config).eval()
    for p in model.parameters():  # a non-trivial model: untrained logits are nearly flat
        p.data.add_(torch.randn_like(p) * 0.05)
    prompt = torch.randint(0, 2 ** 18, (2, 4, 256), generator=torch.Generator().manual_seed(1))
    actions = torch.randn(2, 8, 2, generator=torch.Generator().manual_seed(2))
    cfg = SamplingConfig(maskgit_steps=3, temperature=temperature, unmask_mode=mode)
    cached, cached_logits = generate(model, prompt, 4, cfg, actions, torch.Generator().manual_seed(3), use_cache=True)
    full, full_logits = generate(model, prompt, 4, cfg, actions, torch.Generator().manual_seed(3), use_cache=False)
    assert torch.equal(cached, full)
    assert (cached_logits - full_logits).abs().max() < 1e-4


@pytest.mark.parametrize("num_past, num_queries", [(0, 1), (3, 1), (3, 2), (2, 5), (3, 0)])
def test_the_cached_temporal_attention_forms_agree(num_past, num_queries):
    """Broadcast products (eager, 1-2 queries), batched matmuls (the ONNX export) and SDPA (a prompt) are
    one attention: each query frame sees the cached frames and the new frames up to its own."""
    from genie.model.attention import _broadcast_attention, _matmul_attention, _sdpa_over_frames

    g = torch.Generator().manual_seed(0)
    b, s, heads, d = 2, 5, 3, 4
    q = torch.randn(b, num_queries, s, heads, d, generator=g)
    keys, values = (torch.randn(num_past + num_queries, b, s, heads, d, generator=g) for _ in range(2))
    scores = torch.einsum("bnshd,lbshd->bshnl", q, keys) / d ** 0.5  # the textbook form, causal over frames
    visible = torch.arange(num_past + num_queries)[None, :] <= torch.arange(num_queries)[:, None] + num_past
    expected = torch.einsum("bshnl,lbshd->bnshd", scores.masked_fill(~visible, float("-inf")).softmax(-1), values)
    forms = {"matmul": _matmul_attention(q, keys, values, num_past, num_queries)}  # 0 queries: a prompt's call
    if num_queries:
        forms["sdpa"] = _sdpa_over_frames(q, keys, values, num_past)
    if num_queries <= 2:
        forms["broadcast"] = _broadcast_attention(q, keys, values, num_past)
    for name, out in forms.items():
        assert out.shape == expected.shape and torch.allclose(out, expected, atol=1e-6), name


def test_cache_is_refused_for_bidirectional_models(tiny_config):
    model = STMaskGIT(tiny_config.replace(temporal_attention="bidirectional")).eval()
    with pytest.raises(ValueError, match="needs causal temporal attention"):
        generate(model, torch.zeros(1, 2, 16, dtype=torch.long), 1, SamplingConfig(), torch.zeros(1, 3, 2), use_cache=True)
    tokens, _ = generate(model, torch.zeros(1, 2, 16, dtype=torch.long), 2, SamplingConfig(), torch.zeros(1, 4, 2))
    assert tokens.shape == (1, 4, 16) and (tokens < 256).all()


def test_generation_progress_names_its_frames_and_changes_nothing(tiny_config, capsys):
    model = STMaskGIT(tiny_config).eval()
    model.set_temporal_attention("causal")
    prompt = torch.randint(0, tiny_config.image_vocab_size, (2, 2, tiny_config.S))
    cfg, actions = SamplingConfig(maskgit_steps=2, temperature=0.0), torch.randn(2, 4, tiny_config.action_dim)
    with torch.no_grad():
        quiet, _ = generate(model, prompt, 2, cfg, actions)
        shown, _ = generate(model, prompt, 2, cfg, actions, progress=True)
    err = capsys.readouterr().err.replace("\r", "\n")
    assert "generating 2 frames x 2 examples" in err and "2/2" in err  # also when stderr is not a terminal
    assert torch.equal(quiet, shown)
