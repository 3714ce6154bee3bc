"""Export a model to ONNX: the full forward and, for causal models, the cached one-frame step.

Graphs (float32, dynamic batch):
- `full.onnx`: tokens (B, T', S) int64 with mask ids [, actions (B, T', A)] -> logits (B, T', S, K, V);
- `cached_step.onnx`: committed_tokens (B, C, S) of C frames to add to the cache, tokens (B, N, S) of N
  frames to score after them, one past_keys_<layer> / past_values_<layer> (L, B, S, heads, head_dim) per
  layer for the L cached frames [, actions (B, C + N, A)] -> logits (B, N, S, K, V) of the N scored frames
  and the committed frames' committed_keys / committed_values (C, layers, B, S, heads, head_dim). Frames
  first and one input per layer, so that a cache preallocated for T frames passes its cached prefix
  without a copy, and the graph does not split a stacked cache (a copy of it) in every call.
`config.json` beside them (genie/export/record.py) records the model config, the SHA-256 of the weights
file exported, the opset and every graph's file, SHA-256 and input/output names.
genie/export/ort_backend.py runs them behind the same interface as the PyTorch model.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genie.errors import OnnxExportError
from genie.export.record import EXPORT_FILES, FULL_GRAPH, RECORD, RECORD_FORMAT, STEP_GRAPH, past_input_names
from genie.files import file_sha256, one_line_write_failures, remove_entry
from genie.model.attention import ConcatKVCache
from genie.model.stmaskgit import STMaskGIT

# The dynamo exporter (torch.export + onnxscript) is torch's maintained one (the TorchScript exporter is
# deprecated) and writes about a third of the nodes for the same model (small.json: 212 vs 626); ONNX
# Runtime runs both at the same speed (python -m scripts.bench --only onnx, docs/performance.md). The TorchScript
# exporter stays as a fallback. Each exporter's opset: the newest it supports well.
EXPORTERS = {"dynamo": 18, "torchscript": 17}
STAGING = ".tmp-export"  # where an export is written before it is moved into place


class FullGraph(nn.Module):
    def __init__(self, model: STMaskGIT):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.compute_logits(tokens, actions=actions)


class CachedStepGraph(nn.Module):
    """The model's cached step as a pure function: the caller passes the past keys/values and receives
    the committed frames' keys/values, instead of a cache object being updated in place.

    `committed_tokens` (B, C, S) are frames to add to the cache (no logits); `tokens` (B, N, S) are the
    frames to score after them; `past_keys` / `past_values` hold each layer's (L, B, S, heads, head_dim)
    keys/values of the L cached frames; `actions` (B, C + N, A) cover the committed and scored frames."""

    def __init__(self, model: STMaskGIT):
        super().__init__()
        self.model = model

    def forward(self, committed_tokens: torch.Tensor, tokens: torch.Tensor, past_keys: list[torch.Tensor],
                past_values: list[torch.Tensor], actions: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        caches = [ConcatKVCache(k, v) for k, v in zip(past_keys, past_values)]
        num_committed = committed_tokens.shape[1]
        x = self.model._embed(torch.cat([committed_tokens, tokens], dim=1), actions,
                              first_frame=past_keys[0].shape[0])
        logits = self.model._head(self.model.decoder.forward_cached(x, caches, num_committed))
        return (logits, torch.stack([c.new_k[:num_committed] for c in caches], dim=1),
                torch.stack([c.new_v[:num_committed] for c in caches], dim=1))


def _graph_spec(model: STMaskGIT, cached: bool) -> dict[str, Any]:
    actions = ["actions"] if model.config.action_dims else []
    if cached:
        past = past_input_names(model.config.num_layers)
        inputs = ["committed_tokens", "tokens", *past, *actions]
        outputs = ["logits", "committed_keys", "committed_values"]
        axes = {"committed_tokens": {0: "batch", 1: "committed_frames"}, "tokens": {0: "batch", 1: "new_frames"},
                "logits": {0: "batch", 1: "new_frames"},
                **{name: {0: "past_frames", 1: "batch"} for name in past},
                **{name: {0: "committed_frames", 2: "batch"} for name in ("committed_keys", "committed_values")}}
        if actions:
            axes["actions"] = {0: "batch", 1: "all_frames"}
    else:
        inputs, outputs = ["tokens", *actions], ["logits"]
        axes = {"tokens": {0: "batch", 1: "frames"}, "logits": {0: "batch", 1: "frames"}}
        if actions:
            axes["actions"] = dict(axes["tokens"])
    return {"inputs": inputs, "outputs": outputs, "dynamic_axes": axes}


def _example_inputs(model: STMaskGIT, cached: bool) -> tuple[torch.Tensor, ...]:
    cfg, batch = model.config, 2
    random_tokens = lambda frames: torch.randint(0, cfg.image_vocab_size, (batch, frames, cfg.S))  # noqa: E731
    actions = lambda frames: (torch.randn(batch, frames, cfg.action_dim),) if cfg.action_dims else ()  # noqa: E731
    if not cached:
        return (random_tokens(min(3, cfg.T)), *actions(min(3, cfg.T)))
    num_past, num_committed, num_new = (1, 1, 2) if cfg.T >= 4 else (cfg.T - 2, 1, 1)  # they must fit in T
    past_shape = (num_past, batch, cfg.S, cfg.num_heads, cfg.d_model // cfg.num_heads)
    keys, values = ([torch.randn(past_shape) for _ in range(cfg.num_layers)] for _ in range(2))
    return (random_tokens(num_committed), random_tokens(num_new), keys, values, *actions(num_committed + num_new))


def export_onnx(model: STMaskGIT, output_dir: str | Path, weights_sha256: str | None = None,
                exporter: str = "dynamo") -> dict[str, Any]:
    """Write full.onnx (and cached_step.onnx for a causal model) and config.json; check every graph
    with onnx.checker. `weights_sha256` (of the model.safetensors exported) goes into the record, so
    that the ONNX Runtime backend can tell whether the export belongs to a checkpoint. `exporter`:
    dynamo (default) or torchscript. Returns the record. The export is written aside (`.tmp-export/` in
    `output_dir`) and moved into place when complete: a failed write (a full disk, a quota, ...) is one line
    and leaves the folder as it was."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter {exporter!r} must be one of {sorted(EXPORTERS)}")
    if model.config.action_dims and model.config.action_placement != "own":
        raise OnnxExportError(f"a model with action_placement {model.config.action_placement!r} cannot be exported yet "
                              "(its graphs would take one action row more than frames); decode it with PyTorch")
    if exporter == "dynamo":
        try:
            import onnxscript  # noqa: F401  (the dynamo exporter builds its graphs with it)
        except ImportError:
            raise OnnxExportError("the dynamo exporter needs onnxscript (pip install onnxscript, or the onnx extra); "
                                  "or pass --exporter torchscript") from None

    output_dir = Path(output_dir)
    staging = output_dir / STAGING
    with one_line_write_failures(output_dir, "nothing of this export was left there (an earlier export in it is kept)",
                                 "export again", partial=[staging] if output_dir.exists() else [output_dir]):
        output_dir.mkdir(parents=True, exist_ok=True)
        remove_entry(staging)  # left by a killed export, or a link: never written through
        staging.mkdir()
        try:
            record = _write_export(model.eval().float(), staging, weights_sha256, exporter)
            _publish(staging, output_dir, record)
        finally:
            remove_entry(staging)
    return record


