"""Tokenizer training end to end at toy size: losses fall, TensorBoard gets metrics and grids,
checkpoints resume, the export round-trips, and a rerun of the same recipe reuses the export."""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from showo.errors import ShowoError
from showo.recipe import load_recipe
from showo.tokenizer import load_image_tokenizer
from showo.tokenizer import training as tok_training

TOY = [
    "model.ch=8",
    "model.norm_groups=4",
    "model.num_res_blocks=[1,1,1]",
    "model.decoder_num_res_blocks=[1,1,1]",
    "data.batch_size=4",
    "data.weights={photos: 0, shapes: 0, digits: 1}",
    "data.usage_images=8",
    "data.heldout_crops=1",
    "optim.warmup_steps=2",
    "optim.lr=3e-3",
    "trainer.log_every=1",
    "trainer.sample_every=6",
    "trainer.checkpoint_every=6",
    "loss.gan=0.1",
    "loss.gan_start_step=8",
    "max_minutes=null",
]


def toy_recipe(tmp_path, steps):
    return load_recipe(
        "recipes/tokenizer/tiny.yaml",
        [f"run.output_dir={tmp_path}", f"export_dir={tmp_path}/export", f"optim.max_steps={steps}", *TOY],
    )


def scalars(run_dir):
    events = EventAccumulator(
        str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0}
    ).Reload()
    return events, {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_fit_logs_checkpoints_exports_resumes_and_reuses(tmp_path, monkeypatch):
    recipe = toy_recipe(tmp_path, 12)
    run_dir = tmp_path / recipe.run.name
    export = tok_training.fit(recipe)
    assert export == tmp_path / "export"

    events, logged = scalars(run_dir)
    l2 = [v for _, v in logged["train/l2"]]
    assert len(l2) == 12
    assert sum(l2[-3:]) < 0.8 * sum(l2[:3])
    assert [s for s, _ in logged["train/gan_d"]][0] >= 8
    for tag in (
        "heldout/psnr",
        "heldout/psnr_crops",
        "train/usage",
        "train/perplexity",
        "train/entropy",
        "train/commit",
    ):
        assert logged[tag], tag
    assert 0 < logged["train/usage"][-1][1] <= 1
    images = events.Tags()["images"]
    assert (
        "heldout/originals_over_reconstructions" in images
        and "train/originals_over_reconstructions" in images
    )

    tokenizer = load_image_tokenizer(export)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 12
    for key, value in tokenizer.state_dict().items():
        assert torch.equal(value, checkpoint["state_dict"][f"tokenizer.{key}"]), key
    record = json.loads((export / "training.json").read_text())
    assert record["steps"] == 12 and record["identity"] == tokenizer.identity()
    assert set(record["metrics"]) >= {"heldout/psnr", "train/usage", "train/perplexity"}
    assert (run_dir / "recipe.yaml").is_file()

    resumed = toy_recipe(tmp_path, 15)
    tok_training.fit(resumed)
    assert json.loads((export / "training.json").read_text())["steps"] == 15
    _, logged = scalars(run_dir)
    assert [s for s, _ in logged["train/l2"]][-3:] == [12, 13, 14]

    def no_training(*args, **kwargs):
        raise AssertionError("a reused export must not build a trainer")

    monkeypatch.setattr(tok_training, "build_trainer", no_training)
    assert tok_training.fit(toy_recipe(tmp_path, 15)) == export


def test_bad_tokenizer_recipes_name_the_key(tmp_path):
    with pytest.raises(ShowoError, match="data.weights: unknown source"):
        load_recipe("recipes/tokenizer/tiny.yaml", ["data.weights.faces=1.0"])
    with pytest.raises(ShowoError, match="model.decoder_ch_mult must have as many levels"):
        load_recipe("recipes/tokenizer/tiny.yaml", ["model.decoder_ch_mult=[1,2]"])
    with pytest.raises(ShowoError, match="data.max_zoom must be >= 1"):
        load_recipe("recipes/tokenizer/tiny.yaml", ["data.max_zoom=0.5"])
    with pytest.raises(ShowoError, match="data.resolution 66 is not divisible"):
        load_recipe("recipes/tokenizer/tiny.yaml", ["data.resolution=66"])
    with pytest.raises(ShowoError, match="resume checkpoint not found"):
        tok_training.fit(
            load_recipe("recipes/tokenizer/tiny.yaml", [f"run.output_dir={tmp_path}", "resume=nope.ckpt"])
        )
