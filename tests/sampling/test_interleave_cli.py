"""`showo interleave`: the sequence mixed-modality generation draws, written as files in order, for MTP and AR
checkpoints; bad input is one line and exit status 2."""

import json

import numpy as np
import pytest
from PIL import Image

from showo.cli import main
from showo.sampling import mixed
from showo.sampling.images import decode_codes, to_pil
from showo.sampling.pipeline import load_pipeline


def _interleave(ckpt, out, *extra):
    return main(
        ["interleave", "--ckpt", str(ckpt), "--device", "cpu", "--seed", "5", "--out", str(out), *extra]
    )


def _reference(ckpt, captions, frames, **options):
    """The captions and images `mixed.generate` draws for the same seed, called directly."""
    pipe = load_pipeline(ckpt, device="cpu")
    image_options = pipe.objective.options(**options)
    sample = mixed.generate(
        pipe.model,
        pipe.prompter,
        [captions],
        frames,
        generator=pipe.generator(5),
        image_options=image_options,
    )[0]
    return sample.captions, to_pil(decode_codes(pipe.image_tokenizer, sample.codes, pipe.grid))


def _written(out):
    record = json.loads((out / "sequence.json").read_text())
    return record, [item["kind"] for item in record["items"]], [item["file"] for item in record["items"]]


def _same_pixels(path, image):
    with Image.open(path) as written:
        return np.array_equal(np.asarray(written.convert("RGB")), np.asarray(image))


def test_an_mtp_checkpoint_writes_its_captions_and_images_in_order(sampling_ckpt, tmp_path, capsys):
    out = tmp_path / "seq"
    assert (
        _interleave(sampling_ckpt, out, "--prompt", "a red circle", "--prompt", "a star", "--steps", "2") == 0
    )
    record, kinds, files = _written(out)
    assert kinds == ["text", "image", "text", "image"]
    assert files == ["000-text.txt", "001-image.png", "002-text.txt", "003-image.png"]
    assert capsys.readouterr().out.split() == [str(out / name) for name in [*files, "sequence.json"]]
    captions, images = _reference(sampling_ckpt, ["a red circle", "a star"], 2, steps=2)
    assert captions == ["a red circle", "a star"]
    assert [(out / f).read_text() for f in files[::2]] == [c + "\n" for c in captions]
    assert [item["text"] for item in record["items"][::2]] == captions
    assert all(_same_pixels(out / f, image) for f, image in zip(files[1::2], images))
    assert record["objective"] == "mtp" and record["sampler"] == "maskgit" and record["options"]["steps"] == 2
    assert record["seed"] == 5 and record["prompt"] == ["a red circle", "a star"]


def test_an_ar_checkpoint_decodes_the_missing_captions_and_draws_codes_token_by_token(
    ar_sampling_ckpt, tmp_path
):
    out = tmp_path / "seq"
    assert _interleave(ar_sampling_ckpt, out, "--prompt", "a red circle", "--frames", "2") == 0
    record, kinds, files = _written(out)
    captions, images = _reference(ar_sampling_ckpt, ["a red circle"], 2)
    expected = [kind for c in captions for kind in (["text"] if c else []) + ["image"]]
    assert kinds == expected and kinds[:2] == ["text", "image"]
    assert [item["text"] for item in record["items"] if item["kind"] == "text"] == [c for c in captions if c]
    image_files = [f for f, kind in zip(files, kinds) if kind == "image"]
    assert len(image_files) == len(images) and all(map(_same_pixels, [out / f for f in image_files], images))
    assert record["objective"] == "ar" and record["sampler"] == "ar"


def test_a_rerun_removes_only_the_files_the_previous_sequence_listed(sampling_ckpt, tmp_path):
    out = tmp_path / "seq"
    prompts = ["--prompt", "a", "--prompt", "b", "--prompt", "c", "--steps", "1"]
    assert _interleave(sampling_ckpt, out, *prompts, "--frames", "3") == 0
    (out / "notes.txt").write_text("mine")
    (out / "009-image.png").write_bytes(b"not listed by the previous run")
    assert _interleave(sampling_ckpt, out, "--prompt", "a", "--steps", "1", "--frames", "1") == 0
    _, _, files = _written(out)
    assert files == ["000-text.txt", "001-image.png"]
    assert sorted(p.name for p in out.iterdir()) == [*files, "009-image.png", "notes.txt", "sequence.json"]


@pytest.mark.parametrize(
    ("extra", "cause"),
    [
        (["--prompt", "b", "--frames", "1"], "2 prompts for 1 frames"),
        (["--frames", "0"], "--frames: must be at least 1"),
        (["--frames", "65"], "--frames: must be at most 64"),
        (["--frames", "15"], "leaves no caption room for 15 frames"),
        (["--guidance", "2"], "unrecognized arguments: --guidance"),
        (["--text-top-p", "0"], "--text-top-p: must be in (0, 1]"),
        (["--sampler", "ar"], "sampler 'ar' cannot sample a checkpoint trained with the mtp objective"),
        (["--top-k", "3"], "the maskgit sampler (objective mtp) takes no top-k option"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(sampling_ckpt, tmp_path, capsys, extra, cause):
    assert _interleave(sampling_ckpt, tmp_path / "seq", "--prompt", "a", *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("showo: error: ") and err.count("\n") == 1 and cause in err
    assert not (tmp_path / "seq" / "sequence.json").exists()


def test_out_must_not_be_a_file_and_an_unwritable_out_is_one_line(sampling_ckpt, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert _interleave(sampling_ckpt, tmp_path / "file", "--prompt", "a") == 2
    assert "argument --out: " in capsys.readouterr().err
    blocked = tmp_path / "ro"
    blocked.mkdir()
    (blocked / "000-text.txt").mkdir()  # a directory where the first file goes
    assert _interleave(sampling_ckpt, blocked, "--prompt", "a", "--steps", "1", "--frames", "1") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"showo: error: cannot write --out {blocked}") and err.count("\n") == 1
