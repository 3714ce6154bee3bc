"""The one training loop behind both stages (masked pretraining and autoregressive training), on Accelerate.

Split as torchtitan's trainer is: `train()` is the outer loop (resume, steps, evaluation,
checkpoints, stop requests), `train_step()` one optimizer step over its micro-batches,
`forward_backward_step()` forward, loss and backward. The objective (genie/training/objectives.py) is the
only thing that differs between the stages. The run folder's bookkeeping (lock, config.json, resume
lookup, checkpoints) is `RunFolder`'s (genie/checkpointing/run_folder.py); its layout: docs/architecture.md."""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DataLoaderConfiguration, DistributedType
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import get_scheduler

from genie.checkpointing.run_folder import RunFolder, check_output_dir
from genie.data import open_eval_dataset, open_train_dataset, resolve_data_dirs
from genie.data.subsets import WithoutActions, drop_actions_note, training_view
from genie.errors import ConfigError, NonFiniteLossError, NothingToLearnError
from genie.evaluation.loop import options_for_dataset
from genie.evaluation.report import headline
from genie.evaluation.scores import EvalOptions, unigram_log_probs
from genie.masking.collators import stack_features
from genie.masking.seeding import batch_generator
from genie.model.stmaskgit import STMaskGIT
from genie.training.arguments import TrainingArguments
from genie.training.banner import start_banner
from genie.training.curriculum import first_frames
from genie.training.fsdp import full_parameters
from genie.training.objectives import Objective, make_global_batch, to_device
from genie.training.optimizer import build_optimizer
from genie.training.run_logging import (MetricsLogger, TrainingMeter, progress_line, tracker_names, tracker_notes,
                                         tracker_run_id)
from genie.training.stop_request import StopRequest


