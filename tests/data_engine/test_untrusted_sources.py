"""Sources read nothing outside their root: `..`, absolute names and symlinks leading out are rejected
with `outside_root` (counted in report.json, never encoded); every other skipped entry is counted with
its reason; a UTF-8 byte-order mark never reaches a caption; the decompression-bomb guard cannot be off."""

import hashlib
import io
import json
import os
import tarfile

import pytest
import webdataset as wds
from PIL import Image

from data_engine.build import BuildOptions, build
from data_engine.decode import Reject, decode_image
from data_engine.paths import resolve_under
from showo.errors import ShowoError
from tests.data_engine import corpus

SECRET_CAPTION = "the secret caption outside the root"


def run(source: str, out, tokenizer, **kw) -> dict:
    options = {"resolution": 64, "workers": 0, "batch_size": 8, "progress": False, "threads": 1, **kw}
    return build(BuildOptions(source=source, out=str(out), tokenizer=str(tokenizer), **options))


def samples(directory) -> list[dict]:
    return list(wds.WebDataset(sorted(str(p) for p in directory.glob("*.tar")), shardshuffle=False).decode())


def dropped(directory) -> dict[str, str]:
    lines = (directory / "dropped.jsonl").read_text().splitlines()
    return {json.loads(line)["source"]: json.loads(line)["reason"] for line in lines}


@pytest.fixture
def outside(tmp_path):
    """A folder beside the source root holding an image and a caption that must never reach a shard."""
    folder = tmp_path / "outside"
    folder.mkdir()
    data = corpus.png_bytes(corpus.gradient(seed=7))
    (folder / "secret.png").write_bytes(data)
    (folder / "secret.txt").write_text(SECRET_CAPTION)
    return folder, hashlib.sha1(data).hexdigest()


def assert_never_encoded(out, secret_sha1: str) -> None:
    """No shard holds the outside image (by the sha1 of its bytes) or the outside caption; the only
    tar members are the contract's."""
    for sample in samples(out):
        assert sample["json"]["sha1"] != secret_sha1
        assert SECRET_CAPTION not in sample["txt"]
    for shard in out.glob("*.tar"):
        assert SECRET_CAPTION.encode() not in shard.read_bytes()


def good_image(directory, name: str, seed: int) -> None:
    (directory / name).write_bytes(corpus.png_bytes(corpus.gradient(seed=seed)))


def test_jsonl_upward_absolute_and_symlinked_paths_are_outside_root(tmp_path, shards_tokenizer_dir, outside):
    folder, secret_sha1 = outside
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    good_image(root, "good.png", 1)
    good_image(root / "sub", "inner.png", 2)
    (root / "link.png").symlink_to(folder / "secret.png")
    (root / "sub" / "uplink").symlink_to(folder)
    lines = [
        {"image": "good.png", "caption": "kept"},
        {"image": "sub/../sub/inner.png", "caption": "an upward step is refused even inside"},
        {"image": "../outside/secret.png", "caption": "upward"},
        {"image": str(folder / "secret.png"), "caption": "absolute"},
        {"image": "link.png", "caption": "file symlink out"},
        {"image": "sub/uplink/secret.png", "caption": "directory symlink out"},
        {"image": "sub/inner.png", "caption": "also kept"},
    ]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    report = run(f"jsonl:{tmp_path / 'data.jsonl'}", out, shards_tokenizer_dir, image_root=str(root))
    assert report["rejected_by_reason"] == {"outside_root": 5}
    assert report["written"] == 2
    assert [s["txt"] for s in samples(out)] == ["kept", "also kept"]
    assert set(dropped(out)) == {line["image"] for line in lines[1:6]}
    assert_never_encoded(out, secret_sha1)


