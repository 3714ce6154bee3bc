"""Measure the Atari patch-codebook tokenizer: reconstruction PSNR on val frames, PSNR on the pixels that
change between consecutive frames (ball, paddle, sprites) and fit time, per patch size and vocabulary.

    python scripts/tokenizer_table.py --env_id ALE/Breakout-v5 --num_frames 4000 [--output docs/atari_table.md]

Frames are recorded as scripts/record_atari.py records them (same seed -> same episodes); the codebook
is fitted on the train episodes' frames and scored on the held-out val episodes. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from genie.cli import run_cli
from genie.data.atari import RecordingSpec, check_spec, record_splits
from genie.data.tokenizers import fit_codebook


def psnr(truth: np.ndarray, reconstruction: np.ndarray, where: np.ndarray | None = None) -> float:
    """PSNR (dB, peak 255) over all pixels, or over the pixels (H, W positions, all channels) in `where`."""
    error = (truth.astype(np.float64) - reconstruction.astype(np.float64)) ** 2
    mse = error[where].mean() if where is not None else error.mean()
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def changed_pixels(episodes) -> tuple[np.ndarray, np.ndarray]:
    """Frames t >= 1 of every episode and the (N, H, W) mask of pixels that differ from frame t-1."""
    frames = np.concatenate([e.frames[1:] for e in episodes])
    changed = np.concatenate([(e.frames[1:] != e.frames[:-1]).any(-1) for e in episodes])
    return frames, changed


def measure(train_frames, val_frames, changed, patch: int, vocab: int, seed: int, distinct: bool,
            reconstructions: dict) -> dict:
    start = time.perf_counter()
    tokenizer = fit_codebook(train_frames, patch, vocab, seed, distinct=distinct)
    fit_seconds = time.perf_counter() - start
    reconstruction = tokenizer.decode(tokenizer.encode(val_frames))
    reconstructions[(patch, vocab, distinct)] = reconstruction
    return {"tokens": f"{64 // patch}x{64 // patch}", "patch": f"{patch}x{patch}", "vocab": vocab,
            "fit on": "distinct patches" if distinct else "all patches",
            "PSNR all (dB)": psnr(val_frames, reconstruction),
            "PSNR changed pixels (dB)": psnr(val_frames, reconstruction, changed), "fit (s)": fit_seconds}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env_id", default="ALE/Breakout-v5", help="ALE game ids, comma-separated")
    parser.add_argument("--num_frames", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val_fraction", type=float, default=0.2)
    parser.add_argument("--patch_sizes", default="4,8")
    parser.add_argument("--vocab_sizes", default="256,1024,4096")
    parser.add_argument("--fit_on", default="distinct,all", help="distinct and/or all (how patches are weighted)")
    parser.add_argument("--output", default=None, help="also write the table (markdown) here")
    parser.add_argument("--picture", default=None, help="draw val frames: truth | reconstruction per patch size")
    parser.add_argument("--picture_vocab", type=int, default=1024, help="the vocabulary drawn in --picture")
    args = parser.parse_args(argv)
    spec = RecordingSpec(tuple(args.env_id.split(",")), args.num_frames, args.seed, args.val_fraction)
    check_spec(spec)
    train, val = record_splits(spec)
    train_frames = np.concatenate([e.frames for e in train])
    val_frames, changed = changed_pixels(val)
    print(f"{args.env_id}: {len(train_frames)} train frames, {len(val_frames)} val frames, "
          f"{changed.mean():.4%} of val pixels change between consecutive frames", flush=True)
    rows, reconstructions = [], {}
    for patch in map(int, args.patch_sizes.split(",")):
        for vocab in map(int, args.vocab_sizes.split(",")):
            for how in args.fit_on.split(","):
                rows.append(measure(train_frames, val_frames, changed, patch, vocab, args.seed, how == "distinct",
                                    reconstructions))
                print(format_row(rows[-1]), flush=True)
    table = "\n".join(["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0]), *map(format_row, rows)])
    print(table)
    if args.output:
        Path(args.output).write_text(table + "\n")
    if args.picture:
        drawn = {f"{p}x{p} patches, {v} codes": r for (p, v, distinct), r in reconstructions.items()
                 if v == args.picture_vocab and distinct}
        draw(args.picture, val_frames, changed, drawn, args.env_id)
    return rows


def draw(path: str, frames: np.ndarray, changed: np.ndarray, reconstructions: dict[str, np.ndarray], title: str,
         count: int = 6) -> None:
    """truth | reconstructions of `count` val frames (those where the most pixels change, spread out)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    busy = np.argsort(-changed.sum((1, 2)), kind="stable")[:count * 8]
    picks = np.sort(busy[:: max(1, len(busy) // count)][:count])
    rows = [("truth", frames), *reconstructions.items()]
    fig, axes = plt.subplots(len(rows), count, figsize=(1.6 * count, 1.7 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c, i in enumerate(picks):
            axes[r][c].imshow(images[i], interpolation="nearest")
            axes[r][c].set_xticks([]), axes[r][c].set_yticks([])
        axes[r][0].set_ylabel(label, fontsize=7)
    fig.suptitle(f"{title}: val frames, truth and codebook reconstructions", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_row(row: dict) -> str:
    return "| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in row.values()) + " |"


if __name__ == "__main__":
    run_cli(main)
