"""The diffusion objective against hand-written references: the training loss of `ShowoModule` equals the
epsilon-prediction loss on the cosine schedule (and the flow-matching loss) written out by hand on a fixed
batch with fixed noise and timesteps; the data side reads latents, scales them and refuses code shards; a
diffusion model saves and loads with its latent head."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from showo import objectives
from showo.attention import batch_attention_mask
from showo.data.batches import BatchBuilder
from showo.errors import ShowoError
from showo.model import ShowO
from showo.objectives.diffusion import DiffusionConfig
from showo.recipe import load_recipe
from showo.training.module import ShowoModule
from tests.fixtures.latents import (
    CLASSES,
    GRID,
    LATENT_CHANNELS,
    PATCH,
    SCALE,
    SHIFT,
    class_latent,
    diffusion_recipe,
    write_latent_shards,
)

M = 16
N = GRID[0] * GRID[1]
T = 1000


def config(prediction: str = "epsilon") -> DiffusionConfig:
    return DiffusionConfig(
        prediction=prediction,
        patch_size=PATCH,
        latent_channels=LATENT_CHANNELS,
        scaling_factor=SCALE,
        shift_factor=SHIFT,
        loss_weight=5.0,
    )


@pytest.fixture(scope="module")
def diffusion_model(tiny_llm_dir):
    return ShowO.build(tiny_llm_dir, None, 16, N, M, objective=config()).eval()


def samples(count: int) -> list[dict]:
    return [
        {
            "__key__": f"k{i}",
            "__url__": "mem.tar",
            "latents.npy": class_latent(i % 4),
            "txt": f"a drawing of {CLASSES[i % 4]}",
            "json": {"task": "class", "class_name": CLASSES[i % 4], "label": i % 4},
        }
        for i in range(count)
    ]


def unfold(latents: torch.Tensor) -> torch.Tensor:
    """Patches by torch's unfold: (C, p, p) per patch, raster order."""
    return F.unfold(latents, kernel_size=PATCH, stride=PATCH).transpose(1, 2)


def cosine_alphas_cumprod() -> torch.Tensor:
    """The improved-DDPM cosine schedule (Nichol & Dhariwal), betas capped at 0.999."""

    def alpha_bar(s: float) -> float:
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), 0.999) for i in range(T)]
    return torch.cumprod(1 - torch.tensor(betas, dtype=torch.float64), 0)


def module_for(model: ShowO, prediction: str, tmp_path, **changes) -> ShowoModule:
    shards = write_latent_shards(tmp_path / "shards", count=8)
    changes = {"objective.prediction": prediction, **changes}
    recipe_dict = diffusion_recipe(tmp_path, "unused-llm", shards, **changes)
    import yaml

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe_dict))
    module = ShowoModule(copy.deepcopy(model), load_recipe(path))
    module.model.eval()
    return module


