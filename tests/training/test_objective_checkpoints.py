"""The objective travels with the run: an AR run's checkpoints and export record it, `showo generate` and
`showo eval` then sample the export autoregressively, its previews use the AR sampler, and a run cannot
resume under another objective."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from showo.cli import main
from showo.errors import ShowoError
from showo.recipe import load_recipe
from showo.sampling import ar, maskgit
from showo.sampling.images import decode_codes, save_grid
from showo.sampling.pipeline import load_pipeline
from showo.training.checkpoint import list_checkpoints
from showo.training.module import METADATA_KEY, ShowoModule
from showo.training.previews import Previews
from tests.training.conftest import recipe_dict, run_train, write_recipe

AR = {"image": "ar", "cond_dropout_prob": 0.1}


@pytest.fixture(scope="module")
def ar_export(tmp_path_factory, tiny_llm_dir, image_tokenizer_dir, shards):
    """A two-step AR run and its export."""
    tmp = tmp_path_factory.mktemp("ar_run")
    raw = recipe_dict(
        tmp,
        tiny_llm_dir,
        image_tokenizer_dir,
        shards,
        **{
            "objective": dict(AR),
            "optim.max_steps": 2,
            "optim.warmup_steps": 1,
            "trainer.checkpoint_every": 2,
        },
    )
    run_train(write_recipe(tmp / "recipe.yaml", raw))
    run_dir = tmp / "runs" / "tiny"
    assert main(["export", "--ckpt", str(run_dir), "--out", str(tmp / "export")]) == 0
    return {"run_dir": run_dir, "export": tmp / "export", "raw": raw, "tmp": tmp}


def test_the_ar_objective_is_recorded_in_checkpoints_and_exports(ar_export):
    checkpoint = torch.load(list_checkpoints(ar_export["run_dir"])[-1], weights_only=True)
    assert checkpoint[METADATA_KEY]["model_config"]["objective"] == AR
    assert json.loads((ar_export["export"] / "config.json").read_text())["objective"] == AR


def test_generate_and_eval_sample_the_ar_export_autoregressively(ar_export, tmp_path, capsys):
    export = ar_export["export"]
    out = tmp_path / "grid.png"
    argv = ["generate", "--ckpt", str(export), "--device", "cpu", "--prompt", "a red circle", "--n", "1"]
    assert main([*argv, "--seed", "5", "--out", str(out)]) == 0
    pipe = load_pipeline(export, device="cpu")
    codes = ar.generate(pipe.model, pipe.prompter, ["a red circle"], 1.75, 1.0, generator=pipe.generator(5))
    reference = save_grid(decode_codes(pipe.image_tokenizer, codes, pipe.grid), tmp_path / "ref.png", ncol=1)
    assert out.read_bytes() == reference.read_bytes()

    result = tmp_path / "digits.json"
    argv = ["eval", "--ckpt", str(export), "--suite", "digits", "--out", str(result), "--batch-size", "100"]
    assert main(argv) == 0
    recorded = json.loads(result.read_text())
    assert recorded["objective"] == AR and recorded["sampler"] == "ar"
    assert recorded["sampler_options"] == {"guidance": 1.5, "temperature": 1.0, "top_k": None, "top_p": None}
    capsys.readouterr()
    assert main([*argv, "--sampler", "maskgit"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        "sampler 'maskgit' cannot sample a checkpoint trained with the ar objective" in err
        and "\n" not in err
    )
    assert main([*argv, "--steps", "4"]) == 2
    assert "takes no steps option" in capsys.readouterr().err


def test_a_run_cannot_resume_under_another_objective(ar_export):
    raw = copy.deepcopy(ar_export["raw"])
    raw["objective"] = {"image": "mtp"}
    path = write_recipe(ar_export["tmp"] / "mtp.yaml", raw)
    module = ShowoModule(
        load_pipeline(ar_export["export"], device="cpu", need_image_tokenizer=False).model, load_recipe(path)
    )
    checkpoint = torch.load(list_checkpoints(ar_export["run_dir"])[-1], weights_only=True)
    with pytest.raises(ShowoError, match="trained with the 'ar' objective, the recipe names 'mtp'"):
        module.on_load_checkpoint(checkpoint)


@pytest.fixture(scope="module")
def small_showo(tiny_llm_dir):
    """The tiny LLM over a 4x4 grid of 64 codes: token-by-token previews in a fraction of a second."""
    from showo.model import ShowO

    return ShowO.build(tiny_llm_dir, None, codebook_size=64, num_image_tokens=16, max_text_len=16).eval()


@pytest.mark.parametrize("objective", ["ar", "mtp"])
def test_previews_use_the_runs_own_sampler(
    objective, tmp_path, small_showo, tiny_llm_dir, image_tokenizer_dir, shards
):
    prompts = ["a red circle", "a blue star"]
    raw = recipe_dict(
        tmp_path,
        tiny_llm_dir,
        image_tokenizer_dir,
        shards,
        **{
            "objective": {"image": objective},
            "trainer.sample": {
                "prompts": prompts,
                "steps": 3,
                "seed": 1,
                "guidance": 0.5,
                "temperature": 0.7,
            },
        },
    )
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", raw))
    module = ShowoModule(copy.deepcopy(small_showo), recipe)
    previews = Previews(recipe, datamodule=None)
    model, prompter = module.model.eval(), module.model.prompter()
    got = previews.sample_codes(model, prompter, torch.device("cpu"))
    generator = torch.Generator().manual_seed(1)
    if objective == "ar":
        expected = ar.generate(model, prompter, prompts, 0.5, 0.7, generator=generator)
    else:
        expected = maskgit.generate(model, prompter, prompts, 3, 0.5, temperature=0.7, generator=generator)
    assert torch.equal(got, expected)
