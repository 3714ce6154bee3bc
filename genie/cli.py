"""Shared command-line plumbing: parse dataclass arguments and turn user errors into one-line exits."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

from transformers import HfArgumentParser

from genie.config import ConfigError

T = TypeVar("T")


# Errors that mean "the user gave a wrong input"; anything else is a bug and keeps its traceback.
def user_error_types() -> tuple[type[BaseException], ...]:
    from genie.checkpoint import CheckpointError
    from genie.data import DataFormatError
    from genie.trainer import NonFiniteLossError, NothingToLearnError

    return (ConfigError, DataFormatError, CheckpointError, FileNotFoundError, NonFiniteLossError, NothingToLearnError)


def check_flag(ok: bool, flag: str, value, what: str) -> None:
    """A wrong flag value is a one-line ConfigError naming the flag, its value and what it must be."""
    if not ok:
        raise ConfigError(f"--{flag} {value!r} {what}")


def check_output_folder(path: str | Path | None, flag: str = "output_dir") -> None:
    """An output folder must be a folder (or not exist yet) that can be written."""
    if path is None:
        return
    path = Path(path)
    check_flag(not path.exists() or path.is_dir(), flag, str(path), "is a file, not a folder; choose a folder path")
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    check_flag(_writable(existing), flag, str(path), f"cannot be written ({existing} is not writable); choose a "
               "folder you can write")


def _writable(folder: Path) -> bool:
    """Whether files can be created in `folder`: permissions, and (for root, whom permissions do not stop)
    an anonymous temporary file that leaves no trace."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


class ArgumentParser(HfArgumentParser):
    """HfArgumentParser whose mistakes (a bad value, a missing or unknown flag) are one-line user errors."""

    def error(self, message: str):
        raise ConfigError(f"{message}; see --help")


def parse(dataclass_types, description: str, argv: list[str] | None = None,
          defaults_from: Callable[[argparse.Namespace], dict] | None = None):
    """Parse the command line into the dataclasses; an unknown flag is a one-line error naming it.

    `defaults_from(first_pass_namespace)` may supply defaults that explicit flags override (e.g. the
    stage-1 fields of the --genie_config file)."""
    parser = ArgumentParser(dataclass_types, description=description)
    if defaults_from is not None:
        parser.set_defaults(**defaults_from(parser.parse_known_args(argv)[0]))
    *parsed, unknown = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False,
                                                          return_remaining_strings=True)
    if unknown:
        raise ConfigError(f"unknown flag(s) {' '.join(unknown)}; see --help for the flags of this command")
    return parsed


def run_cli(main: Callable[[], T]) -> T:
    """Run `main`; a user error prints `error: <one line>` on stderr and exits 2 (GENIE_DEBUG=1 shows the traceback)."""
    try:
        return main()
    except user_error_types() as error:
        if os.environ.get("GENIE_DEBUG"):
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
