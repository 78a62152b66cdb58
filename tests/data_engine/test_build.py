"""End-to-end builds: the bad-file corpus is fully accounted for, webdataset reads the shards, codes equal
a direct tokenizer call on the original pixels, partitions add up to one run, 128 px gives 32x32."""

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from data_engine.build import BuildOptions, build
from showo.errors import ShowoError
from showo.tokenizer import load_image_tokenizer
from showo.tokenizer.transform import showo_transform
from tests.data_engine import corpus


def run(source: str, out: Path, tokenizer: Path, **kw) -> dict:
    options = {
        "resolution": 64,
        "workers": 0,
        "batch_size": 4,
        "shard_size": 5,
        "progress": False,
        "threads": 1,
        **kw,
    }
    return build(BuildOptions(source=source, out=str(out), tokenizer=str(tokenizer), **options))


def read(directory: Path) -> list[dict]:
    urls = sorted(str(p) for p in directory.glob("*.tar"))
    return list(wds.WebDataset(urls, shardshuffle=False).decode())


def dropped(directory: Path) -> dict[str, str]:
    lines = (directory / "dropped.jsonl").read_text().splitlines()
    return {json.loads(line)["source"]: json.loads(line)["reason"] for line in lines}


def reference_codes(tokenizer, image: Image.Image, resolution: int) -> np.ndarray:
    pixels, _ = showo_transform(image, resolution)
    return tokenizer.encode(pixels[None])[0].numpy()


@pytest.fixture(scope="module")
def tokenizer(shards_tokenizer_dir):
    return load_image_tokenizer(shards_tokenizer_dir)


def test_bad_corpus_pairs_every_input_accounted(tmp_path, shards_tokenizer_dir, tokenizer):
    expected = corpus.write_pairs(tmp_path / "src")
    report = run(
        f"pairs:{tmp_path / 'src'}", tmp_path / "out", shards_tokenizer_dir, workers=1, shard_size=20
    )
    assert report["inputs"] == len(expected)
    assert report["written"] + report["rejected"] + report["duplicates"] == report["inputs"]
    assert dropped(tmp_path / "out") == {name: reason for name, reason in expected.items() if reason}
    assert report["duplicates"] == 1
    assert sum(report["rejected_by_reason"].values()) == report["rejected"]

    samples = read(tmp_path / "out")
    by_source = {s["json"]["source"]: s for s in samples}
    assert set(by_source) == {name for name, reason in expected.items() if reason is None}
    good = by_source["good.jpg"]
    assert good["txt"] == "a smooth gradient"
    assert good["captions.json"] == {"original": "a smooth gradient", "recaptions": []}
    assert good["codes.npy"].dtype == np.uint16 and good["codes.npy"].shape == (256,)
    data = (tmp_path / "src" / "good.jpg").read_bytes()
    assert good["json"]["sha1"] == hashlib.sha1(data).hexdigest()
    assert good["json"]["orig_size"] == list(corpus.GOOD_SIZE)
    assert good["json"]["grid"] == [16, 16]
    original = Image.open(io.BytesIO(data)).convert("RGB")
    assert np.array_equal(good["codes.npy"], reference_codes(tokenizer, original, 64))
    assert by_source["exif.jpg"]["json"]["orig_size"] == [64, 96]
    pixels = tokenizer.decode(torch.from_numpy(good["codes.npy"].astype(np.int64))[None], grid=(16, 16))
    assert pixels.shape == (1, 3, 64, 64)


def test_bad_corpus_raw_tar_with_unsafe_members(tmp_path, shards_tokenizer_dir):
    expected = corpus.write_tar(tmp_path / "raw-0000.tar")
    report = run(f"wds:{tmp_path}/raw-*.tar", tmp_path / "out", shards_tokenizer_dir)
    assert report["inputs"] == len(expected)
    assert report["written"] + report["rejected"] + report["duplicates"] == report["inputs"]
    assert report["shards"] == 1  # one output shard per input tar
    reasons = dropped(tmp_path / "out")
    assert sorted(reasons.values()) == sorted(r for r in expected.values() if r)
    assert report["rejected_by_reason"]["unsafe_member_name"] == 2
    assert not (tmp_path / "escape.jpg").exists()
    written = {s["json"]["source"].split(":", 1)[1] for s in read(tmp_path / "out")}
    assert written == {key for key, reason in expected.items() if reason is None}


