"""Image objectives behind one interface (`base.ImageObjective`), found by name.

`get(name_or_settings)` gives an objective: a name (``"mtp"``), a recipe `objective` section, or the
``objective`` dict a checkpoint records (a checkpoint without one is MTP, the only objective before they were
recorded). `register` adds an objective class; `config_type(name)` is the recipe section's structured class.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from showo.errors import ShowoError
from showo.objectives.base import CodeObjective, ImageObjective, ObjectiveConfig, Rows, SamplerOptions

DEFAULT = "mtp"
"""The objective of checkpoints that record none (every one written before objectives were recorded)."""

_REGISTRY: dict[str, type[ImageObjective]] = {}


def register(cls: type[ImageObjective]) -> type[ImageObjective]:
    """Class decorator: make `cls` available under `cls.name`."""
    assert cls.name not in _REGISTRY, f"objective {cls.name!r} registered twice"
    _REGISTRY[cls.name] = cls
    return cls


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def objective_class(name: Any, key: str = "objective.image") -> type[ImageObjective]:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ShowoError(f"{key} must be one of {', '.join(_REGISTRY)}, got {str(name)[:40]!r}")
    return _REGISTRY[name]


def config_type(name: Any, key: str = "objective.image") -> type[ObjectiveConfig]:
    """The structured recipe class of objective `name` (an unknown name is a one-line error naming `key`)."""
    return objective_class(name, key).config_type


def get(
    spec: str | ObjectiveConfig | dict | ImageObjective | None = None, source: str = "objective"
) -> ImageObjective:
    """The objective for a name, a recipe section or a checkpoint's recorded dict (None: the default)."""
    if isinstance(spec, ImageObjective):
        return spec
    if spec is None or isinstance(spec, str):
        return objective_class(spec or DEFAULT, "image objective")()
    if isinstance(spec, ObjectiveConfig):
        return objective_class(spec.image)(spec)
    if not isinstance(spec, dict):
        raise ShowoError(f"{source} must be a JSON object, got {type(spec).__name__}")
    return from_dict(spec, source)


def recorded(data: Any, source: str) -> ImageObjective:
    """The objective a checkpoint records (a JSON object); None, as before objectives were recorded: MTP."""
    if data is None:
        return get(DEFAULT)
    if not isinstance(data, dict):
        raise ShowoError(f"{source} must be a JSON object, got {type(data).__name__}")
    return from_dict(data, source)


def from_dict(data: dict, source: str) -> ImageObjective:
    """A recorded objective, checked like a recipe section: known name, known keys, typed values, ranges."""
    cls = objective_class(data.get("image", DEFAULT), f"{source}.image")
    known = {f.name for f in fields(cls.config_type)}
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ShowoError(f"{source}: unknown key {unknown[0][:40]!r} for the {cls.name} objective")
    try:
        from omegaconf import OmegaConf

        config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls.config_type), data))
    except Exception as err:  # noqa: BLE001  (OmegaConf's validation errors have many types)
        key = getattr(err, "full_key", None)
        raise ShowoError(f"{source}{'.' + key if key else ''}: {str(err).splitlines()[0][:200]}") from None
    config.check(source)
    return cls(config)


from showo.objectives.mtp import MTPObjective  # noqa: E402  (the built-in objectives, in this order)

register(MTPObjective)

from showo.objectives.ar import ARObjective  # noqa: E402

register(ARObjective)

from showo.objectives.diffusion import DiffusionObjective  # noqa: E402

register(DiffusionObjective)

__all__ = [
    "CodeObjective",
    "DEFAULT",
    "ImageObjective",
    "ObjectiveConfig",
    "Rows",
    "SamplerOptions",
    "config_type",
    "from_dict",
    "get",
    "names",
    "recorded",
    "register",
]
