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
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from transformers import AttentionInterface, AutoTokenizer, PhiConfig, PhiForCausalLM

from showo.attention import flex_attention_kernel, sdpa_kernel
from showo.errors import ShowoError
from showo.prompting import Prompter
from showo.safeio import first_line, read_json_object, read_safetensors
from showo.vocab import UnifiedVocab

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
VOCAB_NAME = "vocab.json"
HEAD_PREFIX = "image_head."
"""Key prefix of the image objective's head weights in `model.safetensors` and in checkpoints."""
# Recipe spellings -> transformers' names.
ATTN_IMPLEMENTATIONS = {"flex": "showo_flex", "sdpa": "showo_sdpa"}
AttentionInterface.register("showo_flex", flex_attention_kernel)
AttentionInterface.register("showo_sdpa", sdpa_kernel)
MAX_PARAMS = 100_000_000_000
"""Configs describing more parameters are refused before anything is allocated (a hostile or mistyped
config.json would otherwise allocate until memory runs out)."""
LLM_INT_LIMITS = {
    "vocab_size": 2**22,
    "hidden_size": 2**16,
    "intermediate_size": 2**18,
    "num_hidden_layers": 2**10,
    "num_attention_heads": 2**10,
    "max_position_embeddings": 2**22,
}
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model", "spiece.model")
"""A text tokenizer directory needs one of these (transformers silently builds an empty tokenizer without)."""


def _bounded_int(data: dict[str, Any], key: str, high: int, source: str) -> int:
    value = data.get(key)
    if type(value) is not int or not 1 <= value <= high:
        raise ShowoError(f"{source}: {key} must be an integer in 1..{high}, got {str(value)[:40]!r}")
    return value


def _default_objective() -> dict[str, Any]:
    from showo import objectives

    return objectives.get(objectives.DEFAULT).to_dict()


