"""Pictures of token videos from the built-in dataset: labelled PNG grids and animated GIFs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from genie.data.builtin import PatchTokenizer, tokenizer_from_metadata  # noqa: E402


def save_grid(path: str | Path, rows: Sequence[tuple[str, np.ndarray]], tokenizer: PatchTokenizer,
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


def save_gif(path: str | Path, videos: Sequence[np.ndarray], tokenizer: PatchTokenizer, scale: int = 4,
             fps: int = 4) -> Path:
    """Side-by-side animation of several token videos (each (T, h, w)), e.g. prediction | truth."""
    strips = [np.concatenate([_frame_rgb(v[t], tokenizer, None, scale) for v in videos], axis=1)
              for t in range(min(len(v) for v in videos))]
    images = [Image.fromarray(s) for s in strips]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return Path(path)


def _frame_rgb(tokens: np.ndarray, tokenizer: PatchTokenizer, mask_token_id: int | None, scale: int = 1) -> np.ndarray:
    masked = tokens == mask_token_id if mask_token_id is not None else np.zeros(tokens.shape, dtype=bool)
    rgb = tokenizer.to_rgb(np.where(masked, 0, tokens), scale=scale * 1)
    if masked.any():
        block = rgb.shape[0] // tokens.shape[0]
        big = masked.repeat(block, 0).repeat(block, 1)
        rgb = rgb.copy()
        rgb[big] = (220, 40, 200)
    return rgb


def masked_prediction_writer(output_dir: str | Path, val_dir: str | Path, side: int, mask_token_id: int):
    """A callable(step, input_ids, predictions, labels, ratio) -> Path that draws masked input |
    prediction | truth for the first val windows into output_dir/pictures/, or None when the data has
    no decoder (only the built-in dataset does)."""
    metadata_path = Path(val_dir) / "metadata.json"
    tokenizer = tokenizer_from_metadata(json.loads(metadata_path.read_text())) if metadata_path.is_file() else None
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