@pytest.mark.parametrize("prediction", ["epsilon", "flow"])
def test_training_loss_equals_the_hand_written_diffusion_loss(prediction, diffusion_model, tmp_path):
    module = module_for(diffusion_model, prediction, tmp_path)
    model, objective = module.model, module.objective
    prompter = model.prompter()
    c2i = BatchBuilder("c2i", prompter, objective=objective)(samples(3), seed=1)
    mmu = BatchBuilder("mmu", prompter, objective=objective)(samples(2), seed=2)
    raw = torch.from_numpy(np.stack([class_latent(i % 4) for i in range(3)]).astype(np.float32))
    x0 = (raw - SHIFT) * SCALE
    assert torch.equal(c2i["latents"], x0)

    rows = {
        task: objective.training_rows(task, batch, torch.Generator().manual_seed(5), model)
        for task, batch in (("c2i", c2i), ("mmu", mmu))
    }
    got = module.losses(rows)[0]

    g = torch.Generator().manual_seed(5)
    eps = torch.randn(x0.shape, generator=g)
    index = torch.randint(0, T, (3,), generator=g)
    if prediction == "epsilon":
        ac = cosine_alphas_cumprod()[index].float().view(-1, 1, 1, 1)
        noisy, t, target = ac.sqrt() * x0 + (1 - ac).sqrt() * eps, index.float(), eps
    else:
        sigma = ((index + 1) / T).float().view(-1, 1, 1, 1)
        noisy, t, target = (1 - sigma) * x0 + sigma * eps, (index + 1).float(), eps - x0
    head = model.image_head
    embeds = torch.cat(
        [
            head.embed(unfold(noisy), t).flatten(0, 1),
            head.embed(unfold(mmu["latents"]), torch.zeros(2)).flatten(0, 1),
        ]
    )
    ids = torch.cat([c2i["input_ids"], mmu["input_ids"]])
    mask = batch_attention_mask([("c2i", c2i["input_ids"]), ("mmu", mmu["input_ids"])], model.vocab)
    with torch.no_grad():
        hidden = model.hidden_states(ids, mask, embeds)
        predicted = head.output(hidden[:3, M + 2 : M + 2 + N])
        mse = ((predicted - unfold(target)) ** 2).mean()
        logits = model.llm.lm_head(hidden[3:, :-1]).float()
        labels = mmu["labels"][:, 1:]
        ce = F.cross_entropy(logits[labels != -100], labels[labels != -100])
    assert float(got["loss_c2i"]) == pytest.approx(float(mse), rel=1e-4)
    assert float(got["loss_mmu"]) == pytest.approx(float(ce), rel=1e-4)
    assert float(got["loss"]) == pytest.approx(float(ce + 5.0 * mse), rel=1e-4)
    assert int(got["tokens_c2i"]) == 3 * N


def test_generation_rows_hold_placeholders_and_mmu_rows_clean_latents(diffusion_model):
    objective = objectives.get(config())
    batch = BatchBuilder("mmu", diffusion_model.prompter(), objective=objective)(samples(2), seed=0)
    image = diffusion_model.vocab.is_image(batch["input_ids"])
    assert image.sum(1).tolist() == [N, N]
    assert (batch["input_ids"][image] == diffusion_model.vocab.image_offset).all()
    rows = objective.training_rows("mmu", batch, torch.Generator().manual_seed(0), diffusion_model)
    head = diffusion_model.image_head
    assert torch.equal(rows.image_embeds, head.embed(unfold(batch["latents"]), torch.zeros(2)).flatten(0, 1))
    assert rows.image_values is None


def test_a_shard_of_the_other_image_format_is_one_line(diffusion_model):
    code_sample = {**samples(1)[0], "__url__": "codes-000000.tar"}
    del code_sample["latents.npy"]
    code_sample["codes.npy"] = np.zeros(N, dtype=np.uint16)
    with pytest.raises(ShowoError, match=r"^shard codes-000000.tar holds image codes.*diffusion") as err:
        BatchBuilder("c2i", diffusion_model.prompter(), objective=config())([code_sample], seed=0)
    assert "\n" not in str(err.value)
    with pytest.raises(ShowoError, match=r"^shard mem.tar holds image latents.*mtp objective") as err:
        BatchBuilder("c2i", diffusion_model.prompter(), objective="mtp")(samples(1), seed=0)
    assert "\n" not in str(err.value)


def test_latents_of_another_shape_or_channel_count_are_refused(diffusion_model):
    wrong = {**samples(1)[0], "latents.npy": np.zeros((3, 8, 8), np.float16)}
    with pytest.raises(ShowoError, match=r"have shape \[3, 8, 8\].*\[4, h, w\]"):
        BatchBuilder("c2i", diffusion_model.prompter(), objective=config())([wrong], seed=0)
    small = {**samples(1)[0], "latents.npy": np.zeros((4, 4, 4), np.float16)}
    with pytest.raises(ShowoError, match="16 image positions"):
        BatchBuilder("c2i", diffusion_model.prompter(), objective=config())([small], seed=0)


