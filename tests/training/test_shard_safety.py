"""Training reads shards as data only: a hostile member or bad codes stop the stream with one line (also from
loader workers, also through `showo train`), a shard deleted mid-run is named, and a resume over another
shard list is refused unless the recipe allows it."""

from __future__ import annotations

import glob
import itertools
import shutil

import numpy as np
import pytest

from showo.cli import main
from showo.data.datamodule import ShowoDataModule
from showo.errors import ShowoError
from showo.recipe.schema import DataConfig, StreamConfig
from tests.data.hostile import hostile_payloads, npy, read_tar, write_tar
from tests.fixtures.model import TINY_CODEBOOK
from tests.training.conftest import N_TOKENS, recipe_dict, write_recipe


def copy_shards(shards: dict[str, str], name: str, out) -> list:
    """A private copy of one fixture shard set (tests below delete and rewrite shards)."""
    out.mkdir()
    source = sorted(glob.glob(shards[name]))
    return [shutil.copy(p, out) for p in source]


def plant(shard, member: str, payload: bytes) -> None:
    """Rewrite `shard` with the `member` of its second sample replaced (or added) by `payload`."""
    members = read_tar(shard)
    second = members[4][0].split(".", 1)[0]
    target = f"{second}.{member}"
    kept = [(n, d) for n, d in members if n != target]
    at = max(i for i, (n, _) in enumerate(kept) if n.startswith(second + ".")) + 1
    write_tar(shard, [*kept[:at], (target, payload), *kept[at:]])


def datamodule(urls_glob: str, prompter, num_workers: int = 0) -> ShowoDataModule:
    streams = {"t2i": StreamConfig(shards=[urls_glob], batch_size=2)}
    data = DataConfig(resolution=64, num_workers=num_workers, shuffle_buffer=0, streams=streams)
    return ShowoDataModule(data, prompter, seed=3, segment_steps=4)


def first_error(loader, batches: int = 60) -> str:
    with pytest.raises(ShowoError) as info:
        for _ in itertools.islice(loader, batches):
            pass
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


@pytest.mark.parametrize("member", ["pyd", "pkl", "pth", "codes.npy"])
def test_pickle_member_stops_the_workers_in_one_line(shards, tiny_showo, tmp_path, member):
    marker = tmp_path / "marker"
    for shard in copy_shards(shards, "image_text", tmp_path / "s"):
        plant(shard, member, hostile_payloads(marker)[member])
    dm = datamodule(str(tmp_path / "s" / "*.tar"), tiny_showo.prompter(), num_workers=2)
    message = first_error(dm.loader("t2i"))
    assert f".{member} is not" in message and ".tar" in message
    assert not marker.exists()


@pytest.mark.parametrize(
    "codes, reason",
    [
        (np.full(N_TOKENS, TINY_CODEBOOK, np.uint16), f"codes hold {TINY_CODEBOOK}, outside"),
        (np.zeros(N_TOKENS, np.float32), "dtype float32"),
        (np.zeros(N_TOKENS - 1, np.uint16), f"the grid needs [{N_TOKENS}]"),
        (np.zeros((2, N_TOKENS), np.uint16), f"the grid needs [{N_TOKENS}]"),
    ],
)
def test_bad_codes_never_reach_the_model(shards, tiny_showo, tmp_path, codes, reason):
    for shard in copy_shards(shards, "image_text", tmp_path / "s"):
        plant(shard, "codes.npy", npy(codes))
    message = first_error(datamodule(str(tmp_path / "s" / "*.tar"), tiny_showo.prompter()).loader("t2i"))
    assert reason in message and "sample 's0000" in message


def test_a_shard_deleted_mid_run_is_named(shards, tiny_showo, tmp_path):
    copies = copy_shards(shards, "image_text", tmp_path / "s")
    loader = iter(
        datamodule(str(tmp_path / "s" / "*.tar"), tiny_showo.prompter(), num_workers=2).loader("t2i")
    )
    next(loader)
    (tmp_path / "s" / copies[2].rsplit("/", 1)[1]).unlink()
    message = first_error(loader, batches=200)
    assert f"shard {copies[2]} is gone" in message


def run_cli(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1]  # earlier lines may be progress bars
    assert last.startswith("showo: error: ") and "Traceback" not in err, err
    return last


def test_showo_train_on_a_hostile_shard_is_one_line_and_runs_nothing(
    capsys, tmp_path, tiny_llm_dir, image_tokenizer_dir, shards
):
    marker = tmp_path / "marker"
    for shard in copy_shards(shards, "image_text", tmp_path / "s"):
        plant(shard, "pyd", hostile_payloads(marker)["pyd"])
    hostile = {**shards, "image_text": str(tmp_path / "s" / "*.tar")}
    recipe = recipe_dict(tmp_path, tiny_llm_dir, image_tokenizer_dir, hostile, **{"data.num_workers": 2})
    message = run_cli(capsys, "train", str(write_recipe(tmp_path / "recipe.yaml", recipe)))
    assert ".pyd is not a member the shard contract names" in message
    assert not marker.exists()


def test_resume_over_another_shard_list(capsys, tmp_path, tiny_llm_dir, image_tokenizer_dir, shards):
    copies = copy_shards(shards, "image_text", tmp_path / "s")
    mine = {**shards, "image_text": str(tmp_path / "s" / "*.tar")}
    changes = {"optim.max_steps": 2, "trainer.checkpoint_every": 2}
    recipe = write_recipe(
        tmp_path / "recipe.yaml", recipe_dict(tmp_path, tiny_llm_dir, image_tokenizer_dir, mine, **changes)
    )
    assert main(["train", str(recipe)]) == 0
    gone = copies[-1].rsplit("/", 1)[1]
    (tmp_path / "s" / gone).unlink()
    message = run_cli(capsys, "train", str(recipe), "optim.max_steps=4")
    assert (
        f"data.streams.mmu.shards: the checkpoint was trained on 4 shards, the recipe lists 3; {gone} is missing"
        in message
    )
    assert "data.allow_shard_change" in message
    assert main(["train", str(recipe), "optim.max_steps=4", "data.allow_shard_change=true"]) == 0
    assert (tmp_path / "runs" / "tiny" / "checkpoints" / "step-00000004.ckpt").exists()
