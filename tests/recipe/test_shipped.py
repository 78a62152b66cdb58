"""Every shipped recipe validates; the paper-scale ones carry the official values
(docs/official-differences.md#configurations)."""

from __future__ import annotations

import functools

import pytest

from showo.cli import main
from showo.recipe import load_recipe

from .conftest import REPO

SHIPPED = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "recipes").glob("**/*.yaml"))
STAGES = ("stage1", "stage2", "stage3", "stage512", "instruct")


def test_shipped_recipes_exist():
    for scale in ("showo", "tiny"):
        for stage in STAGES:
            assert f"recipes/{scale}/{stage}.yaml" in SHIPPED


@pytest.mark.parametrize("path", SHIPPED)
def test_every_shipped_recipe_validates(path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(["recipe", "validate", path]) == 0, capsys.readouterr().err


@functools.cache
def _load(path: str):
    """Loaded once per session: the tests only read these objects."""
    return load_recipe(REPO / path)


def _batch_sizes(recipe) -> dict[str, int]:
    return {name: s.batch_size for name, s in recipe.data.streams.items()}


def _coeffs(recipe) -> dict[str, float]:
    return {name: s.loss_coeff for name, s in recipe.data.streams.items()}


def _common_paper_values(recipe) -> None:
    assert recipe.run.seed == 10086
    assert recipe.model.codebook_size == 8192
    assert recipe.objective.image == "mtp" and recipe.objective.mask_schedule == "cosine"
    assert recipe.objective.cond_dropout_prob == 0.1 and recipe.objective.min_mask_rate == 0.0
    assert (
        recipe.optim.betas == [0.9, 0.999] and recipe.optim.eps == 1e-8 and recipe.optim.weight_decay == 0.01
    )
    assert recipe.optim.grad_clip == 1.0 and recipe.optim.min_lr_ratio == 0.0
    assert recipe.trainer.precision == "bf16-mixed"
    assert recipe.trainer.strategy.name == "deepspeed"
    assert recipe.trainer.sample.steps == 12


def test_paper_stage1():
    r = _load("recipes/showo/stage1.yaml")
    _common_paper_values(r)
    assert _batch_sizes(r) == {"c2i": 15, "lm": 4, "mmu": 10}
    assert _coeffs(r) == {"c2i": 1.0, "lm": 0.1, "mmu": 1.0}
    assert (r.optim.lr, r.optim.warmup_steps, r.optim.max_steps) == (1e-4, 5000, 500_000)
    assert r.model.max_text_len == 128 and r.model.seq_len == 387
    assert r.trainer.devices * r.trainer.num_nodes == 48
    assert r.trainer.strategy.zero_stage == 2
    assert r.trainer.sample.guidance == 1.5


def test_paper_stage2_and_3():
    s2 = _load("recipes/showo/stage2.yaml")
    _common_paper_values(s2)
    assert _batch_sizes(s2) == {"t2i": 10, "lm": 4, "mmu": 10}
    assert _coeffs(s2) == {"t2i": 1.0, "lm": 0.1, "mmu": 1.0}
    assert (s2.optim.lr, s2.optim.warmup_steps, s2.optim.max_steps) == (1e-4, 5000, 1_000_000)
    assert s2.model.seq_len == 387 and s2.trainer.sample.guidance == 0.0
    assert s2.data.streams["t2i"].first_sentence_prob == 0.5 and s2.data.streams["t2i"].strip_prefixes
    assert s2.init_from == "runs/showo-stage1"
    s3 = _load("recipes/showo/stage3.yaml")
    _common_paper_values(s3)
    assert _batch_sizes(s3) == {"t2i": 10, "lm": 4, "mmu": 10}
    assert (s3.optim.lr, s3.optim.warmup_steps, s3.optim.max_steps) == (2e-5, 5000, 50_000)
    assert s3.init_from == "runs/showo-stage2"


def test_paper_stage512_uses_32x32_codes():
    r = _load("recipes/showo/stage512.yaml")
    _common_paper_values(r)
    assert r.data.resolution == 512 and r.model.image_grid == [32, 32] and r.model.num_image_tokens == 1024
    assert _batch_sizes(r) == {"t2i": 5, "lm": 2, "mmu": 5}


def test_paper_instruct():
    r = _load("recipes/showo/instruct.yaml")
    _common_paper_values(r)
    assert r.model.max_text_len == 381 and r.model.seq_len == 640
    assert _batch_sizes(r) == {"t2i": 4, "lm": 2, "instruct": 6}
    assert (r.optim.lr, r.optim.warmup_steps, r.optim.max_steps) == (5e-5, 1000, 14_000)
    assert r.trainer.devices * r.trainer.num_nodes == 8


def test_paper_zero3_offload_variant():
    r = _load("recipes/showo/stage2-zero3-offload.yaml")
    base = _load("recipes/showo/stage2.yaml")
    s = r.trainer.strategy
    assert (s.name, s.zero_stage, s.offload_optimizer, s.offload_params) == ("deepspeed", 3, True, True)
    assert r.optim == base.optim and r.data == base.data and r.model == base.model


def test_tiny_recipes_are_cpu_scale():
    for stage in STAGES:
        r = _load(f"recipes/tiny/{stage}.yaml")
        assert r.trainer.accelerator == "cpu" and r.trainer.precision == "32-true"
        assert r.trainer.strategy.name == "auto"
        assert r.optim.max_steps <= 500
        assert r.model.llm == "demo_out/tiny-llm" and r.model.image_tokenizer == "demo_out/tokenizer"
        assert all(g.startswith("demo_out/shards/") for s in r.data.streams.values() for g in s.shards)
        grid = [32, 32] if stage == "stage512" else [16, 16]
        assert r.model.image_grid == grid and r.data.resolution == grid[0] * 4


def test_tiny_chain_matches_the_tokenizer_the_demo_trains():
    """recipes/tiny read demo_out/tokenizer, which recipes/tokenizer/demo.yaml exports: same codes, same grid."""
    tokenizer = _load("recipes/tokenizer/demo.yaml")
    assert tokenizer.export_dir == "demo_out/tokenizer"
    assert _load("recipes/tokenizer/tiny.yaml").export_dir != tokenizer.export_dir
    downsample = 2 ** (len(tokenizer.model.ch_mult) - 1)
    for stage in STAGES:
        r = _load(f"recipes/tiny/{stage}.yaml")
        assert r.model.codebook_size == 2**tokenizer.model.z_channels == 1024
        assert r.model.image_grid[0] * downsample == r.data.resolution


def test_stage_chains_name_the_previous_stage_run_dir():
    for scale, prefix in (("tiny", "tiny"), ("showo", "showo")):
        run_dirs = {stage: _load(f"recipes/{scale}/{stage}.yaml").run_dir for stage in STAGES}
        assert len(set(run_dirs.values())) == len(STAGES)
        assert _load(f"recipes/{scale}/stage1.yaml").init_from is None
        for stage, previous in (("stage2", "stage1"), ("stage3", "stage2"), ("stage512", "stage3")):
            assert (
                _load(f"recipes/{scale}/{stage}.yaml").init_from
                == run_dirs[previous]
                == f"runs/{prefix}-{previous}"
            )
    assert _load("recipes/tiny/instruct.yaml").init_from == "runs/tiny-stage512"
    assert _load("recipes/showo/instruct.yaml").init_from == "runs/showo-stage3"
