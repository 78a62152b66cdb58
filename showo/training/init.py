"""Building the model of a stage: from the recipe, then (stage chaining) weights from `init_from`."""

from __future__ import annotations

from pathlib import Path

from showo import objectives
from showo.errors import ShowoError
from showo.model import CONFIG_NAME, HEAD_PREFIX, ShowO, load_llm_state
from showo.recipe.schema import ShowoRecipe
from showo.training.checkpoint import (
    CHECKPOINT_DIR,
    checked,
    is_complete,
    list_checkpoints,
    newest_good,
    read_llm_weights,
    read_metadata,
)
from showo.training.module import METADATA_KEY
from showo.vocab import UnifiedVocab


def build_model(recipe: ShowoRecipe, load_init: bool = True) -> ShowO:
    """A fresh ShowO from `model.llm` (pretrained Phi dir) or `model.llm_config`, plus `init_from` weights.

    The recipe's objective is resolved first (`ImageObjective.resolved`: a diffusion recipe's null VAE
    scaling taken from its VAE), in place, so the data, the module and the saved recipe all use the result."""
    m = recipe.model
    recipe.objective = objectives.get(recipe.objective).resolved().config  # e.g. the VAE's scaling, recorded
    if m.image_tokenizer is not None and not Path(m.image_tokenizer).exists():
        raise ShowoError(f"model.image_tokenizer: {m.image_tokenizer} does not exist")
    source = m.llm if m.llm is not None else dict(m.llm_config)
    model = ShowO.build(
        source,
        m.text_tokenizer,
        m.codebook_size,
        m.num_image_tokens,
        m.max_text_len,
        m.attn_implementation,
        objective=recipe.objective,
    )
    if recipe.init_from and load_init:
        load_init_weights(model, recipe.init_from)
    if m.gradient_checkpointing:
        model.llm.activation_checkpointing_enable()
    if m.flex_kernel_options:
        model.set_flex_kernel_options(dict(m.flex_kernel_options))
    return model


def resolve_init(path: str | Path) -> tuple[str, Path]:
    """("export", dir) for a `save_pretrained` directory, else ("checkpoint", path), verified: a run directory
    means its newest checkpoint that passes verification."""
    p = Path(path)
    if not p.exists():
        raise ShowoError(f"init_from: {p} does not exist")
    if p.is_dir() and (p / CONFIG_NAME).is_file():
        return "export", p
    if p.is_dir() and (p / CHECKPOINT_DIR).is_dir():
        found = newest_good(list_checkpoints(p), "init_from")
        if found is None:
            raise ShowoError(f"init_from: run {p} has no complete checkpoint")
        return "checkpoint", found
    if is_complete(p):
        return "checkpoint", checked(p, "init_from")
    raise ShowoError(f"init_from: {p} is neither a run directory, a checkpoint nor an exported model")


def load_init_weights(model: ShowO, path: str | Path) -> Path:
    """Load a previous stage's weights into `model` (optimizer and schedule start fresh); checks the vocabulary.

    The image head comes along when both stages have one of the same shapes; a stage without one (e.g. MTP
    before diffusion) gives only the transformer, and the new head starts from its initialisation."""
    kind, source = resolve_init(path)
    if kind == "export":
        previous = ShowO.from_pretrained(source)
        vocab, weights = previous.vocab, previous.state()
    else:
        meta = read_metadata(source).get(METADATA_KEY)
        if not isinstance(meta, dict) or "vocab" not in meta:
            raise ShowoError(
                f"init_from: {source} was not written by showo training (no vocabulary metadata)"
            )
        vocab, weights = UnifiedVocab.from_dict(meta["vocab"]), read_llm_weights(source)
    if vocab != model.vocab:
        raise ShowoError(
            f"init_from: {source} has a different vocabulary (size {vocab.size}, image offset {vocab.image_offset})"
            f" than this recipe (size {model.vocab.size}, image offset {model.vocab.image_offset})"
        )
    if model.image_head is not None and not any(k.startswith(HEAD_PREFIX) for k in weights):
        load_llm_state(
            model.llm, weights, str(source)
        )  # a code stage before a latent one: the head starts fresh
    else:
        model.load_state(weights, str(source))
    return source
