"""Shared command-line plumbing: parse dataclass arguments and turn user errors (genie/errors.py) into one-line exits."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Callable, TypeVar

from transformers import HfArgumentParser

from genie.errors import ConfigError, UserError

T = TypeVar("T")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help: the command's whole docstring as written (its examples keep their lines), every default shown."""


class ArgumentParser(HfArgumentParser):
    """HfArgumentParser whose mistakes (a bad value, a missing or unknown flag) are one-line user errors,
    and whose --help shows every flag with its default."""

    def __init__(self, dataclass_types, **kwargs):
        super().__init__(dataclass_types, formatter_class=HelpFormatter, **kwargs)
        for action in self._actions:
            if not action.help and action.default is not argparse.SUPPRESS:
                action.help = "(default: %(default)s)"  # argparse prints nothing for a flag without a description
            negated = next((s for s in action.option_strings if s.startswith("--no_")), None)
            if negated:  # HfArgumentParser copies the positive flag's help to its --no_ twin
                action.help = f"Turn --{negated[len('--no_'):]} off."

    def error(self, message: str):
        raise ConfigError(f"{message}; see --help")


def parse(dataclass_types, description: str, argv: list[str] | None = None,
          defaults_from: Callable[[argparse.Namespace], dict] | None = None, defaults: dict | None = None):
    """Parse the command line into the dataclasses; an unknown flag is a one-line error naming it.

    `defaults` replace the dataclasses' own defaults (also in --help); `defaults_from(first_pass_namespace)`
    may supply defaults that explicit flags override (e.g. the stage-1 fields of the --genie_config file)."""
    parser = ArgumentParser(dataclass_types, description=description)
    parser.set_defaults(**(defaults or {}))
    if defaults_from is not None:
        flags = {action.dest for action in parser._actions}  # a saved run may hold keys no flag has (any more)
        found = defaults_from(parser.parse_known_args(argv)[0])
        parser.set_defaults(**{k: v for k, v in found.items() if k in flags})
    *parsed, unknown = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False,
                                                          return_remaining_strings=True)
    if unknown:
        raise ConfigError(f"unknown flag(s) {' '.join(unknown)}; see --help for the flags of this command")
    return parsed


def run_cli(main: Callable[[], T]) -> T:
    """Run `main`; a user error prints `error: <one line>` on stderr and exits 2 (GENIE_DEBUG=1 shows the traceback)."""
    try:
        return main()
    except UserError as error:
        if os.environ.get("GENIE_DEBUG"):
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def stopped_exit_code(result: object) -> int:
    """The exit status of a training command: 0 when it finished, 128 + the signal's number when a stop
    request (SIGINT, SIGTERM) ended it with a checkpoint, as a shell reports a process killed by it, so
    that a scheduler or a script can tell "stopped" from "finished"."""
    if isinstance(result, dict) and "stopped_by" in result:
        return 128 + signal.Signals[result["stopped_by"]].value
    return 0
