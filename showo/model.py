"""The Show-o model: transformers' own ``PhiForCausalLM`` (``qk_layernorm=True``) over the unified vocabulary.

No forked model file: the official ``phi.py`` differs from transformers' Phi only by forcing QK-LayerNorm
(per-head LayerNorm before partial RoPE, exactly what ``PhiConfig(qk_layernorm=True)`` builds) and by taking a
4-D additive mask as given, which transformers 5 does for 4-D masks. So ``forward`` adds no numerics.

Embedding resize (``build``): the official behaviour under transformers 4.41, reproduced with
``resize_token_embeddings(size, mean_resizing=False)``: existing rows are kept (with Phi-1.5 that includes its
unused padding rows 50295..51199, where [PAD], the task tokens and the first image codes land), new rows of
the embedding and lm_head are drawn from N(0, ``initializer_range`` = 0.02) and new lm_head biases are 0.
QK-LayerNorm weights missing from a pretrained Phi start at LayerNorm defaults (weight 1, bias 0).

Checkpoint directory (ours): ``config.json`` (``{"model_type": "showo", ...}`` with the Phi config inside),
``model.safetensors`` (the ``PhiForCausalLM`` state dict), the tokenizer files (extended with the Show-o
tokens) and ``vocab.json``. ``from_pretrained`` also accepts an official Show-o directory (``showo.official``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoTokenizer, PhiConfig, PhiForCausalLM

from showo.errors import ShowoError
from showo.prompting import Prompter
from showo.vocab import UnifiedVocab

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
VOCAB_NAME = "vocab.json"
# Recipe spellings -> transformers' names.
ATTN_IMPLEMENTATIONS = {"flex": "flex_attention"}


@dataclass
class ShowOConfig:
    """What a Show-o checkpoint needs besides weights: sizes and the Phi config (a dict)."""

    codebook_size: int
    num_image_tokens: int
    max_text_len: int
    llm: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_type": "showo",
            "format_version": FORMAT_VERSION,
            "codebook_size": self.codebook_size,
            "num_image_tokens": self.num_image_tokens,
            "max_text_len": self.max_text_len,
            "llm": self.llm,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShowOConfig:
        try:
            return cls(
                codebook_size=int(data["codebook_size"]),
                num_image_tokens=int(data["num_image_tokens"]),
                max_text_len=int(data["max_text_len"]),
                llm=dict(data["llm"]),
            )
        except KeyError as exc:
            raise ShowoError(f"Show-o config.json lacks {exc.args[0]!r}") from None


def phi_config(llm: PhiConfig | dict[str, Any], attn_implementation: str | None = None) -> PhiConfig:
    """A PhiConfig with QK-LayerNorm forced on (as the official fork does) and caching off for training."""
    kwargs = dict(llm) if isinstance(llm, dict) else llm.to_dict()
    kwargs.update(qk_layernorm=True, use_cache=False)
    if attn_implementation is not None:
        kwargs["attn_implementation"] = ATTN_IMPLEMENTATIONS.get(attn_implementation, attn_implementation)
    return PhiConfig(**kwargs)


def _load_tokenizer(path: str | Path, own_checkpoint: bool = False) -> Any:
    """AutoTokenizer; in our checkpoints config.json is ours, so hand it the Phi model type instead."""
    kwargs = {"config": PhiConfig()} if own_checkpoint else {}
    try:
        return AutoTokenizer.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as exc:
        raise ShowoError(f"cannot load a text tokenizer from {path}: {exc}".splitlines()[0]) from None


class ShowO(nn.Module):
    """Phi + unified vocabulary. ``forward(input_ids, attention_mask) -> logits [B, L, vocab.size]``."""

    def __init__(self, llm: PhiForCausalLM, vocab: UnifiedVocab, config: ShowOConfig, tokenizer: Any = None):
        super().__init__()
        if llm.get_input_embeddings().num_embeddings != vocab.size:
            raise ShowoError(
                f"LLM has {llm.get_input_embeddings().num_embeddings} embedding rows, vocabulary needs {vocab.size}"
            )
        self.llm = llm
        self.vocab = vocab
        self.config = config
        self.tokenizer = tokenizer

    @classmethod
    def build(
        cls,
        llm_dir_or_config: str | Path | PhiConfig | dict[str, Any],
        tokenizer_dir: str | Path | None,
        codebook_size: int,
        num_image_tokens: int,
        max_text_len: int,
        attn_implementation: str = "sdpa",
    ) -> ShowO:
        """A new model from a local Phi directory (pretrained weights) or a Phi config (random init).

        ``tokenizer_dir`` defaults to the LLM directory; it is required with a config.
        """
        from_dir = isinstance(llm_dir_or_config, (str, Path))
        tok_dir = tokenizer_dir if tokenizer_dir is not None else (llm_dir_or_config if from_dir else None)
        if tok_dir is None:
            raise ShowoError("a tokenizer directory is required when the LLM is built from a config")
        tokenizer = _load_tokenizer(tok_dir)
        vocab = UnifiedVocab.extend_tokenizer(tokenizer, codebook_size)
        if from_dir:
            path = Path(llm_dir_or_config)
            if not (path / CONFIG_NAME).is_file():
                raise ShowoError(f"LLM directory {path} has no config.json")
            cfg = phi_config(PhiConfig.from_pretrained(str(path)), attn_implementation)
            llm = PhiForCausalLM.from_pretrained(str(path), config=cfg, dtype=torch.float32)
        else:
            llm = PhiForCausalLM(phi_config(llm_dir_or_config, attn_implementation))
        llm.resize_token_embeddings(vocab.size, mean_resizing=False)
        config = ShowOConfig(codebook_size, num_image_tokens, max_text_len, llm.config.to_dict())
        return cls(llm, vocab, config, tokenizer)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """Logits in the unified id layout.

        ``attention_mask``: the 4-D additive omni-attention mask (cast to the weights' dtype), or a FlexAttention
        ``BlockMask`` when built with ``attn_implementation="flex"``.
        """
        mask = self._cast_mask(attention_mask)
        return self.llm(input_ids=input_ids, attention_mask=mask, use_cache=False, **kwargs).logits

    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The final (layer-normed) hidden states; ``self.llm.lm_head`` of them gives ``forward``'s logits.

        Training applies the head only where a position has a target (``showo.losses.gather_labelled``).
        """
        mask = self._cast_mask(attention_mask)
        return self.llm.get_decoder()(
            input_ids=input_ids, attention_mask=mask, use_cache=False
        ).last_hidden_state

    def _cast_mask(self, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """An additive float mask in the weights' dtype (a BlockMask or None passes through)."""
        if isinstance(attention_mask, torch.Tensor) and attention_mask.is_floating_point():
            return attention_mask.to(self.llm.get_input_embeddings().weight.dtype)
        return attention_mask

    def prompter(self, cond_dropout_prob: float = 0.0, max_frames: int = 1) -> Prompter:
        """A Prompter with this model's tokenizer, vocabulary and sizes."""
        if self.tokenizer is None:
            raise ShowoError("this model has no text tokenizer attached")
        return Prompter(
            self.tokenizer,
            self.vocab,
            self.config.max_text_len,
            self.config.num_image_tokens,
            cond_dropout_prob,
            max_frames,
        )

    def save_pretrained(self, out_dir: str | Path) -> Path:
        """Write config.json, model.safetensors, the tokenizer and vocab.json."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.config.llm = self.llm.config.to_dict()
        (out / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2, sort_keys=True))
        (out / VOCAB_NAME).write_text(json.dumps(self.vocab.to_dict(), indent=2))
        state = {k: v.detach().contiguous().cpu() for k, v in self.llm.state_dict().items()}
        save_file(state, str(out / WEIGHTS_NAME), metadata={"format": "pt"})
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(out))
        return out

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        attn_implementation: str = "sdpa",
        llm_path: str | Path | None = None,
        max_text_len: int | None = None,
    ) -> ShowO:
        """Load our checkpoint directory or an official Show-o one (detected by its config fields).

        ``llm_path`` (official only) overrides the LLM/tokenizer directory named in the official config;
        ``max_text_len`` (official only; default 128) is not stored in official checkpoints.
        """
        from showo import official

        path = Path(path)
        if not (path / CONFIG_NAME).is_file():
            raise ShowoError(f"{path} is not a Show-o checkpoint directory (no config.json)")
        data = json.loads((path / CONFIG_NAME).read_text())
        if official.is_official_config(data):
            return official.load_official(
                path, attn_implementation=attn_implementation, llm_path=llm_path, max_text_len=max_text_len
            )
        if data.get("model_type") != "showo":
            raise ShowoError(f"{path}/config.json is neither a Show-o checkpoint of ours nor an official one")
        config = ShowOConfig.from_dict(data)
        if not (path / WEIGHTS_NAME).is_file():
            raise ShowoError(f"{path} has no {WEIGHTS_NAME}")
        tokenizer = _load_tokenizer(path, own_checkpoint=True)
        vocab = UnifiedVocab.extend_tokenizer(tokenizer, config.codebook_size)
        if (path / VOCAB_NAME).is_file():
            stored = UnifiedVocab.from_dict(json.loads((path / VOCAB_NAME).read_text()))
            if stored != vocab:
                raise ShowoError(f"{path}: tokenizer ids do not match {VOCAB_NAME}")
        llm = PhiForCausalLM(phi_config(config.llm, attn_implementation))
        load_llm_state(llm, load_file(str(path / WEIGHTS_NAME)), str(path / WEIGHTS_NAME))
        return cls(llm, vocab, config, tokenizer)


def load_llm_state(llm: PhiForCausalLM, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load with a one-line error naming the first offending keys."""
    own = llm.state_dict()
    missing = sorted(own.keys() - state.keys())
    unexpected = sorted(state.keys() - own.keys())
    if missing or unexpected:
        raise ShowoError(
            f"{source}: keys do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    bad = [k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise ShowoError(
            f"{source}: shape mismatch for {bad[0]}: {tuple(state[bad[0]].shape)} vs {tuple(own[bad[0]].shape)}"
        )
    llm.load_state_dict(state, strict=True)
