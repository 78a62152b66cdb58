"""The `showo` entry point: dispatch, usage errors, and the console scripts pyproject declares."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

from showo import cli

REPO = Path(__file__).resolve().parents[1]


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "recipe" in cli.COMMANDS
    for name in cli.COMMANDS:
        assert name in out


@pytest.mark.parametrize("argv", [[], ["no-such-command"], ["recipe"], ["recipe", "validate"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


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
