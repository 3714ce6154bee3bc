"""MaskGIT decoding of future frames, one frame at a time (causal in time, parallel within a frame).

Per frame: start fully masked; at each of `maskgit_steps` steps sample every still-masked token,
then keep the `n` least preferred of them masked for the next step, with n following the cosine
schedule `ceil(cos(pi/2 * (step+1)/steps) * S)` and reaching 0 at the last step.

The loop needs only the `MaskGITModel` interface (genie/protocols.py), not a PyTorch module.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from einops import rearrange
from tqdm.auto import tqdm
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from genie.errors import check_flag
from genie.masking.schedules import maskgit_num_masked
from genie.model.factorization import unfactorize_token_ids
from genie.protocols import MaskGITModel

UNMASK_MODES = ("confidence", "gumbel", "random")


@dataclass
class SamplingConfig:
    """How MaskGIT samples a frame; also the sampling flags of scripts/evaluate.py and scripts/generate.py."""
    maskgit_steps: int = field(default=2, metadata={"help": "MaskGIT steps per frame (the challenge: 2)."})
    temperature: float = field(default=0.0, metadata={
        "help": "0 = greedy (argmax, the challenge); otherwise logits are divided by it before the softmax."})
    top_k: int | None = field(default=None, metadata={"help": "Sample among the k most likely ids (default: all)."})
    top_p: float | None = field(default=None, metadata={
        "help": "Sample among the most likely ids whose probabilities add up to p (default: all)."})
    unmask_mode: str = field(default="random", metadata={
        "help": "Which sampled tokens each step keeps: random (the reference's default), confidence (the most "
                "probable; deterministic) or gumbel (MaskGIT's annealed Gumbel noise)."})
    choice_temperature: float = field(default=4.5, metadata={
        "help": "Scale of the Gumbel noise of --unmask_mode gumbel, annealed to 0 over the steps."})

    def __post_init__(self) -> None:
        check_flag(self.maskgit_steps >= 1, "maskgit_steps", self.maskgit_steps, "must be >= 1")
        check_flag(self.temperature >= 0, "temperature", self.temperature, "must be >= 0 (0 = greedy)")
        check_flag(self.top_k is None or self.top_k >= 1, "top_k", self.top_k, "must be >= 1")
        check_flag(self.top_p is None or 0 < self.top_p <= 1, "top_p", self.top_p, "must be in (0, 1]")
        check_flag(self.unmask_mode in UNMASK_MODES, "unmask_mode", self.unmask_mode,
                   f"must be one of {', '.join(UNMASK_MODES)}")


def prompt_length(requested: int | None, num_frames: int, config_prompt_frames: int) -> int:
    """The number of true prompt frames of a rollout or a generation, one rule for every command:
    `requested` if given, else the model config's num_prompt_frames if it leaves a frame to generate,
    else half the window."""
    k = requested or (config_prompt_frames if config_prompt_frames < num_frames else num_frames // 2)
    check_flag(1 <= k < num_frames, "num_prompt_frames", k,
               f"must be in [1, {num_frames - 1}] for windows of {num_frames} frames (at least one frame is generated)")
    return k


def sampling_distribution(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """Probabilities to sample from: temperature on the logits, then top-k / top-p filtering.

    logits: (..., V). Unlike the reference (which divides already-normalised probabilities by the
    temperature, a no-op after renormalisation), the temperature here really sharpens or flattens.
    """
    shape = logits.shape
    scores = logits.reshape(-1, shape[-1]).float() / max(cfg.temperature, 1e-8)
    if cfg.top_k is not None:
        scores = TopKLogitsWarper(top_k=min(cfg.top_k, shape[-1]))(None, scores)
    if cfg.top_p is not None and cfg.top_p < 1.0:
        scores = TopPLogitsWarper(top_p=cfg.top_p)(None, scores)
    return torch.softmax(scores, dim=-1).reshape(shape)


def sample_tokens(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (B, S, K, V) -> (token ids (B, S), confidence (B, S)).

    Each factor is sampled independently; the confidence is the product over factors of the model's
    (untempered) probability of the chosen factor.
    """
    model_probs = torch.softmax(logits.float(), dim=-1)
    if cfg.temperature == 0:
        factor_ids = logits.max(dim=-1).indices  # argmax's ids (the first maximum), in half its time on CPU
    else:
        probs = sampling_distribution(logits, cfg)
        flat = rearrange(probs, "b s k v -> (b s k) v")
        factor_ids = torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])
    confidence = model_probs.gather(-1, factor_ids.unsqueeze(-1)).squeeze(-1).prod(dim=-1)
    k, v = logits.shape[-2], logits.shape[-1]
    return unfactorize_token_ids(factor_ids, k, v), confidence


