"""Sources whose start-up does not grow per shard (issue 19): the jsonl line index is built in one pass
(offsets of every CHECKPOINT_EVERY-th line) and directory sources are listed once into an on-disk
index reused by every rank and resume. Both give the same inputs, in the same order, with the same
fingerprints as the in-memory versions they replaced (kept in `listing_reference`)."""

import hashlib
import json
import os
import pickle

import pytest

from data_engine import listing, sources
from data_engine.decode import Reject
from data_engine.paths import class_folders
from data_engine.sources import IMAGE_EXTENSIONS, open_source
from tests.data_engine import corpus
from tests.data_engine.listing_reference import digest_entries, read_lines, walk


def write_tree(root, outside) -> None:
    """Names that sort differently by path than by folder ('.' and '-' sort before '/'), captions with and
    without images, folders named like images, links out of the root, loops, non-ASCII names."""
    png = corpus.png_bytes(corpus.gradient(size=(40, 40)))
    files = {
        "a.png": png, "a.txt": b"caption a", "a.b.png": png, "a-b.jpg": png, "a/x.png": png,
        "a/x.json": b'{"caption": "x"}', "a/deeper/y.webp": png, "lonely.txt": b"no image",
        "notes.md": b"text", "dir.png/inner.jpg": png, "\u00fcn\u00ef.jpg": png, "Z.PNG": png,
        "b.jpg": png, "b.json": b'{"caption": "b"}', "c.png": png, "e/.hidden.png": png,
    }  # fmt: skip
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    os.symlink(outside, root / "out.png")
    os.symlink(root / "loop.png", root / "loop.png")
    os.symlink(root / "missing.png", root / "broken.png")
    os.symlink(root / "a", root / "link_to_a")
    os.symlink(outside, root / "evil.txt")  # a caption leading out, with no image
    os.symlink(root / "c.txt", root / "c.txt")  # a looping caption beside an image: read with it


