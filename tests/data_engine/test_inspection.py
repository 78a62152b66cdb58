"""`showo-data inspect` and `stats` read shards through the training reader: a hostile member runs nothing,
bad codes or a malformed manifest line end in one line with exit 2, and `stats --verify` checks every
sample's grid and every shard's sample count against the manifest, not only the sha256."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_engine.cli import main
from tests.data.hostile import hostile_payloads, npy, read_tar, write_tar


def tampered(shapes_shards: Path, out: Path, change) -> Path:
    """A copy of the shapes shards whose first shard's members went through `change`; its manifest line is
    rewritten to match (sha256, bytes, samples), as an attacker shipping both would do."""
    shutil.copytree(shapes_shards, out)
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    shard = out / lines[0]["shard"]
    write_tar(shard, change(read_tar(shard)))
    data = shard.read_bytes()
    samples = len({name.split(".", 1)[0] for name, _ in read_tar(shard)})
    lines[0].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), samples=samples)
    (out / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return out


def second_key(members: list[tuple[str, bytes]]) -> str:
    return sorted({name.split(".", 1)[0] for name, _ in members})[1]


def replace(member: str, payload: bytes):
    """A change that sets `member` of the second sample to `payload` (added after its other members)."""

    def change(members):
        key = second_key(members)
        kept = [(n, d) for n, d in members if n != f"{key}.{member}"]
        at = max(i for i, (n, _) in enumerate(kept) if n.startswith(key + ".")) + 1
        return [*kept[:at], (f"{key}.{member}", payload), *kept[at:]]

    return change


def error(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("showo-data: error: ") and "Traceback" not in err, err
    return err


COMMANDS = [["stats"], ["stats", "--verify"], ["inspect", "--grid", "GRID"]]


def run(capsys, command: list[str], directory: Path, tmp_path: Path) -> str:
    argv = [a.replace("GRID", str(tmp_path / "grid.png")) for a in command]
    return error(capsys, argv[0], str(directory), *argv[1:])


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("member", ["pyd", "pkl", "pth", "codes.npy"])
def test_pickle_members_run_nothing(capsys, tmp_path, shapes_shards, command, member):
    marker = tmp_path / "marker"
    directory = tampered(shapes_shards, tmp_path / "d", replace(member, hostile_payloads(marker)[member]))
    assert f".{member} is not" in run(capsys, command, directory, tmp_path)
    assert not marker.exists() and not (tmp_path / "grid.png").exists()


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize(
    "codes, reason",
    [
        (np.full(256, 1 << 15, np.uint16), "outside 0..255"),
        (np.zeros(256, np.float16), "dtype float16"),
        (np.zeros(255, np.uint16), "shape [255]"),
    ],
)
def test_bad_codes_are_one_line(capsys, tmp_path, shapes_shards, command, codes, reason):
    directory = tampered(shapes_shards, tmp_path / "d", replace("codes.npy", npy(codes)))
    assert reason in run(capsys, command, directory, tmp_path)


def test_verify_checks_each_sample_grid_against_the_manifest(capsys, tmp_path, shapes_shards):
    def regrid(members):
        key = second_key(members)
        meta = json.loads(dict(members)[f"{key}.json"])
        return replace("json", json.dumps({**meta, "grid": [8, 32]}).encode())(members)

    directory = tampered(shapes_shards, tmp_path / "d", regrid)  # same token count, another grid
    assert main(["stats", str(directory)]) == 0
    capsys.readouterr()
    assert "says grid [8, 32], the manifest says [16, 16]" in error(
        capsys, "stats", str(directory), "--verify"
    )


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_an_unknown_sample_kind_is_one_line(capsys, tmp_path, shapes_shards, command):
    def rekind(members):
        key = second_key(members)
        meta = json.loads(dict(members)[f"{key}.json"])
        return replace("json", json.dumps({**meta, "task": "t2i"}).encode())(members)

    directory = tampered(shapes_shards, tmp_path / "d", rekind)  # a stream name is not a sample kind
    assert "needs a json task, one of image_text, class" in run(capsys, command, directory, tmp_path)


def test_verify_checks_sample_counts(capsys, tmp_path, shapes_shards):
    directory = tampered(shapes_shards, tmp_path / "d", lambda members: members)
    lines = (directory / "manifest.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    lines[0] = json.dumps({**first, "samples": first["samples"] + 1})
    (directory / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    assert "holds 16 samples, the manifest says 17" in error(capsys, "stats", str(directory), "--verify")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"shard": "../outside.tar"}, "is not a plain file name"),
        ({"shard": "/etc/passwd"}, "is not a plain file name"),
        ({"grid": [8, 8]}, "the grid needs [64]"),
        ({"grid": "16x16"}, "not two positive integers"),
        (
            {"tokenizer": {"path": "x", "identity": "y", "codebook_size": 10**12}},
            "not an integer in 1..65536",
        ),
        ({"samples": "many"}, "non-negative integer samples"),
    ],
)
def test_malformed_manifest_lines(capsys, tmp_path, shapes_shards, change, message):
    directory = tmp_path / "d"
    shutil.copytree(shapes_shards, directory)
    lines = [json.loads(line) for line in (directory / "manifest.jsonl").read_text().splitlines()]
    shutil.copy(directory / lines[0]["shard"], tmp_path / "outside.tar")  # what "../outside.tar" would reach
    lines[0].update(change)
    (directory / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert message in error(capsys, "stats", str(directory))
