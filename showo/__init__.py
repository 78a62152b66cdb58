"""Show-o training system: tokenizer, model, prompting, sampling and Lightning training.

``showo.ShowO`` is imported lazily so that ``import showo`` stays light (no torch/transformers at import).
"""

from typing import Any

__all__ = ["ShowO"]


def __getattr__(name: str) -> Any:
    if name == "ShowO":
        from showo.model import ShowO

        return ShowO
    raise AttributeError(f"module 'showo' has no attribute {name!r}")
