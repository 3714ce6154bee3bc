"""Which folders a command reads and how its datasets are opened (the recipes every command shares).

Two formats sit behind one dataset interface: 1X v1.1 (`RawTokenDataset`) and v2.0
(`CosmosV2Dataset`), chosen from the folder's layout unless `data_format` forces one.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from genie.data.builtin import DEFAULT_WORLD, WORLDS, builtin_dataset_dirs, world_named
from genie.data.cosmos_v2 import (LATENT_PER_CLIP, STATE_DIM, STATE_POOLING, STATE_STREAM, CosmosV2Dataset,
                                  is_v2_folder)
from genie.data.raw_tokens import RawTokenDataset
from genie.errors import DataFormatError
from genie.model.config import GenieConfig

DATA_FORMATS = ("auto", "v1.1", "v2.0")


@dataclass
class DataOptions:
    """How a folder is read: its format ("auto" = from its layout) and, for v2.0, how robot states
    are pooled per latent frame; and which built-in world a command reads when no folder is given."""
    data_format: str = field(default="auto", metadata={
        "help": "auto (from the folder's layout) | v1.1 | v2.0 (sharded Cosmos tokens with robot states)."})
    state_pooling: str = field(default="last", metadata={
        "help": "v2.0: the robot state of a latent frame: its last raw frame's (last) or their mean (mean)."})
    builtin_world: str | None = field(default=None, metadata={
        "help": f"The built-in world read when no data folder is given: {' | '.join(WORLDS)} (see genie/data/builtin.py; "
                "steered: the action alone tells the steered sprites' motion). Default: the world a checkpoint's "
                f"run trained on (evaluate.py, generate.py), else {DEFAULT_WORLD}."})

    def __post_init__(self) -> None:
        if self.data_format not in DATA_FORMATS:
            raise DataFormatError(f"--data_format {self.data_format!r} must be one of {', '.join(DATA_FORMATS)}")
        if self.state_pooling not in STATE_POOLING:
            raise DataFormatError(f"--state_pooling {self.state_pooling!r} must be one of {', '.join(STATE_POOLING)}")
        world_named(self.builtin_world)  # an unknown name is a one-line ConfigError

    def with_world_of(self, checkpoint_dir: str | Path) -> "DataOptions":
        """These options with, where --builtin_world was not given, the built-in world the checkpoint's run
        trained on: its run folder's config.json (the folder above step_N/ or final_model/) records the flag."""
        if self.builtin_world is not None:
            return self
        try:
            args = json.loads((Path(checkpoint_dir).parent / "config.json").read_text()).get("args")
        except (OSError, ValueError, AttributeError):  # no run folder around it (a hub model, a copied folder)
            return self
        world = args.get("builtin_world") if isinstance(args, dict) else None
        return dataclasses.replace(self, builtin_world=world) if world in WORLDS else self

    def format_of(self, data_dir: Path) -> str:
        return self.layout(data_dir)[0]

    def layout(self, data_dir: Path, config: GenieConfig | None = None) -> tuple[str, str]:
        """(the format a folder is read as, why): from its files, or --data_format where the files say
        nothing; a --data_format that contradicts the files is a one-line error whose fix fits `config`."""
        found = detect_layout(Path(data_dir))
        if self.data_format != "auto" and found and found[0] != self.data_format:
            flag, misfit = self.data_format, config_misfit(config, found[0], data_dir)
            fix = (f"pass a {flag} folder (the model config cannot read {found[0]} data: {misfit})" if misfit else
                   f"leave --data_format out (auto) to read it as {found[0]}"
                   + ("" if config_misfit(config, flag, data_dir) else f", or pass a {flag} folder"))
            raise DataFormatError(f"--data_format {flag} contradicts {data_dir}: it holds {found[1]}, the "
                                  f"{found[0]} layout; {fix}")
        if self.data_format != "auto":
            return self.data_format, "as --data_format says"
        return found or ("v1.1", "no video file found; read as v1.1, the default")


# What a model config for each layout's data needs, for the fix of a mix-up.
CONFIG_FOR = {"v2.0": 'T a multiple of 3 and "action_dims" {"states": 25} or none, as in configs/cosmos_v2.json',
              "v1.1": "action_dims naming the folder's actions/ streams (or none), as in configs/small.json"}


def config_misfit(config: GenieConfig | None, layout: str, data_dir: Path) -> str | None:
    """Why a model config is one for the other layout's data and cannot read `layout` (None when it can, or
    without a config): v2.0 windows are whole clips of 3 latent frames conditioned on robot states, and
    v1.1 folders hold no robot states unless actions/states.bin is there."""
    if config is None:
        return None
    if layout == "v2.0" and config.T % LATENT_PER_CLIP:
        return f"its T = {config.T} is not a multiple of 3"
    if layout == "v2.0" and config.action_dims not in ({}, {STATE_STREAM: STATE_DIM}):
        return f"it conditions on the actions {sorted(config.action_dims)}, not on the 25 robot states"
    if layout == "v1.1" and STATE_STREAM in config.action_dims and not (
            Path(data_dir) / "actions" / f"{STATE_STREAM}.bin").is_file():
        return f'it conditions on the v2.0 robot states ("action_dims" {{"{STATE_STREAM}": ...}})'
    return None


