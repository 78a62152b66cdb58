"""DeepSpeed ZeRO-2 and ZeRO-3 on two CPU processes (torchrun + the CPU DeepSpeed strategy subclass): the loss
falls, and the sharded checkpoint consolidates to fp32 and loads, checked against Lightning's converter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

from showo.cli import main
from showo.model import ShowO
from showo.training.checkpoint import list_checkpoints
from tests.training.conftest import recipe_dict, run_train, scalars, write_recipe

STEPS = 6


@pytest.mark.parametrize("stage", [2, 3])
def test_two_process_zero_run_learns_and_exports(stage, tmp_path, tiny_llm_dir, image_tokenizer_dir, shards):
    recipe = recipe_dict(
        tmp_path,
        tiny_llm_dir,
        image_tokenizer_dir,
        shards,
        **{
            "optim.max_steps": STEPS,
            "trainer.devices": 2,
            "trainer.checkpoint_every": STEPS,
            "trainer.strategy": {"name": "deepspeed", "zero_stage": stage},
            # previews under ZeRO-3: every rank samples (parameters are gathered per forward), rank 0 writes
            "trainer.sample_every": STEPS if stage == 3 else 0,
            "trainer.sample": {"prompts": ["a red circle"], "steps": 2, "caption_images": 1},
        },
    )
    run_train(write_recipe(tmp_path / "recipe.yaml", recipe), nproc=2)
    run_dir = tmp_path / "runs" / "tiny"
    loss = scalars(run_dir, "train/loss")
    assert sorted(loss) == list(range(STEPS))
    assert np.mean([loss[4], loss[5]]) < np.mean([loss[1], loss[2]]) - 0.3
    assert len(scalars(run_dir, "train/grad_norm")) == STEPS  # read from the DeepSpeed engine
    if stage == 3:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        (events,) = (run_dir / "tensorboard").glob("events.out.tfevents.*")
        acc = EventAccumulator(str(events), size_guidance={"images": 0})
        acc.Reload()
        assert [i.step for i in acc.Images("samples/t2i")] == [STEPS]
    (ckpt,) = list_checkpoints(run_dir)
    assert (
        ckpt.is_dir() and len(list((ckpt / "checkpoint").glob("*optim_states.pt"))) == 2
    )  # one shard per rank

    out = tmp_path / "export"
    assert main(["export", "--ckpt", str(ckpt), "--out", str(out)]) == 0
    reference = tmp_path / "lightning-fp32.pt"
    convert_zero_checkpoint_to_fp32_state_dict(str(ckpt), str(reference))
    expected = torch.load(reference, weights_only=False)["state_dict"]
    model = ShowO.from_pretrained(out)
    for key, value in model.llm.state_dict().items():
        assert torch.equal(value, expected[f"model.llm.{key}"].float()), key
