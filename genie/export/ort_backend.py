"""ONNX Runtime behind the MaskGITModel interface (genie/protocols.py), so that genie/decoding.py's
MaskGIT loop, the rollouts and the evaluation run unchanged on exported graphs (genie/export/onnx_export.py).

The KV cache is kept here as numpy arrays preallocated for T frames, frames first, so that each
cached-step call passes the committed prefix without a copy and writes the committed frames' keys and
values that the graph returns after it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genie.errors import CheckpointError
from genie.model.config import GenieConfig


class OrtKVCache:
    """Temporal keys/values of finished frames, (T, layers, B, S, heads, head_dim) arrays filled from the front."""

    def __init__(self, config: GenieConfig):
        self.config, self.length = config, 0
        self.keys: np.ndarray | None = None
        self.values: np.ndarray | None = None

    def past(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        if self.keys is None:
            cfg = self.config
            shape = (cfg.T, cfg.num_layers, batch, cfg.S, cfg.num_heads, cfg.d_model // cfg.num_heads)
            self.keys, self.values = np.empty(shape, np.float32), np.empty(shape, np.float32)
        return self.keys[:self.length], self.values[:self.length]

    def append(self, keys: np.ndarray, values: np.ndarray) -> None:
        end = self.length + keys.shape[0]
        self.keys[self.length:end], self.values[self.length:end] = keys, values
        self.length = end


def session_options(threads: int | None = None) -> Any:
    """The session settings the backend uses unless the caller passes its own: as many intra-op threads as
    torch uses (`threads` overrides), no spinning of idle threads (they would steal the cores of everything
    else), sequential execution and every graph optimisation."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class OnnxRuntimeModel:
    """An exported model run by ONNX Runtime; satisfies genie.protocols.MaskGITModel.

    `options` (an onnxruntime.SessionOptions) replaces the defaults of `session_options(threads)`."""

    def __init__(self, onnx_dir: str | Path, providers: list[str] | None = None, options: Any = None,
                 threads: int | None = None):
        import onnxruntime

        onnx_dir = Path(onnx_dir)
        if not (onnx_dir / "config.json").is_file():
            raise CheckpointError(f"--onnx_dir {onnx_dir} has no config.json; pass a folder written by "
                                  "scripts/export_onnx.py")
        record = json.loads((onnx_dir / "config.json").read_text())
        self.config = GenieConfig.from_dict(record["genie_config"], source=str(onnx_dir / "config.json"))
        options = options or session_options(threads)
        self.sessions = {name: onnxruntime.InferenceSession(str(onnx_dir / graph["file"]), options,
                                                            providers=providers or ["CPUExecutionProvider"])
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
        return OrtKVCache(self.config)

    def compute_logits_cached(self, tokens: torch.Tensor, cache: OrtKVCache, actions: torch.Tensor | None = None,
                              commit: int = 0) -> torch.Tensor:
        """As STMaskGIT.compute_logits_cached: logits of frames commit.. of `tokens`, the first `commit` cached."""
        past_keys, past_values = cache.past(tokens.shape[0])
        frames = tokens.cpu().long().numpy()
        logits, keys, values = self._run("cached_step", committed_tokens=frames[:, :commit], tokens=frames[:, commit:],
                                         past_keys=past_keys, past_values=past_values, **self._actions(actions))
        cache.append(keys, values)
        return torch.from_numpy(logits).to(tokens.device)
