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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ShowoError as err:
        print(f"showo: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
