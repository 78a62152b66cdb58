"""`showo` command line: one subcommand per module in `showo.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys

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
    "eval",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="showo", description="Train, sample and evaluate Show-o models.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"showo.commands.{name}").register(subparsers)
    return parser


def run_parser(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse and run a subcommand; a `ShowoError` becomes one line on stderr and exit status 2."""
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ShowoError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    return run_parser(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
