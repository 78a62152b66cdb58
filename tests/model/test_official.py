"""An official-format Show-o directory (built here from the key list of
docs/official-differences.md#checkpoints, tiny sizes) loads strictly."""

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, PhiConfig, PhiForCausalLM

from showo.attention import omni_attention_mask
from showo.errors import ShowoError
from showo.model import ShowO
from showo.official import is_official_dir
from showo.vocab import UnifiedVocab

CODEBOOK, NUM_VQ = 64, 16


def official_state(vocab_size, cfg, gen):
    """Keys and shapes of an official checkpoint for a tiny Phi, random values (LayerNorms too)."""
    h, inter = cfg.hidden_size, cfg.intermediate_size
    head = h // cfg.num_attention_heads

    def rnd(*shape):
        return torch.randn(*shape, generator=gen) * 0.05

    sd = {"showo.model.embed_tokens.weight": rnd(vocab_size, h)}
    for i in range(cfg.num_hidden_layers):
        p = f"showo.model.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "dense"):
            sd[p + f"self_attn.{proj}.weight"], sd[p + f"self_attn.{proj}.bias"] = rnd(h, h), rnd(h)
        for norm in ("q_layernorm", "k_layernorm"):
            sd[p + f"self_attn.{norm}.weight"], sd[p + f"self_attn.{norm}.bias"] = 1 + rnd(head), rnd(head)
        sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"] = rnd(inter, h), rnd(inter)
        sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"] = rnd(h, inter), rnd(h)
        sd[p + "input_layernorm.weight"], sd[p + "input_layernorm.bias"] = 1 + rnd(h), rnd(h)
    sd["showo.model.final_layernorm.weight"], sd["showo.model.final_layernorm.bias"] = 1 + rnd(h), rnd(h)
    sd["showo.lm_head.weight"], sd["showo.lm_head.bias"] = rnd(vocab_size, h), rnd(vocab_size)
    return sd


@pytest.fixture(scope="module")
def official_dir(tmp_path_factory, tiny_llm_dir):
    out = tmp_path_factory.mktemp("official")
    tok = AutoTokenizer.from_pretrained(tiny_llm_dir)
    text_len = len(tok)
    vocab = UnifiedVocab.extend_tokenizer(tok, CODEBOOK)
    cfg = PhiConfig.from_pretrained(tiny_llm_dir)
    sd = official_state(vocab.size, cfg, torch.Generator().manual_seed(0))
    save_file(sd, str(out / "pytorch_model.safetensors"))
    config = {
        "_class_name": "Showo",
        "codebook_size": CODEBOOK,
        "llm_model_path": str(tiny_llm_dir),
        "llm_vocab_size": text_len,
        "mask_token_id": vocab.size - 1,
        "num_vq_tokens": NUM_VQ,
        "vocab_size": vocab.size,
        "w_clip_vit": False,
    }
    (out / "config.json").write_text(json.dumps(config))
    return out, sd, vocab


def reference_logits(tiny_llm_dir, sd, vocab, ids, mask):
    cfg = PhiConfig.from_pretrained(tiny_llm_dir)
    cfg.vocab_size, cfg.qk_layernorm = vocab.size, True
    ref = PhiForCausalLM(cfg).eval()
    ref.load_state_dict({k.removeprefix("showo."): v for k, v in sd.items()}, strict=True)
    with torch.no_grad():
        return ref(input_ids=ids, attention_mask=mask).logits


def test_official_safetensors_loads_with_identical_logits(official_dir, tiny_llm_dir):
    path, sd, vocab = official_dir
    assert is_official_dir(path)
    model = ShowO.from_pretrained(path).eval()
    assert (
        model.vocab == vocab and model.config.num_image_tokens == NUM_VQ and model.config.max_text_len == 128
    )
    pr = model.prompter()
    img = vocab.codes_to_ids(
        torch.randint(0, CODEBOOK, (2, NUM_VQ), generator=torch.Generator().manual_seed(1))
    )
    ids = pr.t2i_gen(["a red circle", ""], img)
    mask = omni_attention_mask(ids, vocab, "t2i")
    with torch.no_grad():
        got = model(ids, mask)
    assert torch.equal(got, reference_logits(tiny_llm_dir, sd, vocab, ids, mask))


def test_official_bin_and_llm_override(official_dir, tiny_llm_dir, tmp_path):
    path, sd, vocab = official_dir
    cfg = json.loads((path / "config.json").read_text())
    cfg["llm_model_path"] = "microsoft/phi-1_5"  # a hub id: not available offline
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    torch.save(sd, tmp_path / "pytorch_model.bin")
    with pytest.raises(ShowoError, match="phi-1_5"):
        ShowO.from_pretrained(tmp_path)
    model = ShowO.from_pretrained(tmp_path, llm_path=tiny_llm_dir, max_text_len=8).eval()
    assert model.config.max_text_len == 8
    ids = model.prompter().lm(["two blue stars"])[0]
    mask = omni_attention_mask(ids, vocab, "lm")
    with torch.no_grad():
        assert torch.equal(model(ids, mask), reference_logits(tiny_llm_dir, sd, vocab, ids, mask))


def test_official_key_mismatch_is_a_user_error(official_dir, tmp_path):
    path, sd, _ = official_dir
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    broken = dict(sd)
    broken.pop("showo.lm_head.bias")
    save_file(broken, str(tmp_path / "pytorch_model.safetensors"))
    with pytest.raises(ShowoError, match="lm_head.bias"):
        ShowO.from_pretrained(tmp_path)
    save_file({**sd, "mm_projector.0.weight": torch.zeros(2, 2)}, str(tmp_path / "pytorch_model.safetensors"))
    with pytest.raises(ShowoError, match="mm_projector"):
        ShowO.from_pretrained(tmp_path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["vocab_size"] += 1
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ShowoError, match="vocab_size"):
        ShowO.from_pretrained(tmp_path)
