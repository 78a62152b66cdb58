"""Checkpoints: written atomically, verified before use, read back (weights-only) for chaining and export.

A checkpoint is `<run>/checkpoints/step-XXXXXXXX.ckpt` (a file, or a DeepSpeed directory). Every rank writes
into a hidden temporary name; after a barrier rank 0 renames it into place (a single atomic rename for
files and directories alike), so a name that exists is complete: a SIGKILL mid-write leaves only a
temporary that the next save removes. Rank 0 then writes `step-XXXXXXXX.ckpt.sha256` beside it
(`sha256sum -c` format, one line per file, written to a temporary and renamed).

Before a checkpoint is used (resume, export, init_from) it is verified: its sha256 sidecar when present, else
(checkpoints written before sidecars existed, or a crash between the rename and the sidecar) the CRC of every
zip member; then a weights-only load of its structure, and for a DeepSpeed directory every states file
(`showo.training.zero`). `resume: auto` takes the newest checkpoint that passes and prints one line for each
newer one it skipped; a checkpoint named explicitly that fails is a one-line error.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only

from showo.errors import ShowoError
from showo.safeio import load_weights_only, sha256_file
from showo.training.zero import DEEPSPEED_TAG, check_deepspeed_dir, consolidate, model_states_file

CHECKPOINT_DIR = "checkpoints"
NAME_RE = re.compile(r"^step-(\d{8})\.ckpt$")
DIGEST_SUFFIX = ".sha256"


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.ckpt"


def digest_path(path: Path) -> Path:
    """The sha256 sidecar of a checkpoint: `step-XXXXXXXX.ckpt.sha256` beside it."""
    return path.with_name(path.name + DIGEST_SUFFIX)


def is_complete(path: Path) -> bool:
    """A renamed-into-place checkpoint: a non-empty file, or a DeepSpeed dir with its model states."""
    if path.is_file():
        return path.stat().st_size > 0
    return path.is_dir() and model_states_file(path) is not None


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (not yet verified: see `newest_good`)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if NAME_RE.match(p.name) and is_complete(p)]
    return sorted(found, key=lambda p: int(NAME_RE.match(p.name).group(1)))


def _files(path: Path) -> list[str]:
    """Relative names of every file of a checkpoint (itself, or everything under a DeepSpeed directory)."""
    if path.is_file():
        return [path.name]
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())


def _digests(path: Path) -> dict[str, str]:
    base = path.parent if path.is_file() else path
    return {name: sha256_file(base / name) for name in _files(path)}


def write_digest(path: Path) -> Path:
    """Write the sidecar of `path` atomically (temporary + rename), in `sha256sum -c` format."""
    side = digest_path(path)
    tmp = side.with_name(f".{side.name}.tmp")
    tmp.write_text("".join(f"{h}  {name}\n" for name, h in _digests(path).items()))
    os.replace(tmp, side)
    return side


def _check_digest(path: Path, side: Path) -> str | None:
    stored = {}
    for line in side.read_text(errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        stored[name] = digest
    actual = _digests(path)
    if stored.keys() != actual.keys():
        return f"its files differ from those listed in {side.name}"
    bad = [name for name, digest in actual.items() if stored[name] != digest]
    return f"sha256 of {bad[0]} does not match {side.name} (corrupted)" if bad else None


def _check_zip(file: Path) -> str | None:
    try:
        with zipfile.ZipFile(file) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"{file.name} is not a complete zip archive (truncated?): {err}"
    return f"CRC check failed for {bad} in {file.name} (corrupted)" if bad else None


def verify_checkpoint(path: str | Path) -> str | None:
    """None when `path` is a sound checkpoint, else the reason (one line).

    sha256 sidecar when present, else the zip CRC of every torch file; then a weights-only load of the
    structure (every states file of a DeepSpeed directory).
    """
    path = Path(path)
    if not is_complete(path):
        return "not a complete checkpoint (empty file, or a directory without DeepSpeed model states)"
    try:
        side = digest_path(path)
        if side.is_file():
            reason = _check_digest(path, side)
        else:
            zips = [path] if path.is_file() else sorted(path.glob(f"{DEEPSPEED_TAG}/*.pt"))
            reason = next((r for r in map(_check_zip, zips) if r), None)
        if reason:
            return reason
        if path.is_dir():
            check_deepspeed_dir(path)
        elif not isinstance(load_weights_only(path, mmap=True), dict):
            return "it does not hold a dict of states"
    except ShowoError as err:
        return str(err)
    except OSError as err:
        return f"unreadable: {err}"
    return None


def _say(message: str) -> None:
    if rank_zero_only.rank == 0:
        print(f"showo: {message}", file=sys.stderr, flush=True)


def newest_good(candidates: list[Path], what: str) -> Path | None:
    """The newest of `candidates` (oldest first) that passes `verify_checkpoint`; one line per skipped one.

    None when there are none; a ShowoError when there are some and none passes.
    """
    for path in reversed(candidates):
        reason = verify_checkpoint(path)
        if reason is None:
            return path
        _say(f"{what}: skipping checkpoint {path}: {reason}")
    if candidates:
        raise ShowoError(
            f"{what}: none of the {len(candidates)} checkpoints in {candidates[-1].parent} passes verification"
            " (the reasons are printed above)"
        )
    return None


def checked(path: str | Path, what: str) -> Path:
    """An explicitly named checkpoint, verified: a failure is a one-line error naming it."""
    path = Path(path)
    if not path.exists():
        raise ShowoError(f"{what}: checkpoint {path} does not exist")
    reason = verify_checkpoint(path)
    if reason is not None:
        raise ShowoError(f"{what}: checkpoint {path} fails verification: {reason}")
    return path


def find_resume(resume: str, run_dir: str | Path) -> str | None:
    """`auto`: the run's newest checkpoint that passes verification (None when there is none); `never`:
    None; else that checkpoint, verified."""
    if resume in ("never", "false", "False"):
        return None
    if resume == "auto":
        found = newest_good(list_checkpoints(run_dir), "resume")
        return str(found) if found else None
    return str(checked(resume, "resume"))


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
            _remove(digest_path(final))
            _remove(final)
            os.replace(tmp, final)
            _fsync_dir(self.folder)
            write_digest(final)
            _fsync_dir(self.folder)
            self.prune()
        trainer.strategy.barrier("showo_checkpoint_renamed")
        self._last_saved = step
        return final

    def prune(self) -> None:
        if self.keep < 0:
            return
        for old in list_checkpoints(self.folder.parent)[: -self.keep]:
            _remove(digest_path(old))
            _remove(old)

    def state_dict(self) -> dict[str, Any]:
        return {"last_saved": self._last_saved}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_saved = int(state_dict.get("last_saved", -1))


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LightningModule keys (`model.llm.*`, under DeepSpeed `_forward_module.model.llm.*`) -> `ShowO.state` keys
    (`PhiForCausalLM` keys, and `image_head.*`)."""
    out = {}
    for key, value in state.items():
        for prefix in ("_forward_module.", "module.", "model."):
            key = key.removeprefix(prefix)
        if key.startswith("llm."):
            out[key.removeprefix("llm.")] = value
        elif key.startswith("image_head."):  # the image objective's head (`ShowO.state`)
            out[key] = value
    return out


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The non-weight entries of a checkpoint (hyper-parameters, Show-o metadata, loop state)."""
    path = Path(path)
    file = model_states_file(path) if path.is_dir() else path
    if file is None or not file.is_file():
        raise ShowoError(f"{path} is not a checkpoint (no file, no DeepSpeed model states)")
    state = load_weights_only(file, "checkpoint", mmap=True)
    if not isinstance(state, dict):
        raise ShowoError(f"checkpoint {file} does not hold a dict of states")
    return {k: v for k, v in state.items() if k not in ("state_dict", "module", "optimizer_states")}


def read_llm_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """fp32 `PhiForCausalLM` weights of a checkpoint; DeepSpeed directories are consolidated from all ranks
    by our weights-only reader (`showo.training.zero`)."""
    path = Path(path)
    if path.is_dir():
        state = consolidate(path)
    else:
        state = load_weights_only(path, "checkpoint")
        state = state.get("state_dict") if isinstance(state, dict) else None
        if not isinstance(state, dict):
            raise ShowoError(f"checkpoint {path} has no state_dict")
    weights = _strip_prefixes(state)
    if not weights:
        raise ShowoError(f"{path} holds no Show-o weights")
    return weights