@dataclass
class ShowOConfig:
    """What a Show-o checkpoint needs besides weights: sizes and the Phi config (a dict)."""

    codebook_size: int
    num_image_tokens: int
    max_text_len: int
    llm: dict[str, Any] = field(default_factory=dict)
    objective: dict[str, Any] = field(default_factory=lambda: _default_objective())
    """The image objective and its settings (`showo.objectives`); what samples this model's images."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_type": "showo",
            "format_version": FORMAT_VERSION,
            "codebook_size": self.codebook_size,
            "num_image_tokens": self.num_image_tokens,
            "max_text_len": self.max_text_len,
            "llm": self.llm,
            "objective": self.objective,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "Show-o config.json") -> ShowOConfig:
        """Types and ranges checked; the LLM config is checked by `phi_config` before anything is built."""
        if not isinstance(data, dict):
            raise ShowoError(f"{source} must be a JSON object, not {type(data).__name__}")
        missing = [k for k in ("codebook_size", "num_image_tokens", "max_text_len", "llm") if k not in data]
        if missing:
            raise ShowoError(f"{source} lacks {missing[0]!r}")
        if not isinstance(data["llm"], dict):
            raise ShowoError(f"{source}: llm must be a JSON object with the Phi config")
        from showo import objectives

        return cls(
            codebook_size=_bounded_int(data, "codebook_size", 2**16, source),
            num_image_tokens=_bounded_int(data, "num_image_tokens", 2**20, source),
            max_text_len=_bounded_int(data, "max_text_len", 2**20, source),
            llm=dict(data["llm"]),
            objective=objectives.recorded(data.get("objective"), f"{source} objective").to_dict(),
        )


def llm_param_count(cfg: PhiConfig) -> int:
    """Parameters a PhiForCausalLM of `cfg` holds (embedding, lm_head, per-layer attention and MLP)."""
    h, inter, layers, vocab = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    return 2 * vocab * h + layers * (4 * h * h + 2 * h * inter)


def check_llm_config(cfg: PhiConfig, source: str) -> None:
    """Types, ranges and the parameter count of a Phi config, before any weight is allocated."""
    values = cfg.to_dict()
    for key, high in LLM_INT_LIMITS.items():
        _bounded_int(values, key, high, source)
    if cfg.hidden_size % cfg.num_attention_heads:
        raise ShowoError(f"{source}: hidden_size {cfg.hidden_size} is not divisible by num_attention_heads")
    kv = values.get("num_key_value_heads")
    if kv is not None and (type(kv) is not int or not 1 <= kv <= cfg.num_attention_heads):
        raise ShowoError(f"{source}: num_key_value_heads must be in 1..num_attention_heads, got {kv!r}")
    rope = values.get("rope_parameters") or {}
    numbers = {k: values.get(k) for k in ("layer_norm_eps", "resid_pdrop", "embd_pdrop", "attention_dropout")}
    numbers.update(
        {k: rope.get(k) for k in ("partial_rotary_factor", "rope_theta")} if isinstance(rope, dict) else {}
    )
    for key, value in numbers.items():
        if value is not None and (
            not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
        ):
            raise ShowoError(f"{source}: {key} must be a finite number, got {str(value)[:40]!r}")
    if not 0 < (numbers.get("partial_rotary_factor") or 0.5) <= 1:
        raise ShowoError(f"{source}: partial_rotary_factor must be in (0, 1]")
    count = llm_param_count(cfg)
    if count > MAX_PARAMS:
        raise ShowoError(
            f"{source} describes {count:.3g} parameters (more than {MAX_PARAMS:.0e}): refusing to build"
        )


def check_weights_count(cfg: PhiConfig, stored: int, source: str) -> None:
    """Refuse a config whose model is far larger than the weights actually stored (`stored` elements), so
    absurd sizes fail before any allocation."""
    if llm_param_count(cfg) > 2 * stored + 10**6:
        raise ShowoError(
            f"{source}: the config describes {llm_param_count(cfg)} parameters but only {stored} are stored"
        )


def check_weights_size(cfg: PhiConfig, file: Path) -> None:
    """`check_weights_count` against a safetensors file, read from its header only."""
    try:
        with safe_open(str(file), framework="pt") as f:
            stored = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except Exception as err:  # noqa: BLE001  (safetensors raises its own and OS errors)
        raise ShowoError(
            f"cannot read weights {file} (truncated or not safetensors): {first_line(err)}"
        ) from None
    check_weights_count(cfg, stored, str(file))


def phi_config(
    llm: PhiConfig | dict[str, Any], attn_implementation: str | None = None, source: str = "LLM config"
) -> PhiConfig:
    """A checked PhiConfig with QK-LayerNorm forced on (as the official fork does) and caching off."""
    kwargs = dict(llm) if isinstance(llm, dict) else llm.to_dict()
    kwargs.update(qk_layernorm=True, use_cache=False)
    if attn_implementation is not None:
        kwargs["attn_implementation"] = ATTN_IMPLEMENTATIONS.get(attn_implementation, attn_implementation)
    try:
        cfg = PhiConfig(**kwargs)
    except Exception as err:  # noqa: BLE001  (transformers' strict field validation has its own types)
        raise ShowoError(f"{source}: {first_line(err)}") from None
    check_llm_config(cfg, source)
    return cfg


def read_phi_config(directory: Path) -> PhiConfig:
    """A local Phi directory's config (its config.json must be a JSON object); errors are one line."""
    data = read_json_object(directory / CONFIG_NAME, "LLM config")
    try:
        return PhiConfig.from_dict(data)
    except Exception as err:  # noqa: BLE001  (transformers' strict field validation has its own types)
        raise ShowoError(f"{directory / CONFIG_NAME}: {first_line(err)}") from None


