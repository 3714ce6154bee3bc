"""Training objectives: what differs between the two stages of the one training loop.

An objective turns a batch of clean windows into model inputs (masked input, labels, loss_mask with
True = masked = scored), picks the temporal attention mode, and evaluates. The mask randomness of a
batch is a pure function of (seed, optimizer step, micro-batch) and is drawn for the global batch, so
masks do not depend on DataLoader workers or the number of processes, survive resume exactly, and
follow the optimizer step under gradient accumulation.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import numpy as np
import torch

from genie.errors import ConfigError
from genie.evaluation.loop import evaluate_batches, training_metrics
from genie.evaluation.scores import EvalOptions
from genie.masking.collators import get_masked_pretrain_collator, get_maskgit_collator
from genie.masking.masks import changed_tokens
from genie.masking.schedules import training_progress
from genie.masking.seeding import batch_generator
from genie.model.config import GenieConfig
from genie.model.factorization import unfactorize_token_ids
from genie.model.stmaskgit import STMaskGIT, token_cross_entropy


def make_global_batch(objective: "Objective", batch: dict[str, torch.Tensor], step: int, total_steps: int,
                      generator: torch.Generator, process_index: int, num_processes: int) -> dict[str, torch.Tensor]:
    """Mask this process's share of the global batch exactly as one process would mask the whole of it.

    The local windows are placed at their rows of a global batch (the other rows are zeros), the
    objective masks that, and this process keeps its rows: masks and corruption then do not depend on
    how many processes share the batch, and all processes follow the same schedule.
    """
    if num_processes == 1:
        return objective.weigh_changed_tokens(objective.make_batch(batch, step=step, total_steps=total_steps,
                                                                   generator=generator))
    local = batch["input_ids"].shape[0]
    rows = slice(process_index * local, (process_index + 1) * local)
    padded = {}
    for key, value in batch.items():
        padded[key] = value.new_zeros((local * num_processes, *value.shape[1:]))
        padded[key][rows] = value
    global_batch = objective.weigh_changed_tokens(objective.make_batch(padded, step=step, total_steps=total_steps,
                                                                       generator=generator))
    out = {key: value[rows] for key, value in global_batch.items()}
    # Each process divides by its share of the global count (or weight) of scored tokens, so that the
    # average of the processes' gradients is the gradient of the global mean loss.
    scored = global_batch["loss_mask"].sum().float() if "loss_weights" not in global_batch else \
        (global_batch["loss_mask"] * global_batch["loss_weights"]).sum()
    out["loss_denominator"] = scored / num_processes
    return out


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class Objective:
    name: str = "objective"
    temporal_attention: str = "causal"  # the trainer sets the model's temporal attention to this
    final_model_dirname: str = "final_model"
    final_evaluation_is_full: bool = True  # the final evaluation samples, rolls out and shuffles actions
    result_note: str = ""  # said before an evaluation's result line

    def __init__(self, config: GenieConfig, changed_token_loss_weight: float = 1.0):
        self.config = config
        self.changed_token_loss_weight = changed_token_loss_weight
        self.last_report: dict[str, Any] | None = None  # the full report of the latest evaluation
        self.last_scope = "every frame"  # the frames its teacher-forced CE covers (cheap_scope, or every frame)

    def weigh_changed_tokens(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """With a changed-token loss weight w != 1, the loss becomes a weighted mean over the scored
        tokens: weight w where the true token differs from the previous frame's, 1 elsewhere. Unlike a
        mask that depends on the change, the weights never reach the model's input."""
        if self.changed_token_loss_weight == 1.0:
            return inputs
        changed = changed_tokens(inputs["labels"]).float()
        return {**inputs, "loss_weights": 1.0 + (self.changed_token_loss_weight - 1.0) * changed}

    def make_batch(self, batch: dict[str, torch.Tensor], step: int, total_steps: int,
                   generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Model inputs for clean windows at optimizer step `step` of the run's `total_steps` (schedules
        follow them); loss_mask True = masked = scored."""
        raise NotImplementedError

    def step_metrics(self, step: int, total_steps: int) -> dict[str, float]:
        """Scalars to log with optimizer step `step` of `total_steps` (e.g. the mask ratio it used)."""
        return {}

    def describe(self) -> str:
        """One line for the start banner: how batches are masked and scored, the temporal attention."""
        weight = self.changed_token_loss_weight
        return f"temporal attention {self.temporal_attention}" + (
            f", changed tokens weighted {weight:g}x in the loss" if weight != 1.0 else "")

    def settings(self) -> dict[str, Any]:
        """The objective's own settings, which a resumed run must share (e.g. the mask schedule)."""
        weight = self.changed_token_loss_weight
        return {} if weight == 1.0 else {"changed_token_loss_weight": weight}  # older checkpoints lack the key

    def evaluate(self, model: STMaskGIT, batches: Iterable[dict[str, torch.Tensor]], gather, options: EvalOptions,
                 step: int = 0, log_probs: np.ndarray | None = None) -> dict[str, Any]:
        """Val metrics over `batches`; `options` (with its seed) say how windows are scored; `log_probs`,
        the unigram of the training tokens, gives the references."""
        raise NotImplementedError

    def cheap_scope(self) -> str:
        """What a cheap evaluation's teacher-forced CE covers, for the banner and the result line."""
        return "every frame"


