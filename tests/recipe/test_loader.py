"""Merge order (schema <- base chain <- file <- overrides), round trips and the resolved recipe."""

from __future__ import annotations

import yaml

from showo.cli import main
from showo.recipe import ShowoRecipe, StreamConfig, load_recipe, recipe_to_yaml, save_recipe
from showo.recipe.schema import DEFAULT_CAPTION_QUESTIONS


def test_schema_defaults_fill_what_the_file_leaves_out(valid_recipe, write_recipe):
    recipe = load_recipe(write_recipe(valid_recipe))
    assert isinstance(recipe, ShowoRecipe)
    # official values (docs/official-differences.md#configurations) are the schema defaults
    assert recipe.run.seed == 10086
    assert recipe.objective.cond_dropout_prob == 0.1
    assert recipe.optim.betas == [0.9, 0.999] and recipe.optim.weight_decay == 0.01
    assert recipe.trainer.sample.steps == 12
    assert recipe.data.streams["t2i"].loss_coeff == 1.0
    assert recipe.data.streams["t2i"].questions == list(DEFAULT_CAPTION_QUESTIONS)
    assert recipe.model.seq_len == 32 + 256 + 3


def test_base_chain_then_file_then_overrides(valid_recipe, write_recipe):
    write_recipe(
        {**valid_recipe, "optim": {"lr": 1.0e-3, "warmup_steps": 10, "max_steps": 100}}, "sub/base.yaml"
    )
    write_recipe({"base": "sub/base.yaml", "optim": {"lr": 5.0e-4}, "run": {"name": "mid"}}, "mid.yaml")
    top = write_recipe({"base": "mid.yaml", "optim": {"max_steps": 50}}, "top.yaml")
    recipe = load_recipe(top, ["optim.lr=2e-4", "data.streams.t2i.batch_size=3"])
    assert recipe.optim.lr == 2e-4  # override beats every file
    assert recipe.optim.max_steps == 50  # the file beats its base
    assert recipe.optim.warmup_steps == 10  # from the outermost base
    assert recipe.run.name == "mid"
    assert recipe.data.streams["t2i"].batch_size == 3
    assert recipe.data.streams["lm"].batch_size == 4


def test_base_resolves_against_the_recipe_directory_not_the_cwd(
    valid_recipe, write_recipe, tmp_path, monkeypatch
):
    write_recipe(valid_recipe, "recipes/base.yaml")
    top = write_recipe({"base": "base.yaml", "run": {"name": "x"}}, "recipes/top.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_recipe(top).run.name == "x"


def test_null_stream_drops_an_inherited_stream(valid_recipe, write_recipe):
    write_recipe(valid_recipe, "base.yaml")
    top = write_recipe(
        {
            "base": "base.yaml",
            "data": {"streams": {"lm": None, "mmu": {"shards": ["m.tar"], "batch_size": 2}}},
        },
        "top.yaml",
    )
    streams = load_recipe(top).data.streams
    assert sorted(streams) == ["mmu", "t2i"]
    assert isinstance(streams["mmu"], StreamConfig) and streams["mmu"].batch_size == 2


def test_resume_false_and_true_in_yaml_and_overrides(valid_recipe, write_recipe):
    assert load_recipe(write_recipe({**valid_recipe, "resume": False})).resume == "never"
    assert load_recipe(write_recipe({**valid_recipe, "resume": True})).resume == "auto"
    path = write_recipe(valid_recipe)
    assert load_recipe(path).resume == "auto"
    assert load_recipe(path, ["resume=false"]).resume == "never"
    assert load_recipe(path, ["resume=runs/t/checkpoints/last.ckpt"]).resume == "runs/t/checkpoints/last.ckpt"


def test_text_tokenizer_defaults_to_llm(valid_recipe, write_recipe):
    path = write_recipe(valid_recipe)
    assert load_recipe(path).model.text_tokenizer == "demo_out/tiny-llm"
    assert load_recipe(path, ["model.text_tokenizer=tok"]).model.text_tokenizer == "tok"


def test_llm_config_instead_of_llm(valid_recipe, write_recipe):
    valid_recipe["model"] = {
        "llm": None,
        "llm_config": {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "rope_parameters": {"partial_rotary_factor": 0.5},
        },
        "text_tokenizer": "tok",
        "image_tokenizer": "img",
    }
    recipe = load_recipe(write_recipe(valid_recipe))
    assert recipe.model.llm_config == {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "rope_parameters": {"partial_rotary_factor": 0.5},
    }


def test_interpolation_resolves(valid_recipe, write_recipe):
    valid_recipe["init_from"] = "${run.output_dir}/previous"
    assert load_recipe(write_recipe(valid_recipe)).init_from == "runs/previous"


def test_override_values_are_typed_like_yaml(valid_recipe, write_recipe):
    recipe = load_recipe(
        write_recipe(valid_recipe),
        ["model.image_grid=[8,8]", "data.resolution=32", "trainer.devices=auto", "optim.grad_clip=null"],
    )
    assert recipe.model.image_grid == [8, 8] and recipe.model.num_image_tokens == 64
    assert recipe.trainer.devices == "auto"
    assert recipe.optim.grad_clip is None


def test_save_then_load_round_trip(valid_recipe, write_recipe, tmp_path):
    write_recipe(valid_recipe, "base.yaml")
    top = write_recipe({"base": "base.yaml", "run": {"name": "rt"}}, "top.yaml")
    recipe = load_recipe(top, ["optim.lr=3e-4"])
    saved = save_recipe(recipe, tmp_path / "runs" / "rt" / "recipe.yaml")
    again = load_recipe(saved)
    assert yaml.safe_load(saved.read_text())["base"] is None  # fully merged: nothing left to inherit
    recipe.base = None
    assert again == recipe
    assert not list(saved.parent.glob("*.tmp"))


def test_recipe_show_prints_the_resolved_recipe(valid_recipe, write_recipe, capsys):
    path = write_recipe(valid_recipe)
    assert main(["recipe", "show", str(path), "optim.lr=7e-4", "run.name=shown"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["optim"]["lr"] == 7e-4 and shown["run"]["name"] == "shown"
    assert shown["data"]["streams"]["lm"]["loss_coeff"] == 0.1
    assert shown == yaml.safe_load(recipe_to_yaml(load_recipe(path, ["optim.lr=7e-4", "run.name=shown"])))


def test_validate_several_paths(valid_recipe, write_recipe, capsys):
    a = write_recipe(valid_recipe, "a.yaml")
    b = write_recipe(valid_recipe, "b.yaml")
    assert main(["recipe", "validate", str(a), str(b)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"ok {a} (kind showo)", f"ok {b} (kind showo)"]
