"""The diffusion objective end to end through `showo train` on latent shards: the loss falls, a resumed run
reproduces the uninterrupted one step for step, the checkpoint exports with its latent head and its VAE,
a shard of the other image format is one line (exit 2), and ZeRO-2 on two CPU processes learns and
consolidates the head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from showo.cli import main
from showo.model import ShowO
from showo.recipe import load_recipe
from showo.training.checkpoint import list_checkpoints
from tests.fixtures.latents import (
    LATENT_CHANNELS,
    SCALE,
    SHIFT,
    diffusion_recipe,
    write_latent_keyframes,
    write_latent_shards,
)
from tests.training.conftest import recipe_dict, run_train, scalars, write_recipe

STEPS = 8


@pytest.fixture(scope="module")
def latent_shards(tmp_path_factory) -> str:
    return write_latent_shards(tmp_path_factory.mktemp("latent_shards"))


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    """A tiny random diffusers AutoencoderKL with the shards' latent channels."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(
        block_out_channels=(8,),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=16,
        scaling_factor=SCALE,
        shift_factor=SHIFT,
    )
    out = tmp_path_factory.mktemp("vae")
    vae.save_pretrained(str(out), safe_serialization=True)
    return out


@pytest.fixture(scope="module")
def diffusion_run(tmp_path_factory, tiny_llm_dir, latent_shards, vae_dir):
    tmp = tmp_path_factory.mktemp("diffusion_run")
    keyframes = write_latent_keyframes(tmp / "keyframes")
    recipe = diffusion_recipe(
        tmp,
        tiny_llm_dir,
        latent_shards,
        **{
            "optim.max_steps": STEPS,
            "objective.vae": str(vae_dir),
            "objective.scaling_factor": None,  # taken from the VAE's config, and recorded
            "objective.shift_factor": None,
            "data.streams.mixed": {"shards": [keyframes], "batch_size": 2, "max_frames": 2},
            "trainer.sample_every": STEPS,
            "trainer.sample": {"prompts": ["zero", "two"], "steps": 2, "guidance": 1.0},
        },
    )
    path = write_recipe(tmp / "recipe.yaml", recipe)
    run_train(path)
    return {"tmp": tmp, "dict": recipe, "run_dir": tmp / "runs" / "diffusion"}


def test_training_lowers_the_diffusion_and_caption_losses(diffusion_run):
    run_dir = diffusion_run["run_dir"]
    loss = scalars(run_dir, "train/loss")
    assert sorted(loss) == list(range(STEPS))
    assert np.mean([loss[6], loss[7]]) < np.mean([loss[0], loss[1]]) - 0.5
    image = scalars(run_dir, "train/loss_c2i")
    assert len(image) == STEPS and np.mean([image[6], image[7]]) < image[0]
    assert len(scalars(run_dir, "train/loss_mmu")) == STEPS
    assert len(scalars(run_dir, "train/loss_mixed")) == STEPS  # the captions of the keyframes
    assert len(scalars(run_dir, "train/loss_mixed_diffusion")) == STEPS  # every frame diffused
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-00000004.ckpt", "step-00000008.ckpt"]


def test_previews_decode_the_sampled_latents_with_the_vae(diffusion_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = (diffusion_run["run_dir"] / "tensorboard").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"images": 0})
    acc.Reload()
    (grid,) = acc.Images("samples/t2i")
    # two 8 px images side by side (8x8 latents; the one-block test VAE does not downsample)
    assert grid.step == STEPS and (grid.width, grid.height) == (2 * 8 + 2, 8)


def test_a_resumed_run_reproduces_the_uninterrupted_losses(diffusion_run, tmp_path):
    first = list_checkpoints(diffusion_run["run_dir"])[0]
    recipe = {**diffusion_run["dict"], "resume": str(first)}
    recipe["run"] = {**recipe["run"], "output_dir": str(tmp_path / "runs")}
    run_train(write_recipe(tmp_path / "recipe.yaml", recipe))
    resumed = scalars(tmp_path / "runs" / "diffusion", "train/loss")
    baseline = scalars(diffusion_run["run_dir"], "train/loss")
    assert sorted(resumed) == list(range(4, STEPS))
    for step in range(4, STEPS):
        assert resumed[step] == pytest.approx(baseline[step], rel=1e-5, abs=1e-6), step


