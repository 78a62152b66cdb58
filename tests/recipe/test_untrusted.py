"""Recipes cannot read the environment, and a `base:` file's contents never reach an error message.

The reference is a marker string: it is the value of an environment variable, or it is written into the
file `base:` names; whatever the outcome, it must not appear in anything the CLI prints.
"""

from __future__ import annotations

import os

import pytest
import yaml

from showo.cli import main
from showo.recipe import load_recipe, save_recipe

MARKER = "MARKER-7f3a9c"


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, out: str, err: str) -> str:
    assert code == 2
    assert MARKER not in out and MARKER not in err
    assert err.count("\n") == 1 and err.startswith("showo: error: ") and "Traceback" not in err
    return err


RESOLVED = [
    "${oc.env:SHOWO_TEST_SECRET}",
    "${oc.env:SHOWO_TEST_SECRET,fallback}",
    "${ oc.env : SHOWO_TEST_SECRET }",
    "prefix-${oc.env:SHOWO_TEST_SECRET}",
    "${run.${oc.env:SHOWO_TEST_SECRET}}",
    "${oc.decode:${oc.env:SHOWO_TEST_SECRET}}",
    "${oc.create:{a: 1}}",
    "${oc.select:run.name,x}",
    "${anything:at_all}",
]


@pytest.mark.parametrize("value", RESOLVED)
def test_a_resolver_in_the_file_is_refused(value, valid_recipe, write_recipe, monkeypatch, capsys):
    monkeypatch.setenv("SHOWO_TEST_SECRET", MARKER)
    valid_recipe["run"]["name"] = value
    path = write_recipe(valid_recipe)
    for argv in (["recipe", "validate", str(path)], ["recipe", "show", str(path)]):
        err = _one_line_error(*_run(capsys, argv))
        assert "run.name" in err and "${key}" in err


@pytest.mark.parametrize(
    "place",
    ["override", "list-item", "base-file"],
)
def test_a_resolver_anywhere_is_refused(place, valid_recipe, write_recipe, monkeypatch, capsys):
    monkeypatch.setenv("SHOWO_TEST_SECRET", MARKER)
    secret = "${oc.env:SHOWO_TEST_SECRET}"
    overrides = []
    if place == "override":
        overrides = [f"run.name={secret}"]
    elif place == "list-item":
        valid_recipe["data"]["streams"]["t2i"]["shards"] = ["ok/*.tar", secret]
    else:
        write_recipe({**valid_recipe, "init_from": secret}, "base.yaml")
        valid_recipe = {"base": "base.yaml", "run": {"name": "child"}}
    path = write_recipe(valid_recipe)
    _one_line_error(*_run(capsys, ["recipe", "show", str(path), *overrides]))


def test_a_plain_reference_still_resolves_and_is_saved_as_its_value(valid_recipe, write_recipe, tmp_path):
    valid_recipe["init_from"] = "${run.output_dir}/previous"
    recipe = load_recipe(write_recipe(valid_recipe))
    saved = yaml.safe_load(save_recipe(recipe, tmp_path / "run" / "recipe.yaml").read_text())
    assert saved["init_from"] == "runs/previous"


def test_nothing_is_written_when_a_resolver_is_refused(
    valid_recipe, write_recipe, monkeypatch, tmp_path, capsys
):
    """`showo train` stops at the recipe: no run directory, no recipe.yaml with the value in it."""
    monkeypatch.setenv("SHOWO_TEST_SECRET", MARKER)
    valid_recipe["run"]["output_dir"] = str(tmp_path / "runs")
    valid_recipe["run"]["name"] = "${oc.env:SHOWO_TEST_SECRET}"
    err = _one_line_error(*_run(capsys, ["train", str(write_recipe(valid_recipe))]))
    assert "resolvers such as" in err
    assert not (tmp_path / "runs").exists()


def _bomb_yaml() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    return "\n".join(lines) + "\n"


