"""The challenge metric, autoregressive rollouts and their trivial references, per batch of windows.

Teacher-forced (the 1X challenge's metric, as its reference evaluator computes it): for each frame
t >= 1 the model sees the true frames before t and frame t fully masked. The cross-entropy is that
of the FIRST MaskGIT pass (sum over factors, nats/token); the accuracy is the share of tokens of
the FINAL MaskGIT samples equal to the truth; the first pass's argmax accuracy is kept beside it.
Rollout: from the first k true frames, the model generates the rest (each generated frame is the
context of the next), scored per horizon h = 1..T-k beside copying the last prompt frame.

Dynamics are scored where they happen: every teacher-forced and reference score is also summed over
the tokens whose true value differs from the previous frame's ("changed"; copying scores 0 there by
definition) and over the rest ("static"); the two add up to the whole. In a rollout, "changed" means
differing from the last prompt frame. Action sensitivity: the first-pass cross-entropy again with the
actions of another window of the batch (a seeded shuffle); a model that ignores its actions scores 0.

Everything here returns per-window sums (B, ...) so that callers can gather them across processes
and average each window exactly once (genie/evaluation/loop.py turns them into the report).
"""
from __future__ import annotations

import dataclasses
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
    action_sensitivity: bool = True  # one more first pass with shuffled actions (action-conditioned models only)

    def prompt_frames(self, num_frames: int, config_prompt_frames: int) -> int:
        return prompt_length(self.num_prompt_frames, num_frames, config_prompt_frames)


def split_by_change(sums: dict[str, torch.Tensor], per_token: dict[str, torch.Tensor], changed: torch.Tensor
                    ) -> dict[str, torch.Tensor]:
    """Add to `sums` each per-token score (B, S) summed over the window's tokens, over its changed ones
    (`changed` (B, S): True = the true token differs from the previous frame's) and over its static ones."""
    changed = changed.to(next(iter(per_token.values())).dtype)
    for key, values in per_token.items():
        sums.setdefault(key, []).append(values.sum(dim=-1))
        sums.setdefault(f"{key}_changed", []).append((values * changed).sum(dim=-1))
        sums.setdefault(f"{key}_static", []).append((values * (1 - changed)).sum(dim=-1))
    return sums


