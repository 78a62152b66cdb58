"""Typed, validated recipes: `load_recipe` merges schema <- base chain <- file <- overrides."""

from showo.recipe.loader import load_recipe, recipe_to_yaml, save_recipe
from showo.recipe.schema import (
    TASKS,
    DataConfig,
    ModelConfig,
    ObjectiveConfig,
    OptimConfig,
    RunConfig,
    SampleConfig,
    ShowoRecipe,
    StrategyConfig,
    StreamConfig,
    TrainerConfig,
)

__all__ = [
    "TASKS",
    "DataConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "RunConfig",
    "SampleConfig",
    "ShowoRecipe",
    "StrategyConfig",
    "StreamConfig",
    "TrainerConfig",
    "load_recipe",
    "recipe_to_yaml",
    "save_recipe",
]
