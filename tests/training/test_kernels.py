"""Kernel choices on the training path: flex and sdpa give the same losses, torch.compile changes no number,
and the combinations that cannot work are refused in one line."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from transformers import PhiForCausalLM

from showo.attention import omni_attention_mask
from showo.cli import main
from showo.errors import ShowoError
from showo.model import ShowO, phi_config
from showo.recipe import load_recipe
from showo.training.module import ShowoModule
from tests.training.conftest import N_TOKENS, recipe_dict, write_recipe


def with_attention(model: ShowO, attn: str) -> ShowO:
    """The same weights under another attention implementation."""
    llm = PhiForCausalLM(phi_config(model.llm.config, attn))
    llm.load_state_dict(model.llm.state_dict())
    return ShowO(llm, model.vocab, model.config, model.tokenizer)


@pytest.fixture()
def rows_and_recipe(tmp_path, tiny_showo, tiny_llm_dir, image_tokenizer_dir, shards):
    def recipe(**changes):
        data = recipe_dict(tmp_path, tiny_llm_dir, image_tokenizer_dir, shards, **changes)
        return load_recipe(write_recipe(tmp_path / "r.yaml", data))

    vocab, prompter = tiny_showo.vocab, tiny_showo.prompter()
    gen = torch.Generator().manual_seed(3)
    images = vocab.codes_to_ids(torch.randint(0, vocab.codebook_size, (3, N_TOKENS), generator=gen))
    module = ShowoModule(copy.deepcopy(tiny_showo), recipe())
    rows = {
        "t2i": module.mask_images(
            "t2i", *prompter.t2i(["a red circle", "two stars", ""], images, images), gen
        ),
        "lm": prompter.lm(["def f(x): return x"]),
        "mmu": prompter.mmu(images[:2], ["USER: \nDescribe. ASSISTANT: a red circle"] * 2),
    }
    return rows, recipe


def losses(module: ShowoModule, rows) -> dict[str, torch.Tensor]:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return module.losses(rows)[0]


def test_flex_and_sdpa_give_the_same_training_losses(tiny_showo, rows_and_recipe):
    rows, recipe = rows_and_recipe
    sdpa = losses(ShowoModule(copy.deepcopy(tiny_showo), recipe()), rows)
    flex_model = with_attention(tiny_showo, "flex")
    assert flex_model.uses_flex
    flex = losses(ShowoModule(flex_model, recipe(**{"model.attn_implementation": "flex"})), rows)
    for key in ("loss", "loss_t2i", "loss_lm", "loss_mmu"):
        assert torch.allclose(flex[key], sdpa[key], atol=1e-5), key


@pytest.mark.parametrize("pack", [0, 600], ids=["padded", "packed"])
def test_compile_changes_no_loss(tiny_showo, rows_and_recipe, pack):
    """Packed rows too: the decoder compiles with the sdpa segments passed through to the attention."""
    rows, recipe = rows_and_recipe
    plain = ShowoModule(copy.deepcopy(tiny_showo), recipe())
    compiled = ShowoModule(
        copy.deepcopy(tiny_showo), recipe(**{"model.compile": True, "data.pack_tokens": pack})
    )
    expected, got = losses(plain, rows), losses(compiled, rows)
    for key in ("loss", "loss_t2i", "loss_lm", "loss_mmu"):
        assert torch.allclose(got[key], expected[key], atol=1e-5), key
    assert compiled.model.llm.get_decoder()._compiled_call_impl is not None
    assert list(compiled.model.state_dict()) == list(plain.model.state_dict())  # checkpoints keep their keys


def test_a_mask_of_the_wrong_kind_is_refused_in_one_line(tiny_showo):
    ids = tiny_showo.prompter().lm(["a b c"])[0]
    dense = omni_attention_mask(ids, tiny_showo.vocab, "lm")
    with pytest.raises(ShowoError, match="needs a FlexAttention BlockMask"):
        with_attention(tiny_showo, "flex").hidden_states(ids, dense)
    from showo.attention import omni_block_mask

    with pytest.raises(ShowoError, match="needs a dense additive mask"):
        tiny_showo.hidden_states(ids, omni_block_mask(ids, tiny_showo.vocab, "lm"))


def test_flex_training_on_the_cpu_is_refused_up_front(tmp_path, rows_and_recipe, capsys):
    _, recipe = rows_and_recipe
    path = tmp_path / "r.yaml"
    assert main(["train", str(path), "model.attn_implementation=flex"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no FlexAttention backward" in err[0]
    assert not (tmp_path / "runs" / "tiny" / "checkpoints").exists()


def test_flex_kernel_options_reach_every_flex_call(tiny_showo, rows_and_recipe, monkeypatch):
    """`model.flex_kernel_options` goes from the recipe's model to each layer's flex kernel, unchanged."""
    from torch.nn.attention import flex_attention as flex

    from showo.training.init import build_model

    rows, recipe = rows_and_recipe
    options = {"BLOCK_M": 64, "BLOCK_N": 64, "num_stages": 2}
    model = build_model(recipe(**{"model.attn_implementation": "flex", "model.flex_kernel_options": options}))
    seen, original = [], flex.flex_attention

    def spy(*args, **kwargs):
        seen.append(kwargs.get("kernel_options"))
        return original(*args, **kwargs)

    monkeypatch.setattr(flex, "flex_attention", spy)
    ids = model.prompter().lm(["a b c"])[0]
    from showo.attention import omni_block_mask

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        model.hidden_states(ids, omni_block_mask(ids, model.vocab, "lm"))
    assert seen == [options] * model.llm.config.num_hidden_layers
    with pytest.raises(ShowoError, match="need a flex model"):
        tiny_showo.set_flex_kernel_options(options)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model.flex_kernel_options": {"BLOCK_M": 64}}, "needs model.attn_implementation: flex"),
        (
            {"model.attn_implementation": "flex", "model.flex_kernel_options": {"BLOCK_Q": 64}},
            "unknown option 'BLOCK_Q'",
        ),
        (
            {"model.attn_implementation": "flex", "model.flex_kernel_options": {"num_stages": 0}},
            "flex_kernel_options.num_stages must be positive",
        ),
    ],
)
def test_bad_flex_kernel_options_are_one_line_errors(rows_and_recipe, changes, message):
    _, recipe = rows_and_recipe
    with pytest.raises(ShowoError, match=message):
        recipe(**changes)


@pytest.mark.parametrize("pack", [0, 600], ids=["padded", "packed"])
def test_gradient_checkpointing_changes_no_loss_or_gradient(tiny_showo, rows_and_recipe, pack):
    """Recomputed activations (packed rows' segments reach the recomputation too) give the same numbers."""
    rows, recipe = rows_and_recipe

    def run(checkpointing: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model = copy.deepcopy(tiny_showo).train()
        if checkpointing:
            model.llm.activation_checkpointing_enable()
        calls = []
        attention = model.llm.get_decoder().layers[0].self_attn
        attention.register_forward_hook(lambda *_: calls.append(1))
        module = ShowoModule(model, recipe(**{"data.pack_tokens": pack}))
        loss = module.losses(rows)[0]["loss"]
        loss.backward()
        assert len(calls) == (2 if checkpointing else 1)  # recomputed in the backward pass
        return loss.detach(), [p.grad for p in model.parameters() if p.grad is not None]

    (plain, plain_grads), (recomputed, grads) = run(False), run(True)
    assert torch.allclose(recomputed, plain, atol=1e-6)
    assert len(grads) == len(plain_grads)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads, plain_grads))


