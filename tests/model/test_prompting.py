"""Every task layout, cell for cell, against sequences written by hand from
docs/official-differences.md#prompting.

The fake tokenizer has Phi-1.5's id layout and maps the word "7" to id 7, so texts below are their own ids.
M = 6, N = 4, L = 13.
"""

import pytest
import torch

from showo.errors import ShowoError
from showo.prompting import Prompter
from showo.vocab import UnifiedVocab

X = -100
P, BOS, EOS = 50295, 50256, 50256
SOI, EOI, T2I, MMU, LVG = 50296, 50297, 50300, 50301, 50304
USER, ASSISTANT = 50100, 50101
IMG = [50305, 50306, 50307, 50308]


@pytest.fixture
def prompter(phi_layout_tokenizer):
    vocab = UnifiedVocab.extend_tokenizer(phi_layout_tokenizer, 8192)
    return Prompter(phi_layout_tokenizer, vocab, max_text_len=6, num_image_tokens=4, cond_dropout_prob=0.0)


def rows(*r):
    return torch.tensor(list(r))


def test_t2i(prompter):
    img = rows(IMG, IMG)
    lab = rows([50305, X, 50307, X], [X, X, X, 50308])
    ids, labels = prompter.t2i(["7 8", "1 2 3 4 5 6 7"], img, lab)
    # The official M = 6 example, and the truncation rule (first M tokens, then eos).
    assert ids.tolist() == [
        [P, P, T2I, BOS, 7, 8, EOS, SOI, *IMG, EOI],
        [T2I, BOS, 1, 2, 3, 4, EOS, SOI, *IMG, EOI],
    ]
    assert labels.tolist() == [
        [X, X, T2I, BOS, 7, 8, EOS, SOI, 50305, X, 50307, X, EOI],
        [T2I, BOS, 1, 2, 3, 4, EOS, SOI, X, X, X, 50308, EOI],
    ]
    assert ids.shape[1] == prompter.seq_len == 13


def test_t2i_condition_dropout(prompter):
    prompter.cond_dropout_prob = 1.0
    ids, labels = prompter.t2i(["7 8"], rows(IMG), rows([X] * 4))
    assert ids.tolist() == [[P, P, P, P, T2I, BOS, EOS, SOI, *IMG, EOI]]
    assert labels.tolist() == [[X, X, X, X, T2I, BOS, EOS, SOI, X, X, X, X, EOI]]
    # The draws come from the generator: same seed, same decisions; about p of the rows dropped.
    prompter.cond_dropout_prob = 0.3
    texts, img, lab = ["7"] * 400, torch.tensor([IMG] * 400), torch.full((400, 4), X)
    a = prompter.t2i(texts, img, lab, torch.Generator().manual_seed(5))[0]
    b = prompter.t2i(texts, img, lab, torch.Generator().manual_seed(5))[0]
    assert torch.equal(a, b)
    dropped = (a[:, 5] == EOS).float().mean().item()  # null prompt: eos right after bos
    expected = (torch.rand(400, generator=torch.Generator().manual_seed(5)) < 0.3).float().mean().item()
    assert dropped == expected and 0.2 < dropped < 0.4


def test_t2i_gen_and_null_prompt(prompter):
    masked = rows([58497] * 4)
    cond = prompter.t2i_gen(["7 8"], masked)
    uncond = prompter.t2i_gen([""], masked)
    assert cond.tolist() == [[P, P, T2I, BOS, 7, 8, EOS, SOI, *[58497] * 4, EOI]]
    # The unconditional prompt equals the training null prompt.
    assert uncond.tolist() == [[P, P, P, P, T2I, BOS, EOS, SOI, *[58497] * 4, EOI]]


def test_lm(prompter):
    eleven = " ".join(str(i) for i in range(1, 12))
    twelve = eleven + " 12"
    ids, labels = prompter.lm(["7 8", eleven, twelve])
    assert ids.tolist() == [
        [BOS, 7, 8, EOS] + [P] * 9,
        [BOS, *range(1, 12), EOS],
        [BOS, *range(1, 13)],  # truncated: first L tokens, no eos
    ]
    assert labels.tolist() == [[BOS, 7, 8, EOS] + [X] * 9, [BOS, *range(1, 12), EOS], [BOS, *range(1, 13)]]


def test_mmu(prompter):
    ids, labels = prompter.mmu(rows(IMG, IMG), ["7 8", "1 2 3 4 5 6"])
    assert ids.tolist() == [
        [MMU, SOI, *IMG, EOI, BOS, 7, 8, EOS, P, P],
        [MMU, SOI, *IMG, EOI, BOS, 1, 2, 3, 4, EOS],  # cut to M-1 tokens + eos
    ]
    assert labels.tolist() == [
        [X] * 7 + [BOS, 7, 8, EOS, X, X],
        [X] * 7 + [BOS, 1, 2, 3, 4, EOS],
    ]


