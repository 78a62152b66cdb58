"""ShowO adds no numerics to transformers' Phi; resize follows the official rule; checkpoints round-trip."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, PhiConfig, PhiForCausalLM

import showo
from showo.attention import batch_attention_mask, omni_attention_mask
from showo.errors import ShowoError
from showo.model import ShowO


def sample_batch(model, gen):
    pr = model.prompter()
    vocab, n = model.vocab, model.config.num_image_tokens
    img = vocab.codes_to_ids(torch.randint(0, vocab.codebook_size, (2, n), generator=gen))
    t2i, _ = pr.t2i(["a red circle", ""], img, torch.full_like(img, -100))
    mmu, _ = pr.mmu(img, ["USER: \nWhat is it? ASSISTANT: a blue square"] * 2)
    lm, _ = pr.lm(["two green stars"])
    ids = torch.cat([t2i, mmu, lm])
    mask = batch_attention_mask([("t2i", t2i), ("mmu", mmu), ("lm", lm)], vocab)
    return ids, mask


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_logits_equal_plain_transformers_phi(tiny_showo, tiny_llm_dir, attn):
    """A plain PhiForCausalLM(qk_layernorm) loaded from the same LLM dir, resized by hand, same weights."""
    ids, mask = sample_batch(tiny_showo, torch.Generator().manual_seed(0))
    plain = PhiForCausalLM.from_pretrained(tiny_llm_dir, attn_implementation=attn, dtype=torch.float32)
    assert plain.config.qk_layernorm
    plain.resize_token_embeddings(tiny_showo.vocab.size, mean_resizing=False)
    plain.load_state_dict(tiny_showo.llm.state_dict())
    plain.eval()
    ours = ShowO(plain, tiny_showo.vocab, tiny_showo.config, tiny_showo.tokenizer)
    with torch.no_grad():
        ref = plain(input_ids=ids, attention_mask=mask).logits
        got = ours(ids, mask)
        sdpa = tiny_showo(ids, mask)
    assert got.shape == (ids.shape[0], ids.shape[1], tiny_showo.vocab.size)
    assert torch.equal(got, ref)
    assert torch.allclose(sdpa, ref, atol=1e-5)
    # The mask matters: the default causal mask gives different image logits.
    with torch.no_grad():
        causal = ours(ids, None)
    assert not torch.allclose(causal[:2, -5:], ref[:2, -5:], atol=1e-4)


def test_resize_keeps_old_rows_and_inits_new(tiny_showo, tiny_llm_dir):
    base = PhiForCausalLM.from_pretrained(tiny_llm_dir, dtype=torch.float32)
    old_rows = base.config.vocab_size
    assert old_rows > tiny_showo.vocab.text_size  # padding rows like Phi-1.5's 51200 vs 50295
    emb = tiny_showo.llm.get_input_embeddings().weight
    head = tiny_showo.llm.get_output_embeddings()
    assert emb.shape[0] == head.weight.shape[0] == tiny_showo.vocab.size
    assert torch.equal(emb[:old_rows], base.get_input_embeddings().weight)
    assert torch.equal(head.weight[:old_rows], base.lm_head.weight)
    assert torch.equal(head.bias[:old_rows], base.lm_head.bias)
    assert bool((head.bias[old_rows:] == 0).all())
    new = emb[old_rows:]
    assert abs(new.std().item() - 0.02) < 0.002 and abs(new.mean().item()) < 0.002


def test_save_load_round_trip(tiny_showo, tmp_path):
    out = tiny_showo.save_pretrained(tmp_path / "ckpt")
    assert {p.name for p in out.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "vocab.json",
        "tokenizer.json",
    }
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "showo" and cfg["llm"]["qk_layernorm"] is True
    assert json.loads((out / "vocab.json").read_text())["mask_id"] == tiny_showo.vocab.mask_id
    assert set(load_file(out / "model.safetensors")) == set(tiny_showo.llm.state_dict())
    loaded = showo.ShowO.from_pretrained(out).eval()
    assert loaded.vocab == tiny_showo.vocab
    for key in ("codebook_size", "num_image_tokens", "max_text_len"):
        assert getattr(loaded.config, key) == getattr(tiny_showo.config, key)
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "qk_layernorm", "rope_parameters"):
        assert getattr(loaded.llm.config, key) == getattr(tiny_showo.llm.config, key)
    tok = AutoTokenizer.from_pretrained(out, config=PhiConfig())
    assert tok.convert_tokens_to_ids("<|soi|>") == loaded.vocab.soi_id
    ids, mask = sample_batch(tiny_showo, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(ids, mask), tiny_showo(ids, mask))


def test_build_from_config_and_errors(tiny_llm_dir, tmp_path):
    cfg = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    m = ShowO.build(cfg, tiny_llm_dir, 64, 16, 8, attn_implementation="eager")
    assert m.llm.config.qk_layernorm and m.vocab.codebook_size == 64
    assert m.llm.get_input_embeddings().num_embeddings == m.vocab.size
    assert isinstance(m.llm.config, PhiConfig)
    ids = m.prompter().lm(["a red circle"])[0]
    assert m(ids, omni_attention_mask(ids, m.vocab, "lm")).shape == (1, 27, m.vocab.size)
    with pytest.raises(ShowoError):
        ShowO.build(cfg, None, 64, 16, 8)
    with pytest.raises(ShowoError):
        ShowO.build(tmp_path, None, 64, 16, 8)
    with pytest.raises(ShowoError):
        ShowO.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ShowoError):
        ShowO.from_pretrained(tmp_path)


def test_import_showo_is_light():
    import subprocess
    import sys

    code = "import sys, showo; print('transformers' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_pretrained_phi_without_qk_norm_gets_default_norms(tiny_llm_dir, tmp_path):
    """Phi-1.5 has no QK-LayerNorm weights: they start at weight 1, bias 0; every other weight is kept."""
    cfg = PhiConfig.from_pretrained(tiny_llm_dir)
    cfg.qk_layernorm = False
    plain = PhiForCausalLM(cfg)
    plain.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_llm_dir).save_pretrained(tmp_path)
    model = ShowO.build(tmp_path, None, 32, 4, 4)
    attn = model.llm.model.layers[0].self_attn
    assert torch.equal(attn.q_layernorm.weight, torch.ones_like(attn.q_layernorm.weight))
    assert torch.equal(attn.k_layernorm.bias, torch.zeros_like(attn.k_layernorm.bias))
    own = plain.state_dict()
    for key, value in model.llm.state_dict().items():
        if key in own and "embed_tokens" not in key and "lm_head" not in key:
            assert torch.equal(value, own[key]), key
