"""Understanding decode: cached == recompute == an untrimmed full-head reference, batched == alone, stops at
end of text."""

import copy
import warnings

import torch

from showo.attention import omni_attention_mask
from showo.sampling import maskgit, understand

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


SHORT = ["why?", "What color is it?", "shapes?"]  # every row left-padded, by different amounts


@torch.no_grad()
def _reference_decode(model, prompter, images, questions, steps, temperature=0.0, generator=None):
    """The untrimmed prompt, the whole sequence and the full head every step; text ids only."""
    vocab = model.vocab
    ids = prompter.mmu_gen(images, questions)
    out = []
    for _ in range(steps):
        mask = omni_attention_mask(ids, vocab, "mmu")
        positions = ((ids != vocab.pad_id).long().cumsum(1) - 1).clamp_min(0)
        logits = model.llm(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]
        logits = logits.float()[:, : vocab.text_size]
        if temperature == 0:
            token = logits.argmax(-1)
        else:
            token = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)[:, 0]
        out.append(token)
        ids = torch.cat([ids, token[:, None]], dim=1)
    rows = torch.stack(out, 1).tolist()
    return [row[: row.index(vocab.eos_id)] if vocab.eos_id in row else row for row in rows]


def test_trimmed_text_head_decode_equals_the_untrimmed_full_head_reference(small_showo):
    model, prompter = small_showo, small_showo.prompter()
    images = _images(model, 3, seed=4)
    ids = prompter.mmu_gen(images, SHORT)
    trimmed = understand.trim_left_padding(ids, model.vocab.pad_id)
    assert trimmed.shape[1] < ids.shape[1] and (trimmed == model.vocab.pad_id).any()  # trimmed, pads remain
    assert torch.equal(trimmed, ids[:, ids.shape[1] - trimmed.shape[1] :])
    for kwargs in (dict(), dict(temperature=0.9)):
        ours = [
            understand.decode_ids(
                model,
                prompter,
                images,
                SHORT,
                10,
                generator=torch.Generator().manual_seed(3),
                use_cache=c,
                **kwargs,
            )
            for c in (True, False)
        ]
        reference = _reference_decode(
            model, prompter, images, SHORT, 10, generator=torch.Generator().manual_seed(3), **kwargs
        )
        assert ours[0] == reference and ours[1] == reference
        assert sum(map(len, reference)) >= 12


def test_cached_decoding_uses_the_supported_cache_argument(small_showo):
    """transformers deprecates `past_key_values` on the decoder: no FutureWarning may come from our calls."""
    model, prompter = small_showo, small_showo.prompter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        understand.decode_ids(model, prompter, _images(model, 2), SHORT[:2], 4)
        maskgit.generate(model, prompter, SHORT[:2], steps=2, generator=torch.Generator().manual_seed(0))
    assert not [w for w in caught if "past_key_values" in str(w.message)]
