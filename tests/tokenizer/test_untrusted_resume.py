"""Tokenizer runs resume only from a checkpoint that passes verification: `resume: auto` skips a damaged
`last.ckpt` (one line saying so) for the newest sound step checkpoint; a damaged one named explicitly is an
error."""

from __future__ import annotations

import pytest
import torch

from showo.errors import ShowoError
from showo.recipe import load_recipe
from showo.tokenizer.training import _resume_path


def recipe(tmp_path, resume: str):
    return load_recipe("recipes/tokenizer/tiny.yaml", [f"run.output_dir={tmp_path}", f"resume={resume}"])


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_auto_skips_a_damaged_last_checkpoint(damage, tmp_path, capsys):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("step-00000006.ckpt", "step-00000012.ckpt", "last.ckpt"):
        torch.save({"state_dict": {"w": torch.arange(4096.0)}, "global_step": 12}, folder / name)
    for name in ("step-00000012.ckpt", "last.ckpt"):
        data = bytearray((folder / name).read_bytes())
        if damage == "truncate":
            data = data[: len(data) // 2]
        else:
            data[len(data) // 2] ^= 0x01  # inside the tensor data: torch itself would not notice
        (folder / name).write_bytes(bytes(data))
    assert _resume_path(recipe(tmp_path, "auto"), folder) == str(folder / "step-00000006.ckpt")
    skipped = capsys.readouterr().err.strip().splitlines()
    assert len(skipped) == 2 and "last.ckpt" in skipped[0] and "step-00000012.ckpt" in skipped[1], skipped
    with pytest.raises(ShowoError, match="fails verification") as err:
        _resume_path(recipe(tmp_path, str(folder / "last.ckpt")), folder)
    assert "\n" not in str(err.value)
