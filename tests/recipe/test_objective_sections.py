"""The `objective` section is typed by the objective it names: each has its own keys, checked with the same
one-line errors as every other section, wherever in the chain (file, base, override) the name comes from."""

from __future__ import annotations

import pytest

from showo.cli import main
from showo.objectives.ar import ARConfig
from showo.objectives.mtp import MTPConfig
from showo.recipe import load_recipe, recipe_to_yaml


def test_each_objective_types_its_section(valid_recipe, write_recipe):
    assert type(load_recipe(write_recipe(valid_recipe)).objective) is MTPConfig
    valid_recipe["objective"] = {"image": "ar", "cond_dropout_prob": 0.2}
    recipe = load_recipe(write_recipe(valid_recipe))
    assert type(recipe.objective) is ARConfig and recipe.objective.cond_dropout_prob == 0.2
    assert "mask_schedule" not in recipe_to_yaml(recipe)
    overridden = load_recipe(write_recipe({**valid_recipe, "objective": {}}), ["objective.image=ar"])
    assert type(overridden.objective) is ARConfig


def test_a_derived_recipe_can_switch_objectives_and_its_keys_follow(valid_recipe, write_recipe):
    write_recipe({**valid_recipe, "objective": {"image": "mtp", "min_mask_rate": 0.1}}, "base.yaml")
    derived = write_recipe({"base": "base.yaml", "objective": {"image": "mtp", "mask_schedule": "linear"}})
    assert load_recipe(derived).objective.min_mask_rate == 0.1
    write_recipe({**valid_recipe, "objective": {"image": "mtp"}}, "base2.yaml")
    to_ar = write_recipe({"base": "base2.yaml", "objective": {"image": "ar"}}, "ar.yaml")
    assert type(load_recipe(to_ar).objective) is ARConfig


def test_a_derived_recipe_naming_another_objective_replaces_the_base_section(valid_recipe, write_recipe):
    mtp = {"image": "mtp", "mask_schedule": "linear", "min_mask_rate": 0.2, "cond_dropout_prob": 0.3}
    write_recipe({**valid_recipe, "objective": mtp, "optim": {**valid_recipe["optim"], "lr": 0.5}}, "b.yaml")
    recipe = load_recipe(write_recipe({"base": "b.yaml", "objective": {"image": "ar"}}, "ar.yaml"))
    assert type(recipe.objective) is ARConfig and recipe.objective.cond_dropout_prob == 0.1  # not the base's
    assert recipe.optim.lr == 0.5  # the base's other sections still apply
    back = load_recipe(write_recipe({"base": "ar.yaml", "objective": {"image": "mtp"}}, "mtp.yaml"))
    assert type(back.objective) is MTPConfig and back.objective.mask_schedule == "cosine"


@pytest.mark.parametrize(
    ("objective", "overrides", "cause"),
    [
        ({"image": "ar", "mask_schedule": "cosine"}, [], "unknown key 'objective.mask_schedule'"),
        (
            {"image": "mtp", "mask_schedule": "cosine"},
            ["objective.image=ar"],
            "unknown key 'objective.mask_schedule'",
        ),
        ({"image": "ar"}, ["objective.min_mask_rate=0.2"], "unknown key 'objective.min_mask_rate'"),
        ({"image": "latent"}, [], "objective.image must be one of mtp, ar, diffusion, got 'latent'"),
        ({"image": ["ar"]}, [], "objective.image must be one of mtp, ar, diffusion"),
        ({}, ["objective.image=mtpx"], "objective.image must be one of mtp, ar, diffusion, got 'mtpx'"),
        ({"image": "mtp", "min_mask_rate": 1.0}, [], "objective.min_mask_rate must be in [0, 1)"),
        ({"image": "ar", "cond_dropout_prob": -0.1}, [], "objective.cond_dropout_prob must be in [0, 1]"),
    ],
)
def test_a_key_or_name_the_objective_does_not_have_is_one_line(
    valid_recipe, write_recipe, capsys, objective, overrides, cause
):
    path = write_recipe({**valid_recipe, "objective": objective})
    assert main(["recipe", "show", str(path), *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith("showo: error: ") and cause in err and err.count("\n") == 1