def _remask_scores(confidence: torch.Tensor, step: int, cfg: SamplingConfig, generator: torch.Generator | None
                   ) -> torch.Tensor:
    """Scores where LOW means "mask again"; decoded tokens are set to +inf by the caller."""
    if cfg.unmask_mode == "confidence":
        return confidence
    if cfg.unmask_mode == "random":
        return torch.rand(confidence.shape, generator=generator, device=confidence.device)
    # MaskGIT: log-confidence plus Gumbel noise whose scale anneals linearly to 0 over the steps.
    uniform = torch.rand(confidence.shape, generator=generator, device=confidence.device).clamp(1e-20, 1.0)
    gumbel = -torch.log(-torch.log(uniform).clamp(min=1e-20))
    scale = cfg.choice_temperature * (1.0 - (step + 1) / cfg.maskgit_steps)
    return torch.log(confidence.clamp(min=1e-30)) + scale * gumbel


def maskgit_step(logits: torch.Tensor, frame: torch.Tensor, step: int, cfg: SamplingConfig, mask_token_id: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """One MaskGIT step on a frame (B, S): sample every masked token from `logits` (B, S, K, V), then
    mask again the `n` least preferred of the newly sampled tokens (n from the cosine schedule)."""
    is_masked = frame == mask_token_id  # True = still masked
    sampled, confidence = sample_tokens(logits, cfg, generator)
    new_frame = torch.where(is_masked, sampled, frame)
    num_masked = maskgit_num_masked(step, cfg.maskgit_steps, frame.shape[1])
    if num_masked > 0:
        scores = _remask_scores(confidence, step, cfg, generator).masked_fill(~is_masked, float("inf"))
        lowest = scores.argsort(dim=1)[:, :num_masked]
        remask = torch.zeros_like(is_masked).scatter_(1, lowest, True)
        new_frame = new_frame.masked_fill(remask, mask_token_id)
    return new_frame


@torch.no_grad()
def decode_frames(model: MaskGITModel, tokens: torch.Tensor, first_frame: int, cfg: SamplingConfig,
                  actions: torch.Tensor | None = None, generator: torch.Generator | None = None,
                  use_cache: bool | None = None, teacher_forced: bool = False, first_pass_only: bool = False
                  ) -> Iterator[tuple[int, torch.Tensor | None, torch.Tensor]]:
    """Decode frames first_frame..T'-1 of `tokens` (B, T', S) one at a time, each from the frames before it.

    The one MaskGIT loop behind generation, rollouts and the teacher-forced evaluation:
    - rollout (default): each decoded frame is written into `tokens` and is the context of the next;
    - `teacher_forced`: the context is always the true frames in `tokens`, which stay untouched.
    `use_cache` (default: whenever the model is causal) keeps the temporal keys/values of finished
    frames, so each model call runs one frame instead of the prefix. `first_pass_only` skips the
    sampling (for the cross-entropy alone). Yields (t, decoded frame (B, S) or None, first-pass
    logits (B, S, K, V)). `actions` (B, T' or more, A) when the model is action-conditioned: each model call
    gets the rows of its frames and the row after them (`_frame_actions`).
    """
    if first_frame < 1:
        raise ValueError(f"first_frame = {first_frame} must be >= 1: frame 0 is always given")
    use_cache = model.config.causal if use_cache is None else use_cache
    if use_cache and not model.config.causal:
        raise ValueError("a KV cache needs causal temporal attention; this model is bidirectional")
    logits_of = (_cached_logits(model, tokens, first_frame, actions) if use_cache
                 else _recomputed_logits(model, tokens, actions))
    for t in range(first_frame, tokens.shape[1]):
        frame = torch.full_like(tokens[:, t], model.mask_token_id)
        first_logits = logits_of(t, frame, 0)
        if first_pass_only:
            yield t, None, first_logits
            continue
        logits = first_logits
        for step in range(cfg.maskgit_steps):
            if step > 0:
                logits = logits_of(t, frame, step)
            frame = maskgit_step(logits, frame, step, cfg, model.mask_token_id, generator)
        if not teacher_forced:
            tokens[:, t] = frame
        yield t, frame, first_logits


def _frame_actions(actions: torch.Tensor | None, start: int, end: int) -> torch.Tensor | None:
    """The action rows of frames start..end-1, and the row after them where the window has one: a model
    with action_placement "previous" puts it on frame end-1 (one with "own" reads only the first rows)."""
    return None if actions is None else actions[:, start:end + 1]


def _recomputed_logits(model: MaskGITModel, tokens: torch.Tensor, actions: torch.Tensor | None
                       ) -> Callable[[int, torch.Tensor, int], torch.Tensor]:
    """Logits of frame t by running its whole prefix: frames < t from `tokens`, frame t as decoded so
    far, later frames masked. A causal model cannot see later frames, so it runs only frames 0..t."""
    def logits_of(t: int, frame: torch.Tensor, step: int) -> torch.Tensor:
        end = t + 1 if model.config.causal else tokens.shape[1]
        context = tokens[:, :end].clone()
        context[:, t] = frame
        context[:, t + 1:] = model.mask_token_id
        return model.compute_logits(context, actions=_frame_actions(actions, 0, end))[:, t]
    return logits_of


def _cached_logits(model: MaskGITModel, tokens: torch.Tensor, first_frame: int, actions: torch.Tensor | None
                   ) -> Callable[[int, torch.Tensor, int], torch.Tensor]:
    """Logits of frame t against a cache of frames < t. A finished frame's keys/values are added by the
    next frame's first step, which runs [finished frame, next frame] together (causal between them):
    one model call per MaskGIT step, none extra."""
    cache = model.new_kv_cache()
    if first_frame > 1:
        model.compute_logits_cached(tokens[:, :first_frame - 1], cache, _frame_actions(actions, 0, first_frame - 1),
                                    commit=first_frame - 1)

    def logits_of(t: int, frame: torch.Tensor, step: int) -> torch.Tensor:
        if step == 0:  # [finished frame t-1, frame t]: caches the former, decodes the latter
            block = torch.stack([tokens[:, t - 1], frame], dim=1)
            return model.compute_logits_cached(block, cache, _frame_actions(actions, t - 1, t + 1), commit=1)[:, 0]
        return model.compute_logits_cached(frame[:, None], cache, _frame_actions(actions, t, t + 1))[:, 0]
    return logits_of


@torch.no_grad()
def decode_frame(model: MaskGITModel, context: torch.Tensor, cfg: SamplingConfig, actions: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode the first fully masked frame of `context` (B, T', S) by full recomputation.

    Returns (tokens (B, S), logits of the first step (B, S, K, V)).
    """
    masked_frames = (context == model.mask_token_id).all(dim=-1).all(dim=0)  # (T',)
    if not masked_frames.any():
        raise ValueError("decode_frame expects the frame to decode to be fully masked")
    t = int(masked_frames.float().argmax())
    _, frame, first_logits = next(decode_frames(model, context.clone(), t, cfg, actions, generator, use_cache=False))
    return frame, first_logits


@torch.no_grad()
def generate(model: MaskGITModel, prompt: torch.Tensor, num_new_frames: int, cfg: SamplingConfig,
             actions: torch.Tensor | None = None, generator: torch.Generator | None = None,
             use_cache: bool | None = None, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate `num_new_frames` after `prompt` (B, Tp, S).

    `actions` (B, Tp + num_new_frames or more, A) when the model is action-conditioned (a whole window's may
    be passed: the row after the last new frame is read by action_placement "previous"). `use_cache` (default:
    whenever the model is causal) keeps the temporal keys/values of finished frames. `progress`: a bar
    per frame on stderr (one line every 30 s in a log). Returns (tokens
    (B, Tp + N, S) with the prompt, first-step logits of the new frames (B, N, S, K, V)).
    """
    b, num_prompt, s = prompt.shape
    total = num_prompt + num_new_frames
    if total > model.config.T:
        raise ValueError(f"prompt ({num_prompt}) + new frames ({num_new_frames}) exceed the model's T = {model.config.T}")
    tokens = torch.cat([prompt, torch.full((b, num_new_frames, s), model.mask_token_id,
                                           dtype=prompt.dtype, device=prompt.device)], dim=1)
    decoded = decode_frames(model, tokens, num_prompt, cfg, actions, generator, use_cache)
    if progress:
        decoded = progress_bar(decoded, total=num_new_frames, desc=f"generating {num_new_frames} frames x {b} examples",
                               unit="frame")
    return tokens, torch.stack([first_logits for _, _, first_logits in decoded], dim=1)


def progress_bar(iterable, **kwargs) -> tqdm:
    """A progress bar on stderr for a long phase (generation, evaluation): live on a terminal, one line
    every 30 s in a log file, so that logs and scripts/main.sh show it without flooding."""
    return tqdm(iterable, mininterval=0.5 if sys.stderr.isatty() else 30, **kwargs)
