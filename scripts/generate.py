"""Generate future frames with MaskGIT decoding from prompt frames of val windows; write the tokens and,
for data with a tokenizer (the built-in world, recorded Atari), a GIF and a PNG strip (prompt | prediction | truth).

    python scripts/generate.py --checkpoint_dir runs/main/final_model --num_prompt_frames 4 --maskgit_steps 4
    python scripts/generate.py ... --backend onnxruntime --onnx_dir O     # the same loop on ONNX Runtime
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genie.checkpointing.run_folder import check_output_folder, model_folder
from genie.cli import parse, run_cli
from genie.data import DataOptions, open_eval_dataset, resolve_data_dirs
from genie.data.hub import checkpoint_or_hub_id, is_hub_id
from genie.data.tokenizers import tokenizer_from_metadata
from genie.decoding import SamplingConfig, generate, prompt_length
from genie.errors import check_flag
from genie.evaluation.examples import example_windows
from genie.evaluation.pictures import save_gif, save_grid
from genie.files import atomic_file, one_line_write_failures
from genie.model.stmaskgit import STMaskGIT
from genie.protocols import MaskGITModel


@dataclass
class GenerateArguments:
    """What to generate from; the sampling flags come from genie.decoding.SamplingConfig and the
    data-format flags from genie.data.DataOptions."""
    checkpoint_dir: str = field(metadata={
        "help": "Hugging Face-format folder (config.json + model.safetensors), or a hub id (1x-technologies/GENIE_35M), "
                "downloaded into the hub's cache."})
    val_data_dir: str | None = field(default=None, metadata={"help": "Prompts come from here. Default: built-in val."})
    output_dir: str | None = field(default=None, metadata={"help": "Default: <checkpoint_dir>/../generated"})
    num_prompt_frames: int | None = field(default=None, metadata={
        "help": "Prompt frames. Default: the config's num_prompt_frames (T // 2 if that leaves none)."})
    num_new_frames: int | None = field(default=None, metadata={"help": "Default: T - num_prompt_frames."})
    num_examples: int = field(default=4, metadata={"help": "Val windows to generate from."})
    example_offset: int = field(default=0, metadata={
        "help": "Index of the first val window; the others are spread evenly over the val split."})
    stride: int = field(default=1, metadata={"help": "Frames between window frames."})
    seed: int = field(default=0, metadata={"help": "Seeds sampling and random unmasking."})
    backend: str = field(default="pytorch", metadata={"help": "pytorch | onnxruntime (needs --onnx_dir)"})
    onnx_dir: str | None = field(default=None, metadata={
        "help": "A folder written by scripts/export_onnx.py from --checkpoint_dir (checked: same config and weights)."})

    def __post_init__(self) -> None:
        check_flag(self.backend in ("pytorch", "onnxruntime"), "backend", self.backend, "must be pytorch or onnxruntime")
        check_flag(self.backend == "pytorch" or self.onnx_dir is not None, "onnx_dir", self.onnx_dir,
                   "is needed with --backend onnxruntime: pass the folder written by scripts/export_onnx.py")
        check_flag(self.num_examples >= 1, "num_examples", self.num_examples, "must be >= 1")
        check_flag(self.example_offset >= 0, "example_offset", self.example_offset, "must be >= 0")
        check_flag(self.stride >= 1, "stride", self.stride, "must be >= 1")
        check_flag(self.num_prompt_frames is None or self.num_prompt_frames >= 1, "num_prompt_frames",
                   self.num_prompt_frames, "must be >= 1 (leave it out for the config's)")
        check_flag(self.num_new_frames is None or self.num_new_frames >= 1, "num_new_frames", self.num_new_frames,
                   "must be >= 1 (leave it out to fill the window)")
        check_flag(self.seed >= 0, "seed", self.seed, "must be >= 0")
        check_flag(self.output_dir is not None or not is_hub_id(self.checkpoint_dir), "checkpoint_dir",
                   self.checkpoint_dir, "is a hub id: pass --output_dir too (the default, beside the checkpoint, would "
                   "be inside the hub's cache)")
        check_output_folder(self.output_dir)


def main(argv: list[str] | None = None) -> dict:
    args, sampling, data = parse([GenerateArguments, SamplingConfig, DataOptions], __doc__, argv)
    checkpoint = model_folder(checkpoint_or_hub_id(args.checkpoint_dir))
    model = load_backend(args, checkpoint)
    config = model.config
    num_prompt = prompt_length(args.num_prompt_frames, config.T, config.num_prompt_frames)
    num_new = config.T - num_prompt if args.num_new_frames is None else args.num_new_frames
    check_flag(num_prompt + num_new <= config.T, "num_new_frames", num_new,
               f"does not fit: --num_prompt_frames {num_prompt} + {num_new} new frames exceed the model's T = {config.T}")
    data = data.with_world_of(checkpoint)  # the built-in world its run trained on, unless --builtin_world says
    val_dir = Path(args.val_data_dir) if args.val_data_dir else resolve_data_dirs(None, None, config, data)[1]
    val_set = open_eval_dataset(val_dir, config, args.stride, data=data)
    indices, truth, actions = example_windows(val_set, args.num_examples, args.example_offset)
    generator = torch.Generator().manual_seed(args.seed)
    tokens, _ = generate(model, truth[:, :num_prompt], num_new, sampling,
                         actions, generator, progress=True)
    window = slice(num_prompt, num_prompt + num_new)
    accuracy = float((tokens[:, window] == truth[:, window]).float().mean())
    copy_accuracy = float((truth[:, num_prompt - 1:num_prompt] == truth[:, window]).float().mean())

    out = Path(args.output_dir) if args.output_dir else checkpoint.resolve().parent / "generated"
    summary = {"num_examples": len(indices), "example_windows": indices, "num_prompt_frames": num_prompt,
               "num_new_frames": num_new, "generated_token_accuracy": accuracy,
               "copy_last_prompt_frame_accuracy": copy_accuracy, "sampling": vars(sampling), "backend": args.backend,
               "files": ["tokens.npz"]}
    with one_line_write_failures(out, "no file there was left half-written", "run the command again",
                                 partial=[] if out.exists() else [out]):
        out.mkdir(parents=True, exist_ok=True)
        with atomic_file(out / "summary.json") as summary_file, atomic_file(out / "tokens.npz") as tokens_file:
            np.savez(tokens_file, generated=tokens.numpy(), truth=truth.numpy(), num_prompt_frames=num_prompt)
            summary["files"] += write_pictures(out, val_set.metadata, tokens, truth, num_prompt, config.h, val_dir)
            summary_file.write_text(json.dumps(summary, indent=2) + "\n")  # renamed last: the run is complete
    print(f"generated {num_new} frames for {len(indices)} examples: token accuracy {accuracy:.4f} "
          f"(copying the last prompt frame: {copy_accuracy:.4f}); wrote {', '.join(summary['files'])} to {out}")
    return summary


def load_backend(args: GenerateArguments, checkpoint: Path) -> MaskGITModel:
    """The PyTorch model, or its ONNX export run by ONNX Runtime: the decoding loop is the same."""
    if args.backend == "onnxruntime":
        from genie.export.ort_backend import OnnxRuntimeModel

        return OnnxRuntimeModel(args.onnx_dir, checkpoint_dir=checkpoint)
    return STMaskGIT.from_pretrained(checkpoint).eval()


def write_pictures(out: Path, metadata: dict, tokens: torch.Tensor, truth: torch.Tensor, num_prompt: int,
                   side: int, val_dir: Path | None = None) -> list[str]:
    """GIF and PNG strip for data whose metadata names a tokenizer; other data (1X) has no decoder."""
    tokenizer = tokenizer_from_metadata(metadata, val_dir)
    if tokenizer is None:
        return []
    grid = lambda x: x.reshape(x.shape[0], x.shape[1], side, side).numpy()  # noqa: E731
    gen, real = grid(tokens), grid(truth)
    rows = []
    for i in range(len(gen)):
        rows += [(f"#{i} prompt t<{num_prompt}", real[i, :num_prompt]),
                 (f"#{i} predicted t>={num_prompt}", gen[i, num_prompt:], gen[i, num_prompt:] != real[i, num_prompt:]),
                 (f"#{i} truth t>={num_prompt}", real[i, num_prompt:])]
    save_grid(out / "strip.png", rows, tokenizer, title="prompt | prediction (wrong tokens outlined in red) | truth")
    save_gif(out / "generated.gif", [gen[0], real[0]], tokenizer, labels=("model", "truth"), num_prompt=num_prompt)
    return ["strip.png", "generated.gif"]


if __name__ == "__main__":
    run_cli(main)
