"""Checkpoints from strangers are data only, and damaged checkpoints are caught before use.

Checkpoints are built here from the tiny model's weights (no training run): a Lightning-style file and the
DeepSpeed ZeRO-2 / ZeRO-3 layouts of two ranks (flat fp32 partitions as DeepSpeed stores them). A hostile
states file carries a pickle that would create a marker file if anything unpickled it outside weights-only
mode; the marker must never appear.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from showo.cli import main
from showo.errors import ShowoError
from showo.training.checkpoint import (
    digest_path,
    find_resume,
    read_llm_weights,
    read_metadata,
    verify_checkpoint,
    write_digest,
)
from showo.training.init import load_init_weights
from showo.training.module import METADATA_KEY, tokenizer_files
from showo.training.zero import consolidate


class Hostile:
    """Unpickled outside weights-only mode, this creates `marker` (stands for any code a stranger runs)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def one_line_cli_error(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("showo: error: "), err
    return last


@pytest.fixture(scope="module")
def parts(tiny_showo):
    """The tiny model's Lightning-keyed weights and its Show-o metadata (what training stores)."""
    model = tiny_showo
    weights = {f"model.llm.{k}": v.detach().clone() for k, v in model.llm.state_dict().items()}
    meta = {
        "vocab": model.vocab.to_dict(),
        "model_config": {**model.config.to_dict(), "llm": model.llm.config.to_dict()},
        "tokenizer_files": tokenizer_files(model.tokenizer),
    }
    return weights, meta


def write_file_ckpt(path: Path, parts, meta_changes: dict | None = None, digest: bool = True) -> Path:
    weights, meta = parts
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"state_dict": weights, METADATA_KEY: {**meta, **(meta_changes or {})}, "global_step": 3}, path
    )
    if digest:
        write_digest(path)
    return path


