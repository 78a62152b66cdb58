"""Sequence packing on the training path: every task of a step packed into shared rows gives the same
per-task losses as the padded rows, for both discrete objectives; a packed run resumes exactly after a
SIGKILL; a bad budget is a one-line error."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from showo.cli import main
from showo.errors import ShowoError
from showo.recipe import load_recipe
from showo.training.module import ShowoModule
from tests.fixtures.model import TINY_MAX_TEXT_LEN
from tests.training.conftest import (
    N_TOKENS,
    kill_after_first_checkpoint,
    recipe_dict,
    run_train,
    scalars,
    write_recipe,
)
from tests.training.test_objective_losses import fixed_batch

SEQ_LEN = TINY_MAX_TEXT_LEN + N_TOKENS + 3
STEPS = 12
"""Steps of the killed run (packed steps are quick: the kill must land before the run ends)."""


@pytest.mark.parametrize("objective", ["mtp", "ar"])
def test_packed_losses_equal_the_padded_ones(
    objective, tmp_path, tiny_showo, tiny_llm_dir, image_tokenizer_dir, shards
):
    def module(**changes) -> ShowoModule:
        raw = recipe_dict(
            tmp_path, tiny_llm_dir, image_tokenizer_dir, shards, **{"objective.image": objective}, **changes
        )
        return ShowoModule(copy.deepcopy(tiny_showo), load_recipe(write_recipe(tmp_path / "r.yaml", raw)))

    padded = module()
    batch = fixed_batch(padded, objective)
    longest = max(b["input_ids"].shape[1] for b in batch.values())
    packed = module(**{"data.pack_tokens": 2 * longest})
    rows = {
        t: padded.mask_images(t, b["input_ids"], b["labels"], padded.generator(3)) for t, b in batch.items()
    }
    with torch.no_grad():
        expected, got = padded.losses(rows)[0], packed.losses(rows)[0]
    assert set(got) == set(expected) and len(batch) == 6
    for key in expected:
        assert torch.allclose(got[key], expected[key], atol=1e-5), key
    pad = tiny_showo.vocab.pad_id
    padded_tokens = sum(b["input_ids"].numel() for b in batch.values())
    real = sum(int((b["input_ids"] != pad).sum()) for b in batch.values())
    assert real < padded_tokens  # the fixed batch has pads for packing to drop


def test_a_budget_shorter_than_a_row_is_refused(tmp_path, tiny_llm_dir, image_tokenizer_dir, shards):
    raw = recipe_dict(tmp_path, tiny_llm_dir, image_tokenizer_dir, shards, **{"data.pack_tokens": 10})
    with pytest.raises(ShowoError, match="pack_tokens 10 is shorter than the longest row"):
        load_recipe(write_recipe(tmp_path / "r.yaml", raw))


def test_a_packed_run_resumes_after_sigkill_with_the_uninterrupted_losses(
    tmp_path, tiny_llm_dir, image_tokenizer_dir, shards, capsys
):
    changes = {"optim.max_steps": STEPS, "trainer.checkpoint_every": 2, "data.pack_tokens": 2 * SEQ_LEN}
    full = recipe_dict(tmp_path / "full", tiny_llm_dir, image_tokenizer_dir, shards, **changes)
    run_train(write_recipe(tmp_path / "full.yaml", full))
    path = write_recipe(
        tmp_path / "killed.yaml",
        recipe_dict(tmp_path / "killed", tiny_llm_dir, image_tokenizer_dir, shards, **changes),
    )
    run_dir = tmp_path / "killed" / "runs" / "tiny"
    resumed_from = kill_after_first_checkpoint(path, run_dir)
    assert main(["train", str(path)]) == 0
    assert "resuming from" in capsys.readouterr().out
    expected, got = scalars(tmp_path / "full" / "runs" / "tiny", "train/loss"), scalars(run_dir, "train/loss")
    later = list(range(resumed_from, STEPS))
    assert later and sorted(expected) == list(range(STEPS))
    np.testing.assert_allclose([got[s] for s in later], [expected[s] for s in later], rtol=1e-6, atol=1e-6)
