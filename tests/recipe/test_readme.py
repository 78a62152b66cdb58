"""The README stays true to the schema: it opens with the two commands and documents every recipe key."""

from __future__ import annotations

import dataclasses
import typing

from showo.recipe.schema import ShowoRecipe, StreamConfig

from .conftest import REPO

README = (REPO / "README.md").read_text()


def _leaf_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            keys += _leaf_keys(hint, f"{key}.")
        elif f.name == "streams":
            keys += _leaf_keys(StreamConfig, f"{key}.<task>.")
        else:
            keys.append(key)
    return keys


def test_readme_opens_with_the_two_commands():
    lines = [line for line in README.splitlines() if line.strip() and not line.startswith("```")]
    assert lines[0].startswith("make demo") and lines[1].startswith("make test")


def test_every_recipe_key_is_documented():
    section = README.split("### Keys", 1)[1].split("### Shipped recipes", 1)[0]
    undocumented = []
    for key in _leaf_keys(ShowoRecipe):
        parent, _, name = key.rpartition(".")
        if f"`{key}`" not in section and not (f"`{parent}." in section and f"`.{name}`" in section):
            undocumented.append(key)
    assert not undocumented


def test_every_objective_key_is_documented():
    """Each objective types the `objective` section with its own keys; the README lists them all."""
    from showo import objectives

    section = README.split("### Keys", 1)[1].split("### Shipped recipes", 1)[0]
    keys = {
        key for name in objectives.names() for key in _leaf_keys(objectives.config_type(name), "objective.")
    }
    assert "objective.mask_schedule" in keys
    assert sorted(key for key in keys if f"`{key}`" not in section) == []
