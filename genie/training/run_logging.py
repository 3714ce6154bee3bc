"""Metrics logging: always to metrics.jsonl (main process), and to the Accelerate trackers (wandb/tensorboard)."""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from accelerate import Accelerator
from PIL import Image

from genie.files import append_line


class MetricsLogger:
    """`writing(path)`: a context in which a failed write of metrics.jsonl becomes one line (the run folder's)."""

    def __init__(self, path: Path, accelerator: Accelerator,
                 writing: Callable[[Path], contextlib.AbstractContextManager] = lambda path: contextlib.nullcontext()):
        self.path = Path(path)
        self.accelerator = accelerator
        self.writing = writing

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line (step plus scalars); non-finite numbers are written as strings.

        A value that is a Path to a picture is written as its path, and sent to the trackers as an image."""
        if not self.accelerator.is_main_process:
            return
        clean = {k: (str(v) if isinstance(v, Path) else v if not isinstance(v, float) or math.isfinite(v) else str(v))
                 for k, v in record.items()}
        with self.writing(self.path):
            append_line(self.path, json.dumps(clean) + "\n")  # never through a link; a failed write leaves no half line
        scalars = {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
        images = {k: v for k, v in record.items() if isinstance(v, Path) and v.suffix == ".png"}
        if self.accelerator.trackers:
            self.accelerator.log(scalars, step=record.get("step"))
            self._log_images(images, record.get("step"))

    def _log_images(self, images: dict[str, Path], step: int | None) -> None:
        for tracker in self.accelerator.trackers:
            if tracker.name == "wandb":
                import wandb

                tracker.log({k: wandb.Image(str(path)) for k, path in images.items()}, step=step)
            elif tracker.name == "tensorboard":
                pixels = {k: np.asarray(Image.open(path).convert("RGB"))[None] for k, path in images.items()}
                tracker.log_images(pixels, step=step, dataformats="NHWC")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def training_losses(run_dir: str | Path) -> list[tuple[int, float]]:
    """(step, train/loss) of every training record in a run folder's metrics.jsonl."""
    return [(r["step"], r["train/loss"]) for r in read_metrics(Path(run_dir) / "metrics.jsonl") if "train/loss" in r]


class TrainingMeter:
    """Running training loss and throughput between two logging steps, kept on the device so that
    only logging steps read a value back to the host."""

    def __init__(self, device):
        self.loss_sum = torch.zeros((), device=device)
        self.count, self.tokens = 0, 0
        self.start = time.perf_counter()

    def add(self, loss, tokens: int) -> None:
        self.loss_sum += torch.nan_to_num(loss, nan=0.0, posinf=0.0, neginf=0.0)
        self.count += 1
        self.tokens += tokens

    def tokens_per_second(self) -> float:
        return self.tokens / (time.perf_counter() - self.start)

    def seconds_per_step(self, micro_batches_per_step: int) -> float:
        return (time.perf_counter() - self.start) / max(self.count / micro_batches_per_step, 1)

    def reset(self) -> None:
        self.loss_sum.zero_()
        self.count, self.tokens = 0, 0
        self.start = time.perf_counter()


def progress_line(stage: str, step: int, max_steps: int, loss: float, seconds_per_step: float) -> str:
    """One plain line of training progress (a log file gets it where a progress bar would be noise)."""
    eta = round(seconds_per_step * (max_steps - step))
    return (f"{stage} step {step}/{max_steps}: loss {loss:.4f}, {seconds_per_step:.3f} s/step, "
            f"ETA {eta // 3600}h{eta % 3600 // 60:02d}m{eta % 60:02d}s")


def tracker_run_id(output_dir: Path, resuming: bool) -> str:
    """The trackers' run id, kept in the run's config.json: a resumed run continues its wandb run (and
    its TensorBoard folder) instead of starting new ones."""
    previous = Path(output_dir) / "config.json"
    if resuming and previous.is_file():
        saved = json.loads(previous.read_text()).get("tracker_run_id")
        if saved:
            return saved
    return uuid.uuid4().hex[:12]


def tracker_names(report_to: str) -> list[str] | None:
    """Accelerate trackers for --report_to; wandb never prompts for a login (offline without credentials)."""
    names = {"none": None, "all": ["wandb", "tensorboard"]}.get(report_to, [report_to])
    if names and "wandb" in names:
        if not os.environ.get("WANDB_API_KEY") and "WANDB_MODE" not in os.environ:
            os.environ["WANDB_MODE"] = "offline"
        os.environ.setdefault("WANDB_SILENT", "true")
    return names


def tracker_notes(accelerator: Accelerator) -> list[str]:
    """Where each tracker writes, and for an offline wandb run how to upload it later."""
    notes = []
    for tracker in accelerator.trackers if accelerator.is_main_process else []:
        if tracker.name == "wandb":
            run = tracker.tracker
            folder = Path(run.dir).parent  # wandb/offline-run-<time>-<id> (the files/ folder is run.dir)
            if getattr(run.settings, "_offline", False) or getattr(run.settings, "mode", "") == "offline":
                notes.append(f"wandb: offline run in {folder}; upload it later with: wandb sync {folder}")
            else:
                notes.append(f"wandb: {getattr(run, 'url', None) or folder}")
        elif tracker.name == "tensorboard":
            notes.append(f"tensorboard: {tracker.logging_dir} (view with: tensorboard --logdir {tracker.logging_dir})")
    return notes