class Trainer:
    """Trains `model` with `objective` as `args` say. Set-up happens in the constructor, in the
    order that makes a wrong input fail before anything is written."""

    def __init__(self, args: TrainingArguments, objective: Objective, model: STMaskGIT,
                 run_info: dict[str, Any] | None = None):
        self.args, self.objective = args, objective
        self.output_dir = Path(args.output_dir)
        check_output_dir(self.output_dir, args.overwrite_output_dir, bool(args.resume_from_checkpoint))
        model.set_temporal_attention(objective.temporal_attention)
        self.config = model.config
        self.accelerator = self._build_accelerator()
        self.run_folder = RunFolder(self.output_dir, self.accelerator, args.overwrite_output_dir,
                                    args.resume_from_checkpoint)
        # An existing run folder is locked before anything in it is read (a resume racing an overwrite
        # must meet the lock, not a half-moved folder); a new one only once every input is checked.
        if self.output_dir.is_dir():
            self.run_folder.lock()
        try:
            self._build(model)
            self.run_folder.lock()  # a new folder (held already if it existed)
            self.run_folder.create(self._run_config(run_info or {}), self.step)
            self._init_trackers()
        except BaseException:
            self.run_folder.close(failed=True)  # the lock goes; a run moved aside comes back
            raise
        self.logger = MetricsLogger(self.output_dir / "metrics.jsonl", self.accelerator, self.run_folder.writing)
        self.progress: tqdm | None = None
        self.stop: StopRequest | None = None
        self.meter = TrainingMeter(self.accelerator.device)
        # Micro-batches of the current optimizer step with a non-finite loss / with no scored token.
        self.bad_batches = torch.zeros(2, dtype=torch.long, device=self.accelerator.device)
        self.skipped_steps = 0

    # ----- set-up -----
    def _build(self, model: STMaskGIT) -> None:
        """Data, resume point, model, loaders and schedule: everything checked before the folder is written."""
        args = self.args
        self.curriculum = args.frame_curriculum()
        self.curriculum.check(self.config.T)
        set_seed(args.seed)
        self.train_set, self.val_set = self._build_datasets()
        self.checkpoint = self.run_folder.find_checkpoint(self.objective.name)
        self.model, self.optimizer, self.train_loader, self.val_loader = self._build_model_and_loaders(model)
        self.unwrapped = self.accelerator.unwrap_model(self.model)
        # Only the training forward is compiled; saving and evaluation use the plain module.
        self.forward_model = torch.compile(self.model) if args.compile else self.model
        updates_per_epoch = max(len(self.train_loader) // args.gradient_accumulation_steps, 1)
        self.max_steps = args.max_train_steps or args.num_train_epochs * updates_per_epoch
        self.scheduler = self._build_scheduler()
        self.step, self.epoch, self.batches_done = 0, 0, 0
        if self.checkpoint is not None:
            self._resume(self.checkpoint)
        self.run_folder.note_replaced_runs()

    def _build_accelerator(self) -> Accelerator:
        log_with = tracker_names(self.args.report_to)
        if log_with and "wandb" in log_with:
            os.environ.setdefault("WANDB_DIR", self.args.output_dir)
        # Accelerate keeps its settings in a process-wide singleton; reset it so that several runs (an
        # ablation, the tests) can use different settings in one process. Distributed state is kept.
        AcceleratorState._reset_state()
        # Launched as several processes on a machine without a GPU: run data-parallel on the CPU (gloo).
        distributed_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
        if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("true", "1") and not torch.cuda.is_available():
            # Accelerate would either crash on every rank or silently train plain data-parallel.
            raise ConfigError("FSDP was requested (accelerate launch --use_fsdp or an FSDP config) but this machine "
                              "has no GPU; launch without FSDP (plain data-parallel runs on the CPU) or on GPUs")
        accelerator = Accelerator(
            cpu=distributed_cpu, gradient_accumulation_steps=self.args.gradient_accumulation_steps,
            mixed_precision=self.args.mixed_precision, log_with=log_with, project_dir=self.args.output_dir,
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        )
        if accelerator.is_fsdp2 and accelerator.state.fsdp_plugin.cpu_ram_efficient_loading:
            # Accelerate's rank-0 loading looks parameters up with a Transformers-model method and fails
            # on our root-level position embedding; every rank builds the model itself instead.
            accelerator.state.fsdp_plugin.cpu_ram_efficient_loading = False
            accelerator.print("FSDP: cpu_ram_efficient_loading turned off (not supported for this model)")
        return accelerator

    def _build_datasets(self) -> tuple[Dataset, Dataset]:
        args, config = self.args, self.config
        data = args.data_options()
        with self.accelerator.main_process_first():  # the built-in dataset is written once, by the main process
            train_dir, val_dir = resolve_data_dirs(args.train_data_dir, args.val_data_dir, config, data)
        if args.builtin_world is not None and args.train_data_dir and args.val_data_dir:
            self._note(f"--builtin_world {args.builtin_world} does nothing here: --train_data_dir and --val_data_dir "
                       "name the data")
        if args.drop_actions:  # no action file is read: the model's action input gets 'no action', NaN (WithoutActions)
            self._note(drop_actions_note(config, train_dir))
            config = config.replace(action_dims={})
        train = open_train_dataset(train_dir, config, args.stride, args.window_size, args.filter_overlaps, data)
        width = sum(self.config.action_dims.values())
        train, self.train_view = training_view(train, args.train_segment_fraction, args.drop_actions, args.seed, width)
        if "train_segments" in self.train_view:
            kept = self.train_view["train_segments"]
            self._note(f"--train_segment_fraction {args.train_segment_fraction:g}: training on {kept['segments']} of "
                       f"the {kept['of_segments']} segments of {train_dir} ({kept['windows']} of {kept['of_windows']} "
                       "windows)")
        # Validation windows never share frames (as in the reference evaluation); no actions if training has none.
        val = open_eval_dataset(val_dir, config, args.stride, args.window_size, data)
        return train, WithoutActions(val, width) if args.drop_actions else val

    def _note(self, text: str | None) -> None:
        if text:
            self.accelerator.print(text if text.startswith("note: ") else f"note: {text}")

    def _run_config(self, run_info: dict[str, Any]) -> dict[str, Any]:
        """config.json of the run folder: the run's arguments, model config, data and what really ran."""
        run_config = {"stage": self.objective.name, "args": dataclasses.asdict(self.args),
                      "genie_config": self.config.to_dict(), "train_data_dir": str(self.train_set.data_dir),
                      "val_data_dir": str(self.val_set.data_dir), "num_processes": self.accelerator.num_processes,
                      "mixed_precision": self.accelerator.mixed_precision, "device": str(self.accelerator.device),
                      "distributed_type": self.accelerator.distributed_type.value, **self.train_view, **run_info}
        if self.accelerator.distributed_type == DistributedType.FSDP:
            run_config["fsdp_version"] = 2 if self.accelerator.is_fsdp2 else 1
        run_config["tracker_run_id"] = self.tracker_run_id
        return run_config

    def run_fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must share with the run that resumes it: the stage and its settings, the
        model config and the arguments that fix the data order."""
        args = self.args
        fingerprint = {"stage": self.objective.name, **self.objective.settings(),
                       "per_device_train_batch_size": args.per_device_train_batch_size,
                       "gradient_accumulation_steps": args.gradient_accumulation_steps, "seed": args.seed,
                       "stride": args.stride, "window_size": self.train_set.window_size,
                       "filter_overlaps": args.filter_overlaps, "num_processes": self.accelerator.num_processes,
                       "train_data_dir": str(Path(self.train_set.data_dir).resolve())}
        if args.train_segment_fraction < 1 or args.drop_actions:  # only then: older checkpoints lack the keys
            fingerprint |= {"train_segment_fraction": args.train_segment_fraction, "drop_actions": args.drop_actions}
        if self.curriculum.frames:  # the frames of every step: a resume must follow the same curriculum
            fingerprint |= {"curriculum_frames": list(self.curriculum.frames),
                            "curriculum_fractions": list(self.curriculum.fractions)}
        model = {f"model.{k}": v for k, v in self.config.without_later_defaults().items() if k != "temporal_attention"}
        return {**fingerprint, **model}

    def _build_model_and_loaders(self, model: STMaskGIT):
        args, accelerator = self.args, self.accelerator
        model.set_gradient_checkpointing(args.gradient_checkpointing)
        model.to(accelerator.device)  # before the optimizer, so that fused AdamW sees device parameters
        optimizer = build_optimizer(model, args)
        train_loader = DataLoader(self.train_set, batch_size=args.per_device_train_batch_size, shuffle=True,
                                  drop_last=True, collate_fn=stack_features, num_workers=args.dataloader_num_workers,
                                  pin_memory=torch.cuda.is_available(),
                                  persistent_workers=args.dataloader_num_workers > 0)
        val_loader = DataLoader(self.val_set, batch_size=args.per_device_eval_batch_size, shuffle=False,
                                collate_fn=stack_features)
        if len(train_loader) == 0:
            raise ConfigError(f"{self.train_set.data_dir} has {len(self.train_set)} windows, fewer than one batch of "
                              f"{args.per_device_train_batch_size}; lower --per_device_train_batch_size")
        model, optimizer = accelerator.prepare(model, optimizer)
        # Batches stay on the CPU: masks are drawn there (from per-step generators), then the model
        # inputs are moved to the device once.
        train_loader = accelerator.prepare_data_loader(train_loader, device_placement=False)
        val_loader = accelerator.prepare_data_loader(val_loader, device_placement=False)
        return model, optimizer, train_loader, val_loader

    def _build_scheduler(self):
        # Stepped once per optimizer step, by us (not wrapped: Accelerate would step it once per
        # process). Its state is saved as JSON in trainer_state.json, not registered with Accelerate,
        # which would pickle it and unpickle it with weights_only=False on resume.
        return get_scheduler(self.args.lr_scheduler_type, self.optimizer, num_warmup_steps=self.args.num_warmup_steps,
                             num_training_steps=self.max_steps)

    @functools.cached_property
    def tracker_run_id(self) -> str:
        return tracker_run_id(self.output_dir, bool(self.args.resume_from_checkpoint))

    def _init_trackers(self) -> None:
        if not self.accelerator.log_with:
            return
        resuming = bool(self.args.resume_from_checkpoint) and self.step > 0
        scalars = {k: v for k, v in dataclasses.asdict(self.args).items() if isinstance(v, (int, float, str, bool))}
        # On resume the configuration is not stored again: TensorBoard would add a second hparams folder.
        wandb_settings = {"id": self.tracker_run_id, "resume": "allow"} | (
            {"name": self.args.run_name} if self.args.run_name else {})
        self.accelerator.init_trackers(self.args.tracker_project or f"genie-{self.objective.name}",
                                       config=None if resuming else scalars, init_kwargs={"wandb": wandb_settings})
        for line in tracker_notes(self.accelerator):
            self.accelerator.print(line)

    # ----- resumable state -----
    def state_dict(self) -> dict[str, Any]:
        """What trainer_state.json holds beside Accelerate's model / optimizer / RNG files."""
        return {"step": self.step, "epoch": self.epoch, "batches_done_in_epoch": self.batches_done,
                "max_steps": self.max_steps, "lr_scheduler": self.scheduler.state_dict(),
                "run": self.run_fingerprint()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.epoch, self.batches_done = state["step"], state["epoch"], state["batches_done_in_epoch"]
        self.scheduler.load_state_dict(state["lr_scheduler"])

    def _resume(self, checkpoint: Path) -> None:
        """Check that the checkpoint belongs to this kind of run, then load it; writes nothing."""
        self.load_state_dict(self.run_folder.load(checkpoint, self.run_fingerprint(), self.args.allow_resume_mismatch))
        self.accelerator.print(f"resumed from {checkpoint} at step {self.step}")

    # ----- predicates -----
    def should_log(self) -> bool:
        return self.step % self.args.log_every_n_steps == 0 or self.step == self.max_steps

    def should_evaluate(self) -> bool:
        return self.step % self.args.eval_every_n_steps == 0 and self.step < self.max_steps

    def should_checkpoint(self) -> bool:
        return self.step % self.args.checkpointing_steps == 0 and self.step < self.max_steps

    # ----- the loop -----
    def train(self) -> dict[str, Any]:
        """Run to max_steps (or a stop request); returns the final evaluation metrics."""
        self.stop = StopRequest(self.accelerator)
        self.accelerator.print(start_banner(self))
        self.progress = tqdm(total=self.max_steps, initial=self.step, desc=self.objective.name,
                             disable=not self.accelerator.is_local_main_process)
        self.model.train()
        while self.step < self.max_steps:
            batches = self._epoch_batches()
            while self.step < self.max_steps and self.train_step(batches):
                self._after_step()
                if self.stop.requested(check_all_processes=self.step % self.args.log_every_n_steps == 0):
                    return self._stop_with_checkpoint()
            if self.step < self.max_steps:  # the epoch ran out of batches
                self.epoch, self.batches_done = self.epoch + 1, 0
        self.progress.close()
        return self._finish()

    def _epoch_batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """The rest of the current epoch's batches (after resume: skipping those already trained on)."""
        self.train_loader.set_epoch(self.epoch)
        if self.batches_done:
            return iter(self.accelerator.skip_first_batches(self.train_loader, self.batches_done))
        return iter(self.train_loader)

    def train_step(self, batches: Iterator[dict[str, torch.Tensor]]) -> bool:
        """One optimizer step over its micro-batches; False when the epoch has no batch left."""
        accelerator = self.accelerator
        frames = self.window_frames()
        for micro_step, batch in enumerate(batches):
            self.batches_done += 1
            if frames < self.config.T:  # the curriculum's short windows, cut before masking
                batch = first_frames(batch, frames)
            generator = batch_generator(self.args.seed, self.step, micro_step)
            inputs = make_global_batch(self.objective, batch, self.step, self.max_steps, generator,
                                       accelerator.process_index, accelerator.num_processes)
            inputs = to_device(inputs, accelerator.device)
            with accelerator.accumulate(self.model):
                loss = self.forward_backward_step(inputs)
                if accelerator.sync_gradients:
                    self._optimizer_step()
                self.optimizer.zero_grad(set_to_none=True)
            tokens = inputs["input_ids"].numel() * accelerator.num_processes
            self.meter.add(loss, tokens)
            if accelerator.sync_gradients:
                self.scheduler.step()
                self.step += 1
                self.progress.update(1)
                return True
        return False

    def window_frames(self, step: int | None = None) -> int:
        """Frames per window at optimizer step `step` (default: the next one): T unless the curriculum
        shortens it; a function of the step alone, so resume and accumulation see the same count."""
        return self.curriculum.frames_at(self.step if step is None else step, self.max_steps, self.config.T)

    def forward_backward_step(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Forward, loss, backward of one micro-batch; returns the detached loss."""
        with self.accelerator.autocast():
            out = self.forward_model(**inputs)
        loss = out.loss.detach()
        scored = inputs["loss_denominator"] if "loss_denominator" in inputs else inputs["loss_mask"].sum()
        self.bad_batches += torch.stack([~torch.isfinite(loss), scored == 0])
        self.accelerator.backward(out.loss)
        return loss

    def _optimizer_step(self) -> None:
        """Clip and step, unless a micro-batch of this step had a non-finite loss (then stop or skip) or
        scored no token (then stop: the masking settings leave nothing to learn).

        Two counters per optimizer step cross to the host, so that a non-finite loss never reaches
        the weights (--no_nonfinite_check moves the check to logging steps)."""
        args = self.args
        nonfinite, unscored = self.accelerator.reduce(self.bad_batches, "sum").tolist() if args.nonfinite_check else (0, 0)
        self.bad_batches.zero_()
        if unscored:
            raise NothingToLearnError(f"step {self.step + 1}: a batch masks no token, so there is nothing to learn; "
                                      "raise the mask ratios or loosen --prompt_frame_period / --lattice_stride")
        bad = nonfinite > 0
        if bad and not args.skip_nonfinite:
            steps = self.run_folder.checkpoints()
            last = f"the last good one is {steps[0]}" if steps else "no checkpoint was written yet"
            raise NonFiniteLossError(f"non-finite loss at step {self.step + 1}; no checkpoint was written for it "
                                     f"({last}); lower --learning_rate, check the data, or pass --skip_nonfinite "
                                     "to skip such batches")
        if bad:
            self.skipped_steps += 1
            return
        if args.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(self.clipped_parameters(), args.max_grad_norm)
        self.optimizer.step()

    def clipped_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters gradient clipping measures: all, but the model's `no_action` vector in a run that
        withholds no action and places actions on their own frames. Its gradient is zero there, yet one more
        norm in the list would change how the total norm rounds: leaving it out keeps such runs bit-identical
        to the code before `no_action`."""
        no_action = self.accelerator.unwrap_model(self.model).no_action
        # Accelerate clips FSDP models (sharded norms, fp16 unscaling) only when given all their parameters.
        fsdp = self.accelerator.distributed_type == DistributedType.FSDP
        # no_action is trained where some frame gets no action: all of them (withheld), or each window's last
        # (actions placed on the frame before)
        no_action_trained = self.args.drop_actions or self.config.action_placement != "own"
        if no_action is None or no_action_trained or fsdp:
            return list(self.model.parameters())
        return [p for p in self.model.parameters() if p is not no_action]

    def _after_step(self) -> None:
        """Logging, evaluation and checkpoints due after the optimizer step just taken."""
        if self.should_log():
            self._log_training_metrics()
        elif used := self.objective.step_metrics(self.step - 1, self.max_steps):  # e.g. the mask ratio this update used
            self.logger.log({"step": self.step, **used})
            self.progress.set_postfix({k: round(v, 3) for k, v in used.items()})
        if self.should_evaluate():
            self.logger.log({"step": self.step, **{f"val/{k}": v for k, v in self.evaluate().items()}})
            self._print_result(f"step {self.step} validation")
        if self.should_checkpoint():
            self.save_checkpoint()

    def _log_training_metrics(self) -> None:
        # Logging steps read the loss back to the host (besides the non-finite check).
        loss_value = self.accelerator.reduce(self.meter.loss_sum, "mean").item() / self.meter.count
        if not math.isfinite(loss_value):  # only reachable with --no_nonfinite_check
            raise NonFiniteLossError(f"non-finite training loss in steps {self.step - self.args.log_every_n_steps + 1}"
                                     f"..{self.step}; lower --learning_rate or check the data")
        record = {"step": self.step, "train/loss": loss_value, "lr": self.scheduler.get_last_lr()[0],
                  "tokens_per_s": self.meter.tokens_per_second(), "skipped_nonfinite_steps": self.skipped_steps,
                  **({"window_frames": self.window_frames(self.step - 1)} if self.curriculum.frames else {}),
                  **self.objective.step_metrics(self.step - 1, self.max_steps)}
        self.logger.log(record)
        self.progress.set_postfix({k.split("/")[-1]: round(v, 4) for k, v in record.items()
                                   if k in ("train/loss", "mask_ratio")})
        if self.accelerator.is_main_process:
            seconds = self.meter.seconds_per_step(self.args.gradient_accumulation_steps)
            tqdm.write(progress_line(self.objective.name, self.step, self.max_steps, loss_value, seconds))
        self.meter.reset()

    def full_evaluation(self, final: bool) -> bool:
        """Whether an evaluation samples (MaskGIT accuracy), rolls out and shuffles actions. In training it
        scores only the loss and the teacher-forced CE with its references (one pass per frame; stage 1,
        bidirectional, on the last frame only) unless --eval_full; the final one of stage 2 is full unless --eval_loss_only."""
        wanted = self.args.eval_full or (final and self.objective.final_evaluation_is_full)
        return wanted and not self.args.eval_loss_only

    def evaluate(self, final: bool = False) -> dict[str, Any]:
        self.model.eval()
        batches = (b for _, b in zip(range(self.args.max_eval_steps), self.val_loader))
        full = self.full_evaluation(final)
        with torch.no_grad(), self.accelerator.autocast(), full_parameters(self.accelerator, self.model):
            options = options_for_dataset(EvalOptions(seed=self.args.seed, loss_only=not full,
                                                      action_sensitivity=full), self.val_set)
            metrics = self.objective.evaluate(self.unwrapped, batches, self.accelerator.gather_for_metrics, options,
                                              step=self.step, log_probs=self.train_unigram_log_probs)
        self.model.train()
        return metrics

    @functools.cached_property
    def train_unigram_log_probs(self) -> np.ndarray:
        """The unigram of the training tokens (read once): the references every evaluation prints."""
        return unigram_log_probs(self.train_set.frame_arrays(), self.unwrapped.config.image_vocab_size)

    # ----- saving and shutdown -----
    def save_checkpoint(self) -> None:
        """step_N/ with everything needed to resume exactly (genie/checkpointing/run_folder.py `RunFolder.save`)."""
        self.run_folder.save(self.step, self.state_dict(), self.unwrapped.config)

    def _stop_with_checkpoint(self) -> dict[str, Any]:
        self.save_checkpoint()
        self.accelerator.print(f"received {self.stop.signal_name}: saved {self.output_dir / f'step_{self.step}'}; "
                               f"continue with --output_dir {self.output_dir} --resume_from_checkpoint latest")
        return {"stopped_by": self.stop.signal_name, "step": self.step}

    def _finish(self) -> dict[str, Any]:
        """Final evaluation, last checkpoint and the final model in Hugging Face format."""
        self.accelerator.print(f"final validation ({self.args.max_eval_steps} batches), last checkpoint, final model")
        final_metrics = {f"val/{k}": v for k, v in self.evaluate(final=True).items()}
        self.logger.log({"step": self.step, **final_metrics})
        self.save_checkpoint()
        state_dict = self.accelerator.get_state_dict(self.model)  # collective: gathers sharded (FSDP) weights
        final_dir = self.run_folder.save_model(self.objective.final_model_dirname, self.unwrapped.config, state_dict)
        self.accelerator.print(f"saved final model to {final_dir}")
        self._print_result(f"final validation ({self.args.max_eval_steps} batches)")
        return final_metrics

    def _print_result(self, what: str) -> None:
        """One line on the console: the model against its references (the progress bar hides the log)."""
        if self.objective.last_report is not None and self.accelerator.is_main_process:
            scope = self.objective.last_scope
            scope = "" if scope == "every frame" else f", teacher-forced on {scope}"
            tqdm.write(f"{what}{self.objective.result_note}{scope}: {headline(self.objective.last_report)}")

    def close(self, failed: bool = False) -> None:
        """The single shutdown path, also after an error: signal handlers back, progress bar and trackers
        closed; a run replaced by --overwrite_output_dir is put back if this run failed before its first
        checkpoint."""
        if self.stop is not None:
            self.stop.restore()
        if self.progress is not None:
            self.progress.close()
        self.accelerator.end_training()
        self.run_folder.close(failed)


def run_training(args: TrainingArguments, objective: Objective, model: STMaskGIT,
                 run_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train `model` with `objective` and always shut down cleanly; returns the final evaluation metrics."""
    trainer = Trainer(args, objective, model, run_info)
    failed = True
    try:
        result = trainer.train()
        failed = False
        return result
    finally:
        trainer.close(failed)
