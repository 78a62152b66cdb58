"""Show-o losses (docs/official-differences.md#losses), with the official ``[-0:]`` slice bug fixed.

Batch forms accepted by ``showo_loss``:

1. concatenated: ``logits [B, L, V]``, ``labels [B, L]`` and ``layout`` = a mapping ``task -> row count`` in
   row order (e.g. ``{"t2i": 4, "lm": 2, "mmu": 2}``; counts must sum to B; a count may be 0);
2. per task: ``logits`` and ``labels`` are dicts ``task -> tensor`` (rows of one task share a length, tasks
   may differ, e.g. multi-frame ``mixed``) and ``layout`` is None.

Per-task rule (each a token mean over that task's whole sub-batch, cross-entropy over the full vocabulary in
float32). Every task's labels are first turned into targets aligned to the logit position that predicts
them; only those positions are kept (``gather_labelled``), so training can apply the LM head there alone:

- ``t2i`` / ``c2i``: the image objective places the targets (``ImageObjective.image_targets``, see
  ``showo.objectives``): MTP at positions ``M+1 ..`` (SOI, the N image positions, EOI) with NO shift, SOI and
  EOI carrying identity targets, so a row contributes #masked + 2 targets (official); AR one position
  earlier (each image token and EOI predicted from the position before it). ``max_text_len`` (M) is
  required for these tasks.
- ``lm`` / ``mmu`` / ``instruct``: shifted next-token prediction over the row.
- ``mixed``: labels are already aligned to the logits (``Prompter.mixed``), so no shift.

``loss`` = sum over tasks of ``coeffs[task] * loss_task`` (a missing coefficient is 1.0; the official
recipes use t2i 1.0, lm 0.1, mmu 1.0). A task with no rows contributes nothing and has no ``loss_<task>`` or
``tokens_<task>`` entry (the official ``logits[-0:]`` picked the whole batch); rows without any target give a
loss of 0. ``tokens_<task>`` is the denominator (e.g. #masked + 2 per t2i row).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

from showo.errors import ShowoError
from showo.tasks import GENERATION_TASKS, INTERLEAVED_TASKS, TASKS, TEXT_TASKS

IGNORE = -100
OFFICIAL_COEFFS = {"t2i": 1.0, "lm": 0.1, "mmu": 1.0}


def aligned_targets(
    task: str, labels: torch.Tensor, max_text_len: int | None = None, image_objective: Any = None
) -> torch.Tensor:
    """Targets placed at the logit position that predicts them (-100 elsewhere), per the module rules.

    ``image_objective``: an objective, its name, or None (MTP), as ``showo.objectives.get`` takes.
    """
    if task in GENERATION_TASKS:
        from showo import objectives

        if max_text_len is None:
            raise ShowoError(f"the {task} loss needs max_text_len (M) to find the image slice")
        return objectives.get(image_objective).image_targets(labels, max_text_len)
    out = torch.full_like(labels, IGNORE)
    if task in TEXT_TASKS:
        out[:, :-1] = labels[:, 1:]
    elif task in INTERLEAVED_TASKS:
        out.copy_(labels)
    else:
        raise ShowoError(f"unknown loss task {task!r}; expected one of {', '.join(TASKS)}")
    return out


def _groups(
    logits: torch.Tensor | Mapping[str, torch.Tensor],
    labels: torch.Tensor | Mapping[str, torch.Tensor],
    layout: Mapping[str, int] | None,
) -> list[tuple[torch.Tensor, torch.Tensor, list[tuple[str, int, int]]]]:
    """[(logits, labels, [(task, first row, row count), ...]), ...]: one group per logits tensor."""
    if layout is None:
        if not isinstance(logits, Mapping) or not isinstance(labels, Mapping):
            raise ShowoError("without a layout, logits and labels must be dicts of per-task tensors")
        if logits.keys() != labels.keys():
            raise ShowoError(f"logits tasks {sorted(logits)} differ from labels tasks {sorted(labels)}")
        return [(logits[t], labels[t], [(t, 0, logits[t].shape[0])]) for t in logits]
    if isinstance(logits, Mapping) or isinstance(labels, Mapping):
        raise ShowoError("with a layout, logits and labels must be single concatenated tensors")
    total = sum(layout.values())
    if total != logits.shape[0] or total != labels.shape[0]:
        raise ShowoError(
            f"layout has {total} rows but the batch has {logits.shape[0]} logits, {labels.shape[0]} labels"
        )
    spans, row = [], 0
    for task, n in layout.items():
        if n < 0:
            raise ShowoError(f"layout row count for {task} is negative ({n})")
        spans.append((task, row, n))
        row += n
    return [(logits, labels, spans)]


@dataclass
class Labelled:
    """Logits at the positions that carry a target, in task order: ``logits [K, V]``, ``targets [K]``.

    ``tasks`` lists ``(task, K_task)`` for every task with rows; ``anchor`` keeps a graph for an empty batch;
    ``image_values`` holds continuous targets ``[K_task, D]`` of tasks whose image targets are not token ids
    (the diffusion objective's noise or velocity per image position), in the order of the positions.
    """

    logits: torch.Tensor
    targets: torch.Tensor
    tasks: list[tuple[str, int]]
    anchor: torch.Tensor
    image_values: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def by_task(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        parts = zip(
            self.logits.split([n for _, n in self.tasks]), self.targets.split([n for _, n in self.tasks])
        )
        return {task: part for (task, _), part in zip(self.tasks, parts)}

    def with_head(self, head: Callable[[torch.Tensor], torch.Tensor]) -> Labelled:
        """The same positions with ``head`` applied to their states (e.g. hidden states -> logits)."""
        return replace(self, logits=head(self.logits)) if self.tasks else self


def gather_labelled(
    states: torch.Tensor | Mapping[str, torch.Tensor],
    labels: torch.Tensor | Mapping[str, torch.Tensor],
    layout: Mapping[str, int] | None,
    head: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    max_text_len: int | None = None,
    image_objective: Any = None,
) -> Labelled:
    """Pick the positions with a target and apply ``head`` (the LM head) there only.

    ``states`` are logits (``head`` None) or final hidden states. The LM head over the unified vocabulary
    is most of a small model's step, and most positions carry no target (unmasked image tokens, prompts,
    padding), so training projects only the labelled positions: same loss, a fraction of the work.
    """
    picked, targets, tasks = [], [], []
    anchor: torch.Tensor | None = None
    for st, lb, spans in _groups(states, labels, layout):
        if st.shape[:2] != lb.shape:
            raise ShowoError(f"logits {tuple(st.shape)} do not match labels {tuple(lb.shape)}")
        anchor = st if anchor is None else anchor
        for task, row, n in spans:
            if n == 0:
                continue
            aligned = aligned_targets(task, lb[row : row + n], max_text_len, image_objective)
            keep = aligned != IGNORE
            picked.append(st[row : row + n][keep])
            targets.append(aligned[keep])
            tasks.append((task, targets[-1].numel()))
    if anchor is None:
        raise ShowoError("the loss got an empty batch")
    if not picked:
        return Labelled(
            anchor.new_zeros(0, 0), torch.zeros(0, dtype=torch.long, device=anchor.device), [], anchor
        )
    chosen = torch.cat(picked)
    return Labelled(chosen if head is None else head(chosen), torch.cat(targets), tasks, anchor)


def labelled_loss(labelled: Labelled, coeffs: Mapping[str, float] | None = None) -> dict[str, torch.Tensor]:
    """Weighted sum of per-task token means (cross-entropy over the full vocabulary in float32)."""
    coeffs = coeffs or {}
    out: dict[str, torch.Tensor] = {}
    total = labelled.anchor.sum() * 0.0  # keeps a graph so backward works on every rank
    if labelled.tasks:
        logits = labelled.logits
        ce = F.cross_entropy(
            logits if logits.dtype == torch.float32 else logits.float(), labelled.targets, reduction="none"
        )
        for (task, n), part in zip(labelled.tasks, ce.split([n for _, n in labelled.tasks])):
            out[f"tokens_{task}"] = torch.tensor(n, device=ce.device)
            out[f"loss_{task}"] = part.sum() / max(n, 1)  # 0 for rows without any target
            total = total + coeffs.get(task, 1.0) * out[f"loss_{task}"]
    out["loss"] = total
    return out


def showo_loss(
    logits: torch.Tensor | Mapping[str, torch.Tensor],
    labels: torch.Tensor | Mapping[str, torch.Tensor],
    layout: Mapping[str, int] | None,
    coeffs: Mapping[str, float] | None = None,
    *,
    max_text_len: int | None = None,
    image_objective: Any = None,
) -> dict[str, torch.Tensor]:
    """Weighted sum of per-task token means from full logits; see the module docstring for batch forms."""
    picked = gather_labelled(
        logits, labels, layout, max_text_len=max_text_len, image_objective=image_objective
    )
    return labelled_loss(picked, coeffs)