def test_128px_path_gives_32x32_codes_from_the_original_pixels(tmp_path, shards_tokenizer_dir, tokenizer):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "good.jpg").write_bytes(corpus.jpeg_bytes(corpus.gradient()))
    (tmp_path / "src" / "good.txt").write_text("a smooth gradient")
    run(f"pairs:{tmp_path / 'src'}", tmp_path / "out", shards_tokenizer_dir, resolution=128)
    sample = next(s for s in read(tmp_path / "out") if s["json"]["source"] == "good.jpg")
    assert sample["codes.npy"].shape == (1024,)
    assert sample["json"]["grid"] == [32, 32]
    original = Image.open(tmp_path / "src" / "good.jpg").convert("RGB")
    assert np.array_equal(sample["codes.npy"], reference_codes(tokenizer, original, 128))
    manifest = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert {m["resolution"] for m in manifest} == {128} and manifest[0]["grid"] == [32, 32]


def test_two_partitions_equal_one_run(tmp_path, shards_tokenizer_dir):
    args = ("embedded:shapes", shards_tokenizer_dir)
    single = run(args[0], tmp_path / "one", args[1], limit=10, shard_size=3)
    first = run(args[0], tmp_path / "two", args[1], limit=10, shard_size=3, rank=0, world_size=2)
    assert first["complete"] is False and not (tmp_path / "two" / "manifest.jsonl").exists()
    second = run(args[0], tmp_path / "two", args[1], limit=10, shard_size=3, rank=1, world_size=2)
    assert single["shards"] == 4 and single["written"] == 10
    for key in ("inputs", "written", "rejected", "duplicates", "shards"):
        assert second[key] == single[key]
    one = {s["__key__"]: s["codes.npy"].tobytes() + s["txt"].encode() for s in read(tmp_path / "one")}
    two = {s["__key__"]: s["codes.npy"].tobytes() + s["txt"].encode() for s in read(tmp_path / "two")}
    assert one == two
    for shard in (tmp_path / "one").glob("*.tar"):
        assert shard.read_bytes() == (tmp_path / "two" / shard.name).read_bytes()
    assert (tmp_path / "one" / "manifest.jsonl").read_bytes() == (
        tmp_path / "two" / "manifest.jsonl"
    ).read_bytes()


