"""Inference picks the checkpoint's own sampler: AR checkpoints sample token by token, MTP ones (and those
exported before objectives were recorded) with MaskGIT; asking for another sampler is one line, exit 2."""

import copy

import pytest
import torch

from showo.cli import main
from showo.errors import ShowoError
from showo.sampling import ar, maskgit
from showo.sampling.images import decode_codes, save_grid
from showo.sampling.pipeline import load_pipeline
from tests.sampling.conftest import with_objective


def _generate(ckpt, out, *extra):
    args = ["generate", "--ckpt", str(ckpt), "--device", "cpu", "--prompt", "a red circle", "--n", "2"]
    return main([*args, "--seed", "3", "--out", str(out), *extra])


def _reference_grid(ckpt, out, sample):
    """The grid the command should write, drawn here by calling one sampler directly."""
    pipe = load_pipeline(ckpt, device="cpu")
    codes = sample(pipe.model, pipe.prompter, ["a red circle"] * 2, pipe.generator(3))
    return save_grid(decode_codes(pipe.image_tokenizer, codes, pipe.grid), out, ncol=2).read_bytes()


def test_generate_samples_an_ar_checkpoint_autoregressively(ar_sampling_ckpt, tmp_path):
    assert _generate(ar_sampling_ckpt, tmp_path / "grid.png") == 0
    expected = _reference_grid(
        ar_sampling_ckpt,
        tmp_path / "ref.png",
        lambda m, p, prompts, g: ar.generate(m, p, prompts, 1.75, 1.0, generator=g),
    )
    assert (tmp_path / "grid.png").read_bytes() == expected


def test_a_checkpoint_without_a_recorded_objective_loads_as_mtp(sampling_ckpt, tmp_path):
    old = with_objective(sampling_ckpt, tmp_path / "old", None)
    pipe = load_pipeline(old, device="cpu")
    assert pipe.objective.name == "mtp" and pipe.objective.sampler == "maskgit"
    assert _generate(old, tmp_path / "grid.png", "--steps", "3") == 0
    expected = _reference_grid(
        old,
        tmp_path / "ref.png",
        lambda m, p, prompts, g: maskgit.generate(m, p, prompts, steps=3, guidance=1.75, generator=g),
    )
    assert (tmp_path / "grid.png").read_bytes() == expected


