"""The one shard reader: only the members the shard contract names are decoded, without pickle; codes are
checked against the codebook and grid; every refusal is one line naming the shard and the member or key."""

from __future__ import annotations

import json

import numpy as np
import pytest

from showo.data.reader import CodeSpec, read_shards
from showo.errors import ShowoError
from tests.data.hostile import hostile_payloads, npy, write_tar

SPEC = CodeSpec(codebook_size=256, tokens=16, frames=False)


def good_sample(key: str, codes: np.ndarray | None = None) -> list[tuple[str, bytes]]:
    codes = np.arange(16, dtype=np.uint16) if codes is None else codes
    return [
        (f"{key}.codes.npy", npy(codes)),
        (f"{key}.txt", b"a red circle"),
        (f"{key}.json", json.dumps({"task": "image_text", "grid": [4, 4]}).encode()),
        (f"{key}.captions.json", json.dumps({"original": "a red circle", "recaptions": []}).encode()),
    ]


def read_all(path, spec=SPEC) -> list[dict]:
    return list(read_shards([str(path)], spec))


def one_line_error(path, spec=SPEC) -> str:
    with pytest.raises(ShowoError) as info:
        read_all(path, spec)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_contract_members_round_trip(tmp_path):
    latents = np.linspace(-1, 1, 8, dtype=np.float16)
    shard = write_tar(
        tmp_path / "ok.tar", [*good_sample("a"), ("a.latents.npy", npy(latents)), *good_sample("b")]
    )
    samples = read_all(shard)
    assert [s["__key__"] for s in samples] == ["a", "b"]
    assert set(samples[0]) == {
        "__key__",
        "__url__",
        "codes.npy",
        "txt",
        "json",
        "captions.json",
        "latents.npy",
    }
    assert np.array_equal(samples[0]["codes.npy"], np.arange(16)) and samples[0]["txt"] == "a red circle"
    assert np.array_equal(samples[0]["latents.npy"], latents) and samples[0]["json"]["grid"] == [4, 4]


@pytest.mark.parametrize("member", ["pyd", "pkl", "pth", "codes.npy"])
def test_pickle_members_never_run(tmp_path, member):
    marker = tmp_path / "marker"
    payload = hostile_payloads(marker)[member]
    members = [m for m in good_sample("evil") if m[0] != f"evil.{member}"] + [(f"evil.{member}", payload)]
    message = one_line_error(write_tar(tmp_path / "evil.tar", [*good_sample("a"), *members]))
    assert f"member evil.{member}" in message
    assert not marker.exists()


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("x.__evil__", b"data", "not a member the shard contract names"),
        ("x.npz", b"PK", "not a member the shard contract names"),
        ("x.codes.npy.gz", b"\x1f\x8b", "not a member the shard contract names"),
        ("x.txt", b"\xff\xfe", "not UTF-8"),
        ("x.json", b"[1, 2]", "must be a JSON object"),
        ("x.captions.json", b"{", "not valid JSON"),
        ("x.json", b"[" * 100_000 + b"]" * 100_000, "not valid JSON (nested too deeply"),
        ("x.latents.npy", npy(np.zeros(4, np.float32)), "float16"),
        ("x.codes.npy", b"\x93NUMPY garbage", "not a plain numpy array"),
    ],
)
def test_other_and_malformed_members_are_refused(tmp_path, name, data, reason):
    message = one_line_error(write_tar(tmp_path / "odd.tar", [*good_sample("a"), (name, data)]))
    assert name in message and reason in message


@pytest.mark.parametrize(
    "codes, reason",
    [
        (np.full(16, 256, np.uint16), "codes hold 256, outside 0..255"),
        (np.full(16, -1, np.int16), "codes hold -1, outside 0..255"),
        (np.zeros(16, np.float32), "dtype float32"),
        (np.zeros(16, bool), "dtype bool"),
        (np.zeros(15, np.uint16), "shape [15]"),
        (np.zeros((2, 16), np.uint16), "shape [2, 16]"),
        (np.zeros((), np.uint16), "shape []"),
    ],
)
def test_bad_codes_name_shard_key_and_problem(tmp_path, codes, reason):
    message = one_line_error(
        write_tar(tmp_path / "codes.tar", [*good_sample("a"), *good_sample("bad", codes)])
    )
    assert "'bad'" in message and reason in message


def test_keyframes_only_where_allowed(tmp_path):
    shard = write_tar(tmp_path / "frames.tar", good_sample("f", np.zeros((3, 16), np.uint16)))
    assert read_all(shard, CodeSpec(256, 16, frames=True))[0]["codes.npy"].shape == (3, 16)
    assert "codes hold no frames" in one_line_error(
        write_tar(tmp_path / "none.tar", good_sample("f", np.zeros((0, 16), np.uint16))),
        CodeSpec(256, 16, frames=True),
    )


def test_missing_and_broken_shards(tmp_path):
    assert "is gone" in one_line_error(tmp_path / "missing.tar")
    (tmp_path / "junk.tar").write_bytes(b"this is not a tar file" * 40)
    assert "not a readable shard" in one_line_error(tmp_path / "junk.tar")
    whole = write_tar(tmp_path / "whole.tar", good_sample("a") + good_sample("b"))
    (tmp_path / "cut.tar").write_bytes(whole.read_bytes()[:600])  # inside the first member
    assert "not a readable shard" in one_line_error(tmp_path / "cut.tar")
    twice = write_tar(tmp_path / "twice.tar", [*good_sample("a"), ("a.txt", b"again")])
    assert "duplicate" in one_line_error(twice)


def test_a_shard_named_like_a_pipe_is_read_as_a_file(tmp_path, monkeypatch):
    """webdataset opens "pipe:CMD" urls by running CMD in a shell; a shard file of that name is data."""
    monkeypatch.chdir(tmp_path)
    write_tar(tmp_path / "pipe:touch marker", good_sample("a"))
    assert [s["__key__"] for s in read_shards(["pipe:touch marker"], SPEC)] == ["a"]
    assert not (tmp_path / "marker").exists()
