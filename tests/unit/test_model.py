import functools

import pytest
import torch
from einops import rearrange
from safetensors.torch import load_file

from genie.errors import CheckpointError
from genie.model.factorization import FactorizedEmbedding, factorize_token_ids, unfactorize_token_ids
from genie.model.stmaskgit import STMaskGIT
from tests.conftest import FIXTURE_DIR


@pytest.fixture(scope="module")
def reference():
    fixture = load_file(FIXTURE_DIR / "fixture.safetensors")
    model = STMaskGIT.from_pretrained(FIXTURE_DIR / "checkpoint").eval()
    return model, fixture


def test_reference_checkpoint_reproduces_logits_and_loss(reference):
    model, fx = reference
    x = rearrange(fx["input_ids"], "b t h w -> b t (h w)")
    y = rearrange(fx["labels"], "b t h w -> b t (h w)")
    with torch.no_grad():
        out = model(x, y)
    expected = rearrange(fx["logits"], "b (k v) t h w -> b t (h w) k v", k=2)
    assert (out.logits - expected).abs().max().item() <= 1e-5
    assert abs(out.loss.item() - 12.477487564086914) <= 1e-5
    assert out.acc.item() == 0.0 and int(out.num_scored) == 50
    assert sum(p.numel() for p in model.parameters()) == 268736


def test_factorization_round_trip_and_layout():
    tokens = torch.tensor([0, 1, 511, 512, 262143, 1000])
    factors = factorize_token_ids(tokens, 2, 512)
    assert factors.tolist() == [[0, 0], [1, 0], [511, 0], [0, 1], [511, 511], [488, 1]]
    assert torch.equal(unfactorize_token_ids(factors, 2, 512), tokens)


def test_embedding_equals_boolean_index_reference():
    emb = FactorizedEmbedding(16, 2, 8, mask_token_id=256)
    torch.nn.init.normal_(emb.mask_token_embed)
    ids = torch.randint(0, 257, (3, 4, 16))
    ids[0, 0, :5] = 256
    expected = emb.mask_token_embed.repeat(*ids.shape, 1)
    keep = ids != 256
    f = factorize_token_ids(ids[keep], 2, 16)
    expected[keep] = emb.factored_embeds[0](f[:, 0]) + emb.factored_embeds[1](f[:, 1])
    assert torch.allclose(emb(ids), expected, atol=1e-6)


def test_model_traces_as_one_graph_without_data_dependent_shapes(tiny_config):
    model = STMaskGIT(tiny_config)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    ids = torch.randint(0, 257, (2, 4, 16))
    actions = torch.randn(2, 4, 2)
    out = compiled(ids, labels=ids.clamp(max=255), actions=actions)
    assert out.logits.shape == (2, 4, 16, 2, 16)
    assert torch.allclose(out.loss, model(ids, labels=ids.clamp(max=255), actions=actions).loss, atol=1e-6)


def test_causal_attention_hides_the_future_and_bidirectional_does_not(tiny_config):
    model = STMaskGIT(tiny_config).eval()
    ids = torch.randint(0, 256, (2, 4, 16))
    later = ids.clone()
    later[:, 3] = torch.randint(0, 256, (2, 16))
    actions = torch.zeros(2, 4, 2)
    with torch.no_grad():
        for causal, same in ((True, True), (False, False)):
            a = model.compute_logits(ids, actions, causal=causal)[:, :3]
            b = model.compute_logits(later, actions, causal=causal)[:, :3]
            assert torch.allclose(a, b, atol=1e-6) == same
    assert model.config.causal
    model.set_temporal_attention("bidirectional")
    with torch.no_grad():
        assert not torch.allclose(model.compute_logits(ids, actions)[:, :3], model.compute_logits(later, actions)[:, :3])


