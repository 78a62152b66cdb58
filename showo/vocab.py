"""The unified Show-o vocabulary: text ids, [PAD], task/delimiter tokens, image codes, and the mask token.

The id arithmetic follows the official code (docs/official-differences.md#vocabulary) but is derived from the
tokenizer and the codebook size, never hard-coded: ``[PAD]`` gets ``len(tokenizer)``, the nine task and
delimiter tokens follow in the official order, image code ``c`` maps to ``image_offset + c`` where
``image_offset`` is the tokenizer length after those additions, and the mask token is the last id.
With Phi-1.5's tokenizer and 8192 codes this gives the official 58,498 ids (image offset 50,305, mask 58,497).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from showo.errors import ShowoError

PAD_TOKEN = "[PAD]"
# The official order (training/prompting_utils.py): ids pad+1 .. pad+9.
SPECIAL_TOKENS = (
    "<|soi|>",
    "<|eoi|>",
    "<|sov|>",
    "<|eov|>",
    "<|t2i|>",
    "<|mmu|>",
    "<|t2v|>",
    "<|v2v|>",
    "<|lvg|>",
)
_SPECIAL_FIELDS = ("soi_id", "eoi_id", "sov_id", "eov_id", "t2i_id", "mmu_id", "t2v_id", "v2v_id", "lvg_id")


@dataclass(frozen=True)
class UnifiedVocab:
    """Every id the model core needs; ``size`` is the number of embedding rows and logit columns."""

    text_size: int
    pad_id: int
    bos_id: int
    eos_id: int
    soi_id: int
    eoi_id: int
    sov_id: int
    eov_id: int
    t2i_id: int
    mmu_id: int
    t2v_id: int
    v2v_id: int
    lvg_id: int
    image_offset: int
    codebook_size: int
    mask_id: int
    size: int

    @classmethod
    def extend_tokenizer(cls, tokenizer: Any, codebook_size: int) -> UnifiedVocab:
        """Add [PAD] and the task tokens to ``tokenizer`` (in place, official order) and derive every id.

        Idempotent: a tokenizer saved after extension (our checkpoints) already holds the tokens and yields
        the same vocabulary, with ``text_size`` = the [PAD] id.
        """
        if codebook_size < 1:
            raise ShowoError(f"codebook_size must be positive, got {codebook_size}")
        bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        if bos is None or eos is None:
            raise ShowoError(
                "the text tokenizer has no bos/eos token; Show-o needs both (Phi uses <|endoftext|>)"
            )
        if PAD_TOKEN not in tokenizer.get_added_vocab():
            tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        elif tokenizer.pad_token != PAD_TOKEN:
            tokenizer.pad_token = PAD_TOKEN
        added = tokenizer.get_added_vocab()
        missing = [t for t in SPECIAL_TOKENS if t not in added]
        if missing:
            tokenizer.add_tokens(missing)
        pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
        special = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
        if special != list(range(pad_id + 1, pad_id + 1 + len(SPECIAL_TOKENS))):
            raise ShowoError(
                f"tokenizer ids of [PAD] and the task tokens are not consecutive: {pad_id}, {special}"
            )
        image_offset = len(tokenizer)
        if image_offset != special[-1] + 1:
            raise ShowoError(f"tokenizer has tokens after the Show-o task tokens (len {image_offset})")
        size = image_offset + codebook_size + 1
        return cls(
            text_size=pad_id,
            pad_id=pad_id,
            bos_id=int(bos),
            eos_id=int(eos),
            **dict(zip(_SPECIAL_FIELDS, special)),
            image_offset=image_offset,
            codebook_size=codebook_size,
            mask_id=size - 1,
            size=size,
        )

    @property
    def num_new_tokens(self) -> int:
        """[PAD] + the task tokens (the official ``num_new_special_tokens``, 10)."""
        return self.image_offset - self.text_size

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnifiedVocab:
        names = {f.name for f in fields(cls)}
        if not isinstance(data, dict):
            raise ShowoError(f"vocabulary metadata must be a JSON object, not {type(data).__name__}")
        missing = names - data.keys()
        if missing:
            raise ShowoError(f"vocabulary metadata lacks {sorted(missing)}")
        bad = [k for k in sorted(names) if type(data[k]) is not int or not 0 <= data[k] < 2**31]
        if bad:
            raise ShowoError(
                f"vocabulary metadata: {bad[0]} must be an integer in 0..2^31-1, got {data[bad[0]]!r}"
            )
        vocab = cls(**{k: data[k] for k in names})
        if vocab.mask_id != vocab.size - 1 or vocab.size != vocab.image_offset + vocab.codebook_size + 1:
            raise ShowoError(f"inconsistent vocabulary metadata: {data}")
        return vocab

    def codes_to_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """Raw image codes 0..K-1 -> unified ids."""
        return codes.long() + self.image_offset

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Unified image ids -> raw codes (the mask id maps to ``codebook_size``; callers decide what to do)."""
        return ids.long() - self.image_offset

    def is_image(self, ids: torch.Tensor) -> torch.Tensor:
        """True at image-code ids (mask token excluded)."""
        return (ids >= self.image_offset) & (ids < self.mask_id)

    @property
    def image_slice(self) -> slice:
        """Logit columns of the image codes (mask column excluded), as the official sampler slices them."""
        return slice(self.image_offset, self.mask_id)
