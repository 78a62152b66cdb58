"""DeepSpeed checkpoint directories, read as data only: our own weights-only consolidation of ZeRO 0-3.

DeepSpeed's own readers (its `zero_to_fp32` and the engine's resume) unpickle every states file with
`weights_only=False`, so a stranger's directory could run code through any of them. Here every file of the
tag directory must carry a name DeepSpeed writes and pass a weights-only load (`check_deepspeed_dir`, run
before a resume hands the directory to DeepSpeed), and `consolidate` rebuilds the fp32 weights from the
flat fp32 partitions itself:

- ZeRO-1/2: each rank holds one slice of every parameter group's flat fp32 vector; concatenated in rank
  order the vector holds the group's parameters back to back (each followed by its alignment padding).
- ZeRO-3: each rank holds, per parameter, a `ceil(numel / world_size)` slice (the last rank's padded);
  parameters follow each other in every rank's flat vector.
- ZeRO-0 (no optimizer shards): the model states hold the full module weights.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from showo.errors import ShowoError
from showo.safeio import first_line, load_weights_only

DEEPSPEED_TAG = "checkpoint"
"""Lightning's DeepSpeed strategy saves under this tag inside the checkpoint directory."""
LATEST_NAME = "latest"
MODEL_RE = re.compile(r"^(?:zero_pp_rank_(\d+)_)?mp_rank_00_model_states\.pt$")
OPTIM_RE = re.compile(r"^(?:bf16_)?zero_pp_rank_(\d+)_mp_rank_00_optim_states\.pt$")
TOP_LEVEL_FILES = {LATEST_NAME, "zero_to_fp32.py", "zero_to_torch.py"}
"""Besides the tag directory; DeepSpeed copies its converter scripts here, which we never run."""


def model_states_file(path: Path) -> Path | None:
    """Rank 0's model states (ZeRO-0/1/2: `mp_rank_00_...`, ZeRO-3: `zero_pp_rank_0_mp_rank_00_...`)."""
    for name in ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt"):
        if (path / DEEPSPEED_TAG / name).is_file():
            return path / DEEPSPEED_TAG / name
    return None


def _ranked(files: list[tuple[int, Path]], kind: str, path: Path) -> list[Path]:
    """Files sorted by rank; ranks must be exactly 0..n-1."""
    ranks = sorted(r for r, _ in files)
    if ranks != list(range(len(ranks))):
        raise ShowoError(
            f"DeepSpeed checkpoint {path}: {kind} files of ranks {ranks} (expected 0..{len(ranks) - 1})"
        )
    return [f for _, f in sorted(files)]


def deepspeed_files(path: Path) -> tuple[list[Path], list[Path]]:
    """(model states, optimizer states) of a DeepSpeed checkpoint directory, rank order; anything else in it
    (another name, a subdirectory, a `latest` naming another tag) is a one-line error."""
    for entry in path.iterdir():
        if entry.name == DEEPSPEED_TAG:
            continue
        if entry.name not in TOP_LEVEL_FILES or not entry.is_file() or entry.is_symlink():
            raise ShowoError(f"DeepSpeed checkpoint {path}: unexpected entry {entry.name!r}")
    latest = path / LATEST_NAME
    if latest.is_file() and latest.read_text(errors="replace").strip() != DEEPSPEED_TAG:
        raise ShowoError(f"DeepSpeed checkpoint {path}: {LATEST_NAME} must name the tag {DEEPSPEED_TAG!r}")
    tag = path / DEEPSPEED_TAG
    if not tag.is_dir() or tag.is_symlink():
        raise ShowoError(f"DeepSpeed checkpoint {path} has no {DEEPSPEED_TAG}/ directory")
    models: list[tuple[int, Path]] = []
    optims: list[tuple[int, Path]] = []
    for entry in tag.iterdir():
        model, optim = MODEL_RE.match(entry.name), OPTIM_RE.match(entry.name)
        if (model is None and optim is None) or not entry.is_file() or entry.is_symlink():
            raise ShowoError(f"DeepSpeed checkpoint {path}: unexpected entry {DEEPSPEED_TAG}/{entry.name!r}")
        if model is not None:
            models.append((int(model.group(1) or 0), entry))
        else:
            optims.append((int(optim.group(1)), entry))
    if not models:
        raise ShowoError(f"DeepSpeed checkpoint {path} has no model states")
    return _ranked(models, "model states", path), _ranked(optims, "optimizer states", path)


