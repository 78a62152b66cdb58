"""`showo train RECIPE [key=value ...]`: trains a Show-o model, an image tokenizer or a VAE (by its kind)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train from a recipe (Show-o stages, the image tokenizer or the VAE)"
    )
    parser.add_argument("recipe", help="path to a recipe YAML")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=1e-4")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from showo.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if recipe.kind == "tokenizer":
        from showo.tokenizer.training import fit
    elif recipe.kind == "vae":
        from showo.vae.training import fit
    else:
        from showo.training import fit
    fit(recipe)
    return 0