class AutoregressiveObjective(Objective):
    """Stage 2: the reference's MaskGIT corruption and masking, causal in time, scored on masked tokens."""
    name = "autoregressive"
    temporal_attention = "causal"
    final_model_dirname = "final_model"

    def __init__(self, config: GenieConfig, changed_token_loss_weight: float = 1.0, dynamics_mask_focus: float = 0.0):
        super().__init__(config, changed_token_loss_weight)
        if config.num_prompt_frames >= config.T:
            # Loading such a config is fine (reference checkpoints have it); training on it is not:
            # the collator's clean prompt would cover the whole window.
            raise ConfigError(f"config field 'num_prompt_frames' = {config.num_prompt_frames} must be < T = {config.T} "
                              "to train stage 2 (frames after the prompt are the targets); lower it in the config")
        self.collator = get_maskgit_collator(config, dynamics_mask_focus)

    def describe(self) -> str:
        c, focus = self.config, self.collator.dynamics_focus
        return (f"next-frame prediction, MaskGIT masking (frames from {c.num_prompt_frames} or 1, cos-distributed "
                f"ratios{f', changed tokens favoured with focus {focus:g}' if focus else ''}), corruption up to "
                f"{c.max_corrupt_rate:g}, {super().describe()}")

    def settings(self) -> dict[str, Any]:
        focus = self.collator.dynamics_focus
        return {**super().settings(), **({"dynamics_mask_focus": focus} if focus else {})}

    def make_batch(self, batch, step, total_steps, generator):
        return self.collator(batch, generator=generator)

    def evaluate(self, model, batches, gather, options, step=0, log_probs=None):
        """Val loss under the training corruption (fixed draws), the teacher-forced challenge metric and
        rollouts (genie/evaluation/loop.py, the same functions as scripts/evaluate.py).

        `gather` collects per-window rows from all processes, each val window exactly once.
        """
        loss_sums = torch.zeros(2, dtype=torch.float64)  # cross-entropy sum, scored tokens
        device = model.pos_embed_TSC.device

        def with_val_loss(batches):
            nonlocal loss_sums
            for index, batch in enumerate(batches):
                inputs = to_device(self.collator(batch, generator=batch_generator(options.seed, 0, index, stream=1)),
                                   device)
                loss_sums += gather(masked_loss_rows(model, inputs)[0][:, [0, 2]]).double().cpu().sum(0)
                yield batch

        report = self.last_report = evaluate_batches(model, with_val_loss(batches), options, log_probs, gather=gather,
                                                     device=device)
        loss_sum, scored = loss_sums.tolist()
        return {"loss": loss_sum / max(scored, 1), **training_metrics(report), "num_windows_tokens": report["num_tokens"]}