def test_actions_change_the_prediction(tiny_config):
    model = STMaskGIT(tiny_config).eval()
    ids = torch.randint(0, 256, (1, 4, 16))
    with torch.no_grad():
        a = model.compute_logits(ids, torch.zeros(1, 4, 2))
        b = model.compute_logits(ids, torch.ones(1, 4, 2))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="pass `actions`"):
        model.compute_logits(ids)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_config):
    torch.manual_seed(1)
    model = STMaskGIT(tiny_config)
    ids = torch.randint(0, 256, (2, 4, 16))
    inputs = dict(input_ids=ids.masked_fill(torch.rand(2, 4, 16) < 0.5, 256), labels=ids, actions=torch.randn(2, 4, 2))
    model(**inputs).loss.backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_gradient_checkpointing(True)
    model(**inputs).loss.backward()
    for a, p in zip(plain, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)


def test_save_and_load_round_trip(tmp_path, tiny_config):
    model = STMaskGIT(tiny_config)
    model.save_pretrained(tmp_path / "m")
    assert {"config.json", "model.safetensors"} <= {p.name for p in (tmp_path / "m").iterdir()}
    loaded = STMaskGIT.from_pretrained(tmp_path / "m")
    assert loaded.config == tiny_config
    for (n, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), n


def test_loading_a_checkpoint_of_another_architecture_lists_the_mismatch(tmp_path, tiny_config):
    STMaskGIT(tiny_config).save_pretrained(tmp_path / "m")
    bigger = tiny_config.replace(d_model=128)
    bigger.to_json_file(tmp_path / "m" / "config.json")
    with pytest.raises(CheckpointError, match=r"shape mismatch \[action_proj.bias \(64,\) vs model \(128,\), .*\.\.\. 28 more\]"):
        STMaskGIT.from_pretrained(tmp_path / "m")


