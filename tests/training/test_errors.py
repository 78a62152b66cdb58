"""User mistakes end `showo train` / `showo export` with exit status 2 and one line naming the cause."""

from __future__ import annotations

import pytest

from showo.cli import main
from tests.training.conftest import recipe_dict, write_recipe


def run_cli(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1]  # earlier lines may be progress bars of loading
    assert last.startswith("showo: error: ") and "Traceback" not in err, err
    return last


@pytest.fixture
def make_recipe(tmp_path, tiny_llm_dir, image_tokenizer_dir, shards):
    def make(**changes):
        recipe = recipe_dict(tmp_path, tiny_llm_dir, image_tokenizer_dir, shards, **changes)
        return str(write_recipe(tmp_path / "recipe.yaml", recipe))

    return make


def test_missing_shards(capsys, make_recipe, tmp_path):
    recipe = make_recipe(
        **{"data.streams.lm": {"shards": [str(tmp_path / "nowhere" / "*.tar")], "batch_size": 1}}
    )
    assert "data.streams.lm.shards: no shard matches" in run_cli(capsys, "train", recipe)


def test_init_from_with_another_vocabulary(capsys, make_recipe, baseline):
    recipe = make_recipe(init_from=str(baseline["run_dir"]), **{"model.codebook_size": 128})
    assert "different vocabulary" in run_cli(capsys, "train", recipe)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"init_from": "/nonexistent/run"}, "init_from: /nonexistent/run does not exist"),
        ({"resume": "/nonexistent/step-00000001.ckpt"}, "resume: checkpoint /nonexistent"),
        (
            {"model.image_tokenizer": "/nonexistent/tok"},
            "model.image_tokenizer: /nonexistent/tok does not exist",
        ),
        ({"trainer.accelerator": "cuda"}, "no CUDA device"),
        ({"optim.lr": -1.0}, "optim.lr must be positive"),
        ({"data.streams.t2i.batch_sise": 2}, "batch_sise"),
    ],
)
def test_bad_recipes(capsys, make_recipe, changes, message):
    assert message in run_cli(capsys, "train", make_recipe(**changes))


def test_export_of_something_that_is_not_a_checkpoint(capsys, tmp_path):
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    assert "fails verification" in run_cli(
        capsys, "export", "--ckpt", str(tmp_path / "junk.ckpt"), "--out", str(tmp_path / "o")
    )
    assert "does not exist" in run_cli(
        capsys, "export", "--ckpt", str(tmp_path / "none"), "--out", str(tmp_path / "o")
    )
