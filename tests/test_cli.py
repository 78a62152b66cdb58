"""The `showo` entry point: dispatch, usage errors, and the console scripts pyproject declares."""

from __future__ import annotations

import argparse
import errno
import importlib
import tomllib
from pathlib import Path

import pytest

from showo import cli
from showo.errors import ShowoError

REPO = Path(__file__).resolve().parents[1]


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "recipe" in cli.COMMANDS
    for name in cli.COMMANDS:
        assert name in out


@pytest.mark.parametrize(
    ("argv", "cause"),
    [
        ([], "the following arguments are required: command (see 'showo --help')"),
        (["no-such-command"], "invalid choice: 'no-such-command'"),
        (["recipe"], "recipe: the following arguments are required: action (see 'showo recipe --help')"),
        (["recipe", "validate"], "recipe validate: the following arguments are required: PATH"),
        (["recipe", "validate", "x.yaml", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(argv, cause, capsys):
    """argparse's usage errors read like every other error: one line, no usage block, status 2."""
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("showo: error: ") and cause in captured.err
    assert captured.err.count("\n") == 1 and "usage:" not in captured.err and captured.out == ""


def test_each_command_module_registers_a_runner():
    parser = cli.build_parser()
    for name in cli.COMMANDS:
        module = importlib.import_module(f"showo.commands.{name}")
        assert callable(module.register)
    args = parser.parse_args(["recipe", "validate", "x.yaml"])
    assert callable(args.func) and args.paths == ["x.yaml"]


def test_console_scripts_resolve_to_callables():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) >= {"showo", "showo-data"}
    for target in scripts.values():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr))


def _parser_running(func) -> argparse.ArgumentParser:
    parser = cli.Parser(prog="showo")
    parser.add_subparsers(dest="command", required=True).add_parser("go").set_defaults(func=func)
    return parser


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            OSError(errno.ENOSPC, "No space left on device", "/out/x.bin"),
            "cannot access /out/x.bin: No space left on device",
        ),
        (
            OSError(errno.EROFS, "Read-only file system", "/ro/x"),
            "cannot access /ro/x: Read-only file system",
        ),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/d"), "cannot access /d: Is a directory"),
        (PermissionError(errno.EACCES, "Permission denied"), "PermissionError: Permission denied"),
    ],
)
def test_an_os_error_no_command_caught_is_still_one_line(error, line, capsys):
    def fail(args):
        raise error

    assert cli.run_parser(_parser_running(fail), ["go"]) == 2
    assert capsys.readouterr().err == f"showo: error: {line}\n"


def test_a_broken_invariant_keeps_its_traceback():
    """Only the user's mistakes become one line: an assertion (our bug) propagates unchanged."""

    def broken(args):
        raise AssertionError("internal invariant")

    with pytest.raises(AssertionError, match="internal invariant"):
        cli.run_parser(_parser_running(broken), ["go"])


def test_an_error_message_is_kept_to_one_line(capsys):
    def multiline(args):
        raise ShowoError("first\nsecond\n")

    assert cli.run_parser(_parser_running(multiline), ["go"]) == 2
    assert capsys.readouterr().err == "showo: error: first second\n"