def check_deepspeed_dir(path: str | Path) -> None:
    """Every file DeepSpeed would read passes a weights-only load (run before DeepSpeed's own resume)."""
    models, optims = deepspeed_files(Path(path))
    for file in models + optims:
        load_weights_only(file, "DeepSpeed states file", mmap=True)


def _int(value: Any) -> int:
    if isinstance(value, list) and value:  # ZeRO-2 stores one partition count per group
        value = max(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _numel(shape: Any) -> tuple[tuple[int, ...], int]:
    dims = tuple(int(d) for d in shape)
    if any(d < 0 for d in dims):
        raise ValueError(f"negative size in shape {dims}")
    return dims, math.prod(dims)


def _take(flat: torch.Tensor, offset: int, numel: int, name: str) -> torch.Tensor:
    if offset + numel > flat.numel():
        raise ValueError(f"{name} reaches past the stored partitions ({offset + numel} > {flat.numel()})")
    return flat[offset : offset + numel]


def _zero2(shapes: list[dict], groups: list[list[torch.Tensor]], paddings: list | None) -> dict:
    out = {}
    for g, group_shapes in enumerate(shapes):
        flat = torch.cat([rank_groups[g].reshape(-1) for rank_groups in groups])
        offset = 0
        for i, (name, shape) in enumerate(group_shapes.items()):
            dims, numel = _numel(shape)
            out[name] = _take(flat, offset, numel, name).view(dims).clone()
            offset += numel + (int(paddings[g][i]) if paddings is not None else 0)
    return out


def _zero3(shapes: list[dict], groups: list[list[torch.Tensor]]) -> dict:
    world = len(groups)
    flats = [torch.cat([t.reshape(-1) for t in rank_groups]) for rank_groups in groups]
    out, offset = {}, 0
    for name, shape in ((k, v) for group in shapes for k, v in group.items()):
        dims, numel = _numel(shape)
        part = math.ceil(numel / world)
        pieces = [_take(flat, offset, part, name) for flat in flats]
        out[name] = torch.cat(pieces)[:numel].view(dims).clone()
        offset += part
    return out


def consolidate(path: str | Path) -> dict[str, torch.Tensor]:
    """The fp32 module state dict (Lightning keys) of a DeepSpeed checkpoint directory, read weights-only."""
    path = Path(path)
    models, optims = deepspeed_files(path)
    model = load_weights_only(models[0], "DeepSpeed model states")
    for other in models[1:]:  # unused here, but DeepSpeed would read them: refuse the directory as a whole
        load_weights_only(other, "DeepSpeed model states", mmap=True)
    try:
        module = model["module"]
        buffers = {
            k: module[k].float() if module[k].is_floating_point() else module[k]
            for k in model["buffer_names"]
        }
        if model.get("frozen_param_shapes"):
            raise ShowoError(f"DeepSpeed checkpoint {path} has frozen parameters, which showo never trains")
        if not optims:  # ZeRO-0: the model states hold every weight
            state = {k: v.float() if v.is_floating_point() else v for k, v in module.items()}
        else:
            states = [
                load_weights_only(f, "DeepSpeed optimizer states")["optimizer_state_dict"] for f in optims
            ]
            stage, world = _int(states[0]["zero_stage"]), _int(states[0]["partition_count"])
            if world != len(optims):
                raise ValueError(f"partition count {world} but {len(optims)} optimizer states files")
            shapes = model["param_shapes"]
            if stage in (1, 2):
                groups = [s["single_partition_of_fp32_groups"] for s in states]
                state = _zero2(shapes, groups, states[0].get("param_alignment_paddings"))
            elif stage == 3:
                state = _zero3(shapes, [s["fp32_flat_groups"] for s in states])
            else:
                raise ValueError(f"unknown ZeRO stage {stage}")
            state.update(buffers)
        for alias, source in dict(model.get("shared_params") or {}).items():
            if source in state:
                state[alias] = state[source]
    except ShowoError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as err:
        raise ShowoError(
            f"cannot consolidate DeepSpeed checkpoint {path}: {type(err).__name__}: {first_line(err)}"
        ) from None
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ShowoError(f"DeepSpeed checkpoint {path} holds something other than named tensors")
    return state
