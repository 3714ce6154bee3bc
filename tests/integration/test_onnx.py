"""ONNX export and the ONNX Runtime backend: parity with PyTorch measured, not assumed (tiny configs, fp32)."""
import json

import numpy as np
import pytest
import torch

from genie.decoding import SamplingConfig, generate
from genie.export.onnx_export import export_onnx
from genie.export.ort_backend import OnnxRuntimeModel, session_options
from genie.files import file_sha256
from genie.model.config import GenieConfig
from genie.model.stmaskgit import STMaskGIT
from genie.protocols import MaskGITModel
from tests.conftest import TINY, run_script

VARIANTS = {"plain": {"action_dims": {}}, "qk_norm": {"action_dims": {}, "qk_norm": True},
            "actions": {"action_dims": {"driving_command": 2}},
            "spatial_rope": {"action_dims": {"driving_command": 2}, "spatial_rope": True}}


# Every variant through the default (dynamo) exporter, and the TorchScript exporter on the richest one.
EXPORTS = [(variant, "dynamo") for variant in sorted(VARIANTS)] + [("actions", "torchscript")]


@pytest.fixture(scope="module", params=EXPORTS, ids=[f"{v}-{e}" for v, e in EXPORTS])
def exported(request, tmp_path_factory):
    variant, exporter = request.param
    torch.manual_seed(0)
    model = STMaskGIT(GenieConfig(**{**TINY, "T": 6, **VARIANTS[variant]})).eval()
    if model.no_action is not None:  # as trained: unlike its zero initialisation, unlike action_proj(0) = 0
        torch.nn.init.normal_(model.no_action, generator=torch.Generator().manual_seed(1))
    folder = tmp_path_factory.mktemp(f"onnx-{variant}-{exporter}")
    export_onnx(model, folder, exporter=exporter)
    return model, OnnxRuntimeModel(folder), folder