@pytest.mark.parametrize(
    ("extra", "cause"),
    [
        (
            ["--sampler", "maskgit"],
            "sampler 'maskgit' cannot sample a checkpoint trained with the ar objective",
        ),
        (["--steps", "4"], "the ar sampler (objective ar) takes no steps option"),
        (["--schedule", "linear"], "takes no schedule option"),
        (["--solver", "ddpm"], "the ar sampler (objective ar) takes no solver option"),
    ],
)
def test_a_sampler_or_option_the_ar_checkpoint_cannot_serve_exits_2(
    ar_sampling_ckpt, tmp_path, capsys, extra, cause
):
    assert _generate(ar_sampling_ckpt, tmp_path / "grid.png", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("showo: error: ") and cause in err and "\n" not in err
    assert not (tmp_path / "grid.png").exists()


def test_ar_options_reach_the_ar_sampler_and_maskgit_ones_are_refused(
    sampling_ckpt, ar_sampling_ckpt, tmp_path, capsys
):
    assert _generate(ar_sampling_ckpt, tmp_path / "greedy.png", "--temperature", "0", "--top-k", "5") == 0
    expected = _reference_grid(
        ar_sampling_ckpt,
        tmp_path / "ref.png",
        lambda m, p, prompts, g: ar.generate(m, p, prompts, 1.75, 0.0, top_k=5, generator=g),
    )
    assert (tmp_path / "greedy.png").read_bytes() == expected
    assert _generate(sampling_ckpt, tmp_path / "x.png", "--top-k", "5") == 2
    assert "the maskgit sampler (objective mtp) takes no top-k option" in capsys.readouterr().err
    assert (
        main(
            [
                "inpaint",
                "--ckpt",
                str(ar_sampling_ckpt),
                "--image",
                "x.png",
                "--mask",
                "m.png",
                "--prompt",
                "x",
            ]
        )
        == 2
    )


def test_a_recorded_objective_is_checked_like_a_recipe(sampling_ckpt, tmp_path, capsys):
    from showo.model import ShowO

    for objective, cause in [
        ({"image": "nonesuch"}, "objective.image must be one of mtp, ar"),
        ({"image": "mtp", "mask_schedule": "cosh"}, "mask_schedule"),
        ({"image": "ar", "mask_schedule": "cosine"}, "unknown key 'mask_schedule' for the ar objective"),
        ("mtp", "must be a JSON object"),
    ]:
        bad = with_objective(sampling_ckpt, tmp_path / f"bad{len(list(tmp_path.iterdir()))}", objective)
        with pytest.raises(Exception, match=cause):
            ShowO.from_pretrained(bad)
        assert _generate(bad, tmp_path / "grid.png") == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("showo: error: ") and "\n" not in err


def test_image_embeddings_at_image_positions(small_showo):
    """ids-only == the ids' own embeddings passed as image embeddings; other embeddings change the output."""
    model, vocab = small_showo, small_showo.vocab
    ids = model.prompter().t2i_gen(["a red circle"], vocab.codes_to_ids(torch.arange(16).view(1, 16) % 64))
    where = vocab.is_image(ids) | (ids == vocab.mask_id)
    own = model.llm.get_input_embeddings()(ids)
    with torch.no_grad():
        plain = model(ids)
        same = model(ids, image_embeds=own)
        packed = model.hidden_states(ids, image_embeds=own[where])
        other = model(ids, image_embeds=torch.zeros_like(own))
    assert torch.equal(plain, same)
    assert torch.allclose(model.hidden_states(ids), packed, atol=1e-6)
    image = where[0].nonzero()[0, 0]
    assert torch.equal(other[:, :image], plain[:, :image]) and not torch.allclose(
        other[:, image:], plain[:, image:]
    )


def test_mixed_generation_of_an_ar_model_draws_its_frames_token_by_token(small_showo):
    """Under AR the frames come from the causal decode: cached equals recompute, and the first code equals a
    greedy pick over the image columns of the logits after `[lvg][bos] caption [soi]` under the causal rule."""
    from showo import objectives
    from showo.attention import omni_attention_mask
    from showo.sampling import mixed

    model = copy.deepcopy(small_showo)
    model.config.objective = objectives.get("ar").to_dict()
    vocab, prompter = model.vocab, model.prompter()
    runs = [
        mixed.generate(
            model,
            prompter,
            [["a red circle"]],
            2,
            generator=torch.Generator().manual_seed(0),
            use_cache=cache,
            image_temperature=0.0,
        )
        for cache in (True, False)
    ]
    assert runs[0][0].captions == runs[1][0].captions and torch.equal(runs[0][0].codes, runs[1][0].codes)
    caption = prompter.tokenize(["a red circle"])[0]
    ids = torch.tensor([[vocab.lvg_id, vocab.bos_id, *caption, vocab.soi_id]])
    with torch.no_grad():
        logits = model(ids, omni_attention_mask(ids, vocab, "causal"))[0, -1, vocab.image_slice]
    assert int(runs[0][0].codes[0, 0]) == int(logits.argmax())
    with pytest.raises(ShowoError, match="takes no schedule option"):
        mixed.generate(model, prompter, [["x"]], 1, schedule="linear")


def test_canvas_editing_refuses_an_ar_model(small_showo):
    from showo import objectives
    from showo.sampling import canvas

    model = copy.deepcopy(small_showo)
    model.config.objective = objectives.get("ar").to_dict()
    with pytest.raises(ShowoError, match="sampler 'maskgit' cannot sample a checkpoint trained with the ar"):
        canvas.inpaint(
            model,
            model.prompter(),
            ["x"],
            torch.zeros(16, dtype=torch.long),
            torch.ones(16, dtype=torch.bool),
        )
