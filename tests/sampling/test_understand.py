"""Understanding decode: cached == recompute, batched == alone, stops at end of text."""

import copy

import torch

from showo.sampling import understand

QUESTIONS = ["What color is the circle?", "Describe the image.", "two shapes?"]


def _images(model, rows, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = model.config.num_image_tokens
    return torch.randint(0, model.vocab.codebook_size, (rows, n), generator=gen) + model.vocab.image_offset


def test_cached_decode_equals_recompute_greedy_and_sampled(small_showo):
    model, prompter = small_showo, small_showo.prompter()
    images = _images(model, 3)
    for kwargs in (dict(), dict(temperature=0.9, top_k=50, top_p=0.95)):
        runs = [
            understand.decode_ids(
                model,
                prompter,
                images,
                QUESTIONS,
                10,
                generator=torch.Generator().manual_seed(1),
                use_cache=c,
                **kwargs,
            )
            for c in (True, False)
        ]
        assert runs[0] == runs[1]
        assert sum(map(len, runs[0])) >= 12  # enough tokens for the comparison to mean something


def test_a_left_padded_row_decodes_as_it_would_alone(small_showo):
    model, prompter = small_showo, small_showo.prompter()
    images = _images(model, 3, seed=2)
    batched = understand.decode_ids(model, prompter, images, QUESTIONS, 8)
    alone = [
        understand.decode_ids(model, prompter, images[i : i + 1], QUESTIONS[i : i + 1], 8)[0]
        for i in range(3)
    ]
    assert batched == alone


def test_decoding_stops_at_end_of_text(small_showo):
    model = copy.deepcopy(small_showo)
    vocab = model.vocab
    with torch.no_grad():  # make end-of-text the certain next token
        model.llm.lm_head.bias[vocab.eos_id] = 1e4
    assert understand.decode_ids(model, model.prompter(), _images(model, 2), QUESTIONS[:2], 20) == [[], []]
    assert understand.decode(model, model.prompter(), _images(model, 1), QUESTIONS[:1], max_new_tokens=5) == [
        ""
    ]


def test_only_text_ids_are_generated(small_showo):
    model = copy.deepcopy(small_showo)
    vocab = model.vocab
    with torch.no_grad():  # image codes and [PAD] would win an unrestricted argmax
        model.llm.lm_head.bias[vocab.text_size :] = 1e4
    rows = understand.decode_ids(model, model.prompter(), _images(model, 2), QUESTIONS[:2], 6)
    assert all(0 <= t < vocab.text_size and t != vocab.eos_id for row in rows for t in row)
