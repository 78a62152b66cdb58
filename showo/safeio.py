"""Reading files that other people made (checkpoints, configs) as data only, with one-line errors.

- torch files: `torch.load(weights_only=True)` only. DeepSpeed's optimizer states name three of DeepSpeed's
  own classes (a loss scaler, the ZeRO stage enum and a fragment address); rather than allow-listing those
  classes, the weights-only unpickler maps each name to a plain record below, so no DeepSpeed code is
  imported or called while a stranger's file is read: a record only receives the stored attributes, and the
  enum becomes its integer value.
- safetensors files: a truncated or malformed file is a one-line error naming it.
- JSON configs: anything but a JSON object is a one-line error naming the file.
- file names stored inside a file: plain names only (no separators, no `..`, not absolute).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from showo.errors import ShowoError

if TYPE_CHECKING:
    import torch


class StoredRecord:
    """An object from a checkpoint reduced to its stored attributes (the weights-only unpickler fills
    `__dict__`; no method of the original class ever runs)."""


def _enum_value(value: int) -> int:
    """A stored `int` enum member, reduced to its value."""
    if not isinstance(value, int):
        raise TypeError(f"enum value must be an int, got {type(value).__name__}")
    return int(value)


STAND_INS: list[tuple[Any, str]] = [
    (StoredRecord, "deepspeed.runtime.fp16.loss_scaler.LossScaler"),
    (StoredRecord, "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler"),
    (StoredRecord, "deepspeed.utils.tensor_fragment.fragment_address"),
    (_enum_value, "deepspeed.runtime.zero.config.ZeroStageEnum"),
]
"""The only non-torch names a checkpoint may reference, each mapped to plain data."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (library errors often span many lines)."""
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


def load_weights_only(file: str | Path, what: str = "checkpoint", mmap: bool = False) -> Any:
    """`torch.load(weights_only=True)` on CPU; any failure is a one-line ShowoError naming the file.

    `mmap=True` reads only the pickled structure (tensor data stays on disk): a cheap loadability check.
    """
    import torch  # lazily: sha256_file and the JSON readers serve torch-free callers

    try:
        with torch.serialization.safe_globals(STAND_INS):
            return torch.load(str(file), map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # noqa: BLE001  (torch raises many types for a corrupt or hostile file)
        raise ShowoError(f"cannot read {what} {file} as plain tensors: {first_line(err)}") from None


def read_safetensors(file: str | Path, what: str = "weights") -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a truncated or malformed file is a one-line error naming it."""
    from safetensors.torch import load_file

    try:
        return load_file(str(file))
    except Exception as err:  # noqa: BLE001  (safetensors raises its own and OS errors)
        raise ShowoError(
            f"cannot read {what} {file} (truncated or not safetensors): {first_line(err)}"
        ) from None


def loads_json(data: str | bytes) -> Any:
    """``json.loads`` of input we did not write: nesting too deep for the parser (a few thousand brackets
    overflow its recursion) is a ``json.JSONDecodeError`` like any malformed JSON, not a ``RecursionError``."""
    try:
        return json.loads(data)
    except RecursionError:
        text = data if isinstance(data, str) else ""
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


def read_json_object(file: str | Path, what: str = "config") -> dict[str, Any]:
    """A JSON file that must hold an object; anything else is a one-line error naming the file."""
    try:
        data = loads_json(Path(file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ShowoError(f"cannot read {what} {file}: {first_line(err)}") from None
    if not isinstance(data, dict):
        raise ShowoError(f"{what} {file} must hold a JSON object, not {type(data).__name__}")
    return data


def plain_file_name(name: Any, what: str) -> str:
    """`name` if it is a plain file name (no separators, no `..`, not absolute, no NUL); else a ShowoError."""
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or any(c in name for c in "/\\\x00")
        or Path(name).is_absolute()
        or len(name) > 255
    ):
        raise ShowoError(f"{what}: {str(name)[:80]!r} is not a plain file name")
    return name


def sha256_file(file: str | Path) -> str:
    """Hex sha256 of a file, read in chunks (shards and checkpoints are large)."""
    with open(file, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