def test_jsonl_without_image_root_stays_in_the_file_folder(tmp_path, shards_tokenizer_dir, outside):
    folder, secret_sha1 = outside
    (tmp_path / "src").mkdir()
    good_image(tmp_path / "src", "a.png", 3)
    lines = [{"image": "a.png", "caption": "kept"}, {"image": "../outside/secret.png", "caption": "up"}]
    (tmp_path / "src" / "d.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = run(f"jsonl:{tmp_path / 'src' / 'd.jsonl'}", tmp_path / "out", shards_tokenizer_dir)
    assert (report["written"], report["rejected_by_reason"]) == (1, {"outside_root": 1})
    assert_never_encoded(tmp_path / "out", secret_sha1)


def test_llava_upward_absolute_and_symlinked_paths_are_outside_root(tmp_path, shards_tokenizer_dir, outside):
    folder, secret_sha1 = outside
    root = tmp_path / "img"
    root.mkdir()
    good_image(root, "a.png", 4)
    (root / "link.png").symlink_to(folder / "secret.png")
    turns = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A gradient."}]
    names = ["a.png", "../outside/secret.png", str(folder / "secret.png"), "link.png"]
    items = [{"id": str(i), "image": name, "conversations": turns} for i, name in enumerate(names)]
    (tmp_path / "llava.json").write_text(json.dumps(items))
    out = tmp_path / "out"
    report = run(f"llava:{tmp_path / 'llava.json'}", out, shards_tokenizer_dir, image_root=str(root))
    assert report["rejected_by_reason"] == {"outside_root": 3}
    (sample,) = samples(out)
    assert sample["json"]["source"] == "0:a.png"
    assert_never_encoded(out, secret_sha1)


def test_pairs_count_every_skipped_entry_and_read_nothing_outside(tmp_path, shards_tokenizer_dir, outside):
    folder, secret_sha1 = outside
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    good_image(src, "good.png", 5)
    (src / "good.txt").write_text("kept")
    good_image(src / "nested", "deep.png", 6)
    (src / "nested" / "deep.txt").write_text("kept too")
    (src / "escape.png").symlink_to(folder / "secret.png")  # image leading out
    (src / "escape.txt").write_text("caption of the escaping image")
    good_image(src, "stolen_caption.png", 8)
    (src / "stolen_caption.txt").symlink_to(folder / "secret.txt")  # caption leading out
    (src / "loop.png").symlink_to(src / "loop.png")  # a symlink loop named like an image
    (src / "up").symlink_to(src)  # a folder link to its own parent: a loop
    (src / "again").symlink_to(src / "nested")  # a folder link inside the root: not descended
    (src / "out_dir").symlink_to(folder)  # a folder link out of the root
    (src / "folder.png").mkdir()  # a directory named like an image
    good_image(src / "folder.png", "inside_folder.png", 9)
    (src / "folder.png" / "inside_folder.txt").write_text("kept from inside folder.png")
    (src / "notes.md").write_text("not an image")
    (src / "orphan.txt").write_text("a caption without an image")
    os.mkfifo(src / "pipe.jpg")  # reading it would block forever
    out = tmp_path / "out"
    report = run(f"pairs:{src}", out, shards_tokenizer_dir)
    assert dropped(out) == {
        "escape.png": "outside_root",
        "stolen_caption.png": "outside_root",
        "loop.png": "symlink_loop",
        "up": "symlink_loop",
        "again": "symlinked_directory",
        "out_dir": "outside_root",
        "folder.png": "not_a_file",
        "notes.md": "unsupported_type",
        "orphan.txt": "caption_without_image",
        "pipe.jpg": "not_a_file",
    }
    assert report["inputs"] == report["written"] + report["rejected"] == 13
    assert sorted(s["txt"] for s in samples(out)) == ["kept", "kept from inside folder.png", "kept too"]
    assert_never_encoded(out, secret_sha1)


def test_imagefolder_links_out_of_the_root_are_rejected(tmp_path, shards_tokenizer_dir, outside):
    folder, secret_sha1 = outside
    src = tmp_path / "src"
    (src / "cat").mkdir(parents=True)
    good_image(src / "cat", "0.png", 10)
    (src / "cat" / "1.png").symlink_to(folder / "secret.png")
    (src / "dog").symlink_to(folder)  # a whole class leading out
    (src / "stray.png").write_bytes(corpus.png_bytes(corpus.gradient(seed=11)))  # outside any class
    out = tmp_path / "out"
    report = run(f"imagefolder:{src}", out, shards_tokenizer_dir)
    assert dropped(out) == {
        "cat/1.png": "outside_root",
        "dog": "outside_root",
        "stray.png": "unsupported_type",
    }
    (sample,) = samples(out)
    assert (sample["json"]["label"], sample["txt"]) == (0, "cat")
    assert report["inputs"] == 4
    assert_never_encoded(out, secret_sha1)


def test_resolve_under_refuses_escapes_and_reads_inside(tmp_path):
    root = tmp_path / "r"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.png").write_bytes(b"x")
    (root / "inside.png").symlink_to(root / "a" / "x.png")
    real = root.resolve()
    assert resolve_under(real, "a/x.png") == real / "a" / "x.png"
    assert resolve_under(real, "inside.png") == real / "a" / "x.png"
    for name, reason in [
        ("../r/a/x.png", "outside_root"),
        ("a/../a/x.png", "outside_root"),
        (str(real / "a" / "x.png"), "outside_root"),
        ("a", "not_a_file"),
        ("a/x.png\x00.jpg", "unreadable_file"),
        ("missing.png", "unreadable_file"),
    ]:
        with pytest.raises(Reject) as err:
            resolve_under(real, name)
        assert err.value.reason == reason, name


def test_byte_order_marks_are_stripped_from_every_caption_kind(tmp_path, shards_tokenizer_dir):
    bom = "\ufeff"
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    good_image(pairs, "a.png", 12)
    (pairs / "a.txt").write_bytes((bom + "caption from a txt file\n").encode())
    good_image(pairs, "b.png", 13)
    (pairs / "b.json").write_bytes((bom + json.dumps({"caption": bom + "caption from json"})).encode())
    run(f"pairs:{pairs}", tmp_path / "o1", shards_tokenizer_dir)
    assert [s["txt"] for s in samples(tmp_path / "o1")] == ["caption from a txt file", "caption from json"]

    lines = (bom + json.dumps({"image": "a.png", "caption": bom + "jsonl caption"}) + "\n").encode()
    (pairs / "d.jsonl").write_bytes(lines)
    run(f"jsonl:{pairs / 'd.jsonl'}", tmp_path / "o2", shards_tokenizer_dir)
    (sample,) = samples(tmp_path / "o2")
    assert sample["txt"] == "jsonl caption" and sample["captions.json"]["original"] == "jsonl caption"

    (tmp_path / "t.jsonl").write_bytes((bom + json.dumps({"text": bom + "a document"}) + "\n").encode())
    run(f"text:{tmp_path / 't.jsonl'}", tmp_path / "o3", shards_tokenizer_dir)
    assert [s["txt"] for s in samples(tmp_path / "o3")] == ["a document"]

    turns = [{"from": "human", "value": bom + "<image>\nWhat?"}, {"from": "gpt", "value": bom + "An answer."}]
    (tmp_path / "l.json").write_bytes(
        (bom + json.dumps([{"image": "a.png", "conversations": turns}])).encode()
    )
    run(f"llava:{tmp_path / 'l.json'}", tmp_path / "o4", shards_tokenizer_dir, image_root=str(pairs))
    (sample,) = samples(tmp_path / "o4")
    assert sample["txt"] == "An answer."
    assert [t["value"] for t in sample["json"]["conversations"]] == ["<image>\nWhat?", "An answer."]

    (tmp_path / "raw").mkdir()
    with tarfile.open(tmp_path / "raw" / "r-0.tar", "w") as tar:
        for name, data in [
            ("k.png", (pairs / "a.png").read_bytes()),
            ("k.txt", (bom + "tar caption").encode()),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    run(f"wds:{tmp_path / 'raw'}/*.tar", tmp_path / "o5", shards_tokenizer_dir)
    assert [s["txt"] for s in samples(tmp_path / "o5")] == ["tar caption"]
    for out in ("o1", "o2", "o3", "o4", "o5"):
        for shard in (tmp_path / out).glob("*.tar"):
            assert bom.encode() not in shard.read_bytes(), out


def test_bomb_guard_holds_when_pillow_limit_is_switched_off(monkeypatch, tmp_path, shards_tokenizer_dir):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # what some libraries do on import
    with pytest.raises(Reject) as err:
        decode_image(corpus.bomb_png())
    assert err.value.reason == "decompression_bomb"
    src = tmp_path / "src"
    src.mkdir()
    (src / "bomb.png").write_bytes(corpus.bomb_png())
    (src / "bomb.txt").write_text("a bomb")
    report = run(f"pairs:{src}", tmp_path / "out", shards_tokenizer_dir)
    assert report["rejected_by_reason"] == {"decompression_bomb": 1} and report["written"] == 0
    with pytest.raises(ShowoError, match="--max-pixels must be in 1..89478485"):
        run(f"pairs:{src}", tmp_path / "o2", shards_tokenizer_dir, max_pixels=10**12)


def test_image_root_that_is_a_file_is_one_error(tmp_path, shards_tokenizer_dir):
    (tmp_path / "d.jsonl").write_text(json.dumps({"image": "a.png", "caption": "x"}) + "\n")
    with pytest.raises(ShowoError, match="--image-root .* is not a directory"):
        run(
            f"jsonl:{tmp_path / 'd.jsonl'}",
            tmp_path / "out",
            shards_tokenizer_dir,
            image_root=str(tmp_path / "d.jsonl"),
        )
