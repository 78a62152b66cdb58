"""The shipped tiny stage chain, stage1 -> stage2 -> stage3 -> stage512 -> instruct, each initialised from the
one before, run for a few steps on the hand-written shards (the demo runs the same recipes for longer)."""

from __future__ import annotations

from showo.cli import main
from showo.recipe import load_recipe
from showo.training.checkpoint import list_checkpoints
from tests.training.conftest import REPO, scalars

CHAIN = ["stage1", "stage2", "stage3", "stage512", "instruct"]
SHARD_SET = {
    "c2i": "class",
    "lm": "lm",
    "t2i": "image_text",
    "mmu": "image_text",
    "instruct": "instruct",
    "mixed": "mixed",
}


def stage_overrides(path, tmp_path, tiny_llm_dir, image_tokenizer_dir, shards, previous) -> list[str]:
    recipe = load_recipe(path)
    big = recipe.model.image_grid == [32, 32]
    out = [
        f"model.llm={tiny_llm_dir}",
        f"model.image_tokenizer={image_tokenizer_dir}",
        "model.codebook_size=256",
        f"run.output_dir={tmp_path}",
        "optim.max_steps=2",
        "optim.warmup_steps=1",
        "trainer.log_every=1",
        "trainer.checkpoint_every=2",
        "trainer.sample_every=0",
        "data.num_workers=0",
        "data.shuffle_buffer=4",
        f"init_from={previous}" if previous else "init_from=null",
    ]
    for task in recipe.data.streams:
        shard_set = "image_text_32" if big and task in ("t2i", "mmu") else SHARD_SET[task]
        out += [f'data.streams.{task}.shards=["{shards[shard_set]}"]', f"data.streams.{task}.batch_size=1"]
    return out


def test_tiny_stage_chain_runs_end_to_end(tmp_path, tiny_llm_dir, image_tokenizer_dir, shards, capsys):
    previous = None
    for stage in CHAIN:
        path = REPO / "recipes" / "tiny" / f"{stage}.yaml"
        overrides = stage_overrides(path, tmp_path, tiny_llm_dir, image_tokenizer_dir, shards, previous)
        assert main(["train", str(path), *overrides]) == 0, stage
        run_dir = tmp_path / load_recipe(path).run.name
        (ckpt,) = list_checkpoints(run_dir)
        assert sorted(scalars(run_dir, "train/loss")) == [0, 1]
        out = capsys.readouterr().out
        assert f"starting from {previous or 'scratch'}" in out, stage
        if previous is not None:  # optimizer and schedule start fresh: warmup again from lr 0
            assert scalars(run_dir, "train/lr")[0] == 0.0
        previous = run_dir
    assert load_recipe(REPO / "recipes" / "tiny" / "stage512.yaml").model.image_grid == [32, 32]
