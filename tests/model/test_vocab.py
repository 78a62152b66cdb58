"""The unified vocabulary: official ids with Phi-1.5's layout, derived (not hard-coded) for any tokenizer."""

import pytest
from transformers import AutoTokenizer

from showo.errors import ShowoError
from showo.vocab import SPECIAL_TOKENS, UnifiedVocab


def test_phi_layout_gives_official_ids(phi_layout_tokenizer):
    v = UnifiedVocab.extend_tokenizer(phi_layout_tokenizer, 8192)
    # docs/official-differences.md#vocabulary: the official ids and config.json of showlab/show-o.
    assert (v.text_size, v.pad_id, v.bos_id, v.eos_id) == (50295, 50295, 50256, 50256)
    assert [v.soi_id, v.eoi_id, v.sov_id, v.eov_id, v.t2i_id, v.mmu_id, v.t2v_id, v.v2v_id, v.lvg_id] == list(
        range(50296, 50305)
    )
    assert (v.image_offset, v.mask_id, v.size, v.num_new_tokens) == (50305, 58497, 58498, 10)
    assert len(phi_layout_tokenizer) == 50305
    assert phi_layout_tokenizer.pad_token_id == 50295
    assert v.image_slice == slice(50305, 58497)


def test_extension_is_idempotent_and_round_trips(phi_layout_tokenizer, tmp_path):
    v = UnifiedVocab.extend_tokenizer(phi_layout_tokenizer, 1024)
    assert UnifiedVocab.extend_tokenizer(phi_layout_tokenizer, 1024) == v
    phi_layout_tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert UnifiedVocab.extend_tokenizer(reloaded, 1024) == v
    assert UnifiedVocab.from_dict(v.to_dict()) == v
    assert v.mask_id == 50305 + 1024


def test_any_tokenizer_is_derived(tiny_llm_dir):
    tok = AutoTokenizer.from_pretrained(tiny_llm_dir)
    n = len(tok)
    v = UnifiedVocab.extend_tokenizer(tok, 256)
    assert v.pad_id == n and v.soi_id == n + 1 and v.lvg_id == n + len(SPECIAL_TOKENS)
    assert v.image_offset == n + 10 and v.size == n + 10 + 256 + 1 and v.mask_id == v.size - 1
    assert tok.convert_ids_to_tokens(v.mmu_id) == "<|mmu|>"
    assert v.bos_id == v.eos_id == tok.convert_tokens_to_ids("<|endoftext|>")


def test_code_id_mapping(phi_layout_tokenizer):
    import torch

    v = UnifiedVocab.extend_tokenizer(phi_layout_tokenizer, 8192)
    codes = torch.tensor([0, 8191])
    assert v.codes_to_ids(codes).tolist() == [50305, 58496]
    assert v.ids_to_codes(v.codes_to_ids(codes)).tolist() == [0, 8191]
    assert v.is_image(torch.tensor([50304, 50305, 58496, 58497])).tolist() == [False, True, True, False]


def test_bad_inputs(phi_layout_tokenizer):
    with pytest.raises(ShowoError):
        UnifiedVocab.extend_tokenizer(phi_layout_tokenizer, 0)
    with pytest.raises(ShowoError):
        UnifiedVocab.from_dict({"size": 3})
