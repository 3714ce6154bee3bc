"""The one training loop behind train.py (stage 2) and masked_pretrain.py (stage 1), on Accelerate.

Run folder (DESIGN.md §6): config.json (the run), step_N/ (resumable: model, optimizer, LR scheduler,
RNG, trainer_state.json with the data position), <final model>/ in Hugging Face format, metrics.jsonl.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from data import RawTokenDataset, stack_features
from genie.checkpoint import CheckpointError, save_model_folder
from genie.config import ConfigError, GenieConfig
from genie.model import STMaskGIT
from genie.objectives import Objective, batch_generator, make_global_batch, to_device
from genie.run_logging import MetricsLogger
from genie.training_args import TrainingArguments

TRAINER_STATE = "trainer_state.json"


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class StopRequest:
    """SIGINT / SIGTERM ask the run to stop after the current optimizer step with a resumable checkpoint.

    With several processes the request is agreed through Accelerate's trigger at logging steps (a
    collective there is free: the loss is reduced anyway); one process checks its flag every step.
    """

    def __init__(self, accelerator: Accelerator):
        self.accelerator = accelerator
        self.signal_name: str | None = None
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signal_name = signal.Signals(signum).name

    def requested(self, check_all_processes: bool) -> bool:
        if self.accelerator.num_processes == 1:
            return self.signal_name is not None
        if not check_all_processes:
            return False
        if self.signal_name is not None:
            self.accelerator.set_trigger()
        if self.accelerator.check_trigger():
            self.signal_name = self.signal_name or "a stop request on another process"
            return True
        return False

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def resolve_data_dirs(train_dir: str | None, val_dir: str | None, config: GenieConfig) -> tuple[Path, Path]:
    """The train/val folders: the given ones, or the built-in dataset matching the config (made if missing)."""
    if train_dir and val_dir:
        return Path(train_dir), Path(val_dir)
    from scripts.builtin_dataset import builtin_dataset_dirs

    builtin_train, builtin_val = builtin_dataset_dirs(grid=config.h, vocab_size=config.image_vocab_size)
    return Path(train_dir or builtin_train), Path(val_dir or builtin_val)


def load_datasets(args: TrainingArguments, config: GenieConfig, accelerator: Accelerator
                  ) -> tuple[RawTokenDataset, RawTokenDataset]:
    window = args.window_size or config.T
    with accelerator.main_process_first():  # the built-in dataset is written once, by the main process
        train_dir, val_dir = resolve_data_dirs(args.train_data_dir, args.val_data_dir, config)
    train = RawTokenDataset(train_dir, window, args.stride, filter_overlaps=args.filter_overlaps,
                            action_dims=config.action_dims)
    # Validation windows never share frames, as in the reference evaluation.
    val = RawTokenDataset(val_dir, window, args.stride, filter_overlaps=True, action_dims=config.action_dims)
    train.check_compatible(config)
    val.check_compatible(config)
    return train, val


def prepare_output_dir(args: TrainingArguments) -> Path:
    """Refuse to mix two runs in one folder unless asked to overwrite or resume."""
    out = Path(args.output_dir)
    existing = out / "config.json"
    if existing.is_file() and not (args.overwrite_output_dir or args.resume_from_checkpoint):
        raise ConfigError(f"--output_dir {out} already holds a run; pass --resume_from_checkpoint latest to continue "
                          "it, --overwrite_output_dir to replace it, or choose another folder")
    if args.overwrite_output_dir and not args.resume_from_checkpoint and out.is_dir():
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def find_checkpoint(output_dir: Path, spec: str) -> Path:
    """`latest` -> the newest step_N/ of the run; otherwise the given folder, which must exist."""
    if spec == "latest":
        steps = sorted((p for p in output_dir.glob("step_*") if p.name.split("_")[1].isdigit()),
                       key=lambda p: int(p.name.split("_")[1]))
        if not steps:
            raise CheckpointError(f"--resume_from_checkpoint latest: {output_dir} has no step_N/ checkpoint yet")
        return steps[-1]
    path = Path(spec)
    if not (path / TRAINER_STATE).is_file():
        raise CheckpointError(f"--resume_from_checkpoint {path} is not a step_N/ checkpoint folder "
                              f"(no {TRAINER_STATE}); pass a step_N/ folder of a run or 'latest'")
    return path


def build_optimizer(model: torch.nn.Module, args: TrainingArguments) -> torch.optim.Optimizer:
    """AdamW (fused on GPU); weight decay only on Linear matrices (not biases, norms, embeddings, positions)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        is_matrix = param.ndim == 2 and not ("embed" in name)
        (decay if is_matrix else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.learning_rate, betas=(args.adam_beta_1, args.adam_beta_2),
                             eps=args.adam_eps, fused=next(model.parameters()).is_cuda)


