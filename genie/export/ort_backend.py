"""ONNX Runtime behind the MaskGITModel interface (genie/protocols.py), so that genie/decoding.py's
MaskGIT loop, the rollouts and the evaluation run unchanged on exported graphs (genie/export/onnx_export.py).

The KV cache is kept here as numpy arrays preallocated for T frames, one per layer, frames first, so that
each cached-step call passes the committed prefix without a copy and writes the committed frames' keys
and values that the graph returns after it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from genie.errors import OnnxExportError
from genie.export.record import RECORD, check_export_of_checkpoint, past_input_names, read_export_record
from genie.model.config import GenieConfig


class OrtKVCache:
    """Temporal keys/values of finished frames: per layer, (T, B, S, heads, head_dim) arrays filled from the
    front, named as the cached step's inputs (past_keys_<layer>, then past_values_<layer>)."""

    def __init__(self, config: GenieConfig):
        self.config, self.length = config, 0
        self.buffers: dict[str, np.ndarray] = {}

    def past(self, batch: int) -> dict[str, np.ndarray]:
        """The cached frames of every layer, views of the buffers (no copy)."""
        if not self.buffers:
            cfg = self.config
            shape = (cfg.T, batch, cfg.S, cfg.num_heads, cfg.d_model // cfg.num_heads)
            self.buffers = {name: np.empty(shape, np.float32) for name in past_input_names(cfg.num_layers)}
        return {name: buffer[:self.length] for name, buffer in self.buffers.items()}

    def append(self, keys: np.ndarray, values: np.ndarray) -> None:
        """keys, values: (C, layers, B, S, heads, head_dim) of C newly committed frames."""
        end = self.length + keys.shape[0]
        per_layer = [*keys.swapaxes(0, 1), *values.swapaxes(0, 1)]  # in the order of past_input_names
        for buffer, new in zip(self.buffers.values(), per_layer, strict=True):
            buffer[self.length:end] = new
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


def _session(onnx_dir: Path, filename: str, options: Any, providers: list[str]) -> Any:
    """An ONNX Runtime session of one graph; a graph ONNX Runtime refuses is a one-line error."""
    import onnxruntime

    try:
        return onnxruntime.InferenceSession(str(onnx_dir / filename), options, providers=providers)
    except Exception as error:  # onnxruntime's own exception types (Fail, InvalidProtobuf, ...) share no base
        reason = " ".join(str(error).split())[:300]
        raise OnnxExportError(f"--onnx_dir {onnx_dir}: ONNX Runtime cannot load {filename} ({reason}); export the "
                              "model again with scripts/export_onnx.py") from error


def graph_dims(config: GenieConfig) -> dict[str, list[int | None]]:
    """The dims every graph input and output must have for `config` (None: a dynamic axis)."""
    head = [config.S, config.num_heads, config.d_model // config.num_heads]
    dims = {"tokens": [None, None, config.S], "committed_tokens": [None, None, config.S],
            "actions": [None, None, config.action_dim],
            "logits": [None, None, config.S, config.num_factored_vocabs, config.factored_vocab_size],
            "committed_keys": [None, config.num_layers, None, *head],
            "committed_values": [None, config.num_layers, None, *head]}
    return {**dims, **{name: [None, None, *head] for name in past_input_names(config.num_layers)}}


def check_graph_shapes(onnx_dir: Path, graph: dict[str, Any], session: Any, config: GenieConfig) -> None:
    """A graph must take the inputs its record lists, with the shapes of the recorded model config: graphs of
    another model under a forged record are one line here, not ONNX Runtime's error at the first run."""
    fix = "export the model again with scripts/export_onnx.py"
    names = [i.name for i in session.get_inputs()]
    if sorted(names) != sorted(graph["inputs"]):
        raise OnnxExportError(f"--onnx_dir {onnx_dir}: {graph['file']} takes the inputs {names}, not the "
                              f"{graph['inputs']} its {RECORD} lists; {fix}")
    expected = graph_dims(config)
    for value in [*session.get_inputs(), *session.get_outputs()]:
        want = expected.get(value.name)
        got = [d if isinstance(d, int) else None for d in value.shape]
        fits = want is None or (len(got) == len(want) and all(None in (g, w) or g == w for g, w in zip(got, want)))
        if not fits:
            shown = lambda dims: "(" + ", ".join("*" if d is None else str(d) for d in dims) + ")"  # noqa: E731
            raise OnnxExportError(f"--onnx_dir {onnx_dir}: {graph['file']} is not a graph of the model its {RECORD} "
                                  f"records ({value.name} is {shown(got)}, that model's is {shown(want)}); {fix}")


class OnnxRuntimeModel:
    """An exported model run by ONNX Runtime; satisfies genie.protocols.MaskGITModel.

    The folder is checked first (genie/export/record.py): its record, every graph's SHA-256 and, given
    `checkpoint_dir`, that the export was made from that checkpoint; each problem is one-line
    `OnnxExportError`. `options` (an onnxruntime.SessionOptions) replaces `session_options(threads)`."""

    def __init__(self, onnx_dir: str | Path, providers: list[str] | None = None, options: Any = None,
                 threads: int | None = None, checkpoint_dir: str | Path | None = None):
        onnx_dir = Path(onnx_dir)
        record = read_export_record(onnx_dir)
        if checkpoint_dir is not None:
            check_export_of_checkpoint(record, onnx_dir, checkpoint_dir)
        self.config = GenieConfig.from_dict(record["genie_config"], source=str(onnx_dir / RECORD))
        options = options or session_options(threads)
        self.sessions = {name: _session(onnx_dir, graph["file"], options, providers or ["CPUExecutionProvider"])
                         for name, graph in record["graphs"].items()}
        self.graphs = record["graphs"]
        for name, session in self.sessions.items():
            check_graph_shapes(onnx_dir, self.graphs[name], session, self.config)

    @property
    def mask_token_id(self) -> int:
        return self.config.mask_token_id

    def _run(self, graph: str, **inputs: np.ndarray) -> list[np.ndarray]:
        names = self.graphs[graph]["inputs"]
        return self.sessions[graph].run(None, {name: inputs[name] for name in names})

    def _actions(self, actions: torch.Tensor | None, num_frames: int) -> dict[str, np.ndarray]:
        """The graphs take one action row per input frame: rows past them (which decoders pass for models
        with action_placement "previous", never exported) are left out."""
        if not self.config.action_dims:
            return {}
        if actions is None:
            raise ValueError(f"this model is conditioned on actions {self.config.action_dims}; pass `actions`")
        return {"actions": actions[:, :num_frames].detach().cpu().float().numpy()}

    def compute_logits(self, tokens: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        (logits,) = self._run("full", tokens=tokens.cpu().long().numpy(), **self._actions(actions, tokens.shape[1]))
        return torch.from_numpy(logits).to(tokens.device)

    def new_kv_cache(self) -> OrtKVCache:
        if "cached_step" not in self.sessions:
            raise ValueError("this export has no cached_step graph (the model is bidirectional); decode without a cache")
        return OrtKVCache(self.config)

    def compute_logits_cached(self, tokens: torch.Tensor, cache: OrtKVCache, actions: torch.Tensor | None = None,
                              commit: int = 0) -> torch.Tensor:
        """As STMaskGIT.compute_logits_cached: logits of frames commit.. of `tokens`, the first `commit` cached."""
        frames = tokens.cpu().long().numpy()
        logits, keys, values = self._run("cached_step", committed_tokens=frames[:, :commit], tokens=frames[:, commit:],
                                         **cache.past(tokens.shape[0]), **self._actions(actions, tokens.shape[1]))
        cache.append(keys, values)
        return torch.from_numpy(logits).to(tokens.device)