def test_torchrun_environment_selects_the_partition(tmp_path, shards_tokenizer_dir, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    result = run("embedded:shapes", tmp_path / "out", shards_tokenizer_dir, limit=12, shard_size=2)
    assert result == {"partition": [1, 3], "shards_done": 2, "complete": False}
    assert sorted(p.name for p in (tmp_path / "out").glob("*.tar")) == [
        "shapes-000001.tar",
        "shapes-000004.tar",
    ]


def test_duplicates_in_other_shards_are_written_and_listed(tmp_path, shards_tokenizer_dir):
    corpus.write_pairs(tmp_path / "src")
    report = run(f"pairs:{tmp_path / 'src'}", tmp_path / "out", shards_tokenizer_dir, shard_size=5)
    assert report["duplicates"] == 0 and report["duplicates_across_shards"] == 1
    assert report["written"] + report["rejected"] == report["inputs"]
    line = json.loads((tmp_path / "out" / "duplicates_across_shards.jsonl").read_text())
    keys = {s["__key__"]: s["json"]["source"] for s in read(tmp_path / "out")}
    assert {keys[line["key"]], keys[line["first"]]} == {"good.jpg", "zz_copy_of_good.jpg"}


def test_code_dedup_catches_identical_pixels_in_different_files(tmp_path, shards_tokenizer_dir):
    src = tmp_path / "src"
    src.mkdir()
    image = corpus.gradient()
    image.save(src / "a.png", compress_level=1)
    image.save(src / "b.png", compress_level=9)  # other bytes, same pixels
    for name in ("a", "b"):
        (src / f"{name}.txt").write_text("same picture")
    sha = run(f"pairs:{src}", tmp_path / "sha", shards_tokenizer_dir)
    codes = run(f"pairs:{src}", tmp_path / "codes", shards_tokenizer_dir, dedup="codes")
    assert (sha["written"], sha["duplicates"]) == (2, 0)
    assert (codes["written"], codes["duplicates"]) == (1, 1)
    line = json.loads((tmp_path / "codes" / "dropped.jsonl").read_text())
    assert line["source"] == "b.png" and line["detail"] == "codes of a.png"


def test_rerun_with_other_settings_is_refused(tmp_path, shards_tokenizer_dir):
    run("embedded:shapes", tmp_path / "out", shards_tokenizer_dir, limit=4)
    again = run("embedded:shapes", tmp_path / "out", shards_tokenizer_dir, limit=4)
    assert again["written"] == 4
    with pytest.raises(ShowoError, match="other settings .*resolution"):
        run("embedded:shapes", tmp_path / "out", shards_tokenizer_dir, limit=4, resolution=128)


def test_tampered_shard_is_rebuilt(tmp_path, shards_tokenizer_dir):
    run("embedded:shapes", tmp_path / "out", shards_tokenizer_dir, limit=8, shard_size=4)
    shard = tmp_path / "out" / "shapes-000001.tar"
    original = shard.read_bytes()
    shard.write_bytes(original[:1024])
    run("embedded:shapes", tmp_path / "out", shards_tokenizer_dir, limit=8, shard_size=4)
    assert shard.read_bytes() == original


def test_worker_count_does_not_change_the_bytes(tmp_path, shards_tokenizer_dir):
    corpus.write_pairs(tmp_path / "src")
    run(f"pairs:{tmp_path / 'src'}", tmp_path / "w0", shards_tokenizer_dir, shard_size=3, workers=0)
    run(f"pairs:{tmp_path / 'src'}", tmp_path / "w2", shards_tokenizer_dir, shard_size=3, workers=2)
    names = sorted(p.name for p in (tmp_path / "w0").glob("*.tar"))
    assert len(names) == 5 and names == sorted(p.name for p in (tmp_path / "w2").glob("*.tar"))
    for name in [*names, "manifest.jsonl", "dropped.jsonl"]:
        assert (tmp_path / "w0" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes()


def test_truncated_tar_keeps_what_it_could_read(tmp_path, shards_tokenizer_dir):
    corpus.write_tar(tmp_path / "whole.tar")
    data = (tmp_path / "whole.tar").read_bytes()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "cut-0000.tar").write_bytes(data[: len(data) // 2 + 100])
    report = run(f"wds:{tmp_path}/src/*.tar", tmp_path / "out", shards_tokenizer_dir)
    assert report["rejected_by_reason"]["corrupt_tar"] == 1
    assert report["written"] >= 1
    assert report["written"] + report["rejected"] + report["duplicates"] == report["inputs"]


def test_tar_members_have_fixed_metadata_and_dotless_keys(shapes_shards):
    import tarfile

    with tarfile.open(sorted(shapes_shards.glob("*.tar"))[0]) as tar:
        members = tar.getmembers()
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {
        (0, 0, 0, "showo", "showo", 0o444)
    }
    assert {m.name.split(".", 1)[1] for m in members} == {"codes.npy", "txt", "captions.json", "json"}
    assert all("." not in m.name.split(".", 1)[0] and "/" not in m.name for m in members)


def test_rerun_over_changed_inputs_is_refused(tmp_path, shards_tokenizer_dir):
    corpus.write_pairs(tmp_path / "src")
    run(f"pairs:{tmp_path / 'src'}", tmp_path / "out", shards_tokenizer_dir)
    (tmp_path / "src" / "late.png").write_bytes(corpus.png_bytes(corpus.gradient(seed=9)))
    with pytest.raises(ShowoError, match="source_fingerprint"):
        run(f"pairs:{tmp_path / 'src'}", tmp_path / "out", shards_tokenizer_dir)
