"""Export a model to ONNX: the full forward and, for causal models, the cached one-frame step.

Graphs (float32, dynamic batch):
- `full.onnx`: tokens (B, T', S) int64 with mask ids [, actions (B, T', A)] -> logits (B, T', S, K, V);
- `cached_step.onnx`: tokens (B, N, S) of N new frames, past_keys / past_values (layers, B*S, heads,
  L, head_dim) of the L cached frames [, actions (B, N, A)] -> logits (B, N, S, K, V) and the new
  frames' new_keys / new_values (layers, B*S, heads, N, head_dim).
`config.json` beside them records the model config, the opset and every graph's input/output names.
genie/export/ort_backend.py runs them behind the same interface as the PyTorch model.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genie.model.attention import ConcatKVCache
from genie.model.stmaskgit import STMaskGIT

OPSET = 17
FULL_GRAPH, STEP_GRAPH = "full.onnx", "cached_step.onnx"


class FullGraph(nn.Module):
    def __init__(self, model: STMaskGIT):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.compute_logits(tokens, actions=actions)


class CachedStepGraph(nn.Module):
    """The model's cached step as a pure function: the caller passes the past keys/values and receives
    the new frames' keys/values, instead of a cache object being updated in place."""

    def __init__(self, model: STMaskGIT):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, past_keys: torch.Tensor, past_values: torch.Tensor,
                actions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        caches = [ConcatKVCache(k, v) for k, v in zip(past_keys.unbind(0), past_values.unbind(0))]
        x = self.model._embed(tokens, actions, first_frame=past_keys.shape[3])
        logits = self.model._head(self.model.decoder.forward_cached(x, caches))
        return logits, torch.stack([c.new_k for c in caches]), torch.stack([c.new_v for c in caches])


def _graph_spec(model: STMaskGIT, cached: bool) -> dict[str, Any]:
    actions = ["actions"] if model.config.action_dims else []
    if cached:
        inputs = ["tokens", "past_keys", "past_values", *actions]
        outputs = ["logits", "new_keys", "new_values"]
        axes = {"tokens": {0: "batch", 1: "new_frames"}, "logits": {0: "batch", 1: "new_frames"},
                "past_keys": {1: "batch_x_tokens", 3: "past_frames"},
                "past_values": {1: "batch_x_tokens", 3: "past_frames"},
                "new_keys": {1: "batch_x_tokens", 3: "new_frames"}, "new_values": {1: "batch_x_tokens", 3: "new_frames"}}
    else:
        inputs, outputs = ["tokens", *actions], ["logits"]
        axes = {"tokens": {0: "batch", 1: "frames"}, "logits": {0: "batch", 1: "frames"}}
    if actions:
        axes["actions"] = dict(axes["tokens"])
    return {"inputs": inputs, "outputs": outputs, "dynamic_axes": axes}


def _example_inputs(model: STMaskGIT, cached: bool) -> tuple[torch.Tensor, ...]:
    cfg, batch = model.config, 2
    frames = 2 if cached else min(3, cfg.T)
    tokens = torch.randint(0, cfg.image_vocab_size, (batch, frames, cfg.S))
    extra = ()
    if cached:
        heads, head_dim = cfg.num_heads, cfg.d_model // cfg.num_heads
        past = torch.randn(cfg.num_layers, batch * cfg.S, heads, 1, head_dim)
        extra = (past, past.clone())
    actions = (torch.randn(batch, frames, cfg.action_dim),) if cfg.action_dims else ()
    return (tokens, *extra, *actions)


def export_onnx(model: STMaskGIT, output_dir: str | Path) -> dict[str, Any]:
    """Write full.onnx (and cached_step.onnx for a causal model) and config.json; check every graph
    with onnx.checker. Returns what config.json holds."""
    import onnx

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    graphs = {"full": (FullGraph(model), FULL_GRAPH, False)}
    if model.config.causal:
        graphs["cached_step"] = (CachedStepGraph(model), STEP_GRAPH, True)
    record = {"genie_config": model.config.to_dict(), "opset": OPSET, "dtype": "float32", "graphs": {}}
    for name, (module, filename, cached) in graphs.items():
        spec = _graph_spec(model, cached)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notices
            torch.onnx.export(module, _example_inputs(model, cached), str(output_dir / filename), dynamo=False,
                              input_names=spec["inputs"], output_names=spec["outputs"],
                              dynamic_axes=spec["dynamic_axes"], opset_version=OPSET)
        onnx.checker.check_model(str(output_dir / filename))
        record["graphs"][name] = {"file": filename, "inputs": spec["inputs"], "outputs": spec["outputs"]}
    (output_dir / "config.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
