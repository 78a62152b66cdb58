"""Recipe loading: schema <- `base:` chain <- file <- `key=value` overrides, with one-line errors.

OmegaConf does the typed merging; this module turns its exceptions into `ShowoError` messages that name
the file (or override) and the dotted key, suggests the closest valid key for a misspelling, and then
runs each schema node's `check(key)` for the value rules OmegaConf cannot express.

Interpolation: a recipe may refer to its own keys (`${run.output_dir}/previous`), and nothing else. Every
resolver (`${oc.env:HOME}`, `${oc.decode:...}`, any `${name:...}`) and every nested interpolation is refused
with one line, in files and overrides alike: a recipe says what a run did, so the `recipe.yaml` saved next to
a run, its TensorBoard hyper-parameters and its checkpoints must never hold a value read from the
environment (a token, a home directory) that the recipe did not state.

`base:` may name any file. Errors about a base file name the file and the schema key, never the file's
contents: no unknown key is echoed unless it is a near-miss of a schema key, and wrong values are described
by their type. (Values that pass the schema's type checks and then break a value rule are named, as for
the recipe itself.) Recipe files larger than `MAX_RECIPE_BYTES` are refused unread.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import os
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from showo.errors import ShowoError
from showo.recipe.schema import TASKS, ShowoRecipe

if TYPE_CHECKING:
    from showo.tokenizer.config import TokenizerRecipe
    from showo.vae.config import VaeRecipe

KINDS: dict[str, str] = {
    "showo": "showo.recipe.schema:ShowoRecipe",
    "tokenizer": "showo.tokenizer.config:TokenizerRecipe",
    "vae": "showo.vae.config:VaeRecipe",
}
"""Recipe kind -> schema class, imported lazily (the tokenizer schema lives with the tokenizer)."""

MAX_RECIPE_BYTES = 1 << 20
"""Recipes are a few kilobytes; a bigger file is not one (and is not read into memory)."""

_PLAIN_REFERENCE = re.compile(r"\$\{\s*\.*[\w-]+(?:\.[\w-]+)*\s*\}")
"""`${key}`, `${a.b.0}`, `${..sibling}`: OmegaConf node references, the only interpolation a recipe may use."""


def load_recipe(
    path: str | os.PathLike, overrides: Sequence[str] = ()
) -> ShowoRecipe | TokenizerRecipe | VaeRecipe:
    """Load, merge, type-check and validate a recipe; returns a `ShowoRecipe`, `TokenizerRecipe` or
    `VaeRecipe` object.

    Every other path inside a recipe is relative to the working directory; only `base:` is resolved
    against the directory of the file that names it.
    """
    layers = _read_chain(Path(path))
    kind = _kind(layers)
    schema = _schema(kind)
    cfg = OmegaConf.structured(schema)
    if schema is ShowoRecipe:  # the objective section is typed by the objective the chain names last
        cfg.objective = OmegaConf.structured(_objective_type(layers, overrides))
    from_base: dict[str, str | None] = {}  # dotted key -> the base file that set it last, if one did
    layers = _objective_switch(layers)
    for index, (source, layer) in enumerate(layers):
        is_base = index < len(layers) - 1
        cfg = _merge(cfg, layer, source, echo=not is_base)
        from_base.update(dict.fromkeys(_dotted_keys(layer), source if is_base else None))
    for item in overrides:
        layer = _parse_override(item)
        cfg = _merge(cfg, layer, f"override {item!r}")
        from_base.update(dict.fromkeys(_dotted_keys(layer)))
    try:
        missing = sorted(OmegaConf.missing_keys(cfg))
        recipe = None if missing else OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        base = from_base.get(str(key)) if key else None
        if base is not None:  # e.g. a broken reference in a base file: its text stays out
            raise ShowoError(f"{base}: {key}: invalid value ({type(err).__name__})") from None
        raise ShowoError(f"{path}: {key + ': ' if key else ''}{_first_line(err)}") from None
    except ShowoError as err:  # a schema class validating itself in __post_init__
        raise ShowoError(f"{path}: {err}") from None
    if missing:
        raise ShowoError(f"{path}: missing required value(s): {', '.join(missing)}")
    if isinstance(recipe, ShowoRecipe):
        _check_streams(recipe, path)
        if recipe.model.text_tokenizer is None:
            recipe.model.text_tokenizer = recipe.model.llm
    try:
        _check_tree(recipe, "")
    except ShowoError as err:
        raise ShowoError(f"{path}: {err}") from None
    return recipe


def save_recipe(recipe: Any, path: str | os.PathLike) -> Path:
    """Write the resolved recipe as YAML next to a run (atomically: temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(recipe_to_yaml(recipe))
    tmp.replace(path)
    return path


def recipe_to_yaml(recipe: Any) -> str:
    """The resolved recipe as YAML text; `base` is cleared since everything is merged in.

    `load_recipe` already resolved every reference (and refused any value that still reads like one), so
    the text is written as it is: resolving here could turn a value into an environment lookup.
    """
    cfg = OmegaConf.structured(recipe)
    if "base" in cfg:
        cfg.base = None
    return OmegaConf.to_yaml(cfg, resolve=False)  # resolved by load_recipe; nothing may resolve twice


def _read_chain(path: Path) -> list[tuple[str, dict]]:
    """The recipe and its bases, outermost base first, as (source name, raw mapping)."""
    chain: list[tuple[str, dict]] = []
    seen: list[Path] = []
    current: Path | None = path
    named_by: str | None = None
    while current is not None:
        resolved = current.resolve()
        if resolved in seen:
            cycle = " -> ".join(str(p) for p in [*seen, resolved])
            raise ShowoError(f"{current}: cyclic base chain: {cycle}")
        seen.append(resolved)
        layer = _read_yaml(current, named_by)
        chain.append((str(current) if named_by is None else f"{current} (base of {named_by})", layer))
        base = layer.get("base")
        if base is not None and not isinstance(base, str):
            got = repr(base) if named_by is None else f"a {type(base).__name__}"
            raise ShowoError(f"{current}: base must be a path string, got {got}")
        named_by = str(current)
        current = (current.parent / base) if base else None
    return chain[::-1]


def _read_yaml(path: Path, named_by: str | None) -> dict:
    where = f" (base of {named_by})" if named_by else ""
    if not path.exists():
        raise ShowoError(f"recipe file not found: {path}{where}")
    if not path.is_file():
        raise ShowoError(f"{path}{where} is not a regular file")
    try:
        size = path.stat().st_size
        if size > MAX_RECIPE_BYTES:
            raise ShowoError(
                f"{path}{where}: {size} bytes is too big for a recipe (at most {MAX_RECIPE_BYTES})"
            )
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        if named_by is not None:  # the parser quotes the offending text: a base file's text stays out
            problem = re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", problem)
        raise ShowoError(f"{path}{where}:{at} invalid YAML: {problem}") from None
    except UnicodeDecodeError:
        raise ShowoError(f"cannot read recipe {path}{where}: not UTF-8 text") from None
    except OSError as err:
        raise ShowoError(f"cannot read recipe {path}{where}: {err.strerror or type(err).__name__}") from None
    except (OmegaConfBaseException, ValueError, TypeError) as err:
        detail = f": {_first_line(err)}" if named_by is None else ""
        raise ShowoError(f"{path}{where}: not a recipe mapping{detail}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ShowoError(f"{path}{where}: a recipe must be a mapping of keys, got {type(data).__name__}")
    return _normalise_resume(data)


def _normalise_resume(data: dict) -> dict:
    """YAML `resume: false/true` means never/auto (the schema field is a string)."""
    if isinstance(data.get("resume"), bool):
        data = {**data, "resume": "auto" if data["resume"] else "never"}
    return data


def _kind(layers: list[tuple[str, dict]]) -> str:
    kinds = {source: layer["kind"] for source, layer in layers if "kind" in layer}
    top = layers[-1][0]
    for source, kind in kinds.items():
        if not isinstance(kind, str) or kind not in KINDS:
            shown = repr(kind) if source == top else "not one we know"  # a base file's text stays unread
            raise ShowoError(f"{source}: unknown kind {shown} (expected one of {', '.join(KINDS)})")
    if len(set(kinds.values())) > 1:
        found = ", ".join(f"{s}: {k}" for s, k in kinds.items())
        raise ShowoError(f"recipe and its bases disagree on kind ({found})")
    return next(iter(kinds.values()), "showo")


def _schema(kind: str) -> type:
    module_name, _, class_name = KINDS[kind].partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, class_name)
    except (ImportError, AttributeError):
        raise ShowoError(
            f"recipe kind {kind!r} needs {module_name}.{class_name}, which this installation does not provide"
        ) from None


def _parse_override(item: str) -> dict:
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")) or " " in key:
        raise ShowoError(f"bad override {item!r}: expected key=value, e.g. optim.lr=1e-4")
    if key in ("base", "kind"):
        raise ShowoError(f"bad override {item!r}: {key} is read from the recipe files, not overridden")
    try:
        parsed = OmegaConf.to_container(OmegaConf.from_dotlist([f"{key}={value}"]), resolve=False)
    except (yaml.YAMLError, OmegaConfBaseException) as err:
        raise ShowoError(f"bad override {item!r}: {_first_line(err)}") from None
    if isinstance(parsed.get("resume"), bool):
        parsed["resume"] = "auto" if parsed["resume"] else "never"
    return parsed


def _merge(cfg: DictConfig, layer: dict, source: str, echo: bool = True) -> DictConfig:
    """Merge one layer; `echo=False` (a base file) keeps its keys and values out of the messages."""
    _check_sections(layer, OmegaConf.get_type(cfg), "", source, echo)
    try:
        merged = OmegaConf.merge(cfg, layer)
    except ConfigKeyError as err:
        raise ShowoError(f"{source}: {_unknown_key_message(err, echo)}") from None
    except ValidationError as err:
        raise ShowoError(f"{source}: {_type_message(err, echo)}") from None
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        detail = _first_line(err) if echo else f"invalid value ({type(err).__name__})"
        raise ShowoError(f"{source}: {key + ': ' if key else ''}{detail}") from None
    _refuse_resolvers(layer, "", source)
    return merged


def _dotted_keys(node: Any, key: str = "") -> list[str]:
    """Every key path a layer sets (`optim.lr`, `data.streams.t2i.shards`), sections included."""
    if not isinstance(node, dict):
        return [key] if key else []
    keys = [key] if key else []
    for name, value in node.items():
        keys += _dotted_keys(value, f"{key}.{name}" if key else str(name))
    return keys


def _refuse_resolvers(node: Any, key: str, source: str) -> None:
    """Allow `${key}` references only: a resolver or nested interpolation is refused (see the module doc)."""
    if isinstance(node, dict):
        for name, value in node.items():
            _refuse_resolvers(value, f"{key}.{name}" if key else str(name), source)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _refuse_resolvers(value, f"{key}[{index}]", source)
    elif isinstance(node, str) and "${" in _PLAIN_REFERENCE.sub("", node):
        raise ShowoError(
            f"{source}: {key}: only ${{key}} references to other recipe keys may be interpolated; "
            "resolvers such as ${oc.env:...} are refused (a recipe states its values)"
        )


def _check_sections(layer: Any, schema: Any, key: str, source: str, echo: bool = True) -> None:
    """Reject a scalar or list where the schema has a section (OmegaConf reports those without a key)."""
    if not (dataclasses.is_dataclass(schema) and isinstance(layer, dict)):
        return
    hints = typing.get_type_hints(schema)
    for name, value in layer.items():
        hint = hints.get(name)
        full = f"{key}.{name}" if key else str(name)
        section = _dataclass_in(hint)
        if section is not None:
            if value is not None and not isinstance(value, dict):
                raise ShowoError(
                    f"{source}: {full}: expected {_describe(section)}, got {_shown(value, echo)}"
                )
            _check_sections(value, section, full, source, echo)
        elif typing.get_origin(hint) is dict and isinstance(value, dict):
            item = _dataclass_in(typing.get_args(hint)[1])
            for sub, sub_value in value.items() if item is not None else ():
                if sub_value is not None and not isinstance(sub_value, dict):
                    got = _shown(sub_value, echo)
                    raise ShowoError(f"{source}: {full}.{sub}: expected {_describe(item)}, got {got}")
                _check_sections(sub_value, item, f"{full}.{sub}", source, echo)


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass in `X` or `X | None`, else None."""
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _unknown_key_message(err: ConfigKeyError, echo: bool = True) -> str:
    full_key = err.full_key or str(err.key)
    valid = _field_names(err.object_type)
    close = difflib.get_close_matches(str(err.key), valid, n=1, cutoff=0.5)
    hint = f" (did you mean {_join(full_key, close[0])!r}?)" if close else ""
    listing = f"; valid keys here: {', '.join(valid)}" if valid and not close else ""
    if not echo and not close:  # not a near-miss of ours: the key is the base file's text, left out
        parent = full_key.rpartition(".")[0]
        return f"not a recipe: a key {'under ' + repr(parent) if parent else 'at the top level'} is unknown{listing}"
    return f"unknown key {full_key!r}{hint}{listing}"


def _type_message(err: ValidationError, echo: bool = True) -> str:
    expected = _expected_type(err)
    key = err.full_key or str(err.key)
    if expected is None:
        return f"{key}: {_first_line(err) if echo else 'invalid value: ' + _shown(err.value, False)}"
    return f"{key}: expected {expected}, got {_shown(err.value, echo)}"


def _shown(value: Any, echo: bool) -> str:
    """The value itself for the user's own recipe; only its type for a base file."""
    return repr(value) if echo else f"a {type(value).__name__}"


def _expected_type(err: ValidationError) -> str | None:
    owner = err.object_type
    if owner is list and err.ref_type is not None:
        args = typing.get_args(err.ref_type)
        return _describe(args[0]) if args else None
    if owner is None or not dataclasses.is_dataclass(owner):
        return None
    hints = typing.get_type_hints(owner)
    hint = hints.get(str(err.key))
    return None if hint is None else _describe(hint)


def _describe(hint: Any) -> str:
    """Human names for type hints: `int`, `one of mtp, ar`, `a list of int`, `float or null`."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin is dict or hint is dict:
        return "a mapping"
    if dataclasses.is_dataclass(hint):
        return f"a mapping ({hint.__name__})"
    return getattr(hint, "__name__", str(hint))


def _field_names(owner: Any) -> list[str]:
    if owner is not None and dataclasses.is_dataclass(owner):
        return [f.name for f in dataclasses.fields(owner)]
    return []


def _join(full_key: str, name: str) -> str:
    parent, dot, _ = full_key.rpartition(".")
    return f"{parent}{dot}{name}"


def _first_line(err: Exception) -> str:
    text = getattr(err, "msg", None) or str(err)
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__


def _objective_type(layers: list[tuple[str, dict]], overrides: Sequence[str]) -> type:
    """The structured class of the objective named last by the chain and the overrides (default mtp)."""
    from showo import objectives

    named = [(source, layer) for source, layer in layers] + [
        (f"override {o!r}", _parse_override(o)) for o in overrides
    ]
    name, where = objectives.DEFAULT, None
    for source, layer in named:
        section = layer.get("objective") if isinstance(layer, dict) else None
        if isinstance(section, dict) and "image" in section:
            name, where = section["image"], source
    try:
        return objectives.config_type(name)
    except ShowoError as err:
        raise ShowoError(f"{where}: {err}") from None


def _objective_switch(layers: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """A recipe file that names another objective than its bases starts the `objective` section afresh (the
    bases' keys belong to the objective they named); their other sections still apply. An override that
    switches objectives does not: keys of the file's objective are then an error, as a mistyped key is."""
    current, switch = None, 0
    for index, (_, layer) in enumerate(layers):
        section = layer.get("objective") if isinstance(layer, dict) else None
        if isinstance(section, dict) and "image" in section:
            if current is not None and section["image"] != current:
                switch = index
            current = section["image"]
    return [
        (source, {k: v for k, v in layer.items() if k != "objective"} if index < switch else layer)
        for index, (source, layer) in enumerate(layers)
    ]


def _check_streams(recipe: ShowoRecipe, path: str | os.PathLike) -> None:
    """Drop streams nulled out by a derived recipe; reject unknown task names."""
    recipe.data.streams = {name: s for name, s in recipe.data.streams.items() if s is not None}
    for name in recipe.data.streams:
        if name not in TASKS:
            close = difflib.get_close_matches(name, TASKS, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ShowoError(
                f"{path}: unknown task stream 'data.streams.{name}'{hint}; tasks: {', '.join(TASKS)}"
            )


def _check_tree(node: Any, key: str) -> None:
    """Call `check(key)` on every dataclass node, depth first (children before their parent); refuse
    strings that would read as interpolations once the recipe is turned back into a config, nan and
    infinite floats, and integers beyond 64 bits (every number a recipe holds is a finite size or rate)."""
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            _check_tree(getattr(node, f.name), f"{key}.{f.name}" if key else f.name)
        check = getattr(node, "check", None)
        if callable(check):
            check(key or "recipe")
    elif isinstance(node, str) and "${" in node:  # e.g. "${a}${b}" with a = "$", b = "{oc.env:X}"
        raise ShowoError(f"{key}: a resolved value may not contain '${{' (it would read as an interpolation)")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ShowoError(f"{key}: must be a finite number, got {node}")
    elif isinstance(node, int) and not isinstance(node, bool) and not -(2**63) <= node < 2**63:
        raise ShowoError(f"{key}: {len(str(abs(node)))}-digit integer is out of range (64 bits at most)")
    elif isinstance(node, dict):
        for name, value in node.items():
            _check_tree(value, f"{key}.{name}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_tree(value, f"{key}[{i}]")
