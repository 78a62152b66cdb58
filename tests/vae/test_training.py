"""`kind: vae` training at toy size on the tokenizer's machinery: the recipe validates, losses match their
formulas and fall, TensorBoard gets scalars and grids, checkpoints resume, the export is a diffusers
directory `load_vae` reads with the measured scaling factor, and a rerun of the same recipe reuses it."""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from showo.cli import main
from showo.errors import ShowoError
from showo.recipe import load_recipe
from showo.tokenizer.data import fixed_sample
from showo.vae import load_vae
from showo.vae import training as vae_training
from showo.vae.config import VaeRecipe

RECIPE = "recipes/vae/tiny.yaml"
TOY = [
    "model.block_out_channels=[8,16]",
    "model.norm_num_groups=4",
    "model.mid_block_add_attention=false",
    "data.resolution=32",
    "data.crop=16",
    "data.batch_size=4",
    "data.weights={photos: 0, shapes: 1, digits: 0}",
    "data.usage_images=8",
    "data.heldout_crops=1",
    "optim.warmup_steps=1",
    "trainer.log_every=1",
    "trainer.sample_every=6",
    "trainer.checkpoint_every=6",
    "max_minutes=null",
]


def toy_overrides(tmp_path, steps: int) -> list[str]:
    return [f"run.output_dir={tmp_path}", f"export_dir={tmp_path}/export", f"optim.max_steps={steps}", *TOY]


def scalars(run_dir):
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events, {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_the_tiny_recipe_validates():
    recipe = load_recipe(RECIPE)
    assert isinstance(recipe, VaeRecipe) and recipe.kind == "vae"
    assert recipe.model.latent_channels == 4 and recipe.model.downsample_factor == 4
    assert recipe.export_path == "demo_out/vae-tiny" and recipe.model.scaling_factor is None


@pytest.mark.parametrize(
    ("override", "phrase"),
    [
        ("model.bogus=1", "model.bogus"),
        ("model.latent_channels=four", "model.latent_channels"),
        ("model.norm_num_groups=5", "model.norm_num_groups 5 must be positive and divide every width"),
        ("model.block_out_channels=[]", "model.block_out_channels must hold"),
        ("model.scaling_factor=-1", "model.scaling_factor must be positive"),
        ("loss.kl=-1", "loss.kl must be >= 0"),
        ("data.crop=30", "data.crop 30 is not divisible by the VAE's downsample factor 4"),
        ("data.weights.faces=1.0", "data.weights: unknown source"),
        ("optim.accumulate_grad_batches=2", "accumulate_grad_batches must be 1 for VAE runs"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_key(override, phrase):
    with pytest.raises(ShowoError) as err:
        load_recipe(RECIPE, [override])
    assert phrase in str(err.value) and "\n" not in str(err.value)


def test_losses_match_their_formulas():
    recipe = load_recipe(RECIPE, TOY)
    module = vae_training.VaeModule(recipe)
    batch = fixed_sample(32, {"shapes": 1.0}, 0, 4)
    torch.manual_seed(0)
    loss, logs, rec = module.losses(batch)
    posterior = module.vae.model.encode(batch).latent_dist
    mean, logvar = posterior.mean, posterior.logvar
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()  # KL(N(mean, var) || N(0, 1)) per element
    assert torch.allclose(logs["kl"], kl, rtol=1e-5)
    assert torch.allclose(logs["l2"], (rec - batch).pow(2).mean())
    w = recipe.loss
    assert torch.allclose(loss, w.l1 * logs["l1"] + w.l2 * logs["l2"] + w.kl * kl, rtol=1e-5)


def test_the_patch_gan_terms_join_the_loss():
    recipe = load_recipe(RECIPE, [*TOY, "loss.gan=0.5", "loss.disc_channels=8", "loss.disc_layers=1"])
    module = vae_training.VaeModule(recipe)
    batch = fixed_sample(32, {"shapes": 1.0}, 0, 2)
    loss, logs, _ = module.losses(batch)
    w = recipe.loss
    reconstruction = w.l1 * logs["l1"] + w.l2 * logs["l2"] + w.kl * logs["kl"]
    assert torch.allclose(loss, reconstruction + 0.5 * logs["gan_g"] + logs["gan_d"], rtol=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in module.discriminator.parameters())


@pytest.fixture
def flush_denormal():
    """As `fit` does: denormal floats make CPU steps many times slower."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


def test_loss_falls_on_a_fixed_batch(flush_denormal):
    recipe = load_recipe(RECIPE, TOY)
    torch.manual_seed(0)
    module = vae_training.VaeModule(recipe)
    batch = fixed_sample(16, {"shapes": 1.0}, 0, 4)
    optimizer = torch.optim.AdamW(module.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss, _, _ = module.losses(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])


def test_fit_logs_exports_resumes_and_reuses(tmp_path, monkeypatch, capsys):
    assert main(["train", RECIPE, *toy_overrides(tmp_path, 6)]) == 0  # `showo train` dispatches kind vae
    run_dir, export = tmp_path / "tiny-vae", tmp_path / "export"
    events, logged = scalars(run_dir)
    assert [s for s, _ in logged["train/loss"]] == list(range(6))
    for tag in ("train/l1", "train/l2", "train/kl", "train/psnr", "heldout/psnr", "latents/std"):
        assert logged[tag], tag
    images = events.Tags()["images"]
    assert {"heldout/originals_over_reconstructions", "train/originals_over_reconstructions"} <= set(images)

    vae = load_vae(export)
    record = json.loads((export / "training.json").read_text())
    assert record["steps"] == 6 and record["identity"] == vae.identity()
    std = logged["latents/std"][-1][1]
    assert vae.scaling_factor == pytest.approx(1 / std, rel=1e-4) == record["scaling_factor"]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    for key, value in vae.model.state_dict().items():
        assert torch.equal(value, checkpoint["state_dict"][f"vae.model.{key}"]), key
    with torch.no_grad():
        raw = vae.encode(fixed_sample(32, {"shapes": 1.0}, 0, 2))
    assert raw.shape == (2, 4, 16, 16)  # two widths: downsample factor 2

    assert main(["train", RECIPE, *toy_overrides(tmp_path, 8)]) == 0  # resume: auto from last.ckpt
    _, logged = scalars(run_dir)
    assert [s for s, _ in logged["train/loss"]][-3:] == [5, 6, 7]
    assert json.loads((export / "training.json").read_text())["steps"] == 8

    def no_training(*args, **kwargs):
        raise AssertionError("a reused export must not build a trainer")

    monkeypatch.setattr(vae_training, "fit_and_evaluate", no_training)
    capsys.readouterr()
    assert vae_training.fit(load_recipe(RECIPE, toy_overrides(tmp_path, 8))) == export
    assert "reusing the VAE" in capsys.readouterr().out


def test_a_given_scaling_factor_is_exported_as_is(tmp_path):
    overrides = [*toy_overrides(tmp_path, 1), "model.scaling_factor=0.5", "model.shift_factor=0.1"]
    vae = load_vae(vae_training.fit(load_recipe(RECIPE, overrides)))
    assert (vae.scaling_factor, vae.shift_factor) == (0.5, pytest.approx(0.1))


def test_showo_train_says_one_line_for_bad_input(tmp_path, capsys):
    for override, phrase in (("resume=nope.ckpt", "resume checkpoint not found"), ("model.bogus=1", "bogus")):
        code = main(
            ["train", RECIPE, f"run.output_dir={tmp_path}", f"export_dir={tmp_path}/export", override]
        )
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("showo: error: ") and err.count("\n") == 1 and phrase in err
