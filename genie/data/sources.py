"""Which folders a command reads and how its datasets are opened (the recipes every command shares)."""
from __future__ import annotations

from pathlib import Path

from genie.config import GenieConfig
from genie.data.builtin import builtin_dataset_dirs
from genie.data.raw_tokens import RawTokenDataset


def resolve_data_dirs(train_dir: str | Path | None, val_dir: str | Path | None, config: GenieConfig
                      ) -> tuple[Path, Path]:
    """The train/val folders: the given ones, or the built-in dataset matching the config (made if missing)."""
    if train_dir and val_dir:
        return Path(train_dir), Path(val_dir)
    builtin_train, builtin_val = builtin_dataset_dirs(grid=config.h, vocab_size=config.image_vocab_size)
    return Path(train_dir or builtin_train), Path(val_dir or builtin_val)


def open_eval_dataset(val_dir: str | Path, config: GenieConfig, stride: int = 1,
                      window_size: int | None = None) -> RawTokenDataset:
    """Validation windows as the challenge scores them: non-overlapping, checked against the model config."""
    dataset = RawTokenDataset(val_dir, window_size or config.T, stride, filter_overlaps=True,
                              action_dims=config.action_dims)
    dataset.check_compatible(config)
    return dataset


def open_train_dataset(train_dir: str | Path, config: GenieConfig, stride: int = 1, window_size: int | None = None,
                       filter_overlaps: bool = False) -> RawTokenDataset:
    """Training windows, checked against the model config."""
    dataset = RawTokenDataset(train_dir, window_size or config.T, stride, filter_overlaps=filter_overlaps,
                              action_dims=config.action_dims)
    dataset.check_compatible(config)
    return dataset


def challenge_stride(data_dir: str | Path) -> int:
    """The stride that samples a split at 2 Hz, as the challenge evaluates (hz 30 -> 15); 1 without `hz`."""
    hz = RawTokenDataset.read_metadata(data_dir).get("hz")
    return max(1, round(hz / 2)) if isinstance(hz, (int, float)) and hz > 0 else 1
