"""config.json and weights of a model directory from someone else: validated before anything is allocated,
and every fault is one line naming the file."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from showo.errors import ShowoError
from showo.model import ShowO
from showo.tokenizer.model import load_image_tokenizer


def one_line(call, match: str) -> str:
    with pytest.raises(ShowoError, match=match) as err:
        call()
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_showo):
    return tiny_showo.save_pretrained(tmp_path_factory.mktemp("exported"))


@pytest.fixture
def model_dir(exported, tmp_path):
    return shutil.copytree(exported, tmp_path / "model")


def edit_config(path, **changes):
    data = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    (path / "config.json").write_text(json.dumps(data))


@pytest.mark.parametrize("text", ["[1, 2]", "42", '"showo"', "{not json", "", "[" * 100_000 + "]" * 100_000])
def test_config_that_is_not_a_json_object(model_dir, text):
    (model_dir / "config.json").write_text(text)
    assert "config.json" in one_line(lambda: ShowO.from_pretrained(model_dir), "config")


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"llm.hidden_size": 10**9}, "hidden_size"),
        ({"llm.vocab_size": 2**22, "llm.hidden_size": 2**16, "llm.num_hidden_layers": 1000}, "parameters"),
        ({"llm.num_hidden_layers": 1000}, "are stored"),  # within bounds, far beyond the stored weights
        ({"llm.hidden_size": "64"}, "hidden_size"),
        ({"llm.num_attention_heads": 0}, "num_attention_heads"),
        ({"llm.rope_parameters.partial_rotary_factor": "x"}, "partial_rotary_factor"),
        ({"codebook_size": -1}, "codebook_size"),
        ({"codebook_size": True}, "codebook_size"),
        ({"num_image_tokens": 10**12}, "num_image_tokens"),
        ({"max_text_len": "16"}, "max_text_len"),
        ({"llm": [1, 2]}, "llm"),
    ],
)
def test_absurd_or_mistyped_sizes_fail_fast(model_dir, changes, match):
    edit_config(model_dir, **changes)
    start = time.monotonic()
    one_line(lambda: ShowO.from_pretrained(model_dir), match)
    assert time.monotonic() - start < 30  # generous: the old code allocated for minutes


def test_truncated_safetensors_is_one_line_naming_the_file(model_dir):
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    assert "model.safetensors" in one_line(lambda: ShowO.from_pretrained(model_dir), "truncated")
    weights.write_bytes(b"\x00" * 4)
    one_line(lambda: ShowO.from_pretrained(model_dir), "model.safetensors")


def test_vocab_json_of_wrong_types(model_dir):
    (model_dir / "vocab.json").write_text(json.dumps({"size": [1]}))
    one_line(lambda: ShowO.from_pretrained(model_dir), "vocabulary")
    (model_dir / "vocab.json").write_text("[]")
    one_line(lambda: ShowO.from_pretrained(model_dir), "vocab")


def test_recorded_image_tokenizer_outside_the_checkpoint_is_refused(model_dir):
    from showo.sampling.pipeline import find_image_tokenizer

    for recorded in ("/etc", "../elsewhere"):
        edit_config(model_dir, image_tokenizer=recorded)
        one_line(lambda: find_image_tokenizer(model_dir, None), "outside the checkpoint")


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"ch": 10**6}, "ch"),
        ({"num_res_blocks": [10**6] * 5}, "num_res_blocks"),
        ({"ch_mult": "1,2"}, "ch_mult"),
        ({"dropout": "x"}, "dropout"),
    ],
)
def test_image_tokenizer_config_is_bounded(tiny_image_tokenizer, tmp_path, changes, match):
    path = tiny_image_tokenizer.save_pretrained(tmp_path / "tok")
    data = {**json.loads((path / "config.json").read_text()), **changes}
    (path / "config.json").write_text(json.dumps(data))
    start = time.monotonic()
    one_line(lambda: load_image_tokenizer(path), match)
    assert time.monotonic() - start < 30
    (path / "config.json").write_text("[]")
    one_line(lambda: load_image_tokenizer(path), "JSON object")


def test_truncated_image_tokenizer_weights(tiny_image_tokenizer, tmp_path):
    path = tiny_image_tokenizer.save_pretrained(tmp_path / "tok")
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    assert "model.safetensors" in one_line(lambda: load_image_tokenizer(path), "truncated")


def test_official_checkpoint_whose_llm_dir_has_no_tokenizer_files(tiny_llm_dir, tmp_path):
    llm = tmp_path / "phi-without-tokenizer"
    llm.mkdir()
    shutil.copy(tiny_llm_dir / "config.json", llm / "config.json")
    shutil.copy(tiny_llm_dir / "model.safetensors", llm / "model.safetensors")
    official = tmp_path / "official"
    official.mkdir()
    config = {"codebook_size": 64, "num_vq_tokens": 16, "llm_model_path": str(llm), "llm_vocab_size": 1000}
    (official / "config.json").write_text(json.dumps({**config, "vocab_size": 1075}))
    line = one_line(lambda: ShowO.from_pretrained(official), "has no tokenizer files")
    assert str(llm) in line and "llm_model_path" in line
    (official / "config.json").write_text(json.dumps({**config, "vocab_size": "big"}))
    one_line(lambda: ShowO.from_pretrained(official), "vocab_size")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("[1, 2]", "cannot load a text tokenizer"),
        ('{"x": 1}', "cannot load a text tokenizer"),
        ("{not json", "cannot load a text tokenizer"),
    ],
)
def test_a_hostile_tokenizer_json_is_one_line(model_dir, text, match):
    (model_dir / "tokenizer.json").write_text(text)
    assert str(model_dir) in one_line(lambda: ShowO.from_pretrained(model_dir), match)
