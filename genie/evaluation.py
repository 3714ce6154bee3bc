"""The challenge metric and its trivial references.

Temporally teacher-forced: for each frame t >= 1, the model sees the true frames before t and frame t
fully masked; we score its prediction of frame t with the cross-entropy (sum over factors, nats) and
the token accuracy (every factor right). Sums are returned per sample so that callers can gather
them across processes and average each window exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genie.data import RawTokenDataset, open_eval_dataset, resolve_data_dirs
from genie.model import STMaskGIT, token_cross_entropy


@dataclass
class TeacherForcedSums:
    ce_sum: torch.Tensor  # (B,) summed cross-entropy over the scored tokens of each window
    correct_sum: torch.Tensor  # (B,) number of scored tokens predicted right
    num_tokens: torch.Tensor  # (B,) number of scored tokens


def masked_frame_logits(model: STMaskGIT, tokens: torch.Tensor, t: int,
                        actions: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (B, S, K, V) for frame t given the true frames before it, frame t (and later) masked.

    With causal temporal attention the frames after t cannot influence frame t, so only frames 0..t
    are run (exact, and cheaper); a bidirectional model gets the full window with frames t.. masked.
    """
    if model.config.causal:
        inputs = tokens[:, :t + 1].clone()
        acts = None if actions is None else actions[:, :t + 1]
    else:
        inputs, acts = tokens.clone(), actions
    inputs[:, t:] = model.mask_token_id
    return model.compute_logits(inputs, actions=acts)[:, t]


@torch.no_grad()
def teacher_forced_sums(model: STMaskGIT, tokens: torch.Tensor, actions: torch.Tensor | None = None) -> TeacherForcedSums:
    """Per-window sums of the teacher-forced metric over frames 1..T-1. tokens: (B, T, S)."""
    b, num_frames, s = tokens.shape
    ce = torch.zeros(b, device=tokens.device)
    correct = torch.zeros(b, device=tokens.device)
    for t in range(1, num_frames):
        logits = masked_frame_logits(model, tokens, t, actions).unsqueeze(1)  # (B, 1, S, K, V)
        token_ce, token_correct = token_cross_entropy(logits, tokens[:, t:t + 1], model.config)
        ce += token_ce.sum(dim=(1, 2))
        correct += token_correct.sum(dim=(1, 2))
    num_tokens = torch.full((b,), float((num_frames - 1) * s), device=tokens.device)
    return TeacherForcedSums(ce, correct, num_tokens)


def unigram_log_probs(train_video: np.ndarray, vocab_size: int, max_frames: int = 200_000,
                      chunk_frames: int = 4096) -> np.ndarray:
    """log p(token) from training-token frequencies with add-one smoothing; reads at most `max_frames`
    evenly spaced frames of the (N, s, s) memmap, in chunks."""
    n = len(train_video)
    frames = np.unique(np.linspace(0, n - 1, min(n, max_frames)).astype(np.int64))
    counts = np.ones(vocab_size, dtype=np.float64)
    for start in range(0, len(frames), chunk_frames):
        chunk = np.asarray(train_video[frames[start:start + chunk_frames]]).reshape(-1).astype(np.int64)
        counts += np.bincount(chunk, minlength=vocab_size)[:vocab_size]
    return np.log(counts / counts.sum())


def unigram_sums(log_probs: np.ndarray, tokens: torch.Tensor) -> tuple[float, int]:
    """(summed cross-entropy, count) of frames 1..T-1 of `tokens` (B, T, S) under a unigram model."""
    target = tokens[:, 1:].reshape(-1).cpu().numpy()
    return float(-log_probs[target].sum()), int(target.size)


def copy_previous_sums(tokens: torch.Tensor) -> tuple[int, int]:
    """(tokens equal to the same position in the previous frame, count) over frames 1..T-1."""
    same = tokens[:, 1:] == tokens[:, :-1]
    return int(same.sum()), int(same.numel())


@torch.no_grad()
def evaluate_with_references(model: STMaskGIT, val_set, train_video: np.ndarray, vocab_size: int,
                             batch_size: int = 8, max_examples: int | None = None,
                             device: torch.device | str = "cpu") -> dict[str, float]:
    """The teacher-forced metric over val windows, beside the unigram and copy-previous-frame references
    computed on exactly the same windows and frames."""
    model = model.to(device).eval()
    log_probs = unigram_log_probs(train_video, vocab_size)
    most_frequent = int(np.argmax(log_probs))
    count = len(val_set) if max_examples is None else min(max_examples, len(val_set))
    totals = dict.fromkeys(["ce", "correct", "tokens", "uni_ce", "uni_correct", "copy_correct"], 0.0)
    for start in range(0, count, batch_size):
        items = [val_set[i] for i in range(start, min(start + batch_size, count))]
        tokens = torch.stack([it["input_ids"] for it in items]).to(device)
        actions = torch.stack([it["actions"] for it in items]).to(device) if "actions" in items[0] else None
        sums = teacher_forced_sums(model, tokens, actions)
        totals["ce"] += float(sums.ce_sum.sum())
        totals["correct"] += float(sums.correct_sum.sum())
        totals["tokens"] += float(sums.num_tokens.sum())
        totals["uni_ce"] += unigram_sums(log_probs, tokens)[0]
        totals["uni_correct"] += float((tokens[:, 1:] == most_frequent).sum())
        totals["copy_correct"] += copy_previous_sums(tokens)[0]
    n = max(totals["tokens"], 1.0)
    return {
        "num_windows": count, "num_tokens": int(totals["tokens"]),
        "model_cross_entropy": totals["ce"] / n, "model_accuracy": totals["correct"] / n,
        "unigram_cross_entropy": totals["uni_ce"] / n, "unigram_accuracy": totals["uni_correct"] / n,
        "copy_previous_accuracy": totals["copy_correct"] / n,
    }


def evaluate_checkpoint(checkpoint_dir: str | Path, train_data_dir: str | Path | None = None,
                        val_data_dir: str | Path | None = None, window_size: int | None = None, stride: int = 1,
                        batch_size: int = 8, max_examples: int | None = None) -> dict[str, float]:
    """The teacher-forced metric of a saved model with its two references (built-in data by default)."""
    model = STMaskGIT.from_pretrained(checkpoint_dir)
    config = model.config
    train_dir, val_dir = resolve_data_dirs(train_data_dir, val_data_dir, config)
    val_set = open_eval_dataset(val_dir, config, stride, window_size)
    train_set = RawTokenDataset(train_dir, window_size or config.T, stride)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return evaluate_with_references(model, val_set, train_set.video, config.image_vocab_size, batch_size,
                                    max_examples, device)


def format_eval_table(metrics: dict[str, float]) -> str:
    """A Markdown table: model vs the two trivial references."""
    return "\n".join([
        f"Teacher-forced evaluation on {metrics['num_windows']} val windows ({metrics['num_tokens']} scored tokens)",
        "",
        "| predictor | cross-entropy (nats/token) | token accuracy |",
        "|---|---|---|",
        f"| model | {metrics['model_cross_entropy']:.4f} | {metrics['model_accuracy']:.4f} |",
        f"| unigram of train tokens | {metrics['unigram_cross_entropy']:.4f} | {metrics['unigram_accuracy']:.4f} |",
        f"| copy previous frame | - | {metrics['copy_previous_accuracy']:.4f} |",
    ])