def test_compiled_packed_training_stops_recompiling_once_shapes_are_dynamic(tiny_showo, rows_and_recipe):
    """Each step packs its samples into other buckets (their number and sizes change); the bucketed attention
    stays out of the compiled graph, so after the first recompile (to dynamic shapes) every new layout
    reuses the compiled layers."""
    from torch._dynamo.utils import counters

    from showo.packing import pack, segment_attention

    _, recipe = rows_and_recipe
    torch._dynamo.reset()
    counters.clear()
    module = ShowoModule(
        copy.deepcopy(tiny_showo), recipe(**{"model.compile": True, "data.pack_tokens": 4096})
    )
    prompter, vocab = tiny_showo.prompter(), tiny_showo.vocab
    gen = torch.Generator().manual_seed(0)
    graphs, layouts = [], set()
    for step in range(5):
        words = [" ".join(["w"] * (1 + 4 * i + step)) for i in range(step + 1)]
        codes = torch.randint(0, vocab.codebook_size, (len(words), N_TOKENS), generator=gen)
        images = vocab.codes_to_ids(codes)
        rows = {
            "t2i": module.mask_images("t2i", *prompter.t2i(words, images, images), gen),
            "lm": prompter.lm(words),
            "mmu": prompter.mmu(images, [f"USER: \nDescribe. ASSISTANT: {w}" for w in words]),
        }
        ids = torch.cat([r[0] for r in rows.values()])
        rules = [t for t, r in rows.items() for _ in range(len(r[0]))]
        segments = segment_attention(pack(ids, vocab.pad_id, 4096), ids, rules, vocab)
        layouts.add(tuple((n, size) for n, size, _ in segments.buckets))
        losses(module, rows)
        graphs.append(counters["stats"]["unique_graphs"])
    assert len(layouts) == 5  # every step a new bucket layout
    assert graphs[-1] == graphs[1] and graphs[1] > 0, graphs
