"""SIGINT / SIGTERM as a request to stop after the current optimizer step with a resumable checkpoint."""
from __future__ import annotations

import signal
import threading

from accelerate import Accelerator


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
