"""The challenge metric, autoregressive rollouts and their trivial references, per batch of windows.

Teacher-forced (the 1X challenge's metric, as its reference evaluator computes it): for each frame
t >= 1 the model sees the true frames before t and frame t fully masked. The cross-entropy is that
of the FIRST MaskGIT pass (sum over factors, nats/token); the accuracy is the share of tokens of
the FINAL MaskGIT samples equal to the truth; the first pass's argmax accuracy is kept beside it.
Rollout: from the first k true frames, the model generates the rest (each generated frame is the
context of the next), scored per horizon h = 1..T-k beside copying the last prompt frame.

Everything here returns per-window sums (B, ...) so that callers can gather them across processes
and average each window exactly once (genie/evaluation/report.py turns them into the report).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from genie.decoding import SamplingConfig, decode_frames, generate, prompt_length
from genie.masking.seeding import batch_generator
from genie.model.stmaskgit import token_cross_entropy
from genie.protocols import MaskGITModel

# (B, N, S) token ids -> (B, N, P) pixel values; only data with a known decoder has one.
PixelDecoder = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class EvalOptions:
    """How windows are scored; the same options give the same numbers in training, evaluate.py and studies."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    loss_only: bool = False  # cross-entropy alone: no MaskGIT sampling, no rollout
    rollout: bool = True
    num_prompt_frames: int | None = None  # rollout prompt; default: the config's, if it leaves a frame to generate
    seed: int = 0
    use_cache: bool | None = None  # default: whenever the model is causal
    first_frame: int = 1  # frames first_frame..T-1 are scored (v2.0: 3, the target clip after the context clip)
    block_masked: bool = False  # also score frames first_frame.. all masked at once, in one pass

    def prompt_frames(self, num_frames: int, config_prompt_frames: int) -> int:
        return prompt_length(self.num_prompt_frames, num_frames, config_prompt_frames)


