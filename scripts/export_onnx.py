"""Export a saved model to ONNX: the full forward and, for causal models, the cached one-frame step.

    python scripts/export_onnx.py --checkpoint_dir runs/train/final_model --output_dir runs/train/onnx
    python scripts/generate.py --checkpoint_dir runs/train/final_model --backend onnxruntime --onnx_dir runs/train/onnx

Writes full.onnx, cached_step.onnx (causal models) and config.json (the record: model config, SHA-256
of model.safetensors and of every graph); every graph passes onnx.checker and its logits are compared
with PyTorch's on a random input before the command reports success. A folder holding another model's
export is replaced only with --overwrite; files that are not an export are never replaced.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from genie.checkpointing.run_folder import check_output_folder, model_folder
from genie.cli import parse, run_cli
from genie.errors import check_flag
from genie.export.onnx_export import EXPORTERS, export_onnx
from genie.export.ort_backend import OnnxRuntimeModel
from genie.export.record import check_export_target
from genie.files import file_sha256
from genie.model.stmaskgit import STMaskGIT


@dataclass
class ExportArguments:
    checkpoint_dir: str = field(metadata={"help": "Hugging Face-format folder (config.json + model.safetensors)."})
    output_dir: str = field(metadata={"help": "Where full.onnx, cached_step.onnx and config.json go."})
    exporter: str = field(default="dynamo", metadata={
        "help": "dynamo (torch.export + onnxscript, torch's maintained exporter: a third of the nodes, the same ONNX "
                "Runtime speed) or torchscript (the deprecated exporter, a fallback)."})
    overwrite: bool = field(default=False, metadata={
        "help": "Replace an export of another model in --output_dir (the same model's export is always replaced)."})

    def __post_init__(self) -> None:
        check_flag(self.exporter in EXPORTERS, "exporter", self.exporter, f"must be one of {', '.join(EXPORTERS)}")
        check_output_folder(self.output_dir)


def main(argv: list[str] | None = None) -> dict:
    (args,) = parse([ExportArguments], __doc__, argv)
    checkpoint = model_folder(args.checkpoint_dir)
    model = STMaskGIT.from_pretrained(checkpoint).eval()
    weights_sha256 = file_sha256(checkpoint / "model.safetensors")
    check_export_target(args.output_dir, model.config, weights_sha256, args.overwrite)
    record = export_onnx(model, args.output_dir, weights_sha256, args.exporter)
    config = model.config
    tokens = torch.randint(0, config.image_vocab_size, (2, config.T, config.S))
    actions = torch.randn(2, config.T, config.action_dim) if config.action_dims else None
    with torch.no_grad():
        expected = model.compute_logits(tokens, actions)
    difference = (OnnxRuntimeModel(args.output_dir).compute_logits(tokens, actions) - expected).abs().max().item()
    record["check_max_abs_logit_difference"] = difference
    print(f"wrote {', '.join(g['file'] for g in record['graphs'].values())} and config.json to {args.output_dir}; "
          f"ONNX Runtime vs PyTorch logits on a random window: max |diff| = {difference:.2e}")
    return record


if __name__ == "__main__":
    run_cli(main)
