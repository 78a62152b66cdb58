"""Hostile shard members shared by the reader, training and inspection tests: pickles whose loading
creates a marker file, so a test that never sees the marker knows no pickle ran."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch


class Plant:
    """Unpickling this calls `open(marker, "w")`: the marker file appears exactly when a pickle is loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def hostile_payloads(marker: Path) -> dict[str, bytes]:
    """Member suffix -> bytes that run code when webdataset's default decoders read them."""
    pth = io.BytesIO()
    torch.save(Plant(marker), pth)
    objects = io.BytesIO()
    np.save(objects, np.array([Plant(marker)], dtype=object), allow_pickle=True)
    return {
        "pyd": pickle.dumps(Plant(marker)),
        "pkl": pickle.dumps(Plant(marker)),
        "pth": pth.getvalue(),
        "codes.npy": objects.getvalue(),  # an object array: np.load runs its pickle unless allow_pickle=False
    }


def npy(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array, allow_pickle=False)
    return stream.getvalue()


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """A plain tar of (name, bytes) members, in order (webdataset groups consecutive names by key)."""
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def read_tar(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isreg()]