def teacher_forced_sums(model: MaskGITModel, tokens: torch.Tensor, actions: torch.Tensor | None,
                        options: EvalOptions, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Per window and scored frame t = first_frame..T-1, sums over the frame's S tokens, each (B, frames):
    tf_ce (first-pass cross-entropy), tf_argmax_correct, and tf_correct (final MaskGIT samples;
    absent with `loss_only`)."""
    ce, argmax_correct, correct = [], [], []
    frames = decode_frames(model, tokens, options.first_frame, options.sampling, actions, generator, options.use_cache,
                           teacher_forced=True, first_pass_only=options.loss_only)
    for t, frame, first_logits in frames:
        token_ce, token_correct = token_cross_entropy(first_logits[:, None], tokens[:, t:t + 1], model.config)
        ce.append(token_ce.sum(dim=(1, 2)))
        argmax_correct.append(token_correct.sum(dim=(1, 2)).to(token_ce.dtype))
        if frame is not None:
            correct.append((frame == tokens[:, t]).sum(dim=-1).to(token_ce.dtype))
    sums = {"tf_ce": torch.stack(ce, dim=1), "tf_argmax_correct": torch.stack(argmax_correct, dim=1)}
    if correct:
        sums["tf_correct"] = torch.stack(correct, dim=1)
    return sums


def block_masked_sums(model: MaskGITModel, tokens: torch.Tensor, actions: torch.Tensor | None, first_frame: int
                      ) -> dict[str, torch.Tensor]:
    """All frames from `first_frame` masked at once, one pass (e.g. v2.0's whole target clip given the
    context clip): per window and frame, block_ce and block_argmax_correct summed over its tokens."""
    inputs = tokens.clone()
    inputs[:, first_frame:] = model.mask_token_id
    logits = model.compute_logits(inputs, actions)[:, first_frame:]
    token_ce, token_correct = token_cross_entropy(logits, tokens[:, first_frame:], model.config)
    return {"block_ce": token_ce.sum(dim=-1), "block_argmax_correct": token_correct.sum(dim=-1).to(token_ce.dtype)}


def rollout_sums(model: MaskGITModel, tokens: torch.Tensor, actions: torch.Tensor | None, num_prompt: int,
                 options: EvalOptions, generator: torch.Generator | None = None,
                 decode_pixels: PixelDecoder | None = None) -> dict[str, torch.Tensor]:
    """Generate frames num_prompt..T-1 from the true prompt (true actions throughout); per window and
    horizon, each (B, H): rollout_correct and copy_correct (tokens equal to the truth), and with a
    pixel decoder the summed squared pixel errors rollout_sq_err and copy_sq_err."""
    num_new = tokens.shape[1] - num_prompt
    generated, _ = generate(model, tokens[:, :num_prompt], num_new, options.sampling, actions, generator,
                            options.use_cache)
    truth, predicted = tokens[:, num_prompt:], generated[:, num_prompt:]
    copied = tokens[:, num_prompt - 1:num_prompt].expand_as(truth)
    sums = {"rollout_correct": (predicted == truth).sum(dim=-1).double(),
            "copy_correct": (copied == truth).sum(dim=-1).double()}
    if decode_pixels is not None:
        true_pixels = decode_pixels(truth).double()
        sums["rollout_sq_err"] = ((decode_pixels(predicted).double() - true_pixels) ** 2).sum(dim=-1)
        sums["copy_sq_err"] = ((decode_pixels(copied).double() - true_pixels) ** 2).sum(dim=-1)
    return sums


def reference_sums(tokens: torch.Tensor, unigram_log_probs: np.ndarray | None) -> dict[str, torch.Tensor]:
    """Trivial references on frames 1.. of `tokens`, each (B, frames - 1): copy_previous_correct and,
    with unigram log-probabilities of the training tokens, unigram_ce and unigram_correct."""
    sums = {"copy_previous_correct": (tokens[:, 1:] == tokens[:, :-1]).sum(dim=-1).double()}
    if unigram_log_probs is not None:
        target = tokens[:, 1:].cpu().numpy()
        sums["unigram_ce"] = torch.from_numpy(-unigram_log_probs[target].sum(axis=-1))
        most_frequent = int(np.argmax(unigram_log_probs))
        sums["unigram_correct"] = (tokens[:, 1:] == most_frequent).sum(dim=-1).double().cpu()
    return sums


def score_windows(model: MaskGITModel, tokens: torch.Tensor, actions: torch.Tensor | None, options: EvalOptions,
                  batch_index: int, unigram_log_probs: np.ndarray | None = None,
                  decode_pixels: PixelDecoder | None = None) -> dict[str, torch.Tensor]:
    """Every per-window sum for one batch (B, T, S): teacher-forced, rollout and references.

    Random draws (sampling, random unmasking) come from generators seeded by (seed, batch_index),
    so a rerun gives the same numbers."""
    device = tokens.device
    sums = teacher_forced_sums(model, tokens, actions, options, batch_generator(options.seed, 0, batch_index, 10, device))
    if options.block_masked:
        sums.update(block_masked_sums(model, tokens, actions, options.first_frame))
    if options.rollout and not options.loss_only:
        k = options.prompt_frames(tokens.shape[1], model.config.num_prompt_frames)
        sums.update(rollout_sums(model, tokens, actions, k, options,
                                 batch_generator(options.seed, 0, batch_index, 11, device), decode_pixels))
    sums.update(reference_sums(tokens[:, options.first_frame - 1:], unigram_log_probs))
    return {k: v.double().cpu() for k, v in sums.items()}


def unigram_log_probs(train_frames: np.ndarray | list[np.ndarray], vocab_size: int, max_frames: int = 200_000,
                      chunk_frames: int = 4096) -> np.ndarray:
    """log p(token) over the full token vocabulary from training-token frequencies (add-one smoothing);
    reads at most `max_frames` evenly spaced frames of the (N, s, s) memmaps (one per shard), in chunks."""
    arrays = train_frames if isinstance(train_frames, list) else [train_frames]
    total = sum(len(a) for a in arrays)
    counts = np.ones(vocab_size, dtype=np.float64)
    for array in arrays:
        n = len(array)
        frames = np.unique(np.linspace(0, n - 1, max(1, min(n, max_frames * n // max(total, 1)))).astype(np.int64))
        for start in range(0, len(frames), chunk_frames):
            chunk = np.asarray(array[frames[start:start + chunk_frames]]).reshape(-1).astype(np.int64)
            counts += np.bincount(chunk, minlength=vocab_size)[:vocab_size]
    return np.log(counts / counts.sum())


def psnr(mean_squared_error: float, peak: float) -> float:
    """Peak signal-to-noise ratio in dB; inf when the error is 0."""
    if mean_squared_error <= 0:
        return math.inf
    return 10.0 * math.log10(peak ** 2 / mean_squared_error)
