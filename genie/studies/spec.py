"""A study file (JSON or YAML, under configs/studies/): what to sweep, the budgets, the seeds.

    name: schedules                      # the report goes to runs/studies/<name>/ unless --output_dir says otherwise
    title: Mask-ratio schedule
    question: Which schedule of the stage-1 mask ratio helps stage 2 most?
    genie_config: configs/small.json
    seeds: [0, 1, 2]
    stage1_steps: 100
    stage2_steps: 300
    baseline: equal_total_steps         # stage 2 alone for stage1+stage2 steps | equal_stage2_steps | a list of both
    controls: [autoregressive_stage1]   # optional: stage 1 replaced by autoregressive training (same data, steps);
                                        # on the stage-2 data it is the learning-rate-restart control
    primary: {metric: changed_cross_entropy, versus: equal_total_steps}   # the declared primary contrast
    # optional in primary: margin: 0.15 (equivalence margin, the metric's units), margins: {arm name: 0.3}
    min_seeds: 10                       # optional: fewer seeds is an error unless `pilot: true`
    stage1_train_data_dir: D            # optional: stage 1 (and the control) train on D (default: train_data_dir)
    stage1_actions: false               # optional: stage 1 (and the control) see no action labels
    training: {per_device_train_batch_size: 8, learning_rate: 0.003}   # any train.py flag
    slurm: {partition: gpu, gpus_per_node: 1, timeout_min: 240}        # optional: the jobs of --launcher submitit
    stage1: {initial_mask_ratio: 0.8, final_mask_ratio: 0.1}          # shared stage-1 fields
    grid: {mask_schedule: [cosine, linear, exponential]}               # cartesian product of arms
    arms:                                                              # and/or arms named one by one
      - {name: constant 0.45, value: constant, stage1: {mask_schedule: constant, initial_mask_ratio: 0.45,
         final_mask_ratio: 0.45}}

Every arm runs stage 1 then stage 2 from its weights; the baseline arm runs stage 2 alone from scratch.
A grid or an arm may also set `train_segment_fraction`, the fraction of the train split's segments that
stage 2 (and its baselines and control) train on. The title and question may name {stage1_steps},
{stage2_steps}, {total_steps} and {seeds}: they follow command-line overrides.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from genie.data.sources import challenge_stride
from genie.errors import ConfigError
from genie.files import folder_identity
from genie.model.config import GenieConfig, read_config_values
from genie.studies.slurm_settings import SlurmSettings
from genie.training.arguments import TrainingArguments
from genie.training.masked_pretrain_config import STAGE1_FIELDS, MaskedPretrainConfig

STAGE1_SWEEPABLE = STAGE1_FIELDS
BUDGET_FIELDS = ("stage1_steps", "stage2_steps")
STAGE2_DATA_FIELDS = ("train_segment_fraction",)  # per-arm stage-2 data
BASELINES = ("equal_total_steps", "equal_stage2_steps")
CONTROLS = ("autoregressive_stage1",)
# A study's scores: (column, label, lower is better); any of them can be its primary metric.
METRICS = (("cross_entropy", "teacher-forced CE (nats/token)", True),
           ("accuracy", "teacher-forced accuracy", False),
           ("rollout_accuracy_h1", "rollout accuracy, horizon 1", False),
           ("rollout_accuracy", "rollout accuracy, mean over horizons", False),
           ("changed_cross_entropy", "CE on the tokens that change (nats/token)", True),
           ("changed_accuracy", "accuracy on the tokens that change", False),
           ("action_sensitivity", "action sensitivity (nats/token)", False))
PRIMARY_METRICS = tuple(metric for metric, _, _ in METRICS)
LOWER_IS_BETTER = {metric: lower for metric, _, lower in METRICS}
LABELS = {metric: label for metric, label, _ in METRICS}
PROSE_FIELDS = ("stage1_steps", "stage2_steps", "total_steps", "seeds")
PRIMARY_KEYS = ("metric", "versus", "margin", "margins")
# Seeds a primary contrast with an equivalence margin needs: with the paired sd of these studies (~0.17 nats),
# 5 seeds give a 95% half-width of ~0.21 nats, wider than a 0.15-nat margin; 10 give ~0.12 (docs/studies.md).
EQUIVALENCE_MIN_SEEDS = 10


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases: a study file never needs them, and nested aliases (a 'billion laughs' file)
    would expand into gigabytes."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"aliases (*{event.anchor}) are not allowed in a study file (line "
                                 f"{event.start_mark.line + 1})")
        return super().compose_node(parent, index)
# Set by the runner for each run, so a study may not set them.
RUNNER_OWNED = ("output_dir", "seed", "max_train_steps", "overwrite_output_dir", "resume_from_checkpoint",
                "genie_config", "train_data_dir", "val_data_dir", "stride", "train_segment_fraction", "drop_actions")
DEFAULT_TRAINING = {"per_device_train_batch_size": 8, "learning_rate": 3e-3, "lr_scheduler_type": "cosine",
                    "log_every_n_steps": 25, "eval_every_n_steps": 100, "max_eval_steps": 4,
                    "checkpointing_steps": 10 ** 9}


@dataclass(frozen=True)
class Arm:
    """One cell of the study: its pretraining (masked stage 1, or autoregressive for a control; None for
    stage 2 alone from scratch), budgets and stage-2 data."""
    name: str
    stage1: dict[str, Any] | None
    stage1_steps: int
    stage2_steps: int
    value: Any = None  # where the arm sits on the swept axis
    stage2_data: tuple[tuple[str, Any], ...] = ()  # stage-2 training-data settings (train_segment_fraction)
    role: str = "arm"  # arm (masked stage 1) | baseline (stage 2 alone) | control (autoregressive stage 1)

    @property
    def pretrained(self) -> bool:
        return self.role == "arm"

    @property
    def data_label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.stage2_data)


@dataclass
class StudySpec:
    name: str
    genie_config: str
    seeds: list[int]
    stage1_steps: int
    stage2_steps: int
    title: str = ""
    question: str = ""
    baseline: str | list[str] = "equal_total_steps"
    controls: list[str] = field(default_factory=list)
    primary: dict[str, str] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    stage1: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)
    arms: list[dict[str, Any]] = field(default_factory=list)
    swept: str | None = None
    train_data_dir: str | None = None
    val_data_dir: str | None = None
    stage1_train_data_dir: str | None = None
    stage1_actions: bool = True
    stride: int | None = None  # None: the challenge's 2 Hz from the data's hz (1 for the built-in world)
    device: str | None = None  # the device the runs train on, for their identity (default: this machine's)
    eval_batch_size: int = 16
    eval_max_examples: int | None = None
    slurm: dict[str, Any] = field(default_factory=dict)  # the cluster parameters of its jobs (slurm_settings.py)
    min_seeds: int | None = None  # the primary contrast's declared minimum number of seeds
    pilot: bool = False  # a pilot may run fewer seeds than min_seeds (or than a margin needs)
    source: str = "<study>"
    overrides: dict[str, Any] = field(default_factory=dict)  # command-line replacements, for the report

    def __post_init__(self) -> None:
        where = f"study {self.source}"
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise ConfigError(f"{where}: name {_short(self.name)} must be a plain folder name (letters, digits, "
                              "'_', '-', '.'; no '/' or '..'): it names the report's folder")
        self._check_types(where)
        for key in ("training", "stage1", "grid"):
            if not isinstance(getattr(self, key), dict):
                raise ConfigError(f"{where}: {key} must be a mapping of names to values")
        if not isinstance(self.arms, list) or not all(isinstance(a, dict) and isinstance(a.get("stage1", {}), dict)
                                                      for a in self.arms):
            raise ConfigError(f"{where}: arms must be a list of {{name, value, stage1: {{...}}}} mappings")
        if not isinstance(self.seeds, list) or not self.seeds or not all(
                isinstance(s, int) and s >= 0 for s in self.seeds):
            raise ConfigError(f"{where}: seeds {self.seeds!r} must be a non-empty list of integers >= 0")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"{where}: seeds {self.seeds!r} repeat a seed")
        if not self.baselines or not all(b in BASELINES for b in self.baselines) or len(set(self.baselines)) < len(
                self.baselines):
            raise ConfigError(f"{where}: baseline {_short(self.baseline)} must be one of {BASELINES} or a list of them")
        if not isinstance(self.controls, list) or not all(c in CONTROLS for c in self.controls):
            raise ConfigError(f"{where}: controls {_short(self.controls)} must be a list of {CONTROLS}")
        if len(set(self.controls)) < len(self.controls):
            raise ConfigError(f"{where}: controls {_short(self.controls)} list a control twice; name each once")
        self._check_primary(where)
        unknown = [k for k in self.training if k not in {f.name for f in dataclasses.fields(TrainingArguments)}]
        owned = [k for k in self.training if k in RUNNER_OWNED]
        if unknown or owned:
            raise ConfigError(f"{where}: training keys {unknown or owned} are "
                              f"{'not train.py flags' if unknown else 'set by the runner for each run'}")
        for key in list(self.stage1) + list(self.grid) + [k for a in self.arms for k in a.get("stage1", {})]:
            if key not in STAGE1_SWEEPABLE + BUDGET_FIELDS + STAGE2_DATA_FIELDS:
                raise ConfigError(f"{where}: {key!r} is not a stage-1 field, budget or stage-2 data field; choose from "
                                  f"{STAGE1_SWEEPABLE + BUDGET_FIELDS + STAGE2_DATA_FIELDS}")
        if not self.grid and not self.arms:
            raise ConfigError(f"{where}: give a grid or a list of arms")
        for key, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}: grid.{key} must be a non-empty list of values")
        for key in BUDGET_FIELDS:
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ConfigError(f"{where}: {key} must be an integer >= 1")
        self.arm_list()  # every arm's stage-1 settings must be valid
        self._check_margins(where)
        self._check_seed_count(where)
        self.slurm_settings  # its SLURM section must be valid
        if self.stride is None:
            self.stride = challenge_stride(self.val_data_dir) if self.val_data_dir else 1
        self.title, self.question = self.prose(self.title), self.prose(self.question)

    def _check_primary(self, where: str) -> None:
        """The primary contrast: a metric, and what each arm is compared with (a baseline or the control)."""
        unknown = set(self.primary) - set(PRIMARY_KEYS)  # a mapping: _check_types said so
        if unknown or self.primary_metric not in PRIMARY_METRICS or self.primary_versus not in (
                self.baselines + self.controls):
            raise ConfigError(f"{where}: primary {_short(self.primary)} must be {{metric: one of {PRIMARY_METRICS}, "
                              f"versus: one of {self.baselines + self.controls}}} (optional: margin, margins)")
        if self.primary_metric == "action_sensitivity" and not self.model_config.action_dims:
            raise ConfigError(f"{where}: primary metric action_sensitivity cannot be measured: the model config "
                              f"{self.genie_config} has no action input (action_dims is empty); choose another metric "
                              "or a config with actions")

    def _check_margins(self, where: str) -> None:
        """primary.margin (every arm's contrast) and primary.margins ({arm name: margin}, overriding it): each a
        positive finite number in the primary metric's units, naming only arms of the study."""
        margins = self.primary.get("margins", {})
        if not isinstance(margins, dict):
            raise ConfigError(f"{where}: primary.margins {_short(margins)} must map arm names to margins, e.g. "
                              "{'arm name': 0.15}")
        declared = ({"margin": self.primary["margin"]} if "margin" in self.primary else {}) | {
            f"margins[{name!r}]": margin for name, margin in margins.items()}
        for key, margin in declared.items():
            if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not (math.isfinite(margin)
                                                                                      and margin > 0):
                raise ConfigError(f"{where}: primary.{key} {_short(margin)} must be a positive finite number in the "
                                  f"units of {self.primary_metric} (e.g. 0.15 nats)")
        arms = [arm.name for arm in self.arm_list()]
        unknown = [name for name in margins if name not in arms]
        if unknown:
            raise ConfigError(f"{where}: primary.margins names {_short(unknown[0])}, which is not an arm of this study; "
                              f"name one of {_short(arms)}")

    def margin_for(self, arm: str) -> float | None:
        """The equivalence margin of `arm`'s primary contrast: its own, else the study's, else None."""
        return self.primary.get("margins", {}).get(arm, self.primary.get("margin"))

    @property
    def has_margins(self) -> bool:
        return self.primary.get("margin") is not None or bool(self.primary.get("margins"))

    def _check_seed_count(self, where: str) -> None:
        """A primary contrast with fewer seeds than min_seeds, or than an equivalence margin needs, is refused
        unless the study file says it is a pilot."""
        if self.min_seeds is not None and self.min_seeds < 2:  # an int: _check_types said so
            raise ConfigError(f"{where}: min_seeds {_short(self.min_seeds)} must be an integer >= 2 (a paired test "
                              "needs 2 seeds)")
        needed = max(self.min_seeds or 0, EQUIVALENCE_MIN_SEEDS if self.has_margins else 0)
        if len(self.seeds) < needed and not self.pilot:
            why = (f"min_seeds {self.min_seeds}" if needed == self.min_seeds else
                   f"an equivalence margin needs {EQUIVALENCE_MIN_SEEDS}")
            raise ConfigError(f"{where}: the primary contrast has {len(self.seeds)} seeds, fewer than {needed} "
                              f"({why}); add seeds, or set pilot: true to run it as a pilot")

    @property
    def baselines(self) -> list[str]:
        return [self.baseline] if isinstance(self.baseline, str) else list(self.baseline)

    @property
    def primary_metric(self) -> str:
        return self.primary.get("metric", "cross_entropy")

    @property
    def primary_versus(self) -> str:
        return self.primary.get("versus", self.baselines[0] if self.baselines else "")

    def prose(self, text: str) -> str:
        """`text` with {stage1_steps}, {stage2_steps}, {total_steps} and {seeds} filled in (other braces kept)."""
        values = {"stage1_steps": self.stage1_steps, "stage2_steps": self.stage2_steps,
                  "total_steps": self.stage1_steps + self.stage2_steps, "seeds": self.seeds}
        return re.sub(r"\{(" + "|".join(PROSE_FIELDS) + r")\}", lambda m: str(values[m.group(1)]), text)

    def _check_types(self, where: str) -> None:
        """Scalar fields and the training values have the types train.py's flags have (one line, bounded)."""
        for key, kind in (("genie_config", str), ("title", str), ("question", str), ("stride", (int, type(None))),
                          ("eval_batch_size", int), ("eval_max_examples", (int, type(None))),
                          ("train_data_dir", (str, type(None))), ("val_data_dir", (str, type(None))),
                          ("stage1_train_data_dir", (str, type(None))), ("baseline", (str, list)),
                          ("device", (str, type(None))), ("min_seeds", (int, type(None))),
                          ("primary", dict)):
            value = getattr(self, key)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ConfigError(f"{where}: {key} {_short(value)} has the wrong type ({type(value).__name__})")
        for key in ("stage1_actions", "pilot"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"{where}: {key} {_short(getattr(self, key))} must be true or false")
        for key in ("stride", "eval_batch_size"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"{where}: {key} {getattr(self, key)} must be >= 1")
        if self.eval_max_examples is not None and self.eval_max_examples < 1:
            raise ConfigError(f"{where}: eval_max_examples {self.eval_max_examples} must be >= 1 (leave it out to "
                              "score every val window)")
        hints = typing.get_type_hints(TrainingArguments)  # resolved types (the fields' own may be strings)
        for key, value in self.training.items():
            if key in hints and not _fits(value, hints[key]):
                raise ConfigError(f"{where}: training.{key} {_short(value)} has the wrong type; train.py's --{key} "
                                  f"takes {hints[key]}")

    @functools.cached_property
    def model_config_values(self) -> dict[str, Any]:
        """The model config file's values (part of every run's identity), read once."""
        return read_config_values(self.genie_config)[1]

    @functools.cached_property
    def _data_identities(self) -> dict[str, Any]:
        return {}

    def data_identity(self, folder: str) -> dict[str, Any] | None:
        """A data folder's identity (genie/files.py folder_identity), part of its runs' identity: read once,
        so that every run of one study invocation sees the data as it was when the study started."""
        if folder not in self._data_identities:
            self._data_identities[folder] = folder_identity(folder)
        return self._data_identities[folder]

    @functools.cached_property
    def model_config(self) -> GenieConfig:
        return GenieConfig.from_json_file(self.genie_config)

    @functools.cached_property
    def slurm_settings(self) -> SlurmSettings:
        return SlurmSettings.from_section(self.slurm, f"study {self.source}")

    def training_arguments(self) -> dict[str, Any]:
        return DEFAULT_TRAINING | self.training

    def arm_list(self) -> list[Arm]:
        """The pretrained arms: the grid's product, then the named arms; each checked as stage-1 settings."""
        specs = []
        keys = list(self.grid)
        for values in itertools.product(*(self.grid[k] for k in keys)) if keys else ():
            name = ", ".join(f"{k}={v}" for k, v in zip(keys, values))
            value = values[0] if len(values) == 1 else name
            specs.append({"name": name, "value": value, "stage1": dict(zip(keys, values))})
        specs += self.arms
        arms = [self._arm(s) for s in specs]
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise ConfigError(f"study {self.source}: arm names repeat: {_short(names)}")
        settings = {}
        for arm in arms:  # two names for one run would count one result as two verdicts
            key = json.dumps([arm.stage1, arm.stage1_steps, arm.stage2_steps, arm.stage2_data], sort_keys=True,
                             default=str)
            if key in settings:
                raise ConfigError(f"study {self.source}: arms {settings[key]!r} and {arm.name!r} have identical "
                                  "settings, so they are one run; remove one of them")
            settings[key] = arm.name
        return arms

    def _arm(self, spec: dict[str, Any]) -> Arm:
        if "name" not in spec:
            raise ConfigError(f"study {self.source}: every arm in 'arms' needs a name")
        settings = self.stage1 | spec.get("stage1", {})
        budgets = {k: settings.pop(k, getattr(self, k)) for k in BUDGET_FIELDS}
        data = {k: settings.pop(k) for k in STAGE2_DATA_FIELDS if k in settings}
        fraction = data.get("train_segment_fraction", 1.0)
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise ConfigError(f"study {self.source}, arm {spec['name']!r}: train_segment_fraction {_short(fraction)} "
                              "must be a number in (0, 1]")
        data = {k: float(v) for k, v in data.items()}  # 1 and 1.0 are one run
        try:
            MaskedPretrainConfig(**settings).check_scores_tokens(self.model_config.S)
        except (ConfigError, TypeError) as error:
            raise ConfigError(f"study {self.source}, arm {spec['name']!r}: {error}") from None
        return Arm(spec["name"], settings, budgets["stage1_steps"], budgets["stage2_steps"], spec.get("value"),
                   tuple(sorted(data.items())))

    def comparators(self, arm: Arm) -> dict[str, Arm]:
        """What a pretrained arm is compared with: each baseline, then each control, by kind."""
        return {kind: self.baseline_for(arm, kind) for kind in self.baselines} | {
            kind: self.control_for(arm) for kind in self.controls}

    def baseline_for(self, arm: Arm, kind: str | None = None) -> Arm:
        """Stage 2 alone from scratch on the arm's stage-2 data, for its total steps (or its stage-2 steps)."""
        steps = arm.stage2_steps + (arm.stage1_steps if (kind or self.baselines[0]) == "equal_total_steps" else 0)
        data = f", {arm.data_label}" if arm.stage2_data else ""
        return Arm(f"stage 2 only, {steps} steps{data}", None, 0, steps, arm.value, arm.stage2_data, "baseline")

    def control_for(self, arm: Arm) -> Arm:
        """Stage 1 replaced by autoregressive training on stage 1's data for its steps, then the same stage 2:
        separates the masked objective from the extra data, and carries the same learning-rate restart."""
        data = f", {arm.data_label}" if arm.stage2_data else ""
        return Arm(f"autoregressive stage 1, {arm.stage1_steps}+{arm.stage2_steps} steps{data}", {}, arm.stage1_steps,
                   arm.stage2_steps, arm.value, arm.stage2_data, "control")

    @property
    def stage1_data(self) -> tuple[tuple[str, Any], ...]:
        """The training-data settings of stage 1 (and the control's first stage) that differ from stage 2's."""
        data = {"train_data_dir": self.stage1_train_data_dir} if self.stage1_train_data_dir else {}
        return tuple(sorted((data | ({} if self.stage1_actions else {"drop_actions": True})).items()))


def _short(value: Any, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters: an error stays one short line whatever the file holds."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _fits(value: Any, hint: Any) -> bool:
    """Whether a study's training value has the type `hint` of the TrainingArguments field it sets."""
    allowed = typing.get_args(hint) or (hint,)  # `int | None` -> (int, NoneType)
    if value is None or bool in allowed or isinstance(value, bool):
        return (value is None and type(None) in allowed) or (isinstance(value, bool) and bool in allowed)
    if float in allowed:
        return isinstance(value, (int, float))
    return isinstance(value, tuple(a for a in allowed if isinstance(a, type)))


def load_study(path: str | Path, overrides: dict[str, Any] | None = None) -> StudySpec:
    """Read a study file (YAML, or JSON, which YAML reads too); `overrides` replace its top-level keys."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--study {path} is a folder; pass a study file such as configs/studies/schedules.yaml")
    if not path.is_file():
        raise ConfigError(f"study file {path} does not exist; pass a file such as configs/studies/schedules.yaml")
    try:
        values = yaml.load(path.read_text(), Loader=_NoAliasLoader)
    except yaml.YAMLError as error:
        raise ConfigError(f"study file {path} is not valid YAML/JSON: {str(error).splitlines()[0][:200]}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"study file {path} must hold a mapping of keys (name, seeds, grid, ...)")
    replaced = {k: v for k, v in (overrides or {}).items() if v is not None}
    changed = {k: (values.get(k), v) for k, v in replaced.items() if values.get(k) != v}
    values |= replaced
    if not all(isinstance(k, str) for k in values):
        raise ConfigError(f"study file {path}: every top-level key must be a name")
    known = {f.name for f in dataclasses.fields(StudySpec)} - {"source", "overrides"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"study file {path}: unknown key(s) {unknown}; known: {sorted(known)}")
    missing = [k for k in ("name", "genie_config", "seeds", "stage1_steps", "stage2_steps") if k not in values]
    if missing:
        raise ConfigError(f"study file {path} lacks {missing}")
    return StudySpec(**values, source=str(path), overrides=changed)
