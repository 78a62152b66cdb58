"""MTP and AR training losses of `ShowoModule` on one fixed batch, held as numbers.

The numbers were measured before the objectives refactor (issue 16) at commit 015df73, with the module's
own masking and loss path; the refactor must reproduce them exactly (up to float32 summation noise).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from showo.data.batches import BatchBuilder
from showo.recipe import load_recipe
from showo.training.module import ShowoModule
from tests.training.conftest import recipe_dict, scene_codes, write_recipe

MEASURED = {
    "mtp": {
        "tokens_t2i": 699.0,
        "loss_t2i": 7.326871871948242,
        "tokens_c2i": 464.0,
        "loss_c2i": 7.301061153411865,
        "tokens_lm": 36.0,
        "loss_lm": 7.261120319366455,
        "tokens_mmu": 48.0,
        "loss_mmu": 7.2531561851501465,
        "tokens_instruct": 15.0,
        "loss_instruct": 7.201488018035889,
        "tokens_mixed": 911.0,
        "loss_mixed": 7.3112897872924805,
        "loss": 37.11997985839844,
        "acc_t2i": 0.0043290043249726295,
        "acc_c2i": 0.0021834061481058598,
        "acc_mixed": 0.0034052212722599506,
    },
    "ar": {
        "tokens_t2i": 771.0,
        "loss_t2i": 7.313467502593994,
        "tokens_c2i": 771.0,
        "loss_c2i": 7.313338279724121,
        "tokens_lm": 36.0,
        "loss_lm": 7.261120319366455,
        "tokens_mmu": 48.0,
        "loss_mmu": 7.2531561851501465,
        "tokens_instruct": 15.0,
        "loss_instruct": 7.201488018035889,
        "tokens_mixed": 1572.0,
        "loss_mixed": 7.311581134796143,
        "loss": 37.119144439697266,
        "acc_t2i": 0.00390625,
        "acc_c2i": 0.00390625,
        "acc_mixed": 0.0032552082557231188,
    },
}


def fixed_samples() -> list[dict]:
    out = []
    for i in range(3):
        conv = [
            {"from": "human", "value": "<image>\nWhat color is the star?"},
            {"from": "gpt", "value": f"The star is {['red', 'blue', 'green'][i]}."},
        ]
        out.append(
            {
                "__key__": f"k{i}",
                "codes.npy": np.stack([scene_codes(i), scene_codes(i + 3)]),
                "txt": f"a {['red', 'blue', 'green'][i]} star. the circle is left of the square",
                "json": {
                    "class_name": ["zero", "one", "two"][i],
                    "frame_captions": ["a star", "it moves"],
                    "conversations": conv,
                },
            }
        )
    return out


def fixed_batch(module: ShowoModule, objective: str) -> dict:
    prompter = module.model.prompter(cond_dropout_prob=0.5, max_frames=2)
    samples = fixed_samples()
    batch = {}
    for index, task in enumerate(("t2i", "c2i", "lm", "mmu", "instruct", "mixed")):
        builder = BatchBuilder(task=task, prompter=prompter, max_frames=2, objective=objective)
        rows = samples
        if task != "mixed":
            rows = [{**s, "codes.npy": s["codes.npy"][0]} for s in samples]
        batch[task] = builder(rows, seed=100 + index)
    return batch


@pytest.mark.parametrize("objective", ["mtp", "ar"])
def test_training_losses_on_a_fixed_batch_are_the_measured_ones(
    objective, tmp_path, tiny_showo, tiny_llm_dir, image_tokenizer_dir, shards
):
    raw = recipe_dict(tmp_path, tiny_llm_dir, image_tokenizer_dir, shards, **{"objective.image": objective})
    model = copy.deepcopy(tiny_showo)
    seeded = torch.Generator().manual_seed(0)  # the fixture's new embedding rows are drawn unseeded
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            param.copy_(
                torch.randn(param.shape, generator=seeded) * 0.05 + (1.0 if param.dim() == 1 else 0.0)
            )
    module = ShowoModule(model, load_recipe(write_recipe(tmp_path / "r.yaml", raw)))
    batch = fixed_batch(module, objective)
    generator = module.generator(3)
    rows = {t: module.mask_images(t, b["input_ids"], b["labels"], generator) for t, b in batch.items()}
    with torch.no_grad():
        out, labelled = module.losses(rows)
    got = {k: float(v) for k, v in out.items()}
    got.update({k: float(v) for k, v in module.image_accuracy(labelled).items()})
    assert got.keys() == MEASURED[objective].keys()
    for key, value in MEASURED[objective].items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