def test_instruct(prompter):
    conv = [
        {"from": "human", "value": "<image>\n5"},
        {"from": "gpt", "value": "6"},
    ]
    two_rounds = conv + [{"from": "human", "value": "9"}, {"from": "gpt", "value": "10"}]
    ids, labels = prompter.instruct(rows(IMG, IMG), [conv, two_rounds])
    # "USER: 5 ASSISTANT: 6<|endoftext|>" (no BOS), right-padded / cut to M.
    assert ids.tolist() == [
        [MMU, SOI, *IMG, EOI, USER, 5, ASSISTANT, 6, EOS, P],
        [MMU, SOI, *IMG, EOI, USER, 5, ASSISTANT, 6, EOS, USER],
    ]
    assert labels.tolist() == [[X] * 7 + [X, X, X, 6, EOS, X], [X] * 7 + [X, X, X, 6, EOS, X]]
    with pytest.raises(ShowoError):
        prompter.instruct(rows(IMG), [[{"from": "system", "value": "x"}]])


def test_mmu_gen(prompter):
    ids = prompter.mmu_gen(rows(IMG, IMG), ["5", "1 2 3 4 5 6"])
    # The official understanding prompt [mmu][soi] img [eoi][bos] "USER: \n{q} ASSISTANT:", left-padded to L.
    assert ids.tolist() == [
        [P, P, MMU, SOI, *IMG, EOI, BOS, USER, 5, ASSISTANT],
        [MMU, SOI, *IMG, EOI, BOS, 3, 4, 5, 6, ASSISTANT],  # keeps the last M-1 prompt tokens
    ]


def test_mmu_gen_instruct_template_is_the_instruction_tuning_prefix(prompter):
    ids = prompter.mmu_gen(rows(IMG, IMG), ["5", "1 2 3 4 5 6"], template="instruct")
    assert ids.tolist() == [
        [P, P, P, MMU, SOI, *IMG, EOI, USER, 5, ASSISTANT],
        [MMU, SOI, *IMG, EOI, 2, 3, 4, 5, 6, ASSISTANT],  # no BOS: the last M prompt tokens
    ]
    trained, _ = prompter.instruct(
        rows(IMG), [[{"from": "human", "value": "<image>\n5"}, {"from": "gpt", "value": "6"}]]
    )
    assert ids[0, 3:].tolist() == trained[0, : ids.shape[1] - 3].tolist()
    with pytest.raises(ShowoError, match="unknown prompt template"):
        prompter.mmu_gen(rows(IMG), ["5"], template="chat")


def test_mixed(phi_layout_tokenizer):
    vocab = UnifiedVocab.extend_tokenizer(phi_layout_tokenizer, 8192)
    pr = Prompter(phi_layout_tokenizer, vocab, max_text_len=6, num_image_tokens=2, max_frames=2)
    a, b, c, d = 50400, 50401, 50402, 50403
    frames = [rows([a, b], [c, d]), rows([a, b])]
    caps = [["1 2 3", "4"], ["7"]]
    labels = [rows([a, X], [X, d]), rows([X, b])]
    ids, lab = pr.mixed(frames, caps, labels)
    assert pr.mixed_len == 15
    assert ids.tolist() == [
        [LVG, BOS, 1, 2, SOI, a, b, EOI, 4, SOI, c, d, EOI, EOS, P],  # captions cut to (M-2)//F = 2
        [LVG, BOS, 7, SOI, a, b, EOI, EOS] + [P] * 7,
    ]
    # Aligned labels: text targets one position early, MTP image targets in place.
    assert lab.tolist() == [
        [X, 1, 2, SOI, X, a, X, 4, SOI, X, X, d, EOS, X, X],
        [X, 7, SOI, X, X, b, EOS] + [X] * 8,
    ]
    _, lab_ar = pr.mixed(frames, caps, next_token_images=True)
    assert lab_ar.tolist() == [
        [X, 1, 2, SOI, a, b, EOI, 4, SOI, c, d, EOI, EOS, X, X],
        [X, 7, SOI, a, b, EOI, EOS] + [X] * 8,
    ]
    single = Prompter(phi_layout_tokenizer, vocab, max_text_len=6, num_image_tokens=4)
    assert single.mixed([rows(IMG)], [["7"]])[0].shape[1] == single.seq_len
    with pytest.raises(ShowoError):
        pr.mixed([rows([a, b], [c, d], [a, b])], [["1", "2", "3"]])


def test_shape_errors(prompter):
    with pytest.raises(ShowoError):
        prompter.t2i(["7"], rows([1, 2]), rows([X, X]))
    with pytest.raises(ShowoError):
        prompter.mmu(rows(IMG), ["7", "8"])
