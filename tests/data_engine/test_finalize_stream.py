"""`finalize` streams its records (issue 19): on synthetic records it writes the same manifest, report,
dropped list and repeats list, byte for byte, as the in-memory version it replaced (kept verbatim in
`finalize_reference`), including repeats across shards, repeats inside one shard and non-ASCII text."""

import json
import random

import pytest

from data_engine.manifest import DATASET_FILES, INDEX_FILE, finalize
from data_engine.writer import dumps_json, record_path
from tests.data_engine.finalize_reference import reference_finalize

SETTINGS = {
    "source": "pairs:/data/ünïcode",
    "dedup": "sha1",
    "tokenizer": {"path": "/t", "identity": "abc", "codebook_size": 8192},
    "transform": {"name": "showo_transform"},
    "resolution": 64,
    "grid": [16, 16],
    "captioner": {"id": "keep"},
}
REASONS = ("not_an_image", "too_small", "duplicate", "missing_caption", "outside_root")


def synthetic_build(out, shards: int, per_shard: int, seed: int, spans: bool = True) -> list:
    """Records as `write_shard` leaves them: sha1s drawn from a small pool so that repeats happen across
    shards and within one shard, drops of several reasons, overlapping and resumed time spans."""
    rng = random.Random(seed)
    pool = [f"{rng.getrandbits(160):040x}" for _ in range(max(2, shards * per_shard // 3))]
    (out / "records").mkdir(parents=True)
    paths = []
    for unit in range(shards):
        shard = f"data-{unit:06d}"
        sha1 = {f"{shard}-{pos:06d}": rng.choice(pool) for pos in range(per_shard) if rng.random() < 0.8}
        dropped = [
            {"position": pos, "source": f"dossier/é{pos}.jpg", "reason": rng.choice(REASONS), "detail": "x"}
            for pos in range(per_shard)
            if f"{shard}-{pos:06d}" not in sha1
        ]
        start = rng.uniform(0, 100) + (1000 if unit % 3 == 0 else 0)
        record = {
            "unit": unit,
            "source": {"spec": SETTINGS["source"], "unit": unit, "start": unit * per_shard},
            "inputs": per_shard,
            "tasks": {"image_text": len(sha1)} if unit % 4 else {"image_text": len(sha1) - 1, "lm": 1},
            "dropped": dropped,
            "images": len(sha1),
            "sha1": sha1,
            **({"started": start, "finished": start + rng.uniform(0.5, 30)} if spans else {}),
            "shard": f"{shard}.tar",
            "samples": len(sha1),
            "bytes": rng.randrange(10**9),
            "sha256": f"{rng.getrandbits(256):064x}",
        }
        path = out / f"{shard}.tar"
        record_path(path).write_bytes(dumps_json(record))
        paths.append(path)
    return paths


@pytest.mark.parametrize("shards, per_shard, seed", [(1, 5, 0), (7, 40, 1), (40, 25, 2), (3, 0, 3)])
def test_streaming_finalize_writes_the_bytes_of_the_in_memory_one(tmp_path, shards, per_shard, seed):
    paths = synthetic_build(tmp_path, shards, per_shard, seed)
    expected = reference_finalize(SETTINGS, paths)
    report = finalize(tmp_path, SETTINGS, paths)
    got = {name: (tmp_path / name).read_bytes() for name in expected}
    assert got == expected
    assert report == json.loads(expected["report.json"])
    if shards * per_shard > 100:
        assert report["duplicates_across_shards"] > 0 and expected["duplicates_across_shards.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*expected, "records"])


def test_records_without_time_spans_and_a_single_shard_repeat(tmp_path):
    paths = synthetic_build(tmp_path, 5, 30, 4, spans=False)
    expected = reference_finalize(SETTINGS, paths)
    assert json.loads(expected["report.json"])["images_per_s"] is None
    finalize(tmp_path, SETTINGS, paths)
    assert {name: (tmp_path / name).read_bytes() for name in expected} == expected


@pytest.mark.parametrize("damage", ["missing", "not_json"])
def test_an_unfinished_build_writes_nothing(tmp_path, damage):
    paths = synthetic_build(tmp_path, 6, 10, 5)
    if damage == "missing":
        record_path(paths[3]).unlink()
    else:
        record_path(paths[3]).write_bytes(b'{"shard": "data-0000')
    assert reference_finalize(SETTINGS, paths) is None
    assert finalize(tmp_path, SETTINGS, paths) is None
    assert [p.name for p in tmp_path.iterdir()] == ["records"]  # no dataset file, no temporary
    assert INDEX_FILE in DATASET_FILES