# the text of the file `base:` names; each holds MARKER somewhere an error could echo it
BASE_CONTENTS = {
    "passwd-like": f"root:x:0:0:{MARKER}:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n",
    "secret-key": f"{MARKER}: hunter2\n",
    "secret-value-under-a-section-key": f"run: {MARKER}\n",
    "secret-value-of-wrong-type": f"optim:\n  lr: {MARKER}\n",
    "secret-in-a-list-of-int": f"model:\n  image_grid: [16, {MARKER}]\n",
    "secret-kind": f"kind: {MARKER}\n",
    "secret-base-type": f"base: [{MARKER}]\n",
    "secret-nested-key": f"optim:\n  {MARKER}: 1\n",
    "secret-stream-section": f"data:\n  streams:\n    t2i: {MARKER}\n",
    "yaml-tag": f"run: !{MARKER} x\n",
    "yaml-quoted-in-error": f"run: '{MARKER}\n",
    "yaml-unknown-escape": f'run: "\\q{MARKER}"\n',
    "a-list": f"- {MARKER}\n- b\n",
    "a-scalar": f"{MARKER}\n",
    "a-resolver": f"run:\n  name: ${{oc.env:{MARKER}}}\n",
    "a-reference-to-nowhere": f"init_from: ${{{MARKER}}}\n",
    "binary": MARKER + "\x00\x01\x02",
    "billion-laughs": _bomb_yaml() + f"{MARKER}: 1\n",
}


@pytest.mark.parametrize("content", BASE_CONTENTS.values(), ids=BASE_CONTENTS.keys())
def test_base_errors_name_the_file_without_its_contents(content, write_recipe, tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text(content)
    path = write_recipe({"base": str(secret), "run": {"name": "x"}})
    err = _one_line_error(*_run(capsys, ["recipe", "validate", str(path)]))
    assert str(secret) in err


def test_non_utf8_base_is_one_line(write_recipe, tmp_path, capsys):
    secret = tmp_path / "latin1.yaml"
    secret.write_bytes(f"run: {MARKER} \xe9\xff\n".encode("latin-1"))
    path = write_recipe({"base": str(secret)})
    assert "not UTF-8" in _one_line_error(*_run(capsys, ["recipe", "validate", str(path)]))


def test_a_huge_base_is_refused_unread(write_recipe, tmp_path, capsys):
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(2 << 20)  # sparse: 2 MiB of zeros without writing them
    path = write_recipe({"base": str(big)})
    assert "too big for a recipe" in _one_line_error(*_run(capsys, ["recipe", "validate", str(path)]))


@pytest.mark.parametrize("target", ["directory", "fifo", "traversal"])
def test_base_that_is_no_file_is_one_line(target, write_recipe, tmp_path, capsys):
    if target == "directory":
        base = str(tmp_path)
    elif target == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(tmp_path / "pipe")
        base = "pipe"  # reading it would block forever
    else:
        base = "../" * 40 + "no/such/recipe.yaml"
    path = write_recipe({"base": base})
    _one_line_error(*_run(capsys, ["recipe", "validate", str(path)]))


def test_the_named_recipe_itself_still_shows_the_bad_value(valid_recipe, write_recipe, capsys):
    """Only base files are kept out of messages; the user's own recipe keeps its helpful echo."""
    valid_recipe["optim"]["lr"] = "fast"
    code, _, err = _run(capsys, ["recipe", "validate", str(write_recipe(valid_recipe))])
    assert code == 2 and "got 'fast'" in err


def test_references_cannot_assemble_a_resolver(valid_recipe, write_recipe, monkeypatch, tmp_path, capsys):
    """Two harmless halves joined by plain references give the text of a resolver: it is refused, since
    turning the recipe back into a config (recipe.yaml, hparams) would read it as one."""
    monkeypatch.setenv("SHOWO_TEST_SECRET", MARKER)
    valid_recipe["run"]["output_dir"] = "$"
    valid_recipe["model"]["text_tokenizer"] = "{oc.env:SHOWO_TEST_SECRET}"
    valid_recipe["run"]["name"] = "${run.output_dir}${model.text_tokenizer}"
    err = _one_line_error(*_run(capsys, ["recipe", "show", str(write_recipe(valid_recipe))]))
    assert "run.name" in err
