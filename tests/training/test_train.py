"""End to end on one CPU process: `showo train` learns, logs to TensorBoard, resumes bit-exactly after a
SIGKILL, and its checkpoint exports to a directory `ShowO.from_pretrained` loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from showo.cli import main
from showo.training.checkpoint import list_checkpoints
from tests.training.conftest import BASELINE_STEPS as STEPS
from tests.training.conftest import kill_after_first_checkpoint, scalars, write_recipe


def test_training_lowers_the_loss_and_logs_every_stream(baseline):
    loss = scalars(baseline["run_dir"], "train/loss")
    assert sorted(loss) == list(range(STEPS))
    assert np.mean([loss[s] for s in (STEPS - 2, STEPS - 1)]) < np.mean([loss[s] for s in (1, 2)]) - 0.5
    for tag in (
        "train/loss_t2i",
        "train/loss_lm",
        "train/loss_mmu",
        "train/acc_t2i",
        "train/lr",
        "train/grad_norm",
        "perf/data_wait_s",
        "perf/compute_s",
        "perf/samples_per_s_t2i",
        "perf/tokens_per_s_mmu",
        "perf/tokens_per_s",
        "perf/nonpad_tokens_per_s",
        "perf/mfu",
        "perf/peak_memory_gib",
    ):
        assert len(scalars(baseline["run_dir"], tag)) == STEPS, tag
    lr = scalars(baseline["run_dir"], "train/lr")
    assert lr[0] == 0.0 and max(lr.values()) == pytest.approx(3e-3)
    assert "TensorBoard logs in" in baseline["stdout"] and "showo tensorboard" in baseline["stdout"]
    assert (baseline["run_dir"] / "recipe.yaml").is_file()
    assert "max_steps: 10" in (baseline["run_dir"] / "tensorboard" / "hparams.yaml").read_text()
    assert [p.name for p in list_checkpoints(baseline["run_dir"])] == [
        "step-00000003.ckpt",
        "step-00000006.ckpt",
        "step-00000009.ckpt",
        "step-00000010.ckpt",
    ]


def test_tensorboard_holds_preview_grids_and_captions(baseline):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = (baseline["run_dir"] / "tensorboard").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    grids = acc.Images("samples/t2i")
    assert [g.step for g in grids] == [5, 10]
    # two 64 px previews side by side with a 2 px gap, as PNG
    assert (
        grids[0].width == 2 * 64 + 2
        and grids[0].height == 64
        and grids[0].encoded_image_string[:4] == b"\x89PNG"
    )
    assert "samples/caption_images" in acc.Tags()["images"]
    assert "samples/captions/text_summary" in acc.Tags()["tensors"]


def test_sigkill_then_resume_reproduces_the_uninterrupted_losses(baseline, tmp_path, capsys):
    recipe = dict(baseline["dict"], run={**baseline["dict"]["run"], "output_dir": str(tmp_path / "runs")})
    path = write_recipe(tmp_path / "recipe.yaml", recipe)
    run_dir = tmp_path / "runs" / "tiny"
    resumed_from = kill_after_first_checkpoint(path, run_dir)
    last = list_checkpoints(run_dir)[-1]
    assert 3 <= resumed_from < STEPS
    assert main(["train", str(path)]) == 0  # in-process: one interpreter start less
    assert f"resuming from {last}" in capsys.readouterr().out
    expected, got = scalars(baseline["run_dir"], "train/loss"), scalars(run_dir, "train/loss")
    later = list(range(resumed_from, STEPS))
    np.testing.assert_allclose([got[s] for s in later], [expected[s] for s in later], rtol=1e-6, atol=1e-6)
    assert list_checkpoints(run_dir)[-1].name == "step-00000010.ckpt"
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))


def test_export_writes_a_loadable_model_with_the_checkpoint_weights(baseline, tmp_path):
    from showo.model import ShowO
    from showo.tokenizer.model import load_image_tokenizer

    out = tmp_path / "export"
    assert main(["export", "--ckpt", str(baseline["run_dir"]), "--out", str(out)]) == 0
    checkpoint = torch.load(list_checkpoints(baseline["run_dir"])[-1], weights_only=True)
    assert checkpoint["hyper_parameters"]["recipe"] == baseline["loaded"]  # the resolved recipe
    shards = checkpoint["ShowoDataModule"].pop("shards")  # [file name, bytes] of every stream's shards
    assert [name for name, _ in shards["t2i"]] == [f"image_text-{i:06d}.tar" for i in range(4)]
    assert checkpoint["ShowoDataModule"] == {
        "seed": 7,
        "batches": STEPS,
        "world_size": 1,
        "samples_seen": {"t2i": 2 * STEPS, "lm": STEPS, "mmu": 2 * STEPS},
    }
    assert checkpoint["optimizer_states"] and checkpoint["lr_schedulers"][0]["last_epoch"] == STEPS
    model = ShowO.from_pretrained(out)
    state = torch.load(list_checkpoints(baseline["run_dir"])[-1], weights_only=True)["state_dict"]
    for key, value in model.llm.state_dict().items():
        assert torch.equal(value, state[f"model.llm.{key}"]), key
    assert load_image_tokenizer(out / "image_tokenizer").codebook_size == 256
    # an exported directory also serves as init_from for the next stage
    from showo.recipe import load_recipe
    from showo.training.init import build_model

    chained = build_model(load_recipe(baseline["recipe"], [f"init_from={out}"]))
    for key, value in chained.llm.state_dict().items():
        assert torch.equal(value, state[f"model.llm.{key}"]), key


def test_init_from_loads_the_previous_stage_weights_exactly(baseline):
    from showo.recipe import load_recipe
    from showo.training.init import build_model

    recipe = load_recipe(baseline["recipe"], [f"init_from={baseline['run_dir']}"])
    model = build_model(recipe)
    state = torch.load(list_checkpoints(baseline["run_dir"])[-1], weights_only=True)["state_dict"]
    fresh = build_model(load_recipe(baseline["recipe"]))
    changed = 0
    for key, value in model.llm.state_dict().items():
        assert torch.equal(value, state[f"model.llm.{key}"]), key
        changed += not torch.equal(value, fresh.llm.state_dict()[key])
    assert changed > 10  # the baseline run moved the weights away from a fresh build


def test_tensorboard_command_serves_the_run_on_localhost_only(baseline, monkeypatch):
    import showo.commands.tensorboard as tb

    calls = []
    monkeypatch.setattr(tb.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    assert main(["tensorboard", str(baseline["run_dir"]), "--port", "6123"]) == 0
    (cmd,) = calls
    assert cmd[cmd.index("--logdir") + 1] == str(baseline["run_dir"] / "tensorboard")
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "6123"