def teacher_forced_sums(model: MaskGITModel, tokens: torch.Tensor, actions: torch.Tensor | None,
                        options: EvalOptions, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Per window and scored frame t = first_frame..T-1, sums over the frame's S tokens, each (B, frames):
    tf_ce (first-pass cross-entropy), tf_argmax_correct, and tf_correct (final MaskGIT samples;
    absent with `loss_only`); each also as <key>_changed and <key>_static (tokens that differ from frame
    t-1, and the others)."""
    sums: dict[str, list[torch.Tensor]] = {}
    frames = decode_frames(model, tokens, options.first_frame, options.sampling, actions, generator, options.use_cache,
                           teacher_forced=True, first_pass_only=options.loss_only)
    for t, frame, first_logits in frames:
        token_ce, token_correct = token_cross_entropy(first_logits[:, None], tokens[:, t:t + 1], model.config)
        per_token = {"tf_ce": token_ce[:, 0], "tf_argmax_correct": token_correct[:, 0].to(token_ce.dtype)}
        if frame is not None:
            per_token["tf_correct"] = (frame == tokens[:, t]).to(token_ce.dtype)
        split_by_change(sums, per_token, tokens[:, t] != tokens[:, t - 1])
    return {key: torch.stack(values, dim=1) for key, values in sums.items()}


def action_sensitivity_sums(model: MaskGITModel, tokens: torch.Tensor, actions: torch.Tensor, options: EvalOptions,
                            true_sums: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Teacher-forced first-pass cross-entropy with each window given the actions of another window of
    the batch (a seeded cyclic shift, so no window keeps its own), beside the true-action one
    (`true_sums`, from teacher_forced_sums), per window and frame: shuffled_ce, shuffled_true_ce and
    their _changed forms, with shuffled_changed_tokens; the same on the changed tokens of frames whose action
    differs from the previous frame's (new_action_*). A batch of one window, or one whose actions are
    all withheld (NaN, --drop_actions), cannot be shuffled: its rows are 0, and shuffled_windows (1 per
    shuffled window) says how many windows count."""
    batch, first = tokens.shape[0], options.first_frame
    shuffled = batch > 1 and not bool(actions.isnan().all())
    included = torch.full((batch, 1), float(shuffled), dtype=torch.float64, device=tokens.device)
    changed = (tokens[:, first:] != tokens[:, first - 1:-1]).double().sum(dim=-1)
    # Frames whose action differs from the previous frame's: there the frames before cannot tell what the
    # action does next, only the action can.
    rows, before = actions[:, first:tokens.shape[1]], actions[:, first - 1:tokens.shape[1] - 1]
    new_action = ((rows != before) & ~(rows.isnan() & before.isnan())).any(dim=-1)  # NaN != NaN: withheld is not new
    at_new_action = included * new_action.double()
    shuffled_sums = true_sums
    if shuffled:
        shift = int(torch.randint(1, batch, (1,), generator=generator, device=generator.device))
        shuffled_sums = teacher_forced_sums(model, tokens, torch.roll(actions, shifts=shift, dims=0),
                                            dataclasses.replace(options, loss_only=True))
    return {"shuffled_ce": shuffled_sums["tf_ce"] * included,
            "shuffled_ce_changed": shuffled_sums["tf_ce_changed"] * included,
            "shuffled_true_ce": true_sums["tf_ce"] * included,
            "shuffled_true_ce_changed": true_sums["tf_ce_changed"] * included,
            "shuffled_changed_tokens": changed * included, "shuffled_windows": included[:, 0],
            "new_action_shuffled_ce_changed": shuffled_sums["tf_ce_changed"] * at_new_action,
            "new_action_true_ce_changed": true_sums["tf_ce_changed"] * at_new_action,
            "new_action_changed_tokens": changed * at_new_action}


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
                 decode_pixels: PixelDecoder | None = None, most_frequent: int | None = None
                 ) -> dict[str, torch.Tensor]:
    """Generate frames num_prompt..T-1 from the true prompt (true actions throughout); per window and
    horizon, each (B, H): rollout_correct, copy_correct and (given the most frequent training token)
    most_frequent_correct, the tokens equal to the truth; rollout_changed, the tokens that differ from
    the last prompt frame, and each score over them (<key>_changed; copying scores 0 there); with a
    pixel decoder the summed squared pixel errors rollout_sq_err and copy_sq_err."""
    num_new = tokens.shape[1] - num_prompt
    generated, _ = generate(model, tokens[:, :num_prompt], num_new, options.sampling, actions, generator,
                            options.use_cache)
    truth, predicted = tokens[:, num_prompt:], generated[:, num_prompt:]
    copied = tokens[:, num_prompt - 1:num_prompt].expand_as(truth)
    changed = (truth != copied).double()
    hits = {"rollout_correct": predicted == truth, "copy_correct": copied == truth}
    if most_frequent is not None:
        hits["most_frequent_correct"] = truth == most_frequent
    sums = {"rollout_changed": changed.sum(dim=-1)}
    for key, hit in hits.items():
        sums[key] = hit.sum(dim=-1).double()
        sums[f"{key}_changed"] = (hit.double() * changed).sum(dim=-1)
    if decode_pixels is not None:
        true_pixels = decode_pixels(truth).double()
        sums["rollout_sq_err"] = ((decode_pixels(predicted).double() - true_pixels) ** 2).sum(dim=-1)
        sums["copy_sq_err"] = ((decode_pixels(copied).double() - true_pixels) ** 2).sum(dim=-1)
    return sums


def reference_sums(tokens: torch.Tensor, unigram_log_probs: np.ndarray | None) -> dict[str, torch.Tensor]:
    """Trivial references on frames 1.. of `tokens`, each (B, frames - 1): changed_tokens (the tokens
    that differ from the previous frame), copy_previous_correct and, with unigram log-probabilities of
    the training tokens, unigram_ce and unigram_correct (the most frequent token); each score also as
    <key>_changed and <key>_static."""
    target, previous = tokens[:, 1:], tokens[:, :-1]
    changed = target != previous
    per_token = {"copy_previous_correct": (target == previous).double()}
    if unigram_log_probs is not None:
        log_probs = torch.from_numpy(unigram_log_probs).to(tokens.device)
        per_token["unigram_ce"] = -log_probs[target]
        per_token["unigram_correct"] = (target == int(np.argmax(unigram_log_probs))).double()
    sums: dict[str, list[torch.Tensor]] = {"changed_tokens": [changed.double().sum(dim=-1)]}
    for frame in range(target.shape[1]):
        split_by_change(sums, {k: v[:, frame] for k, v in per_token.items()}, changed[:, frame])
    stacked = {key: torch.stack(values, dim=1) for key, values in sums.items() if key != "changed_tokens"}
    return {"changed_tokens": sums["changed_tokens"][0], **stacked}


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
    if options.action_sensitivity and actions is not None:
        sums.update(action_sensitivity_sums(model, tokens, actions, options, sums,
                                            batch_generator(options.seed, 0, batch_index, 12, device)))
    if options.rollout and not options.loss_only:
        k = options.prompt_frames(tokens.shape[1], model.config.num_prompt_frames)
        most_frequent = None if unigram_log_probs is None else int(np.argmax(unigram_log_probs))
        sums.update(rollout_sums(model, tokens, actions, k, options,
                                 batch_generator(options.seed, 0, batch_index, 11, device), decode_pixels,
                                 most_frequent))
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
