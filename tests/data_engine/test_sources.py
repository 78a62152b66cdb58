"""Every source kind writes the sample layout of the shard contract (docs/interfaces.md, "Shards")."""

import json

import numpy as np
import pytest
import webdataset as wds

from data_engine.build import BuildOptions, build
from data_engine.sources import open_source
from showo.embedded import shapes
from showo.errors import ShowoError
from tests.data_engine import corpus


def run(source: str, out, tokenizer, **kw) -> dict:
    options = {"resolution": 64, "workers": 0, "batch_size": 8, "progress": False, "threads": 1, **kw}
    return build(BuildOptions(source=source, out=str(out), tokenizer=str(tokenizer), **options))


def samples(directory) -> list[dict]:
    return list(wds.WebDataset(sorted(str(p) for p in directory.glob("*.tar")), shardshuffle=False).decode())


def test_jsonl_source(tmp_path, shards_tokenizer_dir):
    images = tmp_path / "images"
    images.mkdir()
    lines = []
    for i in range(3):
        (images / f"{i}.jpg").write_bytes(corpus.jpeg_bytes(corpus.gradient(seed=i)))
        lines.append(json.dumps({"image": f"images/{i}.jpg", "caption": f"picture {i}"}))
    lines.insert(1, "{not json")
    lines.insert(2, "[" * 100_000 + "]" * 100_000)  # too deep for the parser: rejected like bad JSON
    lines.append(json.dumps({"caption": "no image"}))
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n\n")
    report = run(f"jsonl:{tmp_path / 'data.jsonl'}", tmp_path / "out", shards_tokenizer_dir)
    assert (report["inputs"], report["written"]) == (6, 3)
    assert report["rejected_by_reason"] == {"bad_json_line": 2, "missing_image": 1}
    assert [s["txt"] for s in samples(tmp_path / "out")] == ["picture 0", "picture 1", "picture 2"]


def test_imagefolder_source_gives_class_samples(tmp_path, shards_tokenizer_dir):
    for name in ("golden_retriever", "tabby"):
        (tmp_path / "src" / name).mkdir(parents=True)
        for i in range(2):
            (tmp_path / "src" / name / f"{i}.png").write_bytes(
                corpus.png_bytes(corpus.gradient(seed=i + len(name)))
            )
    run(f"imagefolder:{tmp_path / 'src'}", tmp_path / "out", shards_tokenizer_dir)
    got = [
        (s["json"]["task"], s["json"]["label"], s["json"]["class_name"], s["txt"])
        for s in samples(tmp_path / "out")
    ]
    assert (
        got
        == [("class", 0, "golden retriever", "golden retriever")] * 2 + [("class", 1, "tabby", "tabby")] * 2
    )


def test_text_source_is_lm_without_codes(tmp_path, shards_tokenizer_dir):
    (tmp_path / "t.jsonl").write_text(
        json.dumps({"text": "first document"}) + "\n" + json.dumps({"x": 1}) + "\n"
    )
    report = run(f"text:{tmp_path / 't.jsonl'}", tmp_path / "out", shards_tokenizer_dir)
    assert report["rejected_by_reason"] == {"missing_text": 1}
    (sample,) = samples(tmp_path / "out")
    assert "codes.npy" not in sample and sample["txt"] == "first document"
    assert sample["json"]["task"] == "lm"


