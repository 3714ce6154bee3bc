"""Pictures of token videos from data with a tokenizer (genie/data/tokenizers.py: the built-in world, recorded
Atari): labelled PNG grids and animated GIFs, in RGB."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from genie.data.tokenizers import Tokenizer, tokenizer_for_folder  # noqa: E402
from genie.files import atomic_file, make_folder, one_line_write_failures  # noqa: E402


def save_grid(path: str | Path, rows: Sequence[tuple], tokenizer: Tokenizer,
              mask_token_id: int | None = None, title: str | None = None, dpi: int = 110) -> Path:
    """One row per (label, tokens (T, h, w)) or (label, tokens, wrong (T, h, w) bool): masked tokens
    (== mask_token_id) are drawn in magenta, wrong ones (True) outlined in red. Every frame is drawn at
    3x its pixels at least, so that a 1-2 pixel object (an Atari ball) can be seen."""
    num_frames = max(len(row[1]) for row in rows)
    pixels = tokenizer.to_rgb(np.asarray(rows[0][1][0]), scale=1).shape[1]
    inches = max(1.2, 3 * pixels / dpi)
    fig, axes = plt.subplots(len(rows), num_frames, figsize=(inches * num_frames, (inches + 0.1) * len(rows) + 0.4),
                             squeeze=False)
    for r, (label, frames, *wrong) in enumerate(rows):
        for c in range(num_frames):
            ax = axes[r][c]
            ax.set_xticks([]), ax.set_yticks([])
            if c >= len(frames):
                ax.axis("off")
                continue
            marks = np.asarray(wrong[0][c]) if wrong else None
            ax.imshow(_frame_rgb(np.asarray(frames[c]), tokenizer, mask_token_id, scale=3, wrong=marks),
                      interpolation="nearest")
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == 0:
                ax.set_title(f"+{c}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save_figure(fig, path, dpi)


def _save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write `fig` as a PNG at `path` through a temporary name (a failed write leaves nothing) and close it."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)
    return Path(path)


def save_gif(path: str | Path, videos: Sequence[np.ndarray], tokenizer: Tokenizer, labels: Sequence[str] = (),
             num_prompt: int = 0, min_width: int = 192, fps: int = 2) -> Path:
    """Side-by-side animation of token videos (each (T, h, w)), e.g. model | truth, each panel at least
    `min_width` pixels wide, its label above it, and under the frames which are the true prompt (the
    first `num_prompt`) and which are generated."""
    scale = max(1, -(-min_width // tokenizer.to_rgb(videos[0][0], scale=1).shape[1]))
    frames = []
    for t in range(min(len(v) for v in videos)):
        panels = [_frame_rgb(v[t], tokenizer, None, scale) for v in videos]
        gap = np.full((panels[0].shape[0], 6, 3), 255, np.uint8)
        strip = np.concatenate([x for panel in panels for x in (panel, gap)][:-1], axis=1)
        canvas = Image.new("RGB", (strip.shape[1], strip.shape[0] + 36), "white")
        canvas.paste(Image.fromarray(strip), (0, 18))
        draw = ImageDraw.Draw(canvas)
        for i, label in enumerate(labels):
            draw.text((i * (panels[0].shape[1] + 6) + 4, 3), label, fill="black")
        what = "true prompt frame" if t < num_prompt else "generated (model) | true frame"
        draw.text((4, strip.shape[0] + 21), f"t = {t}: {what}" if num_prompt else f"t = {t}", fill="black")
        frames.append(canvas)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    return Path(path)


def _frame_rgb(tokens: np.ndarray, tokenizer: Tokenizer, mask_token_id: int | None, scale: int = 1,
               wrong: np.ndarray | None = None) -> np.ndarray:
    """RGB pixels of a token frame (h, w): masked tokens in magenta, `wrong` tokens (True) outlined in red."""
    masked = tokens == mask_token_id if mask_token_id is not None else np.zeros(tokens.shape, dtype=bool)
    rgb = tokenizer.to_rgb(np.where(masked, 0, tokens), scale=scale)
    block = rgb.shape[0] // tokens.shape[0]
    if masked.any():
        rgb = rgb.copy()
        rgb[masked.repeat(block, 0).repeat(block, 1)] = (220, 40, 200)
    if wrong is not None and wrong.any():
        edge = np.zeros((block, block), dtype=bool)
        edge[[0, -1], :] = edge[:, [0, -1]] = True
        rgb = rgb.copy()
        rgb[np.kron(wrong, edge).astype(bool)] = (230, 20, 20)
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
        path = Path(output_dir) / "pictures" / f"eval_step_{step}.png"
        with one_line_write_failures(path, "nothing partial was left", "resume with --resume_from_checkpoint latest"):
            make_folder(path.parent)  # pictures/ of the run folder: a link there is removed, never written through
            return save_grid(path, rows, tokenizer, mask_token_id,
                             title=f"step {step}: masked input (magenta = masked, ratio {ratio:g}) | prediction | truth")

    return write


def plot_eval_report(report: dict, path: str | Path) -> Path:
    """eval.png: teacher-forced cross-entropy and accuracy per frame, the scores on the tokens that change,
    rollout accuracy (and PSNR) per horizon; the model against every trivial reference."""
    rollout = report.get("rollout")
    panels = 2 + ("changed_fraction" in report) + bool(rollout) + bool(rollout and "psnr_per_horizon" in rollout)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.6))
    frames = list(range(1, report["frames_scored"] + 1))
    axes[0].plot(frames, report["cross_entropy_per_frame"], "o-", label="model")
    if "unigram_cross_entropy_per_frame" in report:
        axes[0].plot(frames, report["unigram_cross_entropy_per_frame"], "s--", label="unigram (full token)")
    axes[0].set(xlabel="frame t (true frames < t given)", ylabel="cross-entropy (nats/token)", title="teacher-forced CE",
                xticks=frames)
    for key, label, style in (("accuracy", "model (MaskGIT samples)", "o-"), ("argmax_accuracy", "model (argmax)", "x:"),
                              ("copy_previous_accuracy", "copy previous frame", "s--"),
                              ("unigram_accuracy", "most frequent token", "d-.")):
        if f"{key}_per_frame" in report:
            axes[1].plot(frames, report[f"{key}_per_frame"], style, label=label)
    axes[1].set(xlabel="frame t", ylabel="token accuracy", title="teacher-forced accuracy", xticks=frames)
    changed_panel = axes[2] if "changed_fraction" in report else None
    if changed_panel is not None:
        _plot_changed_tokens(changed_panel, report)
    if rollout:
        _plot_rollout(axes[2 + (changed_panel is not None):], rollout)
    for ax in axes:
        if ax is not changed_panel:  # that one has its legend on its twin axis
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save_figure(fig, path)


def _plot_changed_tokens(ax, report: dict) -> None:
    """Bars: accuracy and CE on the tokens that differ from the previous frame, model vs references."""
    names = ["model", "most frequent /\nunigram", "copy previous\nframe"]
    accuracy = [report.get("changed_accuracy"), report.get("changed_unigram_accuracy"), 0.0]
    x = np.arange(len(names))
    ax.bar(x - 0.2, [a or 0.0 for a in accuracy], 0.4, label="accuracy (left axis)", color="C0")
    ax.set(xticks=x, xticklabels=names, ylabel="token accuracy", ylim=(0, 1),
           title=f"changed tokens ({report['changed_fraction']:.1%} of all)")
    ce_axis = ax.twinx()
    ce = [report.get("changed_cross_entropy"), report.get("changed_unigram_cross_entropy")]
    ce_axis.bar(x[:2] + 0.2, [c or 0.0 for c in ce], 0.4, label="CE nats/token (right axis)", color="C1")
    ce_axis.set(ylabel="cross-entropy (nats/token)")
    handles = [*ax.get_legend_handles_labels()[0], *ce_axis.get_legend_handles_labels()[0]]
    ce_axis.legend(handles=handles, fontsize=7, loc="upper right")  # on the twin, so that its bars do not hide it


def _plot_rollout(axes, rollout: dict) -> None:
    h = rollout["horizons"]
    # All-token curves solid or dashed; changed-token curves dotted, each beside its own reference (copying
    # scores 0 on changed tokens by definition).
    for key, label, style in (("accuracy", "model, all tokens", "o-"), ("copy_accuracy", "copy last prompt frame, all", "s--"),
                              ("most_frequent_accuracy", "most frequent token, all", "d-."),
                              ("changed_accuracy", "model, changed tokens", "^:"),
                              ("changed_most_frequent_accuracy", "most frequent token, changed", "v:")):
        if f"{key}_per_horizon" in rollout:
            axes[0].plot(h, [v if v is not None else np.nan for v in rollout[f"{key}_per_horizon"]], style, label=label)
    axes[0].set(xlabel="horizon (frames after the prompt)", ylabel="token accuracy", title="rollout accuracy", xticks=h)
    if len(axes) > 1:
        axes[1].plot(h, rollout["psnr_per_horizon"], "o-", label="model rollout")
        axes[1].plot(h, rollout["copy_psnr_per_horizon"], "s--", label="copy last prompt frame")
        axes[1].set(xlabel="horizon", ylabel="PSNR (dB)", title="rollout PSNR", xticks=h)