def _load_tokenizer(path: str | Path, own_checkpoint: bool = False) -> Any:
    """AutoTokenizer; in our checkpoints config.json is ours, so hand it the Phi model type instead."""
    if not any((Path(path) / name).is_file() for name in TOKENIZER_FILES):
        raise ShowoError(
            f"{path} holds no text tokenizer files (one of {', '.join(TOKENIZER_FILES)}); pass a directory that has them"
        )
    kwargs = {"config": PhiConfig()} if own_checkpoint else {}
    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False, **kwargs)
    except RecursionError:
        raise ShowoError(f"cannot load a text tokenizer from {path}: its JSON is nested too deeply") from None
    except Exception as exc:  # noqa: BLE001  (a malformed tokenizer file fails inside transformers in many types)
        raise ShowoError(f"cannot load a text tokenizer from {path}: {first_line(exc)}") from None


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
        self.image_head: nn.Module | None = None
        """The module the image objective adds (the diffusion objective's `showo.latents.LatentHead`)."""
        self.set_objective(self.objective)

    def set_objective(self, objective: Any) -> None:
        """Record `objective` (an `ImageObjective`) in the config and give the model its head: an existing
        head of the same shapes is kept (a resumed or re-wrapped model keeps its weights)."""
        self.config.objective = objective.to_dict()
        head = objective.build_head(self.llm.config.hidden_size, self.config.num_image_tokens)
        if head is None or self.image_head is None or _shapes(head) != _shapes(self.image_head):
            if head is not None:
                weight = self.llm.get_input_embeddings().weight
                head = head.to(device=weight.device)
            self.image_head = head

    def state(self) -> dict[str, torch.Tensor]:
        """Every weight, as saved: the LLM's keys, then the image head's under ``image_head.``."""
        state = dict(self.llm.state_dict())
        if self.image_head is not None:
            state.update({HEAD_PREFIX + k: v for k, v in self.image_head.state_dict().items()})
        return state

    def load_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Strict load of `state` (as `state()` gives it); a head missing or extra is a one-line error."""
        head = {k.removeprefix(HEAD_PREFIX): v for k, v in state.items() if k.startswith(HEAD_PREFIX)}
        llm = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)}
        load_llm_state(self.llm, llm, source)
        if self.image_head is None:
            if head:
                raise ShowoError(
                    f"{source} holds image-head weights the {self.objective.name} objective has no use for"
                )
            return
        load_module_state(self.image_head, head, f"{source} image head")

    @classmethod
    def build(
        cls,
        llm_dir_or_config: str | Path | PhiConfig | dict[str, Any],
        tokenizer_dir: str | Path | None,
        codebook_size: int,
        num_image_tokens: int,
        max_text_len: int,
        attn_implementation: str = "sdpa",
        objective: Any = None,
    ) -> ShowO:
        """A new model from a local Phi directory (pretrained weights) or a Phi config (random init).

        ``tokenizer_dir`` defaults to the LLM directory; it is required with a config. ``objective`` (anything
        `showo.objectives.get` takes; None: MTP) is recorded and gives the model its image head.
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
            cfg = phi_config(read_phi_config(path), attn_implementation, f"{path}/{CONFIG_NAME}")
            llm = PhiForCausalLM.from_pretrained(str(path), config=cfg, dtype=torch.float32)
        else:
            llm = PhiForCausalLM(phi_config(llm_dir_or_config, attn_implementation, "model.llm_config"))
        llm.resize_token_embeddings(vocab.size, mean_resizing=False)
        from showo import objectives

        config = ShowOConfig(codebook_size, num_image_tokens, max_text_len, llm.config.to_dict())
        config.objective = objectives.get(objective).to_dict()
        return cls(llm, vocab, config, tokenizer)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Logits in the unified id layout (optional `image_embeds`: see `input_embeddings`).

        ``attention_mask``: the 4-D additive omni-attention mask (cast to the weights' dtype), or a FlexAttention
        ``BlockMask`` when built with ``attn_implementation="flex"``.
        """
        mask = self._cast_mask(attention_mask)
        inputs = self.input_embeddings(input_ids, image_embeds)
        return self.llm(**inputs, attention_mask=mask, use_cache=False, **kwargs).logits

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        segments: Any = None,
    ) -> torch.Tensor:
        """The final (layer-normed) hidden states; ``self.llm.lm_head`` of them gives ``forward``'s logits.

        Training applies the head only where a position has a target (``showo.losses.gather_labelled``);
        ``position_ids`` restart per sample in packed rows, and an sdpa model runs packed rows with
        ``segments`` in place of a mask (``showo.packing``).
        """
        mask = self._cast_mask(attention_mask)
        inputs = self.input_embeddings(input_ids, image_embeds)
        extra = {} if segments is None else {"segments": segments}
        return self.llm.get_decoder()(
            **inputs, attention_mask=mask, position_ids=position_ids, use_cache=False, **extra
        ).last_hidden_state

    @property
    def objective(self) -> Any:
        """The image objective this model was trained with (`showo.objectives.ImageObjective`)."""
        from showo import objectives

        return objectives.get(self.config.objective, "model objective")

    def head_logits(self, hidden: torch.Tensor, columns: slice = slice(None)) -> torch.Tensor:
        """float32 logits of only the vocabulary `columns` (e.g. the image codes: 8192 of Phi-1.5's 58,498).

        Equal to slicing the full logits. A ZeRO-3 partitioned head (weights gathered only inside its own
        forward) runs whole and is sliced after.
        """
        lm_head = self.llm.get_output_embeddings()
        if hasattr(lm_head.weight, "ds_id"):
            return lm_head(hidden)[..., columns].float()
        bias = lm_head.bias[columns] if lm_head.bias is not None else None
        return torch.nn.functional.linear(hidden, lm_head.weight[columns], bias).float()

    def input_embeddings(self, input_ids: torch.Tensor, image_embeds: torch.Tensor | None) -> dict[str, Any]:
        """The decoder's input: the ids alone, or their embeddings with `image_embeds` at the image positions.

        Image positions are those holding an image code or [MASK] (`vocab.is_image(ids) | ids == mask_id`);
        `image_embeds` is ``[B, L, H]`` (read there only) or ``[K, H]`` for the K image positions in row-major
        order. This is the hook of objectives that feed continuous image values rather than code ids.
        """
        if image_embeds is None:
            return {"input_ids": input_ids}
        where = self.vocab.is_image(input_ids) | (input_ids == self.vocab.mask_id)
        embeds = self.llm.get_input_embeddings()(input_ids)
        picked = image_embeds[where] if image_embeds.dim() == 3 else image_embeds
        if picked.shape != (int(where.sum()), embeds.shape[-1]):
            raise ShowoError(
                f"image_embeds give {tuple(picked.shape)} for {int(where.sum())} image positions of width"
                f" {embeds.shape[-1]}"
            )
        return {"inputs_embeds": embeds.masked_scatter(where.unsqueeze(-1), picked.to(embeds.dtype))}

    def kernel_mask(self, mask: torch.Tensor | Any) -> torch.Tensor | Any:
        """The mask in the form this model's attention takes: a dense additive mask as is for sdpa/eager, as a
        FlexAttention ``BlockMask`` for flex (a BlockMask passes through)."""
        if self.uses_flex and isinstance(mask, torch.Tensor):
            from showo.attention import dense_to_block_mask

            return dense_to_block_mask(mask)
        return mask

    @property
    def attention(self) -> str:
        """The attention kernel in the recipe's spelling (``sdpa``, ``eager`` or ``flex``)."""
        name = self.llm.config._attn_implementation
        return next((k for k, v in ATTN_IMPLEMENTATIONS.items() if v == name), name)

    def set_flex_kernel_options(self, options: dict[str, int]) -> None:
        """Triton settings for every layer's fused flex kernels (a run-time choice, not saved with the model)."""
        if not self.uses_flex:
            raise ShowoError(f"flex kernel options need a flex model, this one runs {self.attention}")
        for layer in self.llm.get_decoder().layers:
            layer.self_attn.flex_kernel_options = dict(options)

    @property
    def uses_flex(self) -> bool:
        return self.attention == "flex"

    def _cast_mask(self, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """An additive float mask in the weights' dtype (a BlockMask or None passes through).

        A flex model needs a BlockMask and the others a tensor: handing either the wrong kind fails inside
        the kernels (a dense mask crashes the process under flex), so it is refused here in one line.
        """
        if attention_mask is not None and self.uses_flex == isinstance(attention_mask, torch.Tensor):
            wanted = "a FlexAttention BlockMask" if self.uses_flex else "a dense additive mask tensor"
            raise ShowoError(
                f"a model built with attn_implementation={self.llm.config._attn_implementation!r} "
                f"needs {wanted}, got {type(attention_mask).__name__}"
            )
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
        state = {k: v.detach().contiguous().cpu() for k, v in self.state().items()}
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
        data = read_json_object(path / CONFIG_NAME, "Show-o config")
        if official.is_official_config(data):
            return official.load_official(
                path, attn_implementation=attn_implementation, llm_path=llm_path, max_text_len=max_text_len
            )
        if data.get("model_type") != "showo":
            raise ShowoError(f"{path}/config.json is neither a Show-o checkpoint of ours nor an official one")
        config = ShowOConfig.from_dict(data, f"{path}/{CONFIG_NAME}")
        cfg = phi_config(config.llm, attn_implementation, f"{path}/{CONFIG_NAME} llm")
        if not (path / WEIGHTS_NAME).is_file():
            raise ShowoError(f"{path} has no {WEIGHTS_NAME}")
        check_weights_size(cfg, path / WEIGHTS_NAME)
        tokenizer = _load_tokenizer(path, own_checkpoint=True)
        vocab = UnifiedVocab.extend_tokenizer(tokenizer, config.codebook_size)
        if (path / VOCAB_NAME).is_file():
            stored = UnifiedVocab.from_dict(read_json_object(path / VOCAB_NAME, "vocabulary"))
            if stored != vocab:
                raise ShowoError(f"{path}: tokenizer ids do not match {VOCAB_NAME}")
        state = read_safetensors(path / WEIGHTS_NAME)
        model = cls(PhiForCausalLM(cfg), vocab, config, tokenizer)
        model.load_state(state, str(path / WEIGHTS_NAME))
        return model


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def load_llm_state(llm: PhiForCausalLM, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load of the LLM's weights (see `load_module_state`)."""
    load_module_state(llm, state, source)


def load_module_state(llm: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
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
