"""The cluster parameters of a study's jobs (scripts/ablate.py --launcher submitit): the `slurm:` section of
a study file, which command-line flags of the same names override.

    slurm:                        # every key optional
      partition: gpu
      account: my_project
      qos: normal
      constraint: h100
      gpus_per_node: 1
      cpus_per_task: 8
      mem_gb: 64
      timeout_min: 240            # a job's wall-clock limit; at its end the job is checkpointed and requeued
      array_parallelism: 16       # at most this many jobs of an array at once
      max_num_timeout: 3          # requeues after a timeout before the job is given up (preemptions: no limit)
      setup: ["source .venv/bin/activate"]          # shell lines run before each job
      additional_parameters: {exclude: "node[01-02]"}  # any other sbatch option
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from genie.errors import ConfigError

DEFAULT_TIMEOUT_MIN = 240
# Settings a flag of scripts/ablate.py may override (setup and additional_parameters are the file's only).
FLAG_SETTINGS = ("partition", "account", "qos", "constraint", "gpus_per_node", "cpus_per_task", "mem_gb",
                 "timeout_min", "array_parallelism", "max_num_timeout")


@dataclass(frozen=True)
class SlurmSettings:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    timeout_min: int | None = None
    array_parallelism: int | None = None
    max_num_timeout: int | None = None
    setup: list[str] = field(default_factory=list)
    additional_parameters: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("partition", "account", "qos", "constraint"):
            _check(name, getattr(self, name), isinstance(getattr(self, name), (str, type(None))), "must be text")
        for name in ("gpus_per_node", "cpus_per_task", "timeout_min", "array_parallelism", "max_num_timeout"):
            value = getattr(self, name)
            _check(name, value, value is None or (_is_int(value) and value >= (0 if name == "gpus_per_node" else 1)),
                   "must be a whole number >= " + ("0" if name == "gpus_per_node" else "1"))
        value = self.mem_gb
        _check("mem_gb", value, value is None or (_is_number(value) and value > 0), "must be a number > 0")
        _check("setup", self.setup, isinstance(self.setup, list) and all(isinstance(s, str) for s in self.setup),
               "must be a list of shell lines")
        _check("additional_parameters", self.additional_parameters, isinstance(self.additional_parameters, dict),
               "must be a mapping of sbatch options to values")

    @classmethod
    def from_section(cls, values: Any, where: str) -> "SlurmSettings":
        """The `slurm:` section of a study file; an unknown key or a wrong value is a one-line ConfigError."""
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: slurm must be a mapping of SLURM settings (partition, timeout_min, ...)")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(str(k) for k in values if k not in known)
        if unknown:
            raise ConfigError(f"{where}: unknown slurm key(s) {unknown}; known: {known}")
        try:
            return cls(**values)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None

    def overridden(self, flags: dict[str, Any]) -> "SlurmSettings":
        """These settings with the flags that were given (not None) in their place."""
        return dataclasses.replace(self, **{k: v for k, v in flags.items() if v is not None})

    def executor_parameters(self) -> dict[str, Any]:
        """submitit.AutoExecutor's parameters: the shared ones, and SLURM's own with their `slurm_` prefix."""
        shared = {"timeout_min": self.timeout_min or DEFAULT_TIMEOUT_MIN, "gpus_per_node": self.gpus_per_node,
                  "cpus_per_task": self.cpus_per_task, "mem_gb": self.mem_gb, "tasks_per_node": 1, "nodes": 1}
        slurm = {"partition": self.partition, "account": self.account, "qos": self.qos,
                 "constraint": self.constraint, "array_parallelism": self.array_parallelism,
                 "setup": self.setup or None, "additional_parameters": self.additional_parameters or None}
        local = {"setup": self.setup or None}
        return ({k: v for k, v in shared.items() if v is not None}
                | {f"slurm_{k}": v for k, v in slurm.items() if v is not None}
                | {f"local_{k}": v for k, v in local.items() if v is not None})


def _check(name: str, value: Any, ok: bool, what: str) -> None:
    if not ok:
        text = repr(value)
        raise ConfigError(f"slurm.{name} {text if len(text) <= 80 else text[:80] + '...'} {what}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