def masked_loss_rows(model: STMaskGIT, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per window (B, 3): summed cross-entropy over its scored tokens, correct scored tokens, their
    number; and the logits."""
    logits = model.compute_logits(inputs["input_ids"], actions=inputs.get("actions"))
    token_ce, token_correct = token_cross_entropy(logits, inputs["labels"], model.config)
    weights = inputs["loss_mask"].to(token_ce.dtype)
    rows = torch.stack([(token_ce * weights).sum(dim=(1, 2)), (token_correct * weights).sum(dim=(1, 2)),
                        weights.sum(dim=(1, 2))], dim=1)
    return rows, logits


class MaskedPretrainObjective(Objective):
    """Stage 1: per-sample, per-frame masks at the scheduled ratio; loss on masked tokens only;
    bidirectional temporal attention unless the config asks for causal (ablation)."""
    name = "masked_pretrain"
    final_model_dirname = "masked_pretrain_final"
    # Stage 1 is scored as a next-frame predictor by its CE; sampling and rollouts are stage 2's (--eval_full).
    final_evaluation_is_full = False
    result_note = (" (stage 1 scored as a next-frame predictor, a task it is not trained for: its masked-reconstruction "
                   "losses are in metrics.jsonl, and stage 2 is what learns next frames)")

    def __init__(self, config: GenieConfig, masking, picture_writer=None, changed_token_loss_weight: float = 1.0):
        super().__init__(config, changed_token_loss_weight)
        masking.check_scores_tokens(config.S)
        self.masking = masking
        self.temporal_attention = masking.temporal_attention
        self.collator = get_masked_pretrain_collator(masking, config)
        self.picture_writer = picture_writer  # callable(step, input_ids, predictions, labels, ratio) -> Path, or None

    def make_batch(self, batch, step, total_steps, generator):
        return self.collator(batch, generator=generator, progress=training_progress(step, total_steps))

    def step_metrics(self, step, total_steps):
        return {"mask_ratio": self.collator.mask_ratio(training_progress(step, total_steps))}

    def describe(self) -> str:
        m = self.masking
        schedule = (f"{m.mask_schedule} {m.initial_mask_ratio:g} -> {m.final_mask_ratio:g}"
                    + (f" (k {m.exponential_k:g})" if m.mask_schedule == "exponential" else ""))
        extras = [f"focus {m.dynamics_focus:g}" if m.mask_pattern == "dynamics" else None,
                  f"{m.block_count} blocks" if m.mask_pattern in ("block", "tube") else None,
                  f"every {m.prompt_frame_period}th frame visible" if m.prompt_frame_period else None,
                  f"lattice stride {m.lattice_stride} visible" if m.lattice_stride else None,
                  "frame 0 masked too" if m.mask_all_frames else "frame 0 visible"]
        return (f"masked pretraining, mask ratio {schedule}, pattern {m.mask_pattern} "
                f"({', '.join(e for e in extras if e)}), {super().describe()}")

    def settings(self) -> dict[str, Any]:
        masking = {f"masking.{k}": v for k, v in vars(self.masking).items()
                   if k != "dynamics_focus" or self.masking.mask_pattern == "dynamics"}  # older checkpoints lack it
        return {**super().settings(), **masking}

    def _cheap_scored_frames(self, options: EvalOptions) -> EvalOptions:
        """A bidirectional model has no KV cache: each frame it scores costs a whole-window pass. So a
        cheap evaluation scores each window's last frame only, from the T-1 true frames before it (one
        pass instead of T-1; v2.0's block-masked pass, a second one, is left out); --eval_full scores
        every frame."""
        if self.cheap_scope() == "every frame":
            return options
        return dataclasses.replace(options, first_frame=max(options.first_frame, self.config.T - 1),
                                   block_masked=False)

    def cheap_scope(self):
        return "every frame" if self.temporal_attention == "causal" else "each window's last frame"

    def evaluate(self, model, batches, gather, options, step=0, log_probs=None):
        """Masked-reconstruction loss and accuracy at fixed ratios (comparable across schedules), plus
        the teacher-forced metric (on the last frame only in a cheap evaluation) and, in a full one,
        rollouts (genie/evaluation/loop.py)."""
        if options.loss_only:
            options = self._cheap_scored_frames(options)
        self.last_scope = self.cheap_scope() if options.loss_only else "every frame"
        ratios = self.masking.ratios_for_eval()
        sums = torch.zeros(len(ratios), 3, dtype=torch.float64)  # ce, correct, scored per ratio
        pictures = []
        device = model.pos_embed_TSC.device

        def with_masked_loss(batches):
            for index, batch in enumerate(batches):
                for r, ratio in enumerate(ratios):
                    generator = batch_generator(options.seed, 0, index, stream=2 + r)
                    inputs = to_device(self.collator(batch, generator=generator, ratio=ratio), device)
                    rows, logits = masked_loss_rows(model, inputs)
                    sums[r] += gather(rows).double().cpu().sum(0)
                    if index == 0 and r == len(ratios) // 2 and self.picture_writer is not None:
                        pictures.append(self._draw(model, step, inputs, logits, ratio))
                yield batch

        report = self.last_report = evaluate_batches(model, with_masked_loss(batches), options, log_probs, gather=gather,
                                                     device=device)
        metrics = {}
        for ratio, (ce, correct, scored) in zip(ratios, sums.tolist()):
            metrics[f"masked_loss@{ratio:g}"] = ce / max(scored, 1)
            metrics[f"masked_accuracy@{ratio:g}"] = correct / max(scored, 1)
        metrics["loss"] = sum(metrics[f"masked_loss@{r:g}"] for r in ratios) / len(ratios)
        metrics.update(training_metrics(report))
        if pictures:
            metrics["picture"] = pictures[0]  # the trainer's logger sends it to the trackers as an image
        return metrics

    def _draw(self, model, step, inputs, logits, ratio):
        """The picture of masked input | prediction | truth for the first val windows; returns its path."""
        predicted = unfactorize_token_ids(logits.argmax(-1), model.config.num_factored_vocabs,
                                          model.config.factored_vocab_size)
        return self.picture_writer(step, inputs["input_ids"], predicted, inputs["labels"], ratio)