def test_settings_are_checked_and_recorded():
    with pytest.raises(ShowoError, match="objective.patch_size must be a positive integer"):
        objectives.from_dict({"image": "diffusion", "patch_size": 0}, "objective")
    with pytest.raises(ShowoError, match="loss_weight"):
        objectives.from_dict({"image": "diffusion", "loss_weight": -1.0}, "objective")
    with pytest.raises(ShowoError, match="prediction"):
        objectives.from_dict({"image": "diffusion", "prediction": "sample"}, "objective")
    recorded = objectives.get(config("flow")).to_dict()
    assert objectives.recorded(recorded, "ckpt").config == config("flow")
    with pytest.raises(ShowoError, match="steps must be a positive integer"):
        objectives.get(config()).options(steps=0)


def test_schedulers_are_diffusers_own():
    from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

    ddpm = objectives.get(config()).scheduler()
    assert isinstance(ddpm, DDPMScheduler) and ddpm.config.beta_schedule == "squaredcos_cap_v2"
    assert torch.allclose(ddpm.alphas_cumprod.double(), cosine_alphas_cumprod(), atol=1e-6)
    assert isinstance(objectives.get(config("flow")).scheduler(), FlowMatchEulerDiscreteScheduler)


def test_a_diffusion_model_saves_and_loads_with_its_latent_head(diffusion_model, tmp_path):
    model = copy.deepcopy(diffusion_model)
    with torch.no_grad():
        for p in model.image_head.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    loaded = ShowO.from_pretrained(model.save_pretrained(tmp_path / "export")).eval()
    assert loaded.objective.config == model.objective.config
    assert loaded.image_head.state_dict().keys() == model.image_head.state_dict().keys()
    for key, value in model.image_head.state_dict().items():
        assert torch.equal(loaded.image_head.state_dict()[key], value), key
    batch = BatchBuilder("c2i", model.prompter(), objective=model.objective)(samples(2), seed=0)
    rows = model.objective.training_rows("c2i", batch, torch.Generator().manual_seed(1), model)
    mask = batch_attention_mask([("t2i", rows.ids)], model.vocab)
    with torch.no_grad():
        a = model.image_head.output(model.hidden_states(rows.ids, mask, rows.image_embeds))
        again = loaded.objective.training_rows("c2i", batch, torch.Generator().manual_seed(1), loaded)
        b = loaded.image_head.output(loaded.hidden_states(rows.ids, mask, again.image_embeds))
    assert torch.equal(a, b)


def test_code_models_have_no_head_and_refuse_head_weights(tiny_showo, diffusion_model):
    assert tiny_showo.image_head is None
    with pytest.raises(ShowoError, match="image-head weights"):
        copy.deepcopy(tiny_showo).load_state(
            {**tiny_showo.state(), "image_head.norm.weight": torch.ones(3)}, "x.safetensors"
        )
    llm_only = {k: v for k, v in diffusion_model.state().items() if not k.startswith("image_head.")}
    with pytest.raises(ShowoError, match="image head"):
        copy.deepcopy(diffusion_model).load_state(llm_only, "y.safetensors")


def test_the_vae_gives_null_factors_and_must_match_the_recipe(tiny_vae_dir, tiny_vae):
    resolved = objectives.get(DiffusionConfig(vae=str(tiny_vae_dir), latent_channels=4)).resolved()
    assert resolved.factors() == (tiny_vae.scaling_factor, tiny_vae.shift_factor)
    with pytest.raises(ShowoError, match="has 4 latent channels, the objective's latent_channels is 8"):
        objectives.get(DiffusionConfig(vae=str(tiny_vae_dir), latent_channels=8)).resolved()
    with pytest.raises(ShowoError, match="objective.scaling_factor 123.0 differs from the VAE's"):
        objectives.get(
            DiffusionConfig(vae=str(tiny_vae_dir), latent_channels=4, scaling_factor=123.0)
        ).resolved()
    with pytest.raises(ShowoError, match="VAE not found"):
        objectives.get(DiffusionConfig(vae=str(tiny_vae_dir / "nowhere"), latent_channels=4)).resolved()


