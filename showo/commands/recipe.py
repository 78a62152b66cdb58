"""`showo recipe validate|show|plan`: check recipes, print them resolved, size a run before launching it."""

from __future__ import annotations

import argparse

from showo.commands import checks
from showo.errors import ShowoError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("recipe", help="validate, show or plan recipes")
    actions = parser.add_subparsers(dest="action", required=True)

    validate = actions.add_parser("validate", help="load and check one or more recipes")
    validate.add_argument("paths", nargs="+", metavar="PATH", help="recipe YAML files")
    validate.set_defaults(func=run_validate)

    show = actions.add_parser("show", help="print the fully resolved recipe as YAML")
    show.add_argument("path", metavar="PATH", help="recipe YAML")
    show.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=1e-4")
    show.set_defaults(func=run_show)

    plan = actions.add_parser(
        "plan", help="parameters, tokens and FLOPs per step, per-GPU memory for model states"
    )
    plan.add_argument("path", metavar="RECIPE", help="Show-o recipe YAML")
    plan.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.devices=8")
    plan.add_argument(
        "--text-vocab-size",
        type=checks.vocab_size,
        default=None,
        help="text tokenizer size, instead of loading the tokenizer (50295 for Phi-1.5)",
    )
    plan.add_argument("--json", action="store_true", help="print one JSON object")
    plan.set_defaults(func=run_plan)


def run_validate(args: argparse.Namespace) -> int:
    from showo.recipe import load_recipe

    for path in args.paths:
        recipe = load_recipe(path)
        print(f"ok {path} (kind {recipe.kind})")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from showo.recipe import load_recipe, recipe_to_yaml

    print(recipe_to_yaml(load_recipe(args.path, args.overrides)), end="")
    return 0


def run_plan(args: argparse.Namespace) -> int:
    from showo.recipe import ShowoRecipe, load_recipe
    from showo.recipe.plan import plan_recipe

    recipe = load_recipe(args.path, args.overrides)
    if not isinstance(recipe, ShowoRecipe):
        raise ShowoError(f"{args.path}: plan sizes Show-o recipes; this one has kind {recipe.kind!r}")
    result = plan_recipe(recipe, text_vocab_size=args.text_vocab_size)
    print(result.to_json() if args.json else result.to_text())
    return 0