def detect_layout(data_dir: Path) -> tuple[str, str] | None:
    """The 1X layout a folder's files show, with the file that shows it; None if they show neither."""
    if is_v2_folder(data_dir):
        return "v2.0", "videos/" if (data_dir / "videos").is_dir() else "video_0.bin"
    if (data_dir / "video.bin").is_file():
        return "v1.1", "video.bin"
    return None


def resolve_data_dirs(train_dir: str | Path | None, val_dir: str | Path | None, config: GenieConfig,
                      data: DataOptions | None = None) -> tuple[Path, Path]:
    """The train/val folders: the given ones, or the built-in dataset matching the config (made if
    missing): in the v2.0 layout when asked for or when the config conditions on robot states."""
    if train_dir and val_dir:
        if Path(train_dir).is_dir() and Path(val_dir).is_dir():
            check_same_layout(train_dir, val_dir, data, config)
        return Path(train_dir), Path(val_dir)
    data = data or DataOptions()
    v2 = data.data_format == "v2.0" or STATE_STREAM in config.action_dims
    builtin_train, builtin_val = builtin_dataset_dirs(grid=config.h, vocab_size=config.image_vocab_size, v2_layout=v2,
                                                      world=data.builtin_world)
    return Path(train_dir or builtin_train), Path(val_dir or builtin_val)


def open_dataset(data_dir: str | Path, config: GenieConfig, stride: int = 1, window_size: int | None = None,
                 filter_overlaps: bool = False, data: DataOptions | None = None):
    """Windows of a folder in either format, checked against the model config."""
    data = data or DataOptions()
    window = window_size or config.T
    layout, why = data.layout(Path(data_dir), config)
    misfit = config_misfit(config, layout, data_dir) if Path(data_dir).is_dir() else None
    if misfit:
        other = "v1.1" if layout == "v2.0" else "v2.0"
        raise DataFormatError(f"{data_dir} holds {layout} data ({why}) but the model config is for {other} data: "
                              f"{misfit}; use a model config for {layout} data ({CONFIG_FOR[layout]}) or pass "
                              f"{other} data")
    try:
        if layout == "v2.0":
            dataset = CosmosV2Dataset(data_dir, window, stride, filter_overlaps, with_states=bool(config.action_dims),
                                      state_pooling=data.state_pooling)
        else:
            dataset = RawTokenDataset(data_dir, window, stride, filter_overlaps=filter_overlaps,
                                      action_dims=config.action_dims)
        dataset.check_compatible(config)
    except DataFormatError as error:
        if not Path(data_dir).is_dir():
            raise
        # Name the layout it was read as: a v1.1 / v2.0 mix-up then explains itself.
        raise DataFormatError(f"{error} [{data_dir} was read as the {layout} layout ({why})]") from None
    return dataset


def check_same_layout(train_dir: str | Path, val_dir: str | Path, data: DataOptions | None = None,
                      config: GenieConfig | None = None) -> None:
    """A train and a val split of different layouts cannot feed one model: say which is which, and which
    split to replace when the model config reads only one of the two layouts."""
    data = data or DataOptions()
    (train, train_why), (val, val_why) = data.layout(Path(train_dir), config), data.layout(Path(val_dir), config)
    if train == val:
        return
    train_misfit, val_misfit = config_misfit(config, train, train_dir), config_misfit(config, val, val_dir)
    if bool(train_misfit) != bool(val_misfit):
        split, layout, misfit = ("val", train, val_misfit) if val_misfit else ("train", val, train_misfit)
        fix = f"pass a {split} split in the {layout} layout (the model config reads {layout} data; {misfit})"
    else:
        fix = "pass two splits of one layout"
    raise DataFormatError(f"the train split {train_dir} is {train} ({train_why}) but the val split {val_dir} is "
                          f"{val} ({val_why}); {fix}")


def open_eval_dataset(val_dir: str | Path, config: GenieConfig, stride: int = 1, window_size: int | None = None,
                      data: DataOptions | None = None):
    """Validation windows as the challenge scores them: non-overlapping, checked against the model config."""
    return open_dataset(val_dir, config, stride, window_size, filter_overlaps=True, data=data)


def open_train_dataset(train_dir: str | Path, config: GenieConfig, stride: int = 1, window_size: int | None = None,
                       filter_overlaps: bool = False, data: DataOptions | None = None):
    """Training windows, checked against the model config."""
    return open_dataset(train_dir, config, stride, window_size, filter_overlaps, data)


def challenge_stride(data_dir: str | Path, data: DataOptions | None = None) -> int:
    """The stride that samples a split at 2 Hz, as the challenge evaluates (hz 30 -> 15); 1 without `hz`.
    v2.0 windows are consecutive clips: always 1."""
    if (data or DataOptions()).format_of(Path(data_dir)) == "v2.0":
        return 1
    hz = RawTokenDataset.read_metadata(data_dir).get("hz")
    return max(1, round(hz / 2)) if isinstance(hz, (int, float)) and hz > 0 else 1