def test_mixed_rows_diffuse_every_frame_and_score_text_and_latents(diffusion_model, tmp_path):
    module = module_for(diffusion_model, "epsilon", tmp_path)
    model, objective = module.model, module.objective
    frames = [
        {
            "__key__": f"m{i}",
            "__url__": "mem.tar",
            "latents.npy": np.stack([class_latent(i), class_latent(i + 1)]),
            "txt": "x",
            "json": {"task": "mixed", "frame_captions": [f"a drawing of {CLASSES[i]}", "then the next one"]},
        }
        for i in range(2)
    ]
    batch = BatchBuilder("mixed", model.prompter(max_frames=2), objective=objective, max_frames=2)(
        frames, seed=3
    )
    assert batch["latents"].shape == (4, LATENT_CHANNELS, 8, 8)
    image = model.vocab.is_image(batch["input_ids"])
    assert torch.equal(batch["labels"][image], batch["input_ids"][image])  # every frame position is scored
    rows = {"mixed": objective.training_rows("mixed", batch, torch.Generator().manual_seed(5), model)}
    got = module.losses(rows)[0]

    g = torch.Generator().manual_seed(5)
    x0 = batch["latents"]
    eps = torch.randn(x0.shape, generator=g)
    index = torch.randint(0, T, (4,), generator=g)
    ac = cosine_alphas_cumprod()[index].float().view(-1, 1, 1, 1)
    noisy = ac.sqrt() * x0 + (1 - ac).sqrt() * eps
    head = model.image_head
    embeds = head.embed(unfold(noisy), index.float()).flatten(0, 1)
    mask = batch_attention_mask([("mixed", batch["input_ids"])], model.vocab)
    with torch.no_grad():
        hidden = model.hidden_states(batch["input_ids"], mask, embeds)
        mse = ((head.output(hidden[image]) - unfold(eps).flatten(0, 1)) ** 2).mean()
        labels = batch["labels"]
        text = (labels != -100) & ~image
        ce = F.cross_entropy(model.llm.lm_head(hidden[text]).float(), labels[text])
    assert float(got["loss_mixed_diffusion"]) == pytest.approx(float(mse), rel=1e-4)
    assert float(got["loss_mixed"]) == pytest.approx(float(ce), rel=1e-4)
    assert float(got["loss"]) == pytest.approx(float(ce + 5.0 * mse), rel=1e-4)


def test_packed_rows_carry_their_latents_and_give_the_padded_losses(diffusion_model, tmp_path):
    padded = module_for(diffusion_model, "epsilon", tmp_path / "padded")
    packed = module_for(diffusion_model, "epsilon", tmp_path / "packed", **{"data.pack_tokens": 120})
    model, objective = padded.model, padded.objective
    prompter = model.prompter(max_frames=2)
    frames = [
        {
            "__key__": "m",
            "__url__": "mem.tar",
            "latents.npy": np.stack([class_latent(0), class_latent(1)]),
            "txt": "x",
            "json": {"frame_captions": ["zero", "one"]},
        }
    ]
    batches = {
        "c2i": BatchBuilder("c2i", prompter, objective=objective)(samples(3), seed=1),
        "mmu": BatchBuilder("mmu", prompter, objective=objective)(samples(2), seed=2),
        "mixed": BatchBuilder("mixed", prompter, objective=objective, max_frames=2)(frames, seed=3),
    }
    rows = {
        t: objective.training_rows(t, b, torch.Generator().manual_seed(5), model) for t, b in batches.items()
    }
    with torch.no_grad():
        expected, got = padded.losses(rows)[0], packed.losses(rows)[0]
    assert packed.positions_run < padded.positions_run  # the pads were dropped
    assert set(got) == set(expected) and "loss_mixed_diffusion" in got
    for key in expected:
        assert torch.allclose(got[key].float(), expected[key].float(), atol=1e-5), key