def test_export_carries_the_latent_head_and_the_vae(diffusion_run, tmp_path):
    ckpt = list_checkpoints(diffusion_run["run_dir"])[-1]
    out = tmp_path / "export"
    assert main(["export", "--ckpt", str(ckpt), "--out", str(out)]) == 0
    model = ShowO.from_pretrained(out)
    state = torch.load(ckpt, weights_only=True, map_location="cpu")["state_dict"]
    head = {
        k.removeprefix("model.image_head."): v for k, v in state.items() if k.startswith("model.image_head.")
    }
    assert head and head.keys() == model.image_head.state_dict().keys()
    for key, value in model.image_head.state_dict().items():
        assert torch.equal(value, head[key]), key
    assert model.objective.name == "diffusion" and model.objective.config.latent_channels == LATENT_CHANNELS
    assert model.objective.factors() == (
        SCALE,
        SHIFT,
    )  # the VAE's, recorded although the recipe left them null
    saved = load_recipe(diffusion_run["run_dir"] / "recipe.yaml").objective
    assert (saved.scaling_factor, saved.shift_factor) == (SCALE, SHIFT)
    vae = model.objective.load_vae(out)
    assert vae.config.latent_channels == LATENT_CHANNELS and (out / "vae" / "config.json").is_file()


def test_a_trained_checkpoint_round_trips_export_generate_eval(diffusion_run, tmp_path, capsys):
    """export -> `showo generate` -> `showo eval` on what training wrote: the command draws exactly what the
    diffusion sampler draws from the export, decoded by the exported VAE, and the digits suite scores it."""
    import json

    from PIL import Image

    from showo.sampling import diffusion
    from showo.sampling.images import save_grid
    from showo.sampling.pipeline import load_pipeline

    out = tmp_path / "export"
    ckpt = list_checkpoints(diffusion_run["run_dir"])[-1]
    assert main(["export", "--ckpt", str(ckpt), "--out", str(out)]) == 0
    grid = tmp_path / "grid.png"
    argv = ["generate", "--ckpt", str(out), "--prompt", "zero", "--n", "2", "--steps", "2", "--seed", "3"]
    assert main([*argv, "--guidance", "1.5", "--out", str(grid)]) == 0
    pipe = load_pipeline(out, device="cpu")
    options = pipe.objective.options(steps=2, guidance=1.5)
    with torch.no_grad():
        latents = diffusion.generate(pipe.model, pipe.prompter, ["zero"] * 2, options, pipe.generator(3))
        expected = save_grid(pipe.decode_images(latents), tmp_path / "expected.png", ncol=2)
    with Image.open(grid) as drawn, Image.open(expected) as reference:
        assert np.array_equal(np.asarray(drawn), np.asarray(reference))
    assert main([*argv, "--guidance", "1.5", "--solver", "ddpm", "--out", str(grid)]) == 0
    options = pipe.objective.options(steps=2, guidance=1.5, solver="ddpm")
    with torch.no_grad():
        latents = diffusion.generate(pipe.model, pipe.prompter, ["zero"] * 2, options, pipe.generator(3))
        expected = save_grid(pipe.decode_images(latents), tmp_path / "expected.png", ncol=2)
    with Image.open(grid) as drawn, Image.open(expected) as reference:
        assert np.array_equal(np.asarray(drawn), np.asarray(reference))
    scores = tmp_path / "digits.json"
    argv = ["eval", "--ckpt", str(out), "--suite", "digits", "--steps", "2", "--out", str(scores)]
    assert main(argv) == 0
    result = json.loads(scores.read_text())
    assert result["sampler"] == "diffusion" and result["objective"]["image"] == "diffusion"
    assert 0.0 <= result["scores"]["accuracy"] <= 1.0 and result["scores"]["n"] == 100
    capsys.readouterr()


def test_init_from_a_diffusion_run_loads_the_head_and_a_code_stage_leaves_it_fresh(
    diffusion_run, tmp_path, baseline
):
    from showo.training.init import build_model

    recipe = load_recipe(diffusion_run["run_dir"] / "recipe.yaml")
    recipe.init_from = str(diffusion_run["run_dir"])
    model = build_model(recipe)
    state = torch.load(list_checkpoints(diffusion_run["run_dir"])[-1], weights_only=True)["state_dict"]
    for key, value in model.image_head.state_dict().items():
        assert torch.equal(value, state[f"model.image_head.{key}"]), key
    for key, value in model.llm.state_dict().items():
        assert torch.equal(value, state[f"model.llm.{key}"]), key

    # an MTP stage before a diffusion one: the transformer comes along, the head starts from its init
    codes = load_recipe(baseline["recipe"])
    fresh = load_recipe(diffusion_run["run_dir"] / "recipe.yaml")
    fresh.model.codebook_size = codes.model.codebook_size
    fresh.init_from = str(baseline["run_dir"])
    model = build_model(fresh)
    mtp = torch.load(list_checkpoints(baseline["run_dir"])[-1], weights_only=True)["state_dict"]
    assert torch.equal(model.llm.get_input_embeddings().weight, mtp["model.llm.model.embed_tokens.weight"])
    assert torch.equal(model.image_head.proj_out.weight, torch.zeros_like(model.image_head.proj_out.weight))


