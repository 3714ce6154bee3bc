"""The evaluation loop, one for training, scripts/evaluate.py and the studies: scores every val window with
genie/evaluation/scores.py and turns the sums into one report (totals, per-frame and per-horizon arrays);
genie/evaluation/report.py writes and formats it."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from genie.data import DataOptions, challenge_stride, open_dataset, open_eval_dataset, resolve_data_dirs
from genie.data.tokenizers import tokenizer_from_metadata
from genie.decoding import progress_bar
from genie.evaluation.scores import EvalOptions, PixelDecoder, psnr, score_windows, unigram_log_probs
from genie.masking.collators import stack_features
from genie.model.stmaskgit import STMaskGIT
from genie.protocols import MaskGITModel, TokenDataset


# sum key -> report name; each becomes a total and a per-frame array
_PER_FRAME = {"tf_ce": "cross_entropy", "tf_correct": "accuracy", "tf_argmax_correct": "argmax_accuracy",
              "copy_previous_correct": "copy_previous_accuracy", "unigram_ce": "unigram_cross_entropy",
              "unigram_correct": "unigram_accuracy", "block_ce": "block_cross_entropy",
              "block_argmax_correct": "block_argmax_accuracy"}


def pixel_decoder(metadata: dict, side: int, data_dir: str | Path | None = None
                  ) -> tuple[PixelDecoder | None, float | None]:
    """Token -> pixel decoding and the pixel peak value, for data whose metadata names a tokenizer (the
    built-in world's, or a codebook beside the data in `data_dir`); (None, None) for other data."""
    tokenizer = tokenizer_from_metadata(metadata, data_dir)
    if tokenizer is None:
        return None, None

    def decode(tokens: torch.Tensor) -> torch.Tensor:
        grid = tokens.reshape(*tokens.shape[:-1], side, side).cpu().numpy()
        return torch.from_numpy(tokenizer.decode(grid)).reshape(*tokens.shape[:-1], -1)
    return decode, float(tokenizer.peak)


def options_for_dataset(options: EvalOptions, dataset: TokenDataset) -> EvalOptions:
    """The scoring the data format declares (genie/protocols.py `TokenDataset`): which frames are scored,
    whether they are also scored all masked at once, and the rollout prompt it fixes."""
    return dataclasses.replace(options, first_frame=dataset.first_scored_frame,
                               block_masked=options.block_masked or dataset.scores_block_masked,
                               num_prompt_frames=options.num_prompt_frames or dataset.rollout_prompt_frames)


# sum key -> report name of the scores also reported over changed and static tokens (changed_<name>, static_<name>)
_SPLIT = {"tf_ce": "cross_entropy", "tf_correct": "accuracy", "tf_argmax_correct": "argmax_accuracy",
          "copy_previous_correct": "copy_previous_accuracy", "unigram_ce": "unigram_cross_entropy",
          "unigram_correct": "unigram_accuracy"}


def accumulate(totals: dict[str, torch.Tensor], sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add per-window sums (B, ...) of one batch into running totals over windows."""
    for key, value in sums.items():
        totals[key] = totals.get(key, 0) + value.sum(dim=0)
    return totals


def summarize(totals: dict[str, torch.Tensor], num_windows: int, tokens_per_frame: int,
              pixels_per_frame: int | None = None, peak: float | None = None, first_frame: int = 1) -> dict[str, Any]:
    """Totals over windows -> the report: means over tokens, per scored frame (t = first_frame..T-1)
    and per horizon."""
    frame_tokens = num_windows * tokens_per_frame
    num_frames = len(totals["tf_ce"])
    report: dict[str, Any] = {"num_windows": num_windows, "frames_scored": num_frames, "first_frame": first_frame,
                              "num_tokens": frame_tokens * num_frames}
    for key, name in _PER_FRAME.items():
        if key in totals:
            report[name] = float(totals[key].sum()) / (frame_tokens * num_frames)
            report[f"{name}_per_frame"] = (totals[key] / frame_tokens).tolist()
    if "changed_tokens" in totals:
        report.update(_summarize_dynamics(totals, frame_tokens * num_frames, frame_tokens))
    if "shuffled_windows" in totals:
        report.update(_summarize_action_sensitivity(totals, tokens_per_frame * num_frames))
    if "tf_seconds" in totals:
        report["seconds_per_frame"] = float(totals["tf_seconds"].sum()) / (num_windows * num_frames)
    if "rollout_correct" in totals:
        report["rollout"] = _summarize_rollout(totals, frame_tokens, num_windows, pixels_per_frame, peak)
    return report


def _mean(total: torch.Tensor, count: float) -> float | None:
    return float(total.sum()) / count if count else None


def _summarize_dynamics(totals, num_tokens: int, frame_tokens: int) -> dict[str, Any]:
    """Scores over the tokens that change from the previous frame and over the static rest."""
    changed = float(totals["changed_tokens"].sum())
    dynamics = {"changed_fraction": changed / num_tokens,
                "changed_fraction_per_frame": (totals["changed_tokens"] / frame_tokens).tolist()}
    for key, name in _SPLIT.items():
        if f"{key}_changed" in totals:
            dynamics[f"changed_{name}"] = _mean(totals[f"{key}_changed"], changed)
            dynamics[f"static_{name}"] = _mean(totals[f"{key}_static"], num_tokens - changed)
    return dynamics


def _summarize_action_sensitivity(totals, tokens_per_window: int) -> dict[str, Any]:
    """CE with shuffled actions, and its excess over the true-action CE on the same windows (0 for a
    model that ignores its actions), on all tokens, on changed ones, and on the changed tokens of frames
    whose action differs from the previous frame's (where only the action tells the change)."""
    windows = float(totals["shuffled_windows"])
    tokens, changed = windows * tokens_per_window, float(totals["shuffled_changed_tokens"].sum())
    if not windows:
        return {"action_sensitivity": None, "action_sensitivity_windows": 0}
    shuffled, true = _mean(totals["shuffled_ce"], tokens), _mean(totals["shuffled_true_ce"], tokens)
    result = {"action_sensitivity_windows": int(windows), "shuffled_actions_cross_entropy": shuffled,
              "action_sensitivity": shuffled - true}
    if changed:
        shuffled_changed = _mean(totals["shuffled_ce_changed"], changed)
        result.update(changed_shuffled_actions_cross_entropy=shuffled_changed,
                      changed_action_sensitivity=shuffled_changed - _mean(totals["shuffled_true_ce_changed"], changed))
        result["changed_action_sensitivity_per_frame"] = [  # where in the window the actions are read
            (float(s - t) / float(n) if n else None) for s, t, n in
            zip(totals["shuffled_ce_changed"], totals["shuffled_true_ce_changed"], totals["shuffled_changed_tokens"])]
    at_new_action = float(totals["new_action_changed_tokens"].sum())
    if at_new_action:
        true_ce = _mean(totals["new_action_true_ce_changed"], at_new_action)
        result.update(new_action_changed_tokens=int(at_new_action), new_action_changed_cross_entropy=true_ce,
                      new_action_changed_action_sensitivity=_mean(totals["new_action_shuffled_ce_changed"],
                                                                  at_new_action) - true_ce)
    return result


def _summarize_rollout(totals, frame_tokens, num_windows, pixels_per_frame, peak) -> dict[str, Any]:
    horizons = len(totals["rollout_correct"])
    rollout = {"horizons": list(range(1, horizons + 1)),
               "accuracy_per_horizon": (totals["rollout_correct"] / frame_tokens).tolist(),
               "copy_accuracy_per_horizon": (totals["copy_correct"] / frame_tokens).tolist()}
    if "most_frequent_correct" in totals:
        rollout["most_frequent_accuracy_per_horizon"] = (totals["most_frequent_correct"] / frame_tokens).tolist()
    if "rollout_changed" in totals:
        changed = totals["rollout_changed"]
        rollout["changed_fraction_per_horizon"] = (changed / frame_tokens).tolist()
        for key, name in (("rollout_correct", "changed_accuracy"), ("copy_correct", "changed_copy_accuracy"),
                          ("most_frequent_correct", "changed_most_frequent_accuracy")):
            if f"{key}_changed" in totals:
                rollout[f"{name}_per_horizon"] = [float(c) / float(n) if n else None
                                                  for c, n in zip(totals[f"{key}_changed"], changed)]
    for name in [k for k in rollout if k.endswith("_per_horizon") and "psnr" not in k]:
        values = [v for v in rollout[name] if v is not None]
        rollout[name[:-len("_per_horizon")]] = float(np.mean(values)) if values else None
    if "rollout_sq_err" in totals and pixels_per_frame:
        # PSNR of the mean squared error over all windows at a horizon (a per-window mean would be
        # infinite as soon as one window is predicted exactly).
        for key, name in (("rollout_sq_err", "psnr_per_horizon"), ("copy_sq_err", "copy_psnr_per_horizon")):
            rollout[name] = [psnr(float(e) / (num_windows * pixels_per_frame), peak) for e in totals[key]]
    return rollout


def training_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The flat scalars logged as val/... during training."""
    names = {"cross_entropy": "tf_cross_entropy", "accuracy": "tf_accuracy", "argmax_accuracy": "tf_argmax_accuracy",
             "copy_previous_accuracy": "copy_previous_accuracy", "unigram_cross_entropy": "unigram_cross_entropy",
             "unigram_accuracy": "most_frequent_accuracy", "changed_fraction": "changed_fraction",
             "changed_cross_entropy": "changed_tf_cross_entropy", "changed_accuracy": "changed_tf_accuracy",
             "changed_unigram_cross_entropy": "changed_unigram_cross_entropy",
             "changed_unigram_accuracy": "changed_most_frequent_accuracy",
             "action_sensitivity": "action_sensitivity", "changed_action_sensitivity": "changed_action_sensitivity"}
    metrics = {new: report[old] for old, new in names.items() if report.get(old) is not None}
    if "rollout" in report:
        metrics["rollout_accuracy"] = report["rollout"]["accuracy"]
        metrics["rollout_accuracy_h1"] = report["rollout"]["accuracy_per_horizon"][0]
        metrics["rollout_copy_accuracy_h1"] = report["rollout"]["copy_accuracy_per_horizon"][0]
    return metrics


def timed_scores(model: MaskGITModel, tokens: torch.Tensor, actions: torch.Tensor | None, options: EvalOptions,
                 batch_index: int, log_probs: np.ndarray | None, decode_pixels: PixelDecoder | None
                 ) -> dict[str, torch.Tensor]:
    """score_windows plus each window's share of the wall time (tf_seconds), for s/frame."""
    synchronize = torch.cuda.synchronize if tokens.is_cuda else (lambda: None)
    synchronize()
    start = time.perf_counter()
    sums = score_windows(model, tokens, actions, options, batch_index, log_probs, decode_pixels)
    synchronize()
    sums["tf_seconds"] = torch.full((tokens.shape[0],), (time.perf_counter() - start) / tokens.shape[0])
    return sums


@torch.no_grad()
def evaluate_batches(model: MaskGITModel, batches: Iterable[dict[str, torch.Tensor]], options: EvalOptions,
                     log_probs: np.ndarray | None = None, decode_pixels: PixelDecoder | None = None,
                     peak: float | None = None, gather=lambda x: x, device: torch.device | str = "cpu"
                     ) -> dict[str, Any]:
    """The report over `batches` of windows ({"input_ids": (B, T, S), "actions"?}); `gather` collects
    per-window rows from all processes (identity on one process)."""
    totals: dict[str, torch.Tensor] = {}
    per_window: dict[str, list[torch.Tensor]] = {}
    num_windows, tokens_per_frame = 0, None
    for index, batch in enumerate(batches):
        tokens = batch["input_ids"].to(device)
        actions = batch["actions"].to(device) if "actions" in batch else None
        sums = timed_scores(model, tokens, actions, options, index, log_probs, decode_pixels)
        sums = {k: gather(v.to(device)).double().cpu() for k, v in sums.items()}
        accumulate(totals, sums)
        for key in MARGIN_KEYS & set(sums):  # each window's changed-token sums, for the margins' intervals
            per_window.setdefault(key, []).append(sums[key].reshape(len(sums[key]), -1).sum(dim=1))
        num_windows += len(sums["tf_ce"])
        tokens_per_frame = tokens.shape[-1]
    if not num_windows:
        raise ValueError("no validation window was evaluated")
    pixels = None if decode_pixels is None else decode_pixels(tokens[:1, :1].cpu()).shape[-1]
    report = summarize(totals, num_windows, tokens_per_frame, pixels, peak, options.first_frame)
    report["changed_margins"] = changed_margins({k: torch.cat(v).numpy() for k, v in per_window.items()}, options.seed)
    return report


# (model's per-window sum, reference's, what the margin is called) on the changed tokens
MARGINS = (("tf_ce_changed", "unigram_ce_changed", "cross_entropy_vs_unigram"),
           ("tf_correct_changed", "unigram_correct_changed", "accuracy_vs_most_frequent"),
           ("tf_argmax_correct_changed", "unigram_correct_changed", "argmax_accuracy_vs_most_frequent"))
MARGIN_KEYS = {key for margin in MARGINS for key in margin[:2]} | {"changed_tokens"}


def changed_margins(per_window: dict[str, np.ndarray], seed: int, resamples: int = 2000) -> dict[str, Any]:
    """The model's margin over each reference on the changed tokens (model - reference, per changed
    token) with a 95% bootstrap interval over windows (windows resampled with replacement, seeded), and
    how many windows and changed tokens it rests on: a small evaluation says how little it shows."""
    changed = per_window.get("changed_tokens")
    if changed is None or changed.sum() == 0:
        return {}
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(changed), size=(resamples, len(changed)))
    denominators = changed[draws].sum(axis=1)
    margins = {}
    for model_key, reference_key, name in MARGINS:
        if model_key in per_window and reference_key in per_window:
            difference = per_window[model_key] - per_window[reference_key]
            boot = difference[draws].sum(axis=1)[denominators > 0] / denominators[denominators > 0]
            margins[name] = {"margin": float(difference.sum() / changed.sum()), "low": float(np.percentile(boot, 2.5)),
                             "high": float(np.percentile(boot, 97.5)), "windows": int(len(changed)),
                             "changed_tokens": int(changed.sum())}
    return margins


def dataset_batches(dataset, batch_size: int, max_examples: int | None = None, progress: bool = False):
    """Batches of the first `max_examples` windows of `dataset`, in order; with `progress`, a bar on stderr
    (in a log that is not a terminal, one line every 30 s)."""
    count = len(dataset) if max_examples is None else min(max_examples, len(dataset))
    starts = range(0, count, batch_size)
    if progress:
        starts = progress_bar(starts, desc=f"evaluating {count} windows", unit="batch")
    for start in starts:
        yield stack_features([dataset[i] for i in range(start, min(start + batch_size, count))])


def evaluate_checkpoint(checkpoint_dir: str | Path, train_data_dir: str | Path | None = None,
                        val_data_dir: str | Path | None = None, options: EvalOptions | None = None,
                        batch_size: int = 8, max_examples: int | None = None, stride: int | None = None,
                        data: DataOptions | None = None, log_probs: np.ndarray | None = None) -> dict[str, Any]:
    """The full report of a saved model on a val split (built-in data by default): teacher-forced
    metric, rollouts, and the unigram and copy references on the same windows. Windows are the
    config's T frames, non-overlapping, at 2 Hz unless `stride` is given. `log_probs`: the training
    unigram when the caller has it already (several checkpoints of one run share it), else it is read."""
    options = options or EvalOptions()
    model = STMaskGIT.from_pretrained(checkpoint_dir).eval()
    config = model.config
    if options.rollout and not options.loss_only:
        options.prompt_frames(config.T, config.num_prompt_frames)  # a wrong --num_prompt_frames fails before any work
    data = (data or DataOptions()).with_world_of(checkpoint_dir)
    train_dir, val_dir = resolve_data_dirs(train_data_dir, val_data_dir, config, data)
    val_set = open_eval_dataset(val_dir, config, stride or challenge_stride(val_dir, data), data=data)
    options = options_for_dataset(options, val_set)
    if log_probs is None:
        log_probs = unigram_log_probs(open_dataset(train_dir, config, data=data).frame_arrays(), config.image_vocab_size)
    decode_pixels, peak = pixel_decoder(val_set.metadata, config.h, val_set.data_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report = evaluate_batches(model.to(device), dataset_batches(val_set, batch_size, max_examples, progress=True), options,
                              log_probs, decode_pixels, peak, device=device)
    report.update(checkpoint=str(checkpoint_dir), val_data_dir=str(val_dir), train_data_dir=str(train_dir),
                  stride=val_set.stride, window=val_set.window_size, device=device,
                  sampling=vars(options.sampling), seed=options.seed, loss_only=options.loss_only)
    return report