def inputs(model, batch=3, frames=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    frames = frames or cfg.T
    tokens = torch.randint(0, cfg.image_vocab_size + 1, (batch, frames, cfg.S), generator=g)  # mask ids included
    actions = torch.randn(batch, cfg.T, cfg.action_dim, generator=g) if cfg.action_dims else None
    return tokens, actions


def test_export_writes_checked_graphs_and_their_record(exported):
    import onnx

    model, ort_model, folder = exported
    record = json.loads((folder / "config.json").read_text())
    assert set(record["graphs"]) == {"full", "cached_step"} and record["format"] == 3
    assert record["opset"] == {"dynamo": 18, "torchscript": 17}[record["exporter"]]
    assert GenieConfig.from_dict(record["genie_config"]) == model.config
    for graph in record["graphs"].values():
        onnx.checker.check_model(str(folder / graph["file"]))
        names = [i.name for i in onnx.load(str(folder / graph["file"])).graph.input]
        assert names == graph["inputs"] and graph["sha256"] == file_sha256(folder / graph["file"])
    assert isinstance(ort_model, MaskGITModel)


@pytest.mark.parametrize("frames, batch", [(1, 1), (3, 2), (6, 3)])
def test_full_graph_logits_match_pytorch(exported, frames, batch):
    model, ort_model, _ = exported
    tokens, actions = inputs(model, batch, frames)
    actions = None if actions is None else actions[:, :frames]
    with torch.no_grad():
        expected = model.compute_logits(tokens, actions)
    assert (ort_model.compute_logits(tokens, actions) - expected).abs().max().item() <= 1e-4


def test_withheld_actions_reach_the_graph_as_no_action(exported):
    """NaN action rows (--drop_actions) go through the exported graph as PyTorch reads them: the
    learned no_action vector, not a projected value (zeros give other logits)."""
    model, ort_model, _ = exported
    tokens, actions = inputs(model)
    if actions is None:
        pytest.skip("a model without actions has no action input")
    actions[:, 1::2] = float("nan")
    with torch.no_grad():
        expected = model.compute_logits(tokens, actions)
        as_zeros = model.compute_logits(tokens, actions.nan_to_num(0.0))
    got = ort_model.compute_logits(tokens, actions)
    assert torch.isfinite(expected).all() and (got - expected).abs().max().item() <= 1e-4
    assert (as_zeros - expected).abs().max().item() > 1e-3


@pytest.mark.parametrize("cached_frames", [0, 1, 3, 4])
def test_cached_step_logits_match_pytorch_at_every_cache_length(exported, cached_frames):
    model, ort_model, _ = exported
    tokens, actions = inputs(model, seed=cached_frames)
    acts = (lambda a, b: None) if actions is None else (lambda a, b: actions[:, a:b])
    torch_cache, ort_cache = model.new_kv_cache(), ort_model.new_kv_cache()
    with torch.no_grad():
        if cached_frames:
            model.compute_logits_cached(tokens[:, :cached_frames], torch_cache, acts(0, cached_frames),
                                        commit=cached_frames)
            ort_model.compute_logits_cached(tokens[:, :cached_frames], ort_cache, acts(0, cached_frames),
                                            commit=cached_frames)
        block = slice(cached_frames, cached_frames + 2)
        for commit in (1, 0):  # a [finished, new] block that commits one frame, then the new frame alone
            expected = model.compute_logits_cached(tokens[:, block], torch_cache, acts(block.start, block.stop), commit)
            got = ort_model.compute_logits_cached(tokens[:, block], ort_cache, acts(block.start, block.stop), commit)
            assert (got - expected).abs().max().item() <= 1e-4
            block = slice(block.start + 1, block.start + 2)
    assert ort_cache.length == torch_cache[0].length == cached_frames + 1


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generation_gives_identical_tokens(exported, use_cache):
    model, ort_model, _ = exported
    tokens, actions = inputs(model)
    prompt = tokens[:, :2].clamp(max=model.config.image_vocab_size - 1)
    cfg = SamplingConfig(maskgit_steps=3, temperature=0.0, unmask_mode="confidence")
    with torch.no_grad():
        expected, _ = generate(model, prompt, 4, cfg, actions, use_cache=use_cache)
    got, _ = generate(ort_model, prompt, 4, cfg, actions, use_cache=use_cache)
    assert torch.equal(got, expected)


def test_no_nan_or_inf_over_20_random_prompts_including_all_masked_frames(exported):
    model, ort_model, _ = exported
    for seed in range(20):
        tokens, actions = inputs(model, batch=2, seed=seed)
        tokens[:, seed % model.config.T:] = model.mask_token_id  # fully masked frames from a random point
        logits = ort_model.compute_logits(tokens, actions)
        assert torch.isfinite(logits).all(), seed
        # a prompt that may itself be all masked (seed 0): every generated token is still a valid id
        sampled, first_logits = generate(ort_model, tokens[:, :1], model.config.T - 1, SamplingConfig(temperature=1.0),
                                         actions, torch.Generator().manual_seed(seed))
        assert torch.isfinite(first_logits).all(), seed
        assert ((sampled[:, 1:] >= 0) & (sampled[:, 1:] < model.config.image_vocab_size)).all()


def test_a_model_with_actions_on_the_previous_frame_is_refused_in_one_line(tmp_path, tiny_config):
    from genie.errors import OnnxExportError

    with pytest.raises(OnnxExportError, match="action_placement 'previous' cannot be exported yet"):
        export_onnx(STMaskGIT(tiny_config.replace(action_placement="previous")), tmp_path / "export")
    assert not (tmp_path / "export").exists()
    export_onnx(STMaskGIT(tiny_config.replace(action_dims={}, action_placement="previous")), tmp_path / "no_actions")


def test_an_export_recorded_before_later_config_fields_still_belongs_to_its_model(tiny_config):
    from genie.export.record import config_difference
    from genie.model.config import LATER_FIELDS

    older = {k: v for k, v in tiny_config.to_dict().items() if k not in LATER_FIELDS}
    assert config_difference(older, tiny_config) is None
    assert "spatial_rope" in config_difference(older, tiny_config.replace(spatial_rope=True))


def test_bidirectional_models_export_the_full_graph_only(tmp_path, tiny_config):
    model = STMaskGIT(tiny_config.replace(temporal_attention="bidirectional")).eval()
    record = export_onnx(model, tmp_path)
    assert set(record["graphs"]) == {"full"}
    ort_model = OnnxRuntimeModel(tmp_path)
    tokens, actions = inputs(model)
    with torch.no_grad():
        assert np.allclose(ort_model.compute_logits(tokens, actions), model.compute_logits(tokens, actions), atol=1e-4)
    with pytest.raises(ValueError, match="no cached_step graph"):
        ort_model.new_kv_cache()


def test_export_and_generate_commands(trained_tiny_model, tiny_data, tmp_path):
    record = run_script("export_onnx", ["--checkpoint_dir", str(trained_tiny_model), "--output_dir",
                                        str(tmp_path / "onnx")])
    assert record["check_max_abs_logit_difference"] <= 1e-4
    assert record["weights_sha256"] == file_sha256(trained_tiny_model / "model.safetensors")
    common = ["--checkpoint_dir", str(trained_tiny_model), "--val_data_dir", str(tiny_data[1]), "--num_examples", "2",
              "--unmask_mode", "confidence"]
    ours = run_script("generate", [*common, "--output_dir", str(tmp_path / "pt")])
    ort = run_script("generate", [*common, "--output_dir", str(tmp_path / "ort"), "--backend", "onnxruntime",
                                  "--onnx_dir", str(tmp_path / "onnx")])
    assert ort["backend"] == "onnxruntime" and ort["generated_token_accuracy"] == ours["generated_token_accuracy"]
    assert np.array_equal(np.load(tmp_path / "pt" / "tokens.npz")["generated"],
                          np.load(tmp_path / "ort" / "tokens.npz")["generated"])


@pytest.fixture
def trained_tiny_model(tiny_config, tmp_path):
    model = STMaskGIT(tiny_config)
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_session_settings_are_the_backends_unless_the_caller_passes_its_own(exported):
    import onnxruntime

    _, _, folder = exported
    torch_threads = torch.get_num_threads()
    options = session_options()
    assert options.intra_op_num_threads == torch_threads
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.execution_mode == onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    mine = onnxruntime.SessionOptions()
    mine.intra_op_num_threads = 1
    mine.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    model = OnnxRuntimeModel(folder, options=mine)
    tokens = torch.zeros(1, 1, model.config.S, dtype=torch.long)
    actions = torch.zeros(1, 1, model.config.action_dim) if model.config.action_dims else None
    assert model.sessions["full"].get_session_options().graph_optimization_level == mine.graph_optimization_level
    assert torch.isfinite(model.compute_logits(tokens, actions)).all()
