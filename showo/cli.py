"""`showo` command line: one subcommand per module in `showo.commands`.

Every user mistake ends in one line `<prog>: error: <cause>` and exit status 2: argparse's own usage errors
(through `Parser`, which `showo-data` shares), a `ShowoError`, and, as a last resort, an `OSError` (disk full,
read-only output, a directory where a file was expected, no permission) that no command turned into a
`ShowoError` where it knew better what failed. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from showo.errors import ShowoError

COMMANDS: tuple[str, ...] = (
    "recipe",
    "train",
    "export",
    "tensorboard",
    "generate",
    "caption",
    "inpaint",
    "extrapolate",
    "interleave",
    "eval",
)


class UsageError(ShowoError):
    """A command line argparse refused (unknown option, missing or malformed argument)."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block): `run_parser` prints them, exit 2.

    Subparsers inherit the class (argparse creates them with the parent's type), so one `Parser` at the
    root covers every subcommand. The message names the subcommand and points at its `--help`.
    """

    def error(self, message: str) -> NoReturn:
        _, _, command = self.prog.partition(" ")
        where = f"{command}: " if command else ""
        raise UsageError(f"{where}{message} (see '{self.prog} --help')")


def os_error_message(err: OSError, doing: str | None = None) -> str:
    """One line for an OSError: what we were doing, the path, and the system's reason without `[Errno N]`."""
    reason = err.strerror or str(err) or type(err).__name__
    path = "" if err.filename is None else str(err.filename)
    if doing is None:
        return f"cannot access {path}: {reason}" if path else f"{type(err).__name__}: {reason}"
    return f"{doing}: {reason}" + (f" ({path})" if path and path not in doing else "")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="showo", description="Train, sample and evaluate Show-o models.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"showo.commands.{name}").register(subparsers)
    return parser


def run_parser(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse and run a subcommand; a user's mistake becomes one line on stderr and exit status 2."""
    try:
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except ShowoError as err:
        message = str(err)
    except OSError as err:  # last resort: the commands convert the ones they can name better
        message = os_error_message(err)
    print(f"{parser.prog}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    return run_parser(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
