"""The record of an ONNX export (`config.json` beside the graphs) and the checks made with it.

The record holds the model config, the SHA-256 of the weights file the export was made from and the
SHA-256 of every graph, so that a folder mixing two exports, a damaged graph, an export of another
model than the checkpoint it is used with, and an export about to be replaced by another model's are
all refused with one line (genie/errors.py `OnnxExportError`) before anything runs or is written.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genie.errors import OnnxExportError
from genie.files import file_sha256
from genie.model.config import GenieConfig, without_later_defaults

RECORD = "config.json"
# Versions: 2, graphs take committed_tokens and a frames-first KV cache, weights and graphs fingerprinted;
# 3, the cached step takes one past keys/values input per layer.
RECORD_FORMAT = 3
FULL_GRAPH, STEP_GRAPH = "full.onnx", "cached_step.onnx"
EXPORT_FILES = (RECORD, FULL_GRAPH, STEP_GRAPH)


def past_input_names(num_layers: int) -> list[str]:
    """The cached step's cache inputs: every layer's past keys, then every layer's past values."""
    return [f"past_{kind}_{layer}" for kind in ("keys", "values") for layer in range(num_layers)]


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return None


def is_export_record(record: Any) -> bool:
    return isinstance(record, dict) and isinstance(record.get("graphs"), dict) and "genie_config" in record


def config_difference(recorded: dict[str, Any], config: GenieConfig) -> str | None:
    """The first model-config field where an export's record and `config` differ, as words; None if equal.
    Fields added after an export was made (LATER_FIELDS) compare equal at their old value, recorded or not."""
    recorded, current = without_later_defaults(recorded), config.without_later_defaults()
    for name in sorted(set(recorded) | set(current)):
        if recorded.get(name) != current.get(name):
            return f"{name} {recorded.get(name)!r} in the export vs {current.get(name)!r}"
    return None


def read_export_record(onnx_dir: str | Path, flag: str = "onnx_dir") -> dict[str, Any]:
    """The record of an export folder, after checking the folder, the record and every graph's SHA-256."""
    folder = Path(onnx_dir)
    where = f"--{flag} {folder}"
    if not folder.is_dir():
        raise OnnxExportError(f"{where} {'is a file' if folder.exists() else 'does not exist'}; pass the folder "
                              "written by scripts/export_onnx.py")
    if not (folder / RECORD).is_file():
        raise OnnxExportError(f"{where} has no {RECORD}; pass the folder written by scripts/export_onnx.py")
    record = _load_json(folder / RECORD)
    if not is_export_record(record):
        hint = (f"it is a model folder; export it first: python scripts/export_onnx.py --checkpoint_dir {folder} "
                "--output_dir <new folder>" if (folder / "model.safetensors").is_file()
                else "pass the folder written by scripts/export_onnx.py")
        raise OnnxExportError(f"{where}: {RECORD} is not the record of an ONNX export; {hint}")
    if record.get("format") != RECORD_FORMAT:
        raise OnnxExportError(f"{where} was written by an older scripts/export_onnx.py (record format "
                              f"{record.get('format')!r}, now {RECORD_FORMAT}); export the model again")
    for graph in record["graphs"].values():
        _check_graph_file(folder, where, graph)
    return record


def _check_graph_file(folder: Path, where: str, graph: dict[str, Any]) -> None:
    name = str(graph.get("file"))
    if Path(name).name != name or name in ("", ".", ".."):
        raise OnnxExportError(f"{where}: {RECORD} names the graph file {name!r} outside the folder; export again")
    if not (folder / name).is_file():
        raise OnnxExportError(f"{where}: {name} is missing ({RECORD} lists it); export the model again with "
                              "scripts/export_onnx.py")
    if file_sha256(folder / name) != graph.get("sha256"):
        raise OnnxExportError(f"{where}: {name} does not match {RECORD} (SHA-256 differs: a damaged or truncated "
                              "graph, or a record of another export); export the model again")


def check_export_of_checkpoint(record: dict[str, Any], onnx_dir: str | Path, checkpoint_dir: str | Path) -> None:
    """The export in `onnx_dir` must have been made from the model in `checkpoint_dir`: equal config, equal weights."""
    checkpoint_dir = Path(checkpoint_dir)
    fix = (f"export it again: python scripts/export_onnx.py --checkpoint_dir {checkpoint_dir} --output_dir "
           f"{onnx_dir} --overwrite")
    config = GenieConfig.from_json_file(checkpoint_dir / "config.json")
    difference = config_difference(record["genie_config"], config)
    if difference:
        raise OnnxExportError(f"--onnx_dir {onnx_dir} is the export of another model than --checkpoint_dir "
                              f"{checkpoint_dir} ({difference} in the checkpoint); {fix}")
    weights = checkpoint_dir / "model.safetensors"
    if not weights.is_file() or file_sha256(weights) != record.get("weights_sha256"):
        raise OnnxExportError(f"--onnx_dir {onnx_dir} was exported from other weights than --checkpoint_dir "
                              f"{checkpoint_dir} (SHA-256 of model.safetensors differs); {fix}")


def check_export_target(output_dir: str | Path, config: GenieConfig, weights_sha256: str | None,
                        overwrite: bool) -> None:
    """An export goes into a folder without export files, over the same model's export, or (with
    `overwrite`) over another model's export; never over files that are not an export."""
    folder = Path(output_dir)
    present = [name for name in EXPORT_FILES if (folder / name).exists()]
    if not present:
        return
    record = _load_json(folder / RECORD) if (folder / RECORD).is_file() else None
    if not is_export_record(record):
        raise OnnxExportError(f"--output_dir {folder} holds {', '.join(present)} but no ONNX export record; "
                              "these files are not replaced, even with --overwrite: choose another --output_dir")
    difference = config_difference(record["genie_config"], config)
    if difference is None and record.get("weights_sha256") != weights_sha256:
        difference = "other weights: the SHA-256 of model.safetensors differs from the one"
    if difference and not overwrite:
        raise OnnxExportError(f"--output_dir {folder} holds the ONNX export of another model ({difference} in "
                              "--checkpoint_dir); pass "
                              "--overwrite to replace it, or choose another --output_dir")