def write_zero_ckpt(path: Path, parts, stage: int, world: int = 2) -> Path:
    """A DeepSpeed checkpoint directory of `world` ranks in the ZeRO-`stage` layout."""
    weights, meta = parts
    tag = path / "checkpoint"
    tag.mkdir(parents=True)
    (path / "latest").write_text("checkpoint")
    names = list(weights)
    shapes = [OrderedDict((n, weights[n].shape) for n in names)]
    model_states = {
        "module": {n: torch.empty(0) for n in names},
        "buffer_names": [],
        "param_shapes": shapes,
        "frozen_param_shapes": None,
        "shared_params": {},
        "ds_version": "0.19.8",
        METADATA_KEY: meta,
    }
    if stage == 2:
        flat = torch.cat([weights[n].reshape(-1) for n in names])
        flat = torch.cat([flat, torch.zeros(-flat.numel() % (2 * world))])
        parts_ = flat.chunk(world)
        torch.save(model_states, tag / "mp_rank_00_model_states.pt")
        for r in range(world):
            optim = {
                "zero_stage": 2,
                "partition_count": [world],
                "single_partition_of_fp32_groups": [parts_[r]],
            }
            torch.save({"optimizer_state_dict": optim}, tag / f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt")
    else:
        for r in range(world):
            pieces = []
            for n in names:
                flat = weights[n].reshape(-1)
                size = math.ceil(flat.numel() / world)
                flat = torch.cat([flat, torch.zeros(size * world - flat.numel())])
                pieces.append(flat[r * size : (r + 1) * size])
            optim = {"zero_stage": 3, "partition_count": world, "fp32_flat_groups": [torch.cat(pieces)]}
            torch.save(model_states, tag / f"zero_pp_rank_{r}_mp_rank_00_model_states.pt")
            torch.save({"optimizer_state_dict": optim}, tag / f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt")
    return path


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_layouts_consolidate_to_the_stored_weights(stage, parts, tmp_path):
    path = write_zero_ckpt(tmp_path / "step-00000003.ckpt", parts, stage)
    assert verify_checkpoint(path) is None
    state = consolidate(path)
    assert state.keys() == parts[0].keys()
    for key, value in parts[0].items():
        assert torch.equal(state[key], value), key
    assert read_metadata(path)[METADATA_KEY]["vocab"] == parts[1]["vocab"]


@pytest.mark.parametrize(
    "stage, hostile_name",
    [
        (2, "zero_pp_rank_1_mp_rank_00_optim_states.pt"),  # replaces rank 1's shard
        (2, "zero_pp_rank_2_mp_rank_00_optim_states.pt"),  # an extra rank
        (3, "zero_pp_rank_1_mp_rank_00_model_states.pt"),  # a later rank's model states
        (2, "extra_optim_states.pt"),  # a name DeepSpeed's glob would pick up
        (3, "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"),
    ],
)
def test_hostile_states_file_runs_no_code(stage, hostile_name, parts, tmp_path, capsys, tiny_showo):
    path = write_zero_ckpt(tmp_path / "run" / "checkpoints" / "step-00000003.ckpt", parts, stage)
    marker = tmp_path / "marker"
    torch.save({"optimizer_state_dict": {"x": Hostile(marker)}}, path / "checkpoint" / hostile_name)
    line = one_line_cli_error(capsys, "export", "--ckpt", str(path), "--out", str(tmp_path / "out"))
    assert str(path) in line
    with pytest.raises(ShowoError) as err:
        load_init_weights(tiny_showo, path)
    assert "\n" not in str(err.value)
    with pytest.raises(ShowoError, match="fails verification"):
        find_resume(str(path), tmp_path / "run")
    with pytest.raises(ShowoError):  # the consolidation itself refuses too, verification aside
        read_llm_weights(path)
    # a run directory whose only checkpoint is hostile: nothing to fall back to
    with pytest.raises(ShowoError, match="none of the 1 checkpoints"):
        find_resume("auto", tmp_path / "run")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_latest_naming_another_tag_is_refused(parts, tmp_path):
    path = write_zero_ckpt(tmp_path / "step-00000003.ckpt", parts, 2)
    (path / "latest").write_text("../../elsewhere")
    assert "latest" in verify_checkpoint(path)


@pytest.mark.parametrize("name", ["../../x", "/abs/x", "sub/x", "..", ""])
def test_tokenizer_file_names_from_a_checkpoint_stay_plain(name, parts, tmp_path, capsys):
    files = {**parts[1]["tokenizer_files"], name: "payload"}
    ckpt = write_file_ckpt(tmp_path / "ck" / "step-00000003.ckpt", parts, {"tokenizer_files": files})
    out = tmp_path / "deep" / "er" / "out"
    line = one_line_cli_error(capsys, "export", "--ckpt", str(ckpt), "--out", str(out))
    assert "not a plain file name" in line
    assert not out.exists() and not (tmp_path / "x").exists() and not Path("/abs/x").exists()
    assert [p for p in tmp_path.rglob("*") if p.name == "x"] == []


def flip_bit(file: Path, offset_from_end: int | None = None) -> None:
    data = bytearray(file.read_bytes())
    where = len(data) // 2 if offset_from_end is None else len(data) - offset_from_end
    data[where] ^= 0x01
    file.write_bytes(bytes(data))


def truncate(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) * 2 // 3])


@pytest.mark.parametrize(
    "damage, sidecar, reason",
    [
        (flip_bit, True, "sha256"),
        (truncate, True, "sha256"),
        (flip_bit, False, "CRC"),  # written before sidecars existed: the zip CRC catches it
        (truncate, False, "zip"),
    ],
)
def test_resume_auto_falls_back_past_a_damaged_checkpoint(damage, sidecar, reason, parts, tmp_path, capsys):
    run = tmp_path / "run"
    good = write_file_ckpt(run / "checkpoints" / "step-00000003.ckpt", parts, digest=sidecar)
    bad = write_file_ckpt(run / "checkpoints" / "step-00000006.ckpt", parts, digest=sidecar)
    damage(bad)
    assert find_resume("auto", run) == str(good)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and reason in err[0], err
    with pytest.raises(ShowoError, match="fails verification") as exc:
        find_resume(str(bad), run)
    assert "\n" not in str(exc.value)
    line = one_line_cli_error(capsys, "export", "--ckpt", str(bad), "--out", str(tmp_path / "out"))
    assert "fails verification" in line


def test_sidecar_matches_sha256sum_and_legacy_checkpoints_still_load(parts, tmp_path):
    import hashlib

    ckpt = write_file_ckpt(tmp_path / "run" / "checkpoints" / "step-00000003.ckpt", parts)
    expected = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert digest_path(ckpt).read_text() == f"{expected}  {ckpt.name}\n"
    digest_path(ckpt).unlink()  # a checkpoint written before sidecars existed
    assert find_resume("auto", tmp_path / "run") == str(ckpt)
    weights = read_llm_weights(ckpt)
    assert all(torch.equal(weights[k.removeprefix("model.llm.")], v) for k, v in parts[0].items())


def test_zero_directory_sidecar_catches_a_flipped_shard(parts, tmp_path):
    run = tmp_path / "run"
    older = write_zero_ckpt(run / "checkpoints" / "step-00000003.ckpt", parts, 3)
    newer = write_zero_ckpt(run / "checkpoints" / "step-00000006.ckpt", parts, 3)
    write_digest(older), write_digest(newer)
    flip_bit(newer / "checkpoint" / "zero_pp_rank_1_mp_rank_00_optim_states.pt", offset_from_end=None)
    assert find_resume("auto", run) == str(older)
    shutil.rmtree(older)
    with pytest.raises(ShowoError, match="none of the 1 checkpoints"):
        find_resume("auto", run)


def test_the_hostile_file_does_run_code_outside_weights_only_mode(tmp_path):
    """The premise of the tests above: a plain unpickler (DeepSpeed's readers) would create the marker."""
    marker = tmp_path / "marker"
    torch.save({"x": Hostile(marker)}, tmp_path / "hostile.pt")
    torch.load(tmp_path / "hostile.pt", weights_only=False)
    assert marker.exists()


def test_train_resume_auto_skips_a_flipped_newest_checkpoint(baseline, tmp_path, capsys):
    """End to end: every checkpoint of a run has a sidecar; `showo train` skips the damaged newest one,
    says so in one line, resumes from the one before, and saves that step again soundly."""
    from showo.training.checkpoint import list_checkpoints
    from tests.training.conftest import write_recipe

    run = tmp_path / "runs" / "tiny"
    shutil.copytree(baseline["run_dir"], run)
    found = list_checkpoints(run)
    assert len(found) >= 2 and all(digest_path(c).is_file() and verify_checkpoint(c) is None for c in found)
    flip_bit(found[-1])
    recipe = dict(baseline["dict"], run={**baseline["dict"]["run"], "output_dir": str(tmp_path / "runs")})
    assert main(["train", str(write_recipe(tmp_path / "recipe.yaml", recipe))]) == 0
    captured = capsys.readouterr()
    skipped = [line for line in captured.err.splitlines() if "skipping checkpoint" in line]
    assert len(skipped) == 1 and str(found[-1]) in skipped[0] and "sha256" in skipped[0], captured.err
    assert f"resuming from {found[-2]}" in captured.out
    assert verify_checkpoint(found[-1]) is None


@pytest.mark.parametrize(
    "change, match",
    [
        ({"llm.num_hidden_layers": 1000}, "parameters"),  # in range, far beyond the stored weights
        ({"llm.hidden_size": 10**9}, "hidden_size"),
        ({"codebook_size": "256"}, "codebook_size"),
        ({"llm": "phi"}, "llm"),
    ],
)
def test_checkpoint_model_config_is_checked_before_allocation(change, match, parts, tmp_path, capsys):
    (key, value), config = next(iter(change.items())), json.loads(json.dumps(parts[1]["model_config"]))
    node, *path = config, *key.split(".")
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    ckpt = write_file_ckpt(tmp_path / "step-00000003.ckpt", parts, {"model_config": config})
    start = time.monotonic()
    assert match in one_line_cli_error(capsys, "export", "--ckpt", str(ckpt), "--out", str(tmp_path / "o"))
    assert time.monotonic() - start < 60  # generous: nothing of the described size is allocated
