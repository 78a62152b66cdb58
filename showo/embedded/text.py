"""Language-modelling documents from CPython's `pydoc_data` topics (the offline text stream)."""

from __future__ import annotations

from showo.embedded.splits import check_split

# Every tenth topic (in sorted order) is held out for perplexity checks.
HELDOUT_EVERY = 10


def topics() -> dict[str, str]:
    """All pydoc topics, name -> text, as shipped with the running Python."""
    from pydoc_data.topics import topics as shipped

    return {name: shipped[name] for name in sorted(shipped)}


def documents(split: str = "train") -> list[str]:
    """The documents of a split, in sorted topic order; empty topics are dropped."""
    check_split(split)
    out = []
    for i, text in enumerate(topics().values()):
        if (i % HELDOUT_EVERY == HELDOUT_EVERY - 1) == (split == "heldout") and text.strip():
            out.append(text.strip())
    return out