def train(args: TrainingArguments, objective: Objective, model: STMaskGIT,
          run_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train `model` with `objective`; returns the final evaluation metrics."""
    model.set_temporal_attention(objective.temporal_attention)
    config = model.config
    log_with = {"none": None, "all": ["wandb", "tensorboard"]}.get(args.report_to, [args.report_to])
    if log_with and "wandb" in log_with:
        # Never prompt for a login: without credentials wandb runs offline into the run folder.
        if not os.environ.get("WANDB_API_KEY") and "WANDB_MODE" not in os.environ:
            os.environ["WANDB_MODE"] = "offline"
        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ.setdefault("WANDB_DIR", args.output_dir)
    # Accelerate keeps its settings in a process-wide singleton; reset it so that several runs (an
    # ablation, the tests) can use different settings in one process. Distributed state is kept.
    AcceleratorState._reset_state()
    # Launched as several processes on a machine without a GPU: run data-parallel on the CPU (gloo).
    distributed_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    accelerator = Accelerator(
        cpu=distributed_cpu,
        gradient_accumulation_steps=args.gradient_accumulation_steps, mixed_precision=args.mixed_precision,
        log_with=log_with, project_dir=args.output_dir,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    set_seed(args.seed)
    train_set, val_set = load_datasets(args, config, accelerator)
    run_config = {"stage": objective.name, "args": dataclasses.asdict(args), "genie_config": config.to_dict(),
                  "train_data_dir": str(train_set.data_dir), "val_data_dir": str(val_set.data_dir),
                  "num_processes": accelerator.num_processes, **(run_info or {})}
    output_dir = Path(args.output_dir)
    # Check the checkpoint before anything is written, so that a wrong path changes nothing.
    checkpoint = find_checkpoint(output_dir, args.resume_from_checkpoint) if args.resume_from_checkpoint else None
    if accelerator.is_main_process:
        prepare_output_dir(args)
        (output_dir / "config.json").write_text(json.dumps(run_config, indent=2) + "\n")
    accelerator.wait_for_everyone()

    model.set_gradient_checkpointing(args.gradient_checkpointing)
    model.to(accelerator.device)  # before the optimizer, so that fused AdamW sees device parameters
    optimizer = build_optimizer(model, args)
    train_loader = DataLoader(train_set, batch_size=args.per_device_train_batch_size, shuffle=True, drop_last=True,
                              collate_fn=stack_features, num_workers=args.dataloader_num_workers,
                              pin_memory=torch.cuda.is_available(),
                              persistent_workers=args.dataloader_num_workers > 0)
    val_loader = DataLoader(val_set, batch_size=args.per_device_eval_batch_size, shuffle=False,
                            collate_fn=stack_features)
    if len(train_loader) == 0:
        raise ConfigError(f"{train_set.data_dir} has {len(train_set)} windows, fewer than one batch of "
                          f"{args.per_device_train_batch_size}; lower --per_device_train_batch_size")
    model, optimizer = accelerator.prepare(model, optimizer)
    # Only the training forward is compiled; saving and evaluation use the plain module.
    forward_model = torch.compile(model) if args.compile else model
    # Batches stay on the CPU: masks are drawn there (from per-step generators), then the model
    # inputs are moved to the device once.
    train_loader = accelerator.prepare_data_loader(train_loader, device_placement=False)
    val_loader = accelerator.prepare_data_loader(val_loader, device_placement=False)
    updates_per_epoch = max(len(train_loader) // args.gradient_accumulation_steps, 1)
    max_steps = args.max_train_steps or args.num_train_epochs * updates_per_epoch
    objective.set_total_steps(max_steps)
    # The scheduler is stepped once per optimizer step, by us (not wrapped: Accelerate would step it
    # once per process). Its state is saved as JSON in trainer_state.json, not registered with
    # Accelerate, which would pickle it and unpickle it with weights_only=False on resume.
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=args.num_warmup_steps,
                              num_training_steps=max_steps)
    if log_with:
        accelerator.init_trackers(f"genie-{objective.name}", config={k: v for k, v in dataclasses.asdict(args).items()
                                                                     if isinstance(v, (int, float, str, bool))})

    step, epoch, batches_done = 0, 0, 0
    if checkpoint is not None:
        try:
            # Accelerate reads weights with safetensors and the optimizer / RNG files with
            # torch.load(weights_only=True): a pickle that would run code is refused, not executed.
            accelerator.load_state(str(checkpoint))
            state = json.loads((checkpoint / TRAINER_STATE).read_text())
        except (pickle.UnpicklingError, RuntimeError, OSError, ValueError, KeyError, EOFError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointError(f"cannot resume from {checkpoint}: {type(error).__name__}: {first_line[:300]}; "
                                  "pick an earlier step_N/ folder") from None
        step, epoch, batches_done = state["step"], state["epoch"], state["batches_done_in_epoch"]
        scheduler.load_state_dict(state["lr_scheduler"])
        accelerator.print(f"resumed from {checkpoint} at step {step}")

    logger = MetricsLogger(output_dir / "metrics.jsonl", accelerator)
    progress = tqdm(total=max_steps, initial=step, desc=objective.name, disable=not accelerator.is_local_main_process)
    unwrapped = accelerator.unwrap_model(model)

    def evaluate() -> dict[str, Any]:
        model.eval()
        batches = (b for i, b in zip(range(args.max_eval_steps), val_loader))
        with torch.no_grad(), accelerator.autocast():
            metrics = objective.evaluate(unwrapped, batches, accelerator.gather_for_metrics, args.seed, step=step)
        model.train()
        return metrics

    def save_checkpoint() -> None:
        final = output_dir / f"step_{step}"
        tmp = output_dir / f".tmp-step_{step}"
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))  # every rank saves its part (sharded optimizers need this)
        if accelerator.is_main_process:
            unwrapped.config.to_json_file(tmp / "config.json")  # step_N/ loads with from_pretrained too
            # Lets the crash-safety test kill the process while a checkpoint is being written.
            time.sleep(float(os.environ.get("GENIE_CHECKPOINT_PAUSE_S", "0")))
            (tmp / TRAINER_STATE).write_text(json.dumps(
                {"step": step, "epoch": epoch, "batches_done_in_epoch": batches_done, "max_steps": max_steps,
                 "lr_scheduler": scheduler.state_dict()}))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)  # a crash before this line leaves only the .tmp- folder
        accelerator.wait_for_everyone()

    model.train()
    window_tokens = config.T * config.S
    running_loss = torch.zeros((), device=accelerator.device)
    nonfinite = torch.zeros((), dtype=torch.long, device=accelerator.device)
    running_count, skipped_steps = 0, 0
    stop = StopRequest(accelerator)
    last_time, tokens_since = time.perf_counter(), 0
    try:
        while step < max_steps:
            train_loader.set_epoch(epoch)
            loader = accelerator.skip_first_batches(train_loader, batches_done) if batches_done else train_loader
            micro_step = 0
            for batch in loader:
                batches_done += 1
                generator = batch_generator(args.seed, step, micro_step)
                inputs = make_global_batch(objective, batch, step, generator, accelerator.process_index,
                                           accelerator.num_processes)
                inputs = to_device(inputs, accelerator.device)
                with accelerator.accumulate(model):
                    with accelerator.autocast():
                        out = forward_model(**inputs)
                    nonfinite += ~torch.isfinite(out.loss.detach())
                    accelerator.backward(out.loss)
                    if accelerator.sync_gradients:
                        # One scalar per optimizer step crosses to the host, so that a non-finite loss
                        # never reaches the weights (--no_nonfinite_check moves it to logging steps).
                        bad = args.nonfinite_check and accelerator.reduce(nonfinite, "sum").item() > 0
                        nonfinite.zero_()
                        if bad and not args.skip_nonfinite:
                            raise NonFiniteLossError(f"non-finite loss at step {step + 1}; no checkpoint was written for it "
                                                     "(last good one: the newest step_N/); lower --learning_rate, check "
                                                     "the data, or pass --skip_nonfinite to skip such batches")
                        if bad:
                            skipped_steps += 1
                        else:
                            if args.max_grad_norm > 0:
                                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                            optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                running_loss += torch.nan_to_num(out.loss.detach(), nan=0.0, posinf=0.0, neginf=0.0)
                running_count += 1
                tokens_since += inputs["input_ids"].shape[0] * window_tokens * accelerator.num_processes
                micro_step += 1
                if not accelerator.sync_gradients:
                    continue
                micro_step = 0
                scheduler.step()
                step += 1
                progress.update(1)
                if step % args.log_every_n_steps == 0 or step == max_steps:
                    # Logging steps read the loss back to the host (besides the non-finite check).
                    loss_value = accelerator.reduce(running_loss, "mean").item() / running_count
                    if not math.isfinite(loss_value):  # only reachable with --no_nonfinite_check
                        raise NonFiniteLossError(f"non-finite training loss in steps {step - args.log_every_n_steps + 1}"
                                                 f"..{step}; lower --learning_rate or check the data")
                    now = time.perf_counter()
                    record = {"step": step, "train/loss": loss_value, "lr": scheduler.get_last_lr()[0],
                              "tokens_per_s": tokens_since / (now - last_time), "skipped_nonfinite_steps": skipped_steps,
                              **objective.step_metrics(step - 1)}
                    logger.log(record)
                    progress.set_postfix({k.split("/")[-1]: round(v, 4) for k, v in record.items()
                                          if k in ("train/loss", "mask_ratio")})
                    running_loss.zero_()
                    running_count, tokens_since, last_time = 0, 0, time.perf_counter()
                elif used := objective.step_metrics(step - 1):  # e.g. the mask ratio this update used
                    logger.log({"step": step, **used})
                    progress.set_postfix({k: round(v, 3) for k, v in used.items()})
                if step % args.eval_every_n_steps == 0 and step < max_steps:
                    logger.log({"step": step, **{f"val/{k}": v for k, v in evaluate().items()}})
                if step % args.checkpointing_steps == 0 and step < max_steps:
                    save_checkpoint()
                if stop.requested(check_all_processes=step % args.log_every_n_steps == 0):
                    save_checkpoint()
                    progress.close()
                    accelerator.end_training()
                    accelerator.print(f"received {stop.signal_name}: saved {output_dir / f'step_{step}'}; continue with "
                                      f"--output_dir {output_dir} --resume_from_checkpoint latest")
                    return {"stopped_by": stop.signal_name, "step": step}
                if step >= max_steps:
                    break
            else:
                epoch, batches_done = epoch + 1, 0
    finally:  # also when the loop raises, e.g. on a non-finite loss
        stop.restore()
    progress.close()

    final_metrics = {f"val/{k}": v for k, v in evaluate().items()}
    logger.log({"step": step, **final_metrics})
    save_checkpoint()
    state_dict = accelerator.get_state_dict(model)  # collective: gathers sharded (FSDP) weights
    if accelerator.is_main_process:
        save_model_folder(output_dir / objective.final_model_dirname, unwrapped.config, state_dict)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    accelerator.print(f"saved final model to {output_dir / objective.final_model_dirname}")
    return final_metrics
