"""`showo eval`: bad input ends with one line and exit 2 before any model loads; a good run records the
pinned settings (with overrides) and the tokenizer identity it was given."""

import json

import pytest

from showo import cli
from showo.eval.suites import SuiteSettings


@pytest.mark.parametrize(
    ("extra", "cause"),
    [
        (["--suite", "geneval"], "unknown eval suite 'geneval'"),
        (["--suite", "digits", "--steps", "0"], "--steps: must be at least 1"),
        (["--suite", "digits", "--guidance", "-1"], "--guidance: must be >= 0"),
        (["--suite", "digits", "--guidance", "nan"], "--guidance: must be a finite number"),
        (["--suite", "digits", "--seed", str(2**64)], "--seed: must be at most"),
        (["--suite", "pope-mini", "--batch-size", "0"], "--batch-size: must be at least 1"),
        (["--suite", "digits", "--temperature", "-0.5"], "--temperature: must be >= 0"),
        (["--suite", "digits", "--out", "{tmp}"], "is a directory"),
        (
            ["--suite", "pope-mini", "--prompt-template", "chat"],
            "--prompt-template must be one of mmu, instruct",
        ),
    ],
)
def test_bad_settings_exit_2(tmp_path, capsys, extra, cause):
    extra = [arg.format(tmp=tmp_path) for arg in extra]
    assert cli.main(["eval", "--ckpt", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("showo: error: ") and cause in err and "\n" not in err


def test_missing_checkpoint_exits_2(tmp_path, capsys):
    assert cli.main(["eval", "--ckpt", str(tmp_path / "absent"), "--suite", "digits"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_model_dir_without_image_tokenizer_exits_2(tmp_path, capsys):
    assert cli.main(["eval", "--ckpt", str(tmp_path), "--suite", "geneval-mini"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("showo: error: ") and "image_tokenizer" in err


@pytest.mark.parametrize("argv", [["eval"], ["eval", "--suite", "digits"], ["eval", "--ckpt", "x"]])
def test_missing_arguments_are_usage_errors(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("showo: error: eval: ") and "required" in err and err.count("\n") == 1


def test_tokenizer_suite_records_settings(tiny_image_tokenizer_dir, tiny_image_tokenizer, tmp_path, capsys):
    out = tmp_path / "result.json"
    argv = ["eval", "--ckpt", str(tiny_image_tokenizer_dir), "--suite", "tokenizer", "--out", str(out)]
    assert cli.main([*argv, "--seed", "7"]) == 0
    result = json.loads(out.read_text())
    assert result["suite"] == "tokenizer"
    assert result["settings"]["seed"] == 7
    assert result["settings"]["steps"] == SuiteSettings().steps
    assert result["image_tokenizer"] == tiny_image_tokenizer.identity()
    for split in ("photos", "shapes"):
        assert result["scores"][split]["psnr"] > 0
    assert str(out) in capsys.readouterr().out


def test_help_names_every_suite():
    from showo.commands.eval import SUITE_HELP
    from showo.eval.suites import SUITES

    assert set(SUITE_HELP.replace(" or ", ", ").split(", ")) == set(SUITES)
