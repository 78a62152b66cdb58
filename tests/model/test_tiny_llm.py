"""The tiny LLM directory loads back with the stock transformers classes, Phi-style."""

import torch
from transformers import AutoConfig, AutoTokenizer, PhiForCausalLM


def test_tiny_llm_dir_is_a_real_model_dir(tiny_llm_dir):
    tok = AutoTokenizer.from_pretrained(tiny_llm_dir)
    assert tok.bos_token == tok.eos_token == "<|endoftext|>"
    assert tok.bos_token_id == tok.eos_token_id
    ids = tok("a red circle and a blue square")["input_ids"]
    assert tok.bos_token_id not in ids  # like Phi: the tokenizer adds no special tokens
    assert tok.decode(ids) == "a red circle and a blue square"
    # The BPE was trained on the demo captions: their words are whole tokens.
    assert len(tok(" red circle")["input_ids"]) == 2
    cfg = AutoConfig.from_pretrained(tiny_llm_dir)
    assert cfg.model_type == "phi" and cfg.qk_layernorm
    assert cfg.rope_parameters["partial_rotary_factor"] == 0.5
    assert cfg.vocab_size >= len(tok) and cfg.vocab_size % 64 == 0
    model = PhiForCausalLM.from_pretrained(tiny_llm_dir)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids])).logits
    assert out.shape == (1, len(ids), cfg.vocab_size) and torch.isfinite(out).all()
