"""The per-task streams: reproducible from (seed, step) whatever the start step or worker count, split
across ranks, prompted per the shard contract, and state that round-trips through a checkpoint."""

from __future__ import annotations

import itertools

import pytest
import torch

from showo.data.datamodule import ShowoDataModule
from showo.errors import ShowoError
from showo.recipe.schema import DataConfig, StreamConfig
from tests.fixtures.model import TINY_MAX_TEXT_LEN
from tests.training.conftest import DIGITS, N_TOKENS


def datamodule(shards, prompter, num_workers=0, segment=4, **streams) -> ShowoDataModule:
    streams = streams or {"t2i": StreamConfig(shards=[shards["image_text"]], batch_size=2)}
    data = DataConfig(resolution=64, num_workers=num_workers, shuffle_buffer=5, streams=streams)
    return ShowoDataModule(data, prompter, seed=3, segment_steps=segment)


def take(loader, n):
    return {b["step"]: b for b in itertools.islice(loader, n)}


def test_batch_of_a_step_does_not_depend_on_where_the_stream_started(shards, tiny_showo):
    dm = datamodule(shards, tiny_showo.prompter(0.5), num_workers=2)
    full = take(dm.loader("t2i", 0), 11)
    assert sorted(full) == list(range(11))
    for start in (4, 5, 7):  # a segment boundary (no skip), and mid-segment starts on either lane
        resumed = take(dm.loader("t2i", start), 11 - start)
        assert sorted(resumed) == list(range(start, 11))
        for step, batch in resumed.items():
            assert batch["keys"] == full[step]["keys"]
            assert torch.equal(batch["input_ids"], full[step]["input_ids"])
    keys = [k for b in full.values() for k in b["keys"]]
    assert len(set(keys)) > 6  # the stream moves through the data, not one batch repeated


def test_ranks_read_different_draws(shards, tiny_showo):
    dm = datamodule(shards, tiny_showo.prompter())
    ranks = [[k for b in itertools.islice(dm.stream("t2i", 0, r, 2), 6) for k in b["keys"]] for r in (0, 1)]
    assert ranks[0] != ranks[1]


def test_rows_follow_the_shard_contract_for_every_task(shards, tiny_showo):
    prompter = tiny_showo.prompter(0.0, max_frames=2)
    vocab = tiny_showo.vocab
    streams = {
        "t2i": StreamConfig(shards=[shards["image_text"]], batch_size=2),
        "c2i": StreamConfig(shards=[shards["class"]], batch_size=2),
        "lm": StreamConfig(shards=[shards["lm"]], batch_size=1),
        "mmu": StreamConfig(shards=[shards["image_text"]], batch_size=2, questions=["Describe the image."]),
        "instruct": StreamConfig(shards=[shards["instruct"]], batch_size=2),
        "mixed": StreamConfig(shards=[shards["mixed"]], batch_size=1, max_frames=2),
    }
    dm = datamodule(shards, prompter, **streams)
    batch, _, _ = next(iter(dm.train_dataloader()))
    assert list(batch) == ["t2i", "c2i", "lm", "mmu", "instruct", "mixed"]
    length = TINY_MAX_TEXT_LEN + N_TOKENS + 3
    for task, rows in batch.items():
        assert rows["input_ids"].shape == (
            streams[task].batch_size,
            prompter.mixed_len if task == "mixed" else length,
        )
    # image positions carry the shard codes, offset into the unified vocabulary (masking happens on device)
    t2i = batch["t2i"]["input_ids"]
    assert vocab.is_image(t2i[:, TINY_MAX_TEXT_LEN + 2 : -1]).all()

    def text(ids: torch.Tensor) -> str:
        kept = [i for i in ids.tolist() if 0 <= i < vocab.text_size]  # drop pads, task tokens, image ids
        return prompter.tokenizer.decode(kept, skip_special_tokens=True).strip()

    assert text(batch["c2i"]["input_ids"][0, : TINY_MAX_TEXT_LEN + 1]) in DIGITS
    assert text(batch["mmu"]["input_ids"][0]).startswith("USER: \nDescribe the image. ASSISTANT")  # cut at M
    answer = batch["instruct"]["labels"][0]
    supervised = text(answer[answer != -100])
    assert supervised.strip().startswith("The ") and "USER" not in supervised
    assert vocab.is_image(batch["mixed"]["input_ids"]).sum() == 2 * N_TOKENS


def test_stream_state_round_trips_and_guards_the_seed(shards, tiny_showo):
    dm = datamodule(shards, tiny_showo.prompter())
    state = dm.state_dict()
    assert state["seed"] == 3 and state["batches"] == 0
    other = datamodule(shards, tiny_showo.prompter())
    other.load_state_dict({**state, "batches": 6})
    assert next(iter(other.train_dataloader()))[0]["t2i"]["step"] == 6
    with pytest.raises(ShowoError, match="seed"):
        other.load_state_dict({**state, "seed": 4})


def test_missing_shards_name_the_stream(shards, tiny_showo, tmp_path):
    with pytest.raises(ShowoError, match=r"data\.streams\.lm\.shards: no shard matches"):
        datamodule(shards, tiny_showo.prompter(), lm=StreamConfig(shards=[str(tmp_path / "*.tar")]))
    with pytest.raises(ShowoError, match="does not exist"):
        datamodule(
            shards, tiny_showo.prompter(), lm=StreamConfig(shards=[str(tmp_path / "x-{000..001}.tar")])
        )