def _write_export(model: STMaskGIT, folder: Path, weights_sha256: str | None, exporter: str) -> dict[str, Any]:
    """Every graph, checked, and the record, into `folder`; returns the record."""
    import onnx

    graphs = {"full": (FullGraph(model), FULL_GRAPH, False)}
    if model.config.causal:
        graphs["cached_step"] = (CachedStepGraph(model), STEP_GRAPH, True)
    record = {"format": RECORD_FORMAT, "genie_config": model.config.to_dict(), "weights_sha256": weights_sha256,
              "exporter": exporter, "opset": EXPORTERS[exporter], "dtype": "float32", "graphs": {}}
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    for name, (module, filename, cached) in graphs.items():
        spec = _graph_spec(model, cached)
        with warnings.catch_warnings(), torch.no_grad(), _log_level(registry_log, logging.ERROR):
            # Quiet: the TorchScript exporter's deprecation notices, the dynamo exporter's "torchvision is
            # not installed" lines (it registers torchvision's operators when it can).
            warnings.simplefilter("ignore")
            torch.onnx.export(module, _example_inputs(model, cached), str(folder / filename),
                              dynamo=exporter == "dynamo", input_names=spec["inputs"], output_names=spec["outputs"],
                              dynamic_axes=spec["dynamic_axes"], opset_version=EXPORTERS[exporter], verbose=False,
                              **({"external_data": False} if exporter == "dynamo" else {}))  # one file per graph
        onnx.checker.check_model(str(folder / filename))
        record["graphs"][name] = {"file": filename, "sha256": file_sha256(folder / filename),
                                  "inputs": spec["inputs"], "outputs": spec["outputs"]}
    (folder / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record


def _publish(staging: Path, output_dir: Path, record: dict[str, Any]) -> None:
    """Move a complete export into place, the record last (a link at a name is replaced, never followed); a
    graph file of an earlier export that this one lacks goes first."""
    names = [graph["file"] for graph in record["graphs"].values()]
    for stale in set(EXPORT_FILES) - {RECORD, *names}:
        remove_entry(output_dir / stale)
    for name in [*names, RECORD]:
        os.replace(staging / name, output_dir / name)


@contextlib.contextmanager
def _log_level(logger: logging.Logger, level: int):
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)
