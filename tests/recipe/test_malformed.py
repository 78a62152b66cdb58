"""Malformed recipes through the real CLI: exit status 2 and one `showo: error:` line naming the key or file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from showo.cli import main
from showo.recipe import loader


def _set(data: dict, dotted: str, value) -> dict:
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return data


def _drop(data: dict, dotted: str) -> dict:
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        node = node[part]
    del node[last]
    return data


# (id, change to the valid recipe, overrides, substrings the one-line message must contain)
CASES = [
    ("misspelt-top-key", lambda d: _set(d, "optm", {"lr": 1.0}), [], ["unknown key 'optm'", "'optim'"]),
    (
        "misspelt-nested-key",
        lambda d: _set(d, "optim.lrr", 1.0),
        [],
        ["'optim.lrr'", "did you mean 'optim.lr'"],
    ),
    (
        "misspelt-stream-key",
        lambda d: _set(d, "data.streams.t2i.batchsize", 3),
        [],
        ["data.streams.t2i.batchsize", "did you mean 'data.streams.t2i.batch_size'"],
    ),
    ("wrong-type-float", lambda d: _set(d, "optim.lr", "fast"), [], ["optim.lr", "expected float", "'fast'"]),
    (
        "wrong-type-int",
        lambda d: _set(d, "data.streams.t2i.batch_size", "eight"),
        [],
        ["data.streams.t2i.batch_size", "expected int", "'eight'"],
    ),
    (
        "wrong-type-list-item",
        lambda d: _set(d, "model.image_grid", [16, "x"]),
        [],
        ["model.image_grid[1]", "int"],
    ),
    ("scalar-for-list", lambda d: _set(d, "model.image_grid", 16), [], ["model.image_grid", "list of int"]),
    ("scalar-for-section", lambda d: _set(d, "optim", 5), [], ["optim"]),
    ("missing-run-name", lambda d: _drop(d, "run.name"), [], ["missing required", "run.name"]),
    ("missing-image-tokenizer", lambda d: _drop(d, "model.image_tokenizer"), [], ["model.image_tokenizer"]),
    ("missing-shards", lambda d: _drop(d, "data.streams.lm.shards"), [], ["data.streams.lm.shards"]),
    (
        "unknown-task",
        lambda d: _set(d, "data.streams.t2j", {"shards": ["a.tar"]}),
        [],
        ["t2j", "did you mean 't2i'"],
    ),
    (
        "negative-batch",
        lambda d: _set(d, "data.streams.t2i.batch_size", -1),
        [],
        ["data.streams.t2i.batch_size", "-1"],
    ),
    (
        "zero-batch",
        lambda d: _set(d, "data.streams.lm.batch_size", 0),
        [],
        ["data.streams.lm.batch_size", "positive"],
    ),
    (
        "bad-objective",
        lambda d: _set(d, "objective.image", "vqgan"),
        [],
        ["objective.image", "mtp, ar, diffusion"],
    ),
    (
        "bad-mask-schedule",
        lambda d: _set(d, "objective.mask_schedule", "cos"),
        [],
        ["objective.mask_schedule"],
    ),
    (
        "bad-strategy",
        lambda d: _set(d, "trainer.strategy.name", "fsdp"),
        [],
        ["trainer.strategy.name", "deepspeed"],
    ),
    (
        "zero-stage-4",
        lambda d: _set(d, "trainer.strategy.zero_stage", 4),
        [],
        ["trainer.strategy.zero_stage", "0, 1, 2, 3"],
    ),
    (
        "bad-precision",
        lambda d: _set(d, "trainer.precision", "bf15-mixed"),
        [],
        ["trainer.precision", "bf16-mixed"],
    ),
    ("empty-streams", lambda d: _set(d, "data.streams", {}), [], ["data.streams", "at least one"]),
    (
        "warmup-over-max",
        lambda d: _set(d, "optim.warmup_steps", 1000),
        [],
        ["optim.warmup_steps", "optim.max_steps"],
    ),
    (
        "offload-params-zero2",
        lambda d: _set(d, "trainer.strategy", {"name": "deepspeed", "zero_stage": 2, "offload_params": True}),
        [],
        ["offload_params", "zero_stage=3"],
    ),
    (
        "cond-dropout-range",
        lambda d: _set(d, "objective.cond_dropout_prob", 1.5),
        [],
        ["objective.cond_dropout_prob"],
    ),
    (
        "llm-and-config",
        lambda d: _set(d, "model.llm_config", {"hidden_size": 8}),
        [],
        ["model.llm", "model.llm_config"],
    ),
    (
        "grid-vs-resolution",
        lambda d: _set(d, "data.resolution", 70),
        [],
        ["data.resolution 70", "model.image_grid"],
    ),
    ("unknown-kind", lambda d: _set(d, "kind", "diffusion"), [], ["unknown kind 'diffusion'"]),
    ("override-no-equals", lambda d: d, ["optim.lr"], ["bad override 'optim.lr'", "key=value"]),
    ("override-empty-key", lambda d: d, ["=3"], ["bad override '=3'"]),
    (
        "override-unknown-key",
        lambda d: d,
        ["optim.lrr=1"],
        ["override 'optim.lrr=1'", "did you mean 'optim.lr'"],
    ),
    ("override-wrong-type", lambda d: d, ["optim.max_steps=abc"], ["optim.max_steps", "expected int"]),
    ("missing-base", lambda d: _set(d, "base", "nowhere.yaml"), [], ["not found", "nowhere.yaml", "base of"]),
    ("override-base", lambda d: d, ["base=other.yaml"], ["bad override 'base=other.yaml'"]),
    ("bad-interpolation", lambda d: _set(d, "init_from", "${run.nope}"), [], ["init_from", "run.nope"]),
    ("override-bad-value", lambda d: d, ["run.name=${oops"], ["bad override 'run.name=${oops'"]),
    ("nan-lr", lambda d: _set(d, "optim.lr", float("nan")), [], ["optim.lr", "finite"]),
    ("inf-override", lambda d: d, ["optim.lr=inf"], ["optim.lr", "finite"]),
    ("65-bit-steps", lambda d: d, [f"optim.max_steps={2**64}"], ["optim.max_steps", "64 bits"]),
    ("400-digit-steps", lambda d: d, [f"optim.max_steps={10**400}"], ["optim.max_steps", "401-digit"]),
]


@pytest.mark.parametrize(
    ("change", "overrides", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_recipe_exits_2_with_one_line(
    valid_recipe, write_recipe, capsys, change, overrides, expected
):
    path = write_recipe(change(valid_recipe))
    assert (
        main(
            ["recipe", "validate", str(path)] if not overrides else ["recipe", "show", str(path), *overrides]
        )
        == 2
    )
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("showo: error: ")
    for text in expected:
        assert text in lines[0], lines[0]


def test_at_least_twenty_malformed_cases():
    assert len(CASES) >= 20


def test_invalid_yaml_names_file_and_line(write_recipe, capsys):
    path = write_recipe("run:\n  name: [unclosed\n")
    assert main(["recipe", "validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "line" in err and "invalid YAML" in err and len(err.splitlines()) == 1


def test_missing_recipe_file(tmp_path, capsys):
    assert main(["recipe", "validate", str(tmp_path / "absent.yaml")]) == 2
    assert "recipe file not found" in capsys.readouterr().err


def test_cyclic_base(valid_recipe, write_recipe, capsys):
    write_recipe({**valid_recipe, "base": "b.yaml"}, "a.yaml")
    b = write_recipe({"base": "a.yaml"}, "b.yaml")
    assert main(["recipe", "validate", str(b)]) == 2
    err = capsys.readouterr().err.strip()
    assert "cyclic base chain" in err and "a.yaml" in err and len(err.splitlines()) == 1


def test_bases_disagree_on_kind(valid_recipe, write_recipe, capsys):
    write_recipe({"kind": "tokenizer"}, "base.yaml")
    path = write_recipe({**valid_recipe, "base": "base.yaml"})
    assert main(["recipe", "validate", str(path)]) == 2
    assert "disagree on kind" in capsys.readouterr().err


def test_kind_whose_schema_is_not_installed(write_recipe, capsys, monkeypatch):
    monkeypatch.setitem(loader.KINDS, "tokenizer", "showo.no_such_module:TokenizerRecipe")
    path = write_recipe({"kind": "tokenizer", "run": {"name": "tok"}})
    assert main(["recipe", "validate", str(path)]) == 2
    assert "showo.no_such_module.TokenizerRecipe" in capsys.readouterr().err


def _showo_script() -> str:
    script = Path(sys.executable).parent / "showo"
    if not script.exists():
        pytest.skip("the showo console script is not installed next to this interpreter")
    return str(script)


def test_console_script_exit_status_and_no_traceback(valid_recipe, write_recipe):
    """The installed `showo` script, in its own process: status 2, one line on stderr, nothing on stdout."""
    path = write_recipe(_set(valid_recipe, "optim.lrr", 1.0))
    proc = subprocess.run([_showo_script(), "recipe", "validate", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("showo: error: ") and "did you mean 'optim.lr'" in lines[0]
    assert proc.stdout == ""
