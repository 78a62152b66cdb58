"""The Transfusion recipes: paper values at paper scale (recipes/transfusion/), CPU-scale tiny stages that chain
like recipes/tiny/ (recipes/tiny-transfusion/), image positions consistent with the VAE and the patches."""

from __future__ import annotations

import pytest

from showo.recipe import load_recipe

from .conftest import REPO

TINY = ("stage1", "stage2", "caption")


def test_paper_scale_values():
    r = load_recipe(REPO / "recipes/transfusion/pretrain.yaml")
    o = r.objective
    assert (o.image, o.prediction, o.num_train_timesteps, o.loss_weight) == (
        "diffusion",
        "epsilon",
        1000,
        5.0,
    )
    assert (o.latent_channels, o.patch_size) == (8, 2)
    # 256 px under an 8x VAE is a 32x32 latent: 2x2 patches give the 16x16 image positions of the grid
    assert r.data.resolution // 8 // o.patch_size == r.model.image_grid[0] == r.model.image_grid[1] == 16
    assert r.model.llm == "checkpoints/phi-1_5" and r.model.image_tokenizer is None
    assert (r.trainer.sample.steps, r.trainer.sample.guidance) == (250, 4.0)  # CFG scale 5 = 1 + w
    assert (o.scaling_factor, o.shift_factor) == (None, None)  # the VAE's, at training start
    flow = load_recipe(REPO / "recipes/transfusion/flow.yaml")
    assert flow.objective.prediction == "flow" and flow.objective.loss_weight == 5.0
    assert flow.optim == r.optim and flow.data == r.data


@pytest.mark.parametrize("stage", TINY)
def test_tiny_stages_are_cpu_scale_and_read_latent_shards(stage):
    r = load_recipe(REPO / f"recipes/tiny-transfusion/{stage}.yaml")
    assert r.trainer.accelerator == "cpu" and r.trainer.precision == "32-true" and r.optim.max_steps <= 500
    assert r.objective.image == "diffusion" and r.objective.vae == "demo_out/vae-tiny"
    assert r.objective.prediction == "flow"  # epsilon does not learn digits at this budget (stage1.yaml)
    # the tiny VAE: 64 px -> 16x16 latents, 2x2 patches -> 8x8 image positions
    assert r.data.resolution // 4 // r.objective.patch_size == r.model.image_grid[0] == 8
    images = [g for t, s in r.data.streams.items() if t != "lm" for g in s.shards]
    assert images and all(g.startswith("demo_out/shards/") and "-latents/" in g for g in images)


def test_tiny_stages_chain():
    stages = {s: load_recipe(REPO / f"recipes/tiny-transfusion/{s}.yaml") for s in TINY}
    assert stages["stage1"].init_from is None and set(stages["stage1"].data.streams) >= {"c2i", "mmu", "lm"}
    assert stages["stage2"].init_from == f"runs/{stages['stage1'].run.name}"
    assert stages["caption"].init_from == f"runs/{stages['stage2'].run.name}"
    assert "t2i" in stages["stage2"].data.streams and stages["stage2"].data.streams.get("c2i") is None


@pytest.mark.parametrize(
    ("overrides", "cause"),
    [
        (["objective.patch_size=0"], "objective.patch_size must be a positive integer"),
    ],
)
def test_diffusion_recipe_mistakes_are_one_line(overrides, cause, monkeypatch, capsys):
    from showo.cli import main

    monkeypatch.chdir(REPO)
    assert main(["recipe", "show", "recipes/tiny-transfusion/stage1.yaml", *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith("showo: error: ") and cause in err and err.count("\n") == 1


def test_a_code_objective_needs_an_image_tokenizer(tmp_path, capsys):
    from showo.cli import main

    derived = tmp_path / "codes.yaml"
    derived.write_text(f"base: {REPO / 'recipes/tiny-transfusion/stage1.yaml'}\nobjective:\n  image: mtp\n")
    assert main(["recipe", "validate", str(derived)]) == 2
    err = capsys.readouterr().err
    assert "model.image_tokenizer is required: the mtp objective trains on image codes" in err
    assert err.count("\n") == 1
