"""The one list of training task names and the groups the losses and objectives read.

Stream order is the order of ``TASKS``: it fixes each stream's seed (``task_index``) and the row order of
the concatenated forward, so new tasks are appended, never inserted.
"""

from __future__ import annotations

TASKS: tuple[str, ...] = ("t2i", "c2i", "lm", "mmu", "instruct", "mixed")
"""Stream names: text-to-image, class-conditional t2i, language modelling, captioning, LLaVA-style
instruction conversations, mixed-modality (interleaved keyframes and captions)."""

GENERATION_TASKS: tuple[str, ...] = ("t2i", "c2i")
"""One image after a text prompt: the image objective supplies the image targets."""
TEXT_TASKS: tuple[str, ...] = ("lm", "mmu", "instruct")
"""Shifted next-token prediction over the row's text."""
INTERLEAVED_TASKS: tuple[str, ...] = ("mixed",)
"""Captions and frames alternating; the prompter aligns the labels to the logits."""
IMAGE_TASKS: tuple[str, ...] = GENERATION_TASKS + INTERLEAVED_TASKS
"""Tasks whose images the objective prepares and scores; the others keep their own rows and masks."""

SAMPLE_KINDS: tuple[str, ...] = ("image_text", "class", "lm", "instruct", "mixed")
"""What one shard sample holds: the ``task`` field of its json, written by the data engine. A kind is not
a stream: a recipe points streams at shards (``image_text`` shards feed ``t2i`` and ``mmu``, ``class``
shards ``c2i``); the last three kinds are read by the stream of the same name."""
