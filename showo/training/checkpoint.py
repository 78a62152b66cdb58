"""Checkpoints: written atomically, found again after a crash, and read back for stage chaining and export.

A checkpoint is `<run>/checkpoints/step-XXXXXXXX.ckpt` (a file, or a DeepSpeed directory). Every rank writes
into a hidden temporary name; after a barrier rank 0 renames it into place (a single atomic rename for
files and directories alike), so a name that exists is complete: a SIGKILL mid-write leaves only a
temporary that the next save removes, and `resume: auto` never picks a torn checkpoint.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from showo.errors import ShowoError

CHECKPOINT_DIR = "checkpoints"
NAME_RE = re.compile(r"^step-(\d{8})\.ckpt$")
DEEPSPEED_TAG = "checkpoint"
"""Lightning's DeepSpeed strategy saves under this tag inside the checkpoint directory."""


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.ckpt"


def _model_states_file(path: Path) -> Path | None:
    """Rank 0's DeepSpeed model states (ZeRO-1/2: `mp_rank_00_...`, ZeRO-3: `zero_pp_rank_0_mp_rank_00_...`)."""
    for name in ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt"):
        if (path / DEEPSPEED_TAG / name).is_file():
            return path / DEEPSPEED_TAG / name
    return None


def is_complete(path: Path) -> bool:
    """A renamed-into-place checkpoint: a non-empty file, or a DeepSpeed dir with its model states."""
    if path.is_file():
        return path.stat().st_size > 0
    return path.is_dir() and _model_states_file(path) is not None


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if NAME_RE.match(p.name) and is_complete(p)]
    return sorted(found, key=lambda p: int(NAME_RE.match(p.name).group(1)))


def find_resume(resume: str, run_dir: str | Path) -> str | None:
    """`auto`: the run's last complete checkpoint (None when there is none); `never`: None; else a path."""
    if resume in ("never", "false", "False"):
        return None
    if resume == "auto":
        found = list_checkpoints(run_dir)
        return str(found[-1]) if found else None
    path = Path(resume)
    if not path.exists():
        raise ShowoError(f"resume: checkpoint {path} does not exist")
    if not is_complete(path):
        raise ShowoError(f"resume: {path} is not a complete checkpoint")
    return str(path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicCheckpoint(pl.Callback):
    """Saves every `every` optimizer steps and at the end of training; keeps the newest `keep` (-1: all)."""

    def __init__(self, run_dir: str | Path, every: int, keep: int = -1) -> None:
        self.folder = Path(run_dir) / CHECKPOINT_DIR
        self.every = every
        self.keep = keep
        self._last_saved = -1

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        step = trainer.global_step
        if step > 0 and step % self.every == 0 and step != self._last_saved:
            self.save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step != self._last_saved and trainer.global_step > 0:
            self.save(trainer)

    def save(self, trainer: pl.Trainer) -> Path:
        step = trainer.global_step
        final = self.folder / checkpoint_name(step)
        tmp = self.folder / f".{final.name}.tmp"
        if trainer.is_global_zero:
            self.folder.mkdir(parents=True, exist_ok=True)
            for stale in self.folder.glob(".step-*.tmp"):
                _remove(stale)
        trainer.strategy.barrier("showo_checkpoint_prepare")
        trainer.save_checkpoint(tmp)
        trainer.strategy.barrier("showo_checkpoint_written")
        if trainer.is_global_zero:
            _remove(final)
            os.replace(tmp, final)
            _fsync_dir(self.folder)
            self.prune()
        trainer.strategy.barrier("showo_checkpoint_renamed")
        self._last_saved = step
        return final

    def prune(self) -> None:
        if self.keep < 0:
            return
        for old in list_checkpoints(self.folder.parent)[: -self.keep]:
            _remove(old)

    def state_dict(self) -> dict[str, Any]:
        return {"last_saved": self._last_saved}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_saved = int(state_dict.get("last_saved", -1))


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LightningModule keys (`model.llm.*`, under DeepSpeed `_forward_module.model.llm.*`) -> `PhiForCausalLM` keys."""
    out = {}
    for key, value in state.items():
        for prefix in ("_forward_module.", "module.", "model."):
            key = key.removeprefix(prefix)
        if key.startswith("llm."):
            out[key.removeprefix("llm.")] = value
    return out


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The non-weight entries of a checkpoint (hyper-parameters, Show-o metadata, loop state)."""
    path = Path(path)
    file = _model_states_file(path) if path.is_dir() else path
    if file is None or not file.is_file():
        raise ShowoError(f"{path} is not a checkpoint (no file, no DeepSpeed model states)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (torch raises many types for a corrupt file)
        raise ShowoError(f"cannot read checkpoint {file}: {str(err).splitlines()[0]}") from None
    return {k: v for k, v in state.items() if k not in ("state_dict", "module", "optimizer_states")}


def read_llm_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """fp32 `PhiForCausalLM` weights of a checkpoint; DeepSpeed directories are consolidated from all ranks."""
    path = Path(path)
    if path.is_dir():
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        try:
            state = get_fp32_state_dict_from_zero_checkpoint(str(path), tag=DEEPSPEED_TAG)
        except (FileNotFoundError, ValueError) as err:
            raise ShowoError(
                f"cannot consolidate DeepSpeed checkpoint {path}: {str(err).splitlines()[0]}"
            ) from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        except Exception as err:  # noqa: BLE001
            raise ShowoError(f"cannot read checkpoint {path}: {str(err).splitlines()[0]}") from None
    weights = _strip_prefixes(state)
    if not weights:
        raise ShowoError(f"{path} holds no Show-o weights")
    return weights
