"""Pictures of token videos from data with a tokenizer (genie/data/tokenizers.py: the built-in world, recorded
Atari): labelled PNG grids and animated GIFs, in RGB."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from genie.data.tokenizers import Tokenizer, tokenizer_for_folder  # noqa: E402


def save_grid(path: str | Path, rows: Sequence[tuple[str, np.ndarray]], tokenizer: Tokenizer,
              mask_token_id: int | None = None, title: str | None = None) -> Path:
    """One row per (label, tokens (T, h, w)); masked tokens (== mask_token_id) are drawn in magenta."""
    num_frames = max(len(frames) for _, frames in rows)
    fig, axes = plt.subplots(len(rows), num_frames, figsize=(1.2 * num_frames, 1.3 * len(rows) + 0.4), squeeze=False)
    for r, (label, frames) in enumerate(rows):
        for c in range(num_frames):
            ax = axes[r][c]
            ax.set_xticks([]), ax.set_yticks([])
            if c >= len(frames):
                ax.axis("off")
                continue
            ax.imshow(_frame_rgb(np.asarray(frames[c]), tokenizer, mask_token_id), interpolation="nearest")
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == 0:
                ax.set_title(f"+{c}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def save_gif(path: str | Path, videos: Sequence[np.ndarray], tokenizer: Tokenizer, scale: int = 4,
             fps: int = 4) -> Path:
    """Side-by-side animation of several token videos (each (T, h, w)), e.g. prediction | truth."""
    strips = [np.concatenate([_frame_rgb(v[t], tokenizer, None, scale) for v in videos], axis=1)
              for t in range(min(len(v) for v in videos))]
    images = [Image.fromarray(s) for s in strips]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return Path(path)


def _frame_rgb(tokens: np.ndarray, tokenizer: Tokenizer, mask_token_id: int | None, scale: int = 1) -> np.ndarray:
    masked = tokens == mask_token_id if mask_token_id is not None else np.zeros(tokens.shape, dtype=bool)
    rgb = tokenizer.to_rgb(np.where(masked, 0, tokens), scale=scale)
    if masked.any():
        block = rgb.shape[0] // tokens.shape[0]
        big = masked.repeat(block, 0).repeat(block, 1)
        rgb = rgb.copy()
        rgb[big] = (220, 40, 200)
    return rgb


def masked_prediction_writer(output_dir: str | Path, val_dir: str | Path, side: int, mask_token_id: int):
    """A callable(step, input_ids, predictions, labels, ratio) -> Path that draws masked input |
    prediction | truth for the first val windows into output_dir/pictures/, or None when the data has
    no decoder (its metadata names no tokenizer, e.g. 1X data)."""
    tokenizer = tokenizer_for_folder(val_dir)
    if tokenizer is None:
        return None

    def write(step, input_ids, predictions, labels, ratio):
        grid = lambda x: x[:2].reshape(-1, x.shape[1], side, side).cpu().numpy()  # noqa: E731
        rows = []
        for i, (inp, pred, true) in enumerate(zip(grid(input_ids), grid(predictions), grid(labels))):
            rows += [(f"#{i} masked input", inp), (f"#{i} prediction", np.where(inp == mask_token_id, pred, inp)),
                     (f"#{i} truth", true)]
        return save_grid(Path(output_dir) / "pictures" / f"eval_step_{step}.png", rows, tokenizer, mask_token_id,
                         title=f"step {step}: masked input (magenta = masked, ratio {ratio:g}) | prediction | truth")

    return write


def plot_eval_report(report: dict, path: str | Path) -> Path:
    """eval.png: teacher-forced cross-entropy and accuracy per frame, rollout accuracy (and PSNR) per
    horizon; the model against its trivial references."""
    rollout = report.get("rollout")
    panels = 2 + (1 if rollout else 0) + (1 if rollout and "psnr_per_horizon" in rollout else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.6))
    frames = list(range(1, report["frames_scored"] + 1))
    axes[0].plot(frames, report["cross_entropy_per_frame"], "o-", label="model")
    if "unigram_cross_entropy_per_frame" in report:
        axes[0].plot(frames, report["unigram_cross_entropy_per_frame"], "s--", label="unigram (full token)")
    axes[0].set(xlabel="frame t (true frames < t given)", ylabel="cross-entropy (nats/token)", title="teacher-forced CE",
                xticks=frames)
    for key, label, style in (("accuracy", "model (MaskGIT samples)", "o-"), ("argmax_accuracy", "model (argmax)", "x:"),
                              ("copy_previous_accuracy", "copy previous frame", "s--")):
        if f"{key}_per_frame" in report:
            axes[1].plot(frames, report[f"{key}_per_frame"], style, label=label)
    axes[1].set(xlabel="frame t", ylabel="token accuracy", title="teacher-forced accuracy", xticks=frames)
    if rollout:
        h = rollout["horizons"]
        axes[2].plot(h, rollout["accuracy_per_horizon"], "o-", label="model rollout")
        axes[2].plot(h, rollout["copy_accuracy_per_horizon"], "s--", label="copy last prompt frame")
        axes[2].set(xlabel="horizon (frames after the prompt)", ylabel="token accuracy", title="rollout accuracy",
                    xticks=h)
    if panels == 4:
        axes[3].plot(h, rollout["psnr_per_horizon"], "o-", label="model rollout")
        axes[3].plot(h, rollout["copy_psnr_per_horizon"], "s--", label="copy last prompt frame")
        axes[3].set(xlabel="horizon", ylabel="PSNR (dB)", title="rollout PSNR", xticks=h)
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
