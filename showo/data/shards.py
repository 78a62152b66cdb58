"""Shard lists from recipe patterns: globs and brace ranges, checked up front so a typo fails before training."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

from webdataset.shardlists import expand_urls

from showo.errors import ShowoError

GLOB_CHARS = set("*?[")


def expand_shards(patterns: Sequence[str], key: str) -> list[str]:
    """Every shard file the patterns name, in a stable order; `key` names the recipe field in errors."""
    urls: list[str] = []
    for pattern in patterns:
        if GLOB_CHARS & set(pattern):
            found = sorted(glob.glob(pattern))
            if not found:
                raise ShowoError(f"{key}: no shard matches {pattern!r}")
            urls += found
            continue
        for url in expand_urls(pattern):
            if not Path(url).is_file():
                raise ShowoError(f"{key}: shard {url} does not exist")
            urls.append(url)
    if not urls:
        raise ShowoError(f"{key}: no shards listed")
    return urls
