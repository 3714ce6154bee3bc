"""ONNX Runtime behind the MaskGITModel interface (genie/protocols.py), so that genie/decoding.py's
MaskGIT loop, the rollouts and the evaluation run unchanged on exported graphs (genie/export/onnx_export.py).

The KV cache is kept here as numpy arrays: each cached-step call passes the committed past keys/values
and appends the first `commit` new frames' keys/values that the graph returns.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from genie.errors import CheckpointError
from genie.model.config import GenieConfig


class OrtKVCache:
    """Per-layer temporal keys/values of finished frames: arrays (layers, B*S, heads, frames, head_dim)."""

    def __init__(self):
        self.keys: np.ndarray | None = None
        self.values: np.ndarray | None = None

    @property
    def length(self) -> int:
        return 0 if self.keys is None else self.keys.shape[3]

    def past(self, config: GenieConfig, batch: int) -> tuple[np.ndarray, np.ndarray]:
        if self.keys is None:
            empty = np.zeros((config.num_layers, batch * config.S, config.num_heads, 0,
                              config.d_model // config.num_heads), dtype=np.float32)
            return empty, empty
        return self.keys, self.values

    def append(self, keys: np.ndarray, values: np.ndarray) -> None:
        self.keys = keys if self.keys is None else np.concatenate([self.keys, keys], axis=3)
        self.values = values if self.values is None else np.concatenate([self.values, values], axis=3)


class OnnxRuntimeModel:
    """An exported model run by ONNX Runtime; satisfies genie.protocols.MaskGITModel."""

    def __init__(self, onnx_dir: str | Path, providers: list[str] | None = None):
        import onnxruntime

        onnx_dir = Path(onnx_dir)
        if not (onnx_dir / "config.json").is_file():
            raise CheckpointError(f"--onnx_dir {onnx_dir} has no config.json; pass a folder written by "
                                  "scripts/export_onnx.py")
        record = json.loads((onnx_dir / "config.json").read_text())
        self.config = GenieConfig.from_dict(record["genie_config"], source=str(onnx_dir / "config.json"))
        providers = providers or ["CPUExecutionProvider"]
        self.sessions = {name: onnxruntime.InferenceSession(str(onnx_dir / graph["file"]), providers=providers)
                         for name, graph in record["graphs"].items()}
        self.graphs = record["graphs"]

    @property
    def mask_token_id(self) -> int:
        return self.config.mask_token_id

    def _run(self, graph: str, **inputs: np.ndarray) -> list[np.ndarray]:
        names = self.graphs[graph]["inputs"]
        return self.sessions[graph].run(None, {name: inputs[name] for name in names})

    def _actions(self, actions: torch.Tensor | None) -> dict[str, np.ndarray]:
        if not self.config.action_dims:
            return {}
        if actions is None:
            raise ValueError(f"this model is conditioned on actions {self.config.action_dims}; pass `actions`")
        return {"actions": actions.detach().cpu().float().numpy()}

    def compute_logits(self, tokens: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        (logits,) = self._run("full", tokens=tokens.cpu().long().numpy(), **self._actions(actions))
        return torch.from_numpy(logits).to(tokens.device)

    def new_kv_cache(self) -> OrtKVCache:
        if "cached_step" not in self.sessions:
            raise ValueError("this export has no cached_step graph (the model is bidirectional); decode without a cache")
        return OrtKVCache()

    def compute_logits_cached(self, tokens: torch.Tensor, cache: OrtKVCache, actions: torch.Tensor | None = None,
                              commit: int = 0) -> torch.Tensor:
        past_keys, past_values = cache.past(self.config, tokens.shape[0])
        logits, new_keys, new_values = self._run("cached_step", tokens=tokens.cpu().long().numpy(),
                                                 past_keys=past_keys, past_values=past_values,
                                                 **self._actions(actions))
        if commit:
            cache.append(new_keys[:, :, :, :commit], new_values[:, :, :, :commit])
        return torch.from_numpy(logits).to(tokens.device)
