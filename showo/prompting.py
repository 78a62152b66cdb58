"""Sequence layouts for every Show-o task (docs/official-differences.md#prompting).

All rows of the classic tasks have length ``L = M + N + 3`` (M = ``max_text_len``, N = ``num_image_tokens``)
so t2i, lm, mmu and instruct rows concatenate into one batch. ``image_ids`` are already offset into the
unified vocabulary (``vocab.image_offset + code``, or ``vocab.mask_id``). Labels use -100 where the official
code puts it; text ids are tokenized without the tokenizer's own special tokens and BOS is prepended by hand.

Layouts (P = [PAD], ``text`` = the tokenized text):

- ``t2i``:  ``P.. [t2i][bos] text [eos] [soi] img(N) [eoi]``, the text block (task token included) left-padded
  to M+1, or cut to M tokens plus [eos]. Labels: the same with image labels inside and -100 at pads
  (text labels are kept, as officially; the MTP loss slice starts at the SOI position M+1).
  Classifier-free-guidance dropout replaces a prompt by the null prompt ``[t2i][bos][eos]`` with probability
  ``cond_dropout_prob`` (one ``torch.rand`` draw per row from the passed generator).
- ``t2i_gen``: the t2i layout, no dropout, no labels. The unconditional rows are ``t2i_gen([""] * B, ...)``.
- ``lm``:   ``[bos] text [eos] P..`` right-padded to L (labels -100 on pads), or the first L tokens (no eos).
- ``mmu``:  ``[mmu][soi] img [eoi] [bos] text [eos] P..``, text block right-padded to M or cut to M-1 + [eos];
  labels -100 on the first N+3 positions and on pads.
- ``instruct``: ``[mmu][soi] img [eoi] USER: q1 ASSISTANT: a1[eos]USER: q2 ...`` (LLaVA ``phi1.5`` template,
  no BOS, ``<image>`` removed), right-padded/cut to M; labels only on the answers and their [eos].
  Turns are tokenized segment by segment, which for byte-level BPE equals tokenizing the joined text.
- ``mmu_gen``: ``P.. [mmu][soi] img [eoi][bos] "USER: \\n{q} ASSISTANT:"``, LEFT-padded to L so every row
  ends at the same position for batched decoding (text kept to its last M tokens); with
  ``template="instruct"`` the text is the instruction-tuning form ``"USER: {q} ASSISTANT:"`` without BOS.
- ``mixed`` (our design; the official code has no training layout for it):
  ``[lvg][bos] cap_1 [soi] img_1 [eoi] cap_2 [soi] img_2 [eoi] ... [eos] P..`` with length
  ``M + 1 + F * (N + 2)`` for ``F = max_frames`` (= L when F = 1); the text (bos, captions, eos, pads) shares
  the M budget, each caption cut to ``(M - 2) // F`` tokens. Its labels are ALIGNED to the logits
  (``labels[p]`` is the target of ``logits[p]``; the loss takes them without a shift): text tokens
  (captions, [soi], the final [eos]) are next-token targets placed one position earlier; with the MTP image
  objective each image position carries its own MTP label (no identity targets at soi/eoi), with the AR
  objective the image tokens and [eoi] are next-token targets like text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from showo.errors import ShowoError
from showo.vocab import UnifiedVocab

IGNORE = -100
# Understanding prompts for decoding (`Prompter.mmu_gen`): the captioning rows' form or the instruction-tuning one.
PROMPT_TEMPLATES = ("mmu", "instruct")


def _as_rows(x: torch.Tensor | Sequence, n: int, name: str) -> list[list[int]]:
    rows = [list(map(int, r)) for r in (x.tolist() if isinstance(x, torch.Tensor) else x)]
    for r in rows:
        if len(r) != n:
            raise ShowoError(f"{name} rows must have {n} image tokens, got {len(r)}")
    return rows


class Prompter:
    """Builds input ids and labels for each task; see the module docstring for the exact layouts."""

    def __init__(
        self,
        tokenizer: Any,
        vocab: UnifiedVocab,
        max_text_len: int,
        num_image_tokens: int,
        cond_dropout_prob: float = 0.0,
        max_frames: int = 1,
    ) -> None:
        if max_text_len < 3:
            raise ShowoError(f"max_text_len must be at least 3, got {max_text_len}")
        if max_frames < 1:
            raise ShowoError(f"max_frames must be at least 1, got {max_frames}")
        self.tokenizer = tokenizer
        self.vocab = vocab
        self.max_text_len = max_text_len
        self.num_image_tokens = num_image_tokens
        self.cond_dropout_prob = cond_dropout_prob
        self.max_frames = max_frames

    @property
    def seq_len(self) -> int:
        """L = M + N + 3, the length of every t2i / lm / mmu / instruct / mmu_gen row."""
        return self.max_text_len + self.num_image_tokens + 3

    @property
    def mixed_len(self) -> int:
        return self.max_text_len + 1 + self.max_frames * (self.num_image_tokens + 2)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Tokenize without the tokenizer's special tokens (BOS is placed by the layouts)."""
        if not texts:
            return []
        return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def _with_bos(self, ids: list[int]) -> list[int]:
        return ids if ids and ids[0] == self.vocab.bos_id else [self.vocab.bos_id, *ids]

    def _t2i_text(self, ids: list[int]) -> list[int]:
        v, m = self.vocab, self.max_text_len
        temp = [v.t2i_id, *self._with_bos(ids), v.eos_id]
        if len(temp) <= m + 1:
            return [v.pad_id] * (m + 1 - len(temp)) + temp
        return [*temp[:m], v.eos_id]

    def _check_batch(self, texts: Sequence, image_ids: Any) -> None:
        if len(texts) != len(image_ids):
            raise ShowoError(f"got {len(texts)} texts for {len(image_ids)} images")

    def t2i(
        self,
        texts: Sequence[str],
        image_ids: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training t2i rows with CFG condition dropout; ``labels`` holds image targets (-100 elsewhere)."""
        self._check_batch(texts, image_ids)
        v, n = self.vocab, self.num_image_tokens
        drop = torch.rand(len(texts), generator=generator) < self.cond_dropout_prob
        tokens = self.tokenize(["" if d else t for t, d in zip(texts, drop.tolist())])
        imgs, labs = _as_rows(image_ids, n, "image_ids"), _as_rows(labels, n, "labels")
        ids_out, lab_out = [], []
        for t, img, lab in zip(tokens, imgs, labs):
            text = self._t2i_text(t)
            ids_out.append([*text, v.soi_id, *img, v.eoi_id])
            lab_out.append([IGNORE if x == v.pad_id else x for x in text] + [v.soi_id, *lab, v.eoi_id])
        return torch.tensor(ids_out, dtype=torch.long), torch.tensor(lab_out, dtype=torch.long)

    def t2i_gen(self, texts: Sequence[str], image_ids: torch.Tensor) -> torch.Tensor:
        """Generation rows (image ids all mask, or partly for inpainting); no dropout, no labels."""
        self._check_batch(texts, image_ids)
        v = self.vocab
        rows = [
            [*self._t2i_text(t), v.soi_id, *img, v.eoi_id]
            for t, img in zip(self.tokenize(texts), _as_rows(image_ids, self.num_image_tokens, "image_ids"))
        ]
        return torch.tensor(rows, dtype=torch.long)

    def lm(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded language-modelling rows of length L."""
        v, total = self.vocab, self.seq_len
        ids_out, lab_out = [], []
        for t in self.tokenize(texts):
            temp = [*self._with_bos(t), v.eos_id]
            if len(temp) <= total:
                ids_out.append(temp + [v.pad_id] * (total - len(temp)))
                lab_out.append(temp + [IGNORE] * (total - len(temp)))
            else:
                ids_out.append(temp[:total])
                lab_out.append(temp[:total])
        return torch.tensor(ids_out, dtype=torch.long), torch.tensor(lab_out, dtype=torch.long)

    def _mmu_rows(
        self, image_ids: torch.Tensor, texts: list[list[int]], labels: list[list[int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.vocab
        prefix_ignore = [IGNORE] * (self.num_image_tokens + 3)
        ids_out, lab_out = [], []
        for img, t, lab in zip(_as_rows(image_ids, self.num_image_tokens, "image_ids"), texts, labels):
            ids_out.append([v.mmu_id, v.soi_id, *img, v.eoi_id, *t])
            lab_out.append(prefix_ignore + [IGNORE if x == v.pad_id else x for x in lab])
        return torch.tensor(ids_out, dtype=torch.long), torch.tensor(lab_out, dtype=torch.long)

    def mmu(self, image_ids: torch.Tensor, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Captioning / VQA rows: every text token (prompt included, BOS too) is a target."""
        self._check_batch(texts, image_ids)
        v, m = self.vocab, self.max_text_len
        blocks = []
        for t in self.tokenize(texts):
            temp = [*self._with_bos(t), v.eos_id]
            blocks.append(
                temp + [v.pad_id] * (m - len(temp)) if len(temp) <= m else [*temp[: m - 1], v.eos_id]
            )
        return self._mmu_rows(image_ids, blocks, blocks)

    def conversation_tokens(self, conversation: Sequence[dict]) -> tuple[list[int], list[int]]:
        """LLaVA ``phi1.5`` template ids and labels (instruction turns -100), before padding."""
        ids: list[int] = []
        labels: list[int] = []
        for turn in conversation:
            role, value = turn.get("from"), str(turn.get("value", "")).replace("<image>", "").strip()
            if role == "human":
                seg = self.tokenize([f"USER: {value} ASSISTANT:"])[0]
                ids += seg
                labels += [IGNORE] * len(seg)
            elif role == "gpt":
                seg = [*self.tokenize([f" {value}"])[0], self.vocab.eos_id]
                ids += seg
                labels += seg
            else:
                raise ShowoError(f"conversation turn has role {role!r}; expected 'human' or 'gpt'")
        return ids, labels

    def instruct(
        self, image_ids: torch.Tensor, conversations: Sequence[Sequence[dict]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Instruction-tuning rows (the official VQ path): answers supervised, instructions masked."""
        self._check_batch(conversations, image_ids)
        v, m = self.vocab, self.max_text_len
        blocks, labels = [], []
        for conv in conversations:
            ids, lab = self.conversation_tokens(conv)
            blocks.append((ids + [v.pad_id] * m)[:m])
            labels.append((lab + [IGNORE] * m)[:m])
        return self._mmu_rows(image_ids, blocks, labels)

    def mmu_gen(
        self, image_ids: torch.Tensor, questions: Sequence[str], template: str = "mmu"
    ) -> torch.Tensor:
        """Left-padded understanding prompts for decoding; generated tokens follow position L-1.

        ``template``: ``"mmu"`` is the official VQ inference prompt (``[bos] "USER: \\n{q} ASSISTANT:"``, the
        captioning rows' form); ``"instruct"`` is the instruction-tuning form (``"USER: {q} ASSISTANT:"``, no
        BOS). The official code prompts instruction-tuned models with the first (a mismatch), which a
        tiny model does not survive; an evaluation records which one it used.
        """
        if template not in PROMPT_TEMPLATES:
            raise ShowoError(
                f"unknown prompt template {template!r}; expected one of {', '.join(PROMPT_TEMPLATES)}"
            )
        self._check_batch(questions, image_ids)
        v, m = self.vocab, self.max_text_len
        rows = []
        if template == "mmu":  # BOS, then the question's last M-1 tokens
            prompts = self.tokenize([f"USER: \n{q} ASSISTANT:" for q in questions])
            texts = [[v.bos_id, *q[max(0, len(q) - (m - 1)) :]] for q in prompts]
        else:
            prompts = self.tokenize([f"USER: {q.strip()} ASSISTANT:" for q in questions])
            texts = [q[max(0, len(q) - m) :] for q in prompts]
        for img, text in zip(_as_rows(image_ids, self.num_image_tokens, "image_ids"), texts):
            rows.append([v.pad_id] * (m - len(text)) + [v.mmu_id, v.soi_id, *img, v.eoi_id, *text])
        return torch.tensor(rows, dtype=torch.long)

    def mixed(
        self,
        frames_ids: Sequence[torch.Tensor] | torch.Tensor,
        captions: Sequence[Sequence[str]],
        labels: Sequence[torch.Tensor] | torch.Tensor | None = None,
        next_token_images: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Interleaved caption/frame rows (length ``mixed_len``) with ALIGNED labels (module docstring).

        ``frames_ids[b]`` is ``[F_b, N]`` unified ids (masked for MTP), ``captions[b]`` has ``F_b`` strings,
        ``labels[b]`` the MTP image labels (-100 where not masked); without labels no image position is an
        MTP target. With ``next_token_images`` (the AR objective) the frames must be unmasked and become
        next-token targets, and ``labels`` must be None.
        """
        if next_token_images and labels is not None:
            raise ShowoError("next-token image targets take no in-place labels")
        if len(frames_ids) != len(captions):
            raise ShowoError(f"got {len(captions)} caption lists for {len(frames_ids)} frame sequences")
        v, n, m, f_max = self.vocab, self.num_image_tokens, self.max_text_len, self.max_frames
        budget = (m - 2) // f_max
        ids_out, lab_out = [], []
        for b, (frames, caps) in enumerate(zip(frames_ids, captions)):
            frames_rows = _as_rows(frames, n, "frames_ids")
            if len(frames_rows) != len(caps) or not 1 <= len(caps) <= f_max:
                raise ShowoError(
                    f"mixed sample {b}: {len(frames_rows)} frames, {len(caps)} captions, max {f_max}"
                )
            frame_labels = (
                _as_rows(labels[b], n, "labels") if labels is not None else [[IGNORE] * n] * len(caps)
            )
            ids = [v.lvg_id, v.bos_id]
            is_text = [False, False]  # is the position a next-token target?
            mtp = [IGNORE, IGNORE]
            for cap, img, lab in zip(self.tokenize(caps), frames_rows, frame_labels):
                cap = cap[:budget]
                ids += [*cap, v.soi_id, *img, v.eoi_id]
                is_text += [True] * (len(cap) + 1) + [next_token_images] * (n + 1)
                mtp += [IGNORE] * (len(cap) + 1) + lab + [IGNORE]
            ids.append(v.eos_id)
            is_text.append(True)
            mtp.append(IGNORE)
            pad = self.mixed_len - len(ids)
            ids += [v.pad_id] * pad
            is_text += [False] * pad
            mtp += [IGNORE] * pad
            aligned = [ids[p + 1] if is_text[p + 1] else mtp[p] for p in range(len(ids) - 1)] + [mtp[-1]]
            ids_out.append(ids)
            lab_out.append(aligned)
        return torch.tensor(ids_out, dtype=torch.long), torch.tensor(lab_out, dtype=torch.long)