def test_a_shard_of_the_other_image_format_stops_training_in_one_line(
    tmp_path, tiny_llm_dir, latent_shards, image_tokenizer_dir, shards
):
    recipe = diffusion_recipe(tmp_path, tiny_llm_dir, shards["class"])
    proc = run_train(write_recipe(tmp_path / "latent.yaml", recipe), check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2
    assert last.startswith("showo: error: shard ") and "holds image codes" in last and "class-000" in last
    recipe = recipe_dict(
        tmp_path,
        tiny_llm_dir,
        image_tokenizer_dir,
        shards,
        **{"data.streams": {"c2i": {"shards": [latent_shards]}}},
    )
    proc = run_train(write_recipe(tmp_path / "codes.yaml", recipe), check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2
    assert (
        last.startswith("showo: error: shard ") and "holds image latents" in last and "mtp objective" in last
    )


@pytest.mark.parametrize("stage", [2, 3])
def test_two_process_zero_learns_the_diffusion_objective(
    stage, tmp_path, tiny_llm_dir, latent_shards, vae_dir
):
    """ZeRO-2 and ZeRO-3 (the latent head's weights partitioned too): the loss falls and the consolidated
    head equals Lightning's converter's."""
    from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

    steps = 6
    recipe = diffusion_recipe(
        tmp_path,
        tiny_llm_dir,
        latent_shards,
        **{
            "optim.max_steps": steps,
            "objective.vae": str(vae_dir),
            "trainer.devices": 2,
            "trainer.checkpoint_every": steps,
            "trainer.strategy": {"name": "deepspeed", "zero_stage": stage},
            # previews under ZeRO-3: every rank runs the sampler (head weights gathered per forward)
            "trainer.sample_every": steps if stage == 3 else 0,
            "trainer.sample": {"prompts": ["zero"], "steps": 2, "guidance": 1.0, "caption_images": 0},
        },
    )
    run_train(write_recipe(tmp_path / "recipe.yaml", recipe), nproc=2)
    run_dir = tmp_path / "runs" / "diffusion"
    loss = scalars(run_dir, "train/loss")
    assert sorted(loss) == list(range(steps))
    assert np.mean([loss[4], loss[5]]) < np.mean([loss[0], loss[1]]) - 0.3
    if stage == 3:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        (events,) = (run_dir / "tensorboard").glob("events.out.tfevents.*")
        acc = EventAccumulator(str(events), size_guidance={"images": 0})
        acc.Reload()
        assert [i.step for i in acc.Images("samples/t2i")] == [steps]
    (ckpt,) = list_checkpoints(run_dir)
    out = tmp_path / "export"
    assert main(["export", "--ckpt", str(ckpt), "--out", str(out)]) == 0
    reference = tmp_path / "lightning-fp32.pt"
    convert_zero_checkpoint_to_fp32_state_dict(str(ckpt), str(reference))
    expected = torch.load(reference, weights_only=False)["state_dict"]
    model = ShowO.from_pretrained(out)
    for key, value in model.image_head.state_dict().items():
        assert torch.equal(value, expected[f"model.image_head.{key}"].float()), key


def test_rectified_flow_learns_the_class_conditional_latents(tmp_path, tiny_llm_dir, latent_shards):
    """Trained on four fixed class latents, the model's own sampler draws each class's latent (nearest of the
    four), so training and sampling agree on layout, timesteps and scaling."""
    from showo.training.export import load_checkpoint_model
    from tests.fixtures.latents import CLASSES, class_latent

    steps = 300
    recipe = diffusion_recipe(
        tmp_path,
        tiny_llm_dir,
        latent_shards,
        **{
            "optim.max_steps": steps,
            "optim.warmup_steps": 10,
            "trainer.checkpoint_every": steps,
            "trainer.log_every": 50,
            "objective.prediction": "flow",
            "data.streams": {"c2i": {"shards": [latent_shards], "batch_size": 8}},
        },
    )
    run_train(write_recipe(tmp_path / "recipe.yaml", recipe))
    model, _ = load_checkpoint_model(list_checkpoints(tmp_path / "runs" / "diffusion")[-1])
    objective = model.eval().objective
    targets = torch.stack([objective.scale(torch.from_numpy(class_latent(i)).float()) for i in range(4)])
    options = objective.options(steps=25, guidance=1.0)
    latents = objective.generate(
        model, model.prompter(), CLASSES * 2, options, torch.Generator().manual_seed(0)
    )
    distances = torch.cdist(latents.flatten(1), targets.flatten(1))
    assert distances.argmin(1).tolist() == [0, 1, 2, 3] * 2
