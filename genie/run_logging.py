"""Metrics logging: always to metrics.jsonl (main process), and to the Accelerate trackers (wandb/tensorboard)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from accelerate import Accelerator


class MetricsLogger:
    def __init__(self, path: Path, accelerator: Accelerator):
        self.path = Path(path)
        self.accelerator = accelerator

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line (step plus scalars); non-finite numbers are written as strings."""
        if not self.accelerator.is_main_process:
            return
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in record.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")
        scalars = {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
        if self.accelerator.trackers:
            self.accelerator.log(scalars, step=record.get("step"))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