@pytest.fixture
def outside(tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(corpus.png_bytes(corpus.gradient(seed=7)))
    return secret


def listed(source) -> list:
    return list(source.listing.entries(0, len(source)))


def test_pairs_listing_matches_the_in_memory_walk(tmp_path, outside):
    root = tmp_path / "src"
    root.mkdir()
    write_tree(root, outside)
    source = open_source(f"pairs:{root}")
    (tmp_path / "out").mkdir()
    source.attach(tmp_path / "out")
    expected = walk(root.resolve(), IMAGE_EXTENSIONS, frozenset({"txt", "json"}))
    assert [entry for _, entry in listed(source)] == expected
    assert len(expected) > 15 and {e.reason for e in expected} > {None, "outside_root", "symlink_loop"}
    assert source.fingerprint() == digest_entries(expected)
    for shard_size in (1, 4, 7, 100):  # units cover the listing in order, whatever their size
        got = [s.source for unit in source.units(shard_size) for s in source.samples(unit, 64)]
        assert got == [e.rel for e in expected]
    copy = pickle.loads(pickle.dumps(source))  # what a DataLoader worker gets: it opens its own connection
    assert [s.source for s in copy.samples(source.units(5)[1], 64)] == [e.rel for e in expected[5:10]]


def test_imagefolder_listing_matches_the_in_memory_walk(tmp_path, outside):
    root = tmp_path / "src"
    for name in ("cat/1.png", "cat/sub/2.png", "cat.x/3.png", "dog/4.jpg", "dog/5.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(corpus.png_bytes(corpus.gradient(size=(40, 40))))
    (root / "readme.txt").write_text("not a class")
    os.symlink(outside, root / "dog" / "out.png")
    (tmp_path / "out").mkdir()
    source = open_source(f"imagefolder:{root}")
    source.attach(tmp_path / "out")
    real = root.resolve()
    top = class_folders(real)
    expected = [(None, e) for e in top if e.reason is not None]
    for label, name in enumerate(e.rel for e in top if e.reason is None):
        expected += [(label, entry) for entry in walk(real, IMAGE_EXTENSIONS, under=name)]
    assert [(g - 1 if g else None, e) for g, e in listed(source)] == expected
    assert source.fingerprint() == digest_entries([e for _, e in expected])
    labels = [s.meta.get("label") for u in source.units(2) for s in source.samples(u, 64)]
    assert labels == [None, 0, 0, 1, 2, None, None]  # readme; cat x2; cat.x; dog: 4.jpg, 5.txt, out.png


def test_the_listing_is_made_once_and_redone_when_a_folder_changes(tmp_path, outside, monkeypatch):
    root = tmp_path / "src"
    root.mkdir()
    write_tree(root, outside)
    out = tmp_path / "out"
    out.mkdir()
    walks = []
    real_walk = listing._walk
    monkeypatch.setattr(listing, "_walk", lambda *a, **k: walks.append(1) or real_walk(*a, **k))
    first = open_source(f"pairs:{root}")
    first.attach(out)
    again = open_source(f"pairs:{root}")  # another rank, or a resume
    again.attach(out)
    assert len(walks) == 1 and again.fingerprint() == first.fingerprint()
    (root / "a" / "deeper" / "new.png").write_bytes(corpus.png_bytes(corpus.gradient(seed=3)))
    changed = open_source(f"pairs:{root}")
    changed.attach(out)
    assert len(walks) == 2 and changed.fingerprint() != first.fingerprint()
    assert len(changed) == len(first) + 1
    open_source(f"pairs:{root}").attach(out, relist=True)
    assert len(walks) == 3
    assert sorted(p.name for p in out.iterdir()) == [listing.index_file(out, first.spec).name]


LINES = [
    json.dumps({"image": "a.png", "caption": "first"}),
    "",
    "   ",
    "{not json",
    json.dumps({"image": "b.png", "caption": "caf\u00e9"}) + "\r",
    json.dumps({"caption": "no image"}),
    "\t",
    *[json.dumps({"image": f"{i}.png", "caption": f"n{i}"}) for i in range(17)],
    "[1, 2",
]


def as_comparable(records):
    return [(n, (r.reason, r.detail) if isinstance(r, Reject) else r) for n, r in records]


@pytest.mark.parametrize("trailing", ["\n", "", "\n\n\n"])
def test_jsonl_lines_and_fingerprint_match_the_per_shard_index(tmp_path, monkeypatch, trailing):
    monkeypatch.setattr(sources, "CHECKPOINT_EVERY", 4)  # several checkpoints in a small file
    path = tmp_path / "d.jsonl"
    path.write_bytes(("\n".join(LINES) + trailing).encode())
    source = open_source(f"jsonl:{path}")
    assert source.fingerprint() == hashlib.sha1(path.read_bytes()).hexdigest()
    assert len(source) == len(read_lines(path, 0, 10**6)) == 22
    for shard_size in (1, 3, 4, 5, 9, 100):
        for unit in source.units(shard_size):
            got = [(n, r) for _, n, r in source._records(unit)]
            assert as_comparable(got) == as_comparable(read_lines(path, unit.start, unit.stop)), unit


def test_partitions_share_one_listing_and_add_up_to_one_run(tmp_path, shards_tokenizer_dir, monkeypatch):
    from data_engine.build import BuildOptions, build

    corpus.write_pairs(tmp_path / "src")
    walks = []
    real_walk = listing._walk
    monkeypatch.setattr(listing, "_walk", lambda *a, **k: walks.append(1) or real_walk(*a, **k))
    common = {
        "resolution": 64,
        "workers": 0,
        "threads": 1,
        "batch_size": 4,
        "shard_size": 4,
        "progress": False,
    }
    options = {"source": f"pairs:{tmp_path / 'src'}", "tokenizer": str(shards_tokenizer_dir), **common}
    build(BuildOptions(out=str(tmp_path / "one"), **options))
    for rank in (0, 1):
        build(BuildOptions(out=str(tmp_path / "two"), rank=rank, world_size=2, **options))
    assert len(walks) == 2  # once per output directory, not once per partition
    names = sorted(p.name for p in (tmp_path / "one").glob("*.tar"))
    assert len(names) > 2
    for name in [*names, "manifest.jsonl", "dropped.jsonl"]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