def test_corrupted_and_missing_weights(tmp_path, tiny_config):
    STMaskGIT(tiny_config).save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        STMaskGIT.from_pretrained(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        STMaskGIT.from_pretrained(tmp_path / "nowhere")


def test_saved_configs_load_into_the_reference_only_when_they_mean_the_same(tmp_path, tiny_config):
    """The reference GenieConfig takes exactly the fields of its own config.json: a causal, action-free
    model saves just those; a bidirectional or action-conditioned one saves a field it refuses."""
    import json

    reference_fields = set(json.loads((FIXTURE_DIR / "checkpoint" / "config.json").read_text()))
    plain = tiny_config.replace(action_dims={})
    STMaskGIT(plain).save_pretrained(tmp_path / "plain")
    assert set(json.loads((tmp_path / "plain" / "config.json").read_text())) == reference_fields
    bidirectional = STMaskGIT(plain)
    bidirectional.set_temporal_attention("bidirectional")
    bidirectional.save_pretrained(tmp_path / "bidirectional")
    STMaskGIT(tiny_config).save_pretrained(tmp_path / "actions")
    assert "temporal_attention" in json.loads((tmp_path / "bidirectional" / "config.json").read_text())
    assert "action_dims" in json.loads((tmp_path / "actions" / "config.json").read_text())
    # and all of them load back here unchanged
    assert STMaskGIT.from_pretrained(tmp_path / "plain").config == plain
    assert STMaskGIT.from_pretrained(tmp_path / "bidirectional").config.temporal_attention == "bidirectional"
    assert STMaskGIT.from_pretrained(tmp_path / "actions").config.action_dims == tiny_config.action_dims


def test_withheld_actions_get_the_no_action_vector_and_real_ones_the_projection(tiny_config):
    model = STMaskGIT(tiny_config).eval()
    with torch.no_grad():
        model.no_action.copy_(torch.randn(64))
        model.action_proj.bias.copy_(torch.randn(64))
    actions = torch.tensor([[[1.0, -1.0], [float("nan")] * 2, [0.0, 0.0], [float("nan"), 0.0]]])
    embedded = model._action_embedding(actions)
    assert torch.equal(embedded[0, 1], model.no_action) and torch.equal(embedded[0, 3], model.no_action)
    assert torch.equal(embedded[0, [0, 2]], model.action_proj(actions[0, [0, 2]]))  # "stay" is a real command
    ids = torch.randint(0, 256, (1, 4, 16))
    with torch.no_grad():
        as_nan, as_stay = model.compute_logits(ids, actions), model.compute_logits(ids, actions.nan_to_num(0.0))
    assert torch.isfinite(as_nan).all() and not torch.allclose(as_nan[:, 1], as_stay[:, 1])
    assert torch.equal(as_nan[:, 0], as_stay[:, 0])  # causal: frames before the first withheld one are untouched


def test_the_no_action_vector_draws_nothing_from_the_rng(tiny_config):
    """Initial weights (seed 0) and the RNG after them are those of main 7856765, before no_action existed."""
    import hashlib

    torch.manual_seed(0)
    model = STMaskGIT(tiny_config)
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        if name != "no_action":
            digest.update(name.encode())
            digest.update(value.numpy().tobytes())
    assert digest.hexdigest() == "32230c55e86c360fc38fdbcff2090b040d903ad7b9203c75110e6fadf860f310"
    assert float(torch.rand(1)) == pytest.approx(0.08715957403182983, abs=0)
    assert model.no_action.shape == (64,) and not model.no_action.any()
    assert STMaskGIT(tiny_config.replace(action_dims={})).no_action is None


def test_a_checkpoint_from_before_no_action_loads_with_the_old_behaviour(tmp_path, tiny_config):
    """Old action models fed withheld actions as zeros, i.e. action_proj's bias: no_action starts there."""
    from safetensors.torch import save_file

    old = STMaskGIT(tiny_config).eval()
    with torch.no_grad():
        old.action_proj.bias.copy_(torch.randn(64))
    old.save_pretrained(tmp_path / "m")
    weights = load_file(tmp_path / "m" / "model.safetensors")
    del weights["no_action"]
    save_file(weights, tmp_path / "m" / "model.safetensors")
    loaded = STMaskGIT.from_pretrained(tmp_path / "m").eval()
    assert torch.equal(loaded.no_action, old.action_proj.bias)
    ids, zeros = torch.randint(0, 256, (1, 4, 16)), torch.zeros(1, 4, 2)
    with torch.no_grad():
        assert torch.equal(loaded.compute_logits(ids, torch.full_like(zeros, float("nan"))), old.compute_logits(ids, zeros))


def test_action_placement_previous_puts_each_action_on_the_frame_before(tiny_config):
    """Row t (the action that produced frame t) goes on frame t-1; the last frame given gets no_action unless
    a row after it is passed; "own" ignores rows past the frames."""
    import json

    model = STMaskGIT(tiny_config.replace(action_placement="previous")).eval()
    with torch.no_grad():
        model.no_action.copy_(torch.randn(64))
    actions = torch.randn(1, 5, 2)
    placed = model._action_embedding(model._placed_actions(actions[:, :4], 4))
    # Close, not equal: a matrix product of another shape may round differently (seen on AMD EPYC); a
    # misplaced row would differ by the size of an action embedding, not by 1e-6.
    same = functools.partial(torch.testing.assert_close, rtol=0.0, atol=1e-6)
    same(placed[0, :3], model.action_proj(actions[0, 1:4]))
    assert torch.equal(placed[0, 3], model.no_action)
    with_next = model._action_embedding(model._placed_actions(actions, 4))
    same(with_next[0, 3], model.action_proj(actions[0, 4]))
    own = STMaskGIT(tiny_config).eval()
    ids = torch.randint(0, 256, (1, 4, 16))
    with torch.no_grad():
        assert torch.equal(own.compute_logits(ids, actions), own.compute_logits(ids, actions[:, :4]))
        # causal: frame 2's logits read row 3 (on frame 2) but never row 4
        base = model.compute_logits(ids, actions)
        changed = actions.clone()
        changed[0, 3] += 1.0
        assert not torch.allclose(model.compute_logits(ids, changed)[:, 2], base[:, 2])
        assert torch.equal(model.compute_logits(ids, changed)[:, 1], base[:, 1])
    config = json.loads(json.dumps(model.config.to_portable_dict()))
    assert config["action_placement"] == "previous" and "action_placement" not in own.config.to_portable_dict()


def test_an_unknown_action_placement_is_one_line(tiny_config):
    from genie.errors import ConfigError

    with pytest.raises(ConfigError, match="'action_placement' = 'next' must be one of"):
        tiny_config.replace(action_placement="next")