def test_llava_source_keeps_conversations(tmp_path, shards_tokenizer_dir):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(corpus.jpeg_bytes(corpus.gradient()))
    turns = [{"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "A gradient."}]
    items = [
        {"id": "1", "image": "a.jpg", "conversations": turns},
        {"id": "2", "conversations": turns},
        {"id": "3", "image": "a.jpg", "conversations": turns[:1]},
    ]
    (tmp_path / "llava.json").write_text(json.dumps(items))
    report = run(
        f"llava:{tmp_path / 'llava.json'}",
        tmp_path / "out",
        shards_tokenizer_dir,
        image_root=str(tmp_path / "img"),
    )
    assert report["rejected_by_reason"] == {"bad_conversation": 1, "missing_image": 1}
    (sample,) = samples(tmp_path / "out")
    assert sample["json"]["task"] == "instruct" and sample["json"]["conversations"] == turns
    assert sample["txt"] == "A gradient."


def test_embedded_shapes_captions_are_exact(shapes_shards):
    first = samples(shapes_shards)[0]
    rng = shapes.scene_rng("train", 0)
    scene = shapes.sample_scene(rng)
    assert first["txt"] == shapes.caption(scene)
    assert first["json"]["qa"] == [list(qa) for qa in shapes.questions(scene, rng)]
    assert first["json"]["task"] == "image_text" and first["codes.npy"].shape == (256,)


def test_embedded_instruct_digits_keyframes_text(
    instruct_shards, digits_shards, keyframe_shards, text_shards
):
    instruct = samples(instruct_shards)[0]
    assert instruct["json"]["task"] == "instruct"
    assert instruct["json"]["conversations"][0]["from"] == "human"
    digit = samples(digits_shards)[0]
    assert digit["json"]["task"] == "class" and digit["txt"] == digit["json"]["class_name"]
    frames = samples(keyframe_shards)[0]
    assert frames["json"]["task"] == "mixed"
    assert frames["codes.npy"].shape == (4, 256) and frames["codes.npy"].dtype == np.uint16
    assert len(frames["json"]["frame_captions"]) == 4
    doc = samples(text_shards)[0]
    assert doc["json"]["task"] == "lm" and len(doc["txt"]) > 20
    for directory in (instruct_shards, digits_shards, keyframe_shards, text_shards):
        assert len(list(directory.glob("*.tar"))) >= 2


def test_template_recaptioner_records_the_exact_caption(tmp_path, shards_tokenizer_dir):
    run("embedded:shapes", tmp_path / "out", shards_tokenizer_dir, limit=2, recaptioner="template")
    sample = samples(tmp_path / "out")[0]
    assert sample["captions.json"]["recaptions"] == [
        {"captioner": "template", "prompt": None, "text": sample["txt"]}
    ]
    (tmp_path / "x.jsonl").write_text("")
    with pytest.raises(ShowoError, match="template recaptioner"):
        run(f"jsonl:{tmp_path / 'x.jsonl'}", tmp_path / "o2", shards_tokenizer_dir, recaptioner="template")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nokind", "must look like KIND:PATH"),
        ("video:/x", "unknown source kind 'video'"),
        ("pairs:/does/not/exist", "not a directory"),
        ("embedded:cats", "unknown embedded source 'cats'"),
        ("wds:/nowhere/*.tar", "matches no tar files"),
        ("llava:/nowhere.json", "not a file"),
    ],
)
def test_bad_source_specs(spec, message):
    with pytest.raises(ShowoError, match=message):
        open_source(spec)


def test_training_reader_builds_a_batch_of_every_task_from_our_shards(
    shapes_shards, digits_shards, text_shards, instruct_shards, keyframe_shards, tiny_showo
):
    from showo.data.datamodule import ShowoDataModule
    from showo.recipe.schema import DataConfig, StreamConfig

    def stream(directory, **kw):
        return StreamConfig(shards=[str(directory / "*.tar")], batch_size=2, **kw)

    streams = {
        "t2i": stream(shapes_shards),
        "c2i": stream(digits_shards),
        "lm": stream(text_shards),
        "mmu": stream(shapes_shards, questions=["Describe the image."]),
        "instruct": stream(instruct_shards),
        "mixed": stream(keyframe_shards, max_frames=2),
    }
    data = DataConfig(resolution=64, num_workers=0, shuffle_buffer=4, streams=streams)
    module = ShowoDataModule(data, tiny_showo.prompter(0.0, max_frames=2), seed=0, segment_steps=4)
    batch, _, _ = next(iter(module.train_dataloader()))
    assert set(batch) == set(streams)
    vocab = tiny_showo.vocab
    for task, rows in batch.items():
        ids = rows["input_ids"]
        assert ids.shape[0] == 2 and int(ids.max()) < vocab.size, task
        if task != "lm":
            assert bool(((ids >= vocab.image_offset) & (ids < vocab.mask_id)).any()), task
