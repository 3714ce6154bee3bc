"""Shared command-line plumbing: parse dataclass arguments and turn user errors into one-line exits."""
from __future__ import annotations

import os
import sys
from typing import Callable, TypeVar

from transformers import HfArgumentParser

T = TypeVar("T")

# Errors that mean "the user gave a wrong input"; anything else is a bug and keeps its traceback.
def user_error_types() -> tuple[type[BaseException], ...]:
    from genie.checkpoint import CheckpointError
    from genie.config import ConfigError
    from genie.data import DataFormatError
    from genie.trainer import NonFiniteLossError

    return (ConfigError, DataFormatError, CheckpointError, FileNotFoundError, NonFiniteLossError)


def parse(dataclass_types, description: str, argv: list[str] | None = None):
    parser = HfArgumentParser(dataclass_types, description=description)
    return parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)


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
