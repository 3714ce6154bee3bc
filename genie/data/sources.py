"""Which folders a command reads and how its datasets are opened (the recipes every command shares).

Two formats sit behind one dataset interface: 1X v1.1 (`RawTokenDataset`) and v2.0
(`CosmosV2Dataset`), chosen from the folder's layout unless `data_format` forces one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from genie.data.builtin import builtin_dataset_dirs
from genie.data.cosmos_v2 import STATE_POOLING, STATE_STREAM, CosmosV2Dataset, is_v2_folder
from genie.data.raw_tokens import RawTokenDataset
from genie.errors import DataFormatError
from genie.model.config import GenieConfig

DATA_FORMATS = ("auto", "v1.1", "v2.0")


@dataclass
class DataOptions:
    """How a folder is read: its format ("auto" = from its layout) and, for v2.0, how robot states
    are pooled per latent frame."""
    data_format: str = field(default="auto", metadata={
        "help": "auto (from the folder's layout) | v1.1 | v2.0 (sharded Cosmos tokens with robot states)."})
    state_pooling: str = field(default="last", metadata={
        "help": "v2.0: the robot state of a latent frame: its last raw frame's (last) or their mean (mean)."})

    def __post_init__(self) -> None:
        if self.data_format not in DATA_FORMATS:
            raise DataFormatError(f"--data_format {self.data_format!r} must be one of {', '.join(DATA_FORMATS)}")
        if self.state_pooling not in STATE_POOLING:
            raise DataFormatError(f"--state_pooling {self.state_pooling!r} must be one of {', '.join(STATE_POOLING)}")

    def format_of(self, data_dir: Path) -> str:
        return self.layout(data_dir)[0]

    def layout(self, data_dir: Path) -> tuple[str, str]:
        """(the format a folder is read as, why): from its files, or --data_format where the files say
        nothing; a --data_format that contradicts the files is a one-line error."""
        found = detect_layout(Path(data_dir))
        if self.data_format != "auto" and found and found[0] != self.data_format:
            raise DataFormatError(f"--data_format {self.data_format} contradicts {data_dir}: it holds {found[1]}, the "
                                  f"{found[0]} layout; leave --data_format out (auto) or pass a {self.data_format} "
                                  "folder")
        if self.data_format != "auto":
            return self.data_format, "as --data_format says"
        return found or ("v1.1", "no video file found; read as v1.1, the default")


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
            check_same_layout(train_dir, val_dir, data)
        return Path(train_dir), Path(val_dir)
    v2 = (data is not None and data.data_format == "v2.0") or STATE_STREAM in config.action_dims
    builtin_train, builtin_val = builtin_dataset_dirs(grid=config.h, vocab_size=config.image_vocab_size, v2_layout=v2)
    return Path(train_dir or builtin_train), Path(val_dir or builtin_val)


def open_dataset(data_dir: str | Path, config: GenieConfig, stride: int = 1, window_size: int | None = None,
                 filter_overlaps: bool = False, data: DataOptions | None = None):
    """Windows of a folder in either format, checked against the model config."""
    data = data or DataOptions()
    window = window_size or config.T
    layout, why = data.layout(Path(data_dir))
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


def check_same_layout(train_dir: str | Path, val_dir: str | Path, data: DataOptions | None = None) -> None:
    """A train and a val split of different layouts cannot feed one model: say which is which."""
    data = data or DataOptions()
    (train, train_why), (val, val_why) = data.layout(Path(train_dir)), data.layout(Path(val_dir))
    if train != val:
        raise DataFormatError(f"the train split {train_dir} is {train} ({train_why}) but the val split {val_dir} is "
                              f"{val} ({val_why}); pass two splits of one layout")


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

