"""`hf:PATH` recaptioning with a tiny VisionEncoderDecoderModel built from configs and saved with its image
processor and tokenizer: the shard text equals what transformers' own generate gives for the image."""

import pytest
import torch
import webdataset as wds
from PIL import Image

from data_engine.build import BuildOptions, build
from showo.errors import ShowoError
from tests.data_engine import corpus

WORDS = ["a", "red", "blue", "circle", "square", "on", "the", "left", "right", "image"]


@pytest.fixture(scope="module")
def tiny_captioner(tmp_path_factory):
    return build_tiny_captioner(tmp_path_factory.mktemp("tiny_captioner"))


def build_tiny_captioner(directory):
    """A 1-layer ViT encoder + 1-layer GPT-2 decoder with a word-level tokenizer, saved like a hub model."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        GPT2Config,
        PreTrainedTokenizerFast,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    vocab = {"[PAD]": 0, "[BOS]": 1, "[EOS]": 2, "[UNK]": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="[BOS]", eos_token="[EOS]", pad_token="[PAD]", unk_token="[UNK]"
    )
    encoder = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    decoder = GPT2Config(
        vocab_size=len(vocab),
        n_positions=32,
        n_embd=32,
        n_layer=1,
        n_head=2,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = 1, 0, 2
    torch.manual_seed(0)
    model = VisionEncoderDecoderModel(config=config)
    model.generation_config.decoder_start_token_id = 1
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 2
    model.generation_config.min_new_tokens = 3  # a random model must still say some words
    model.generation_config.suppress_tokens = [0, 1, 3]
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(directory)
    return directory


def reference_captions(directory, images: list[Image.Image], max_new_tokens: int) -> list[str]:
    import torch
    from transformers import AutoTokenizer, VisionEncoderDecoderModel, ViTImageProcessor

    model = VisionEncoderDecoderModel.from_pretrained(directory).eval()
    pixels = ViTImageProcessor.from_pretrained(directory)(images=images, return_tensors="pt").pixel_values
    with torch.no_grad():
        out = model.generate(pixel_values=pixels, max_new_tokens=max_new_tokens, do_sample=False)
    return [
        t.strip()
        for t in AutoTokenizer.from_pretrained(directory).batch_decode(out, skip_special_tokens=True)
    ]


def test_hf_recaptioner_writes_generated_text(tmp_path, shards_tokenizer_dir, tiny_captioner):
    src = tmp_path / "src"
    src.mkdir()
    names = ["a.jpg", "b.jpg", "c.jpg"]
    for i, name in enumerate(names):
        (src / name).write_bytes(corpus.jpeg_bytes(corpus.gradient(size=(80 + 8 * i, 64), seed=i)))
    (src / "a.txt").write_text("the alt text")  # b and c have no caption: fine when recaptioning
    options = BuildOptions(
        source=f"pairs:{src}", out=str(tmp_path / "out"), tokenizer=str(shards_tokenizer_dir), resolution=64,
        recaptioner=f"hf:{tiny_captioner}", caption_max_tokens=6, workers=1, progress=False, threads=1,
    )  # fmt: skip
    report = build(options)
    assert report["written"] == 3
    samples = list(wds.WebDataset(str(tmp_path / "out" / "src-000000.tar"), shardshuffle=False).decode())
    expected = reference_captions(tiny_captioner, [Image.open(src / n).convert("RGB") for n in names], 6)
    assert [s["txt"] for s in samples] == expected
    assert all(len(text.split()) >= 3 for text in expected)
    first = samples[0]["captions.json"]
    assert first["original"] == "the alt text"
    (entry,) = first["recaptions"]
    assert entry["captioner"].startswith("hf:tiny_captioner") and entry["text"] == expected[0]
    manifest_line = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[0]
    assert entry["captioner"] in manifest_line


def test_hf_recaptioner_needs_a_model_directory(tmp_path, shards_tokenizer_dir):
    with pytest.raises(ShowoError, match="not a transformers model directory"):
        build(
            BuildOptions(
                source="embedded:shapes",
                out=str(tmp_path),
                tokenizer=str(shards_tokenizer_dir),
                recaptioner=f"hf:{tmp_path}",
            )
        )


def test_showo_recaptioner_matches_the_understanding_decode(tmp_path, shards_tokenizer_dir, tiny_showo):
    from showo.sampling import understand
    from showo.sampling.images import encode_image
    from showo.sampling.pipeline import load_pipeline
    from tests.fixtures.tokenizer import build_tiny_image_tokenizer

    ckpt = tiny_showo.save_pretrained(tmp_path / "ckpt")
    bits = tiny_showo.config.codebook_size.bit_length() - 1
    build_tiny_image_tokenizer(seed=3, z_channels=bits).save_pretrained(ckpt / "image_tokenizer")
    src = tmp_path / "src"
    src.mkdir()
    names = ["a.jpg", "b.jpg"]
    for i, name in enumerate(names):
        (src / name).write_bytes(corpus.jpeg_bytes(corpus.gradient(seed=10 + i)))
    options = BuildOptions(
        source=f"pairs:{src}", out=str(tmp_path / "out"), tokenizer=str(shards_tokenizer_dir), resolution=64,
        recaptioner=f"showo:{ckpt}", caption_prompt="What is shown?", caption_max_tokens=5, workers=0,
        progress=False, threads=1,
    )  # fmt: skip
    report = build(options)

    pipe = load_pipeline(ckpt, device="cpu")
    images = [Image.open(src / n).convert("RGB") for n in names]
    codes = torch.cat([encode_image(pipe.image_tokenizer, image, pipe.resolution)[0] for image in images])
    expected = understand.decode(
        pipe.model,
        pipe.prompter,
        pipe.model.vocab.codes_to_ids(codes),
        ["What is shown?"] * 2,
        max_new_tokens=5,
    )
    written = {
        s["json"]["source"]: s
        for s in wds.WebDataset(str(tmp_path / "out" / "src-000000.tar"), shardshuffle=False).decode()
    }
    assert report["written"] == sum(1 for text in expected if text)
    for name, text in zip(names, expected):
        if text:
            (entry,) = written[name]["captions.json"]["recaptions"]
            assert written[name]["txt"] == text == entry["text"]
            assert entry["prompt"] == "What is shown?" and entry["captioner"].startswith("showo:ckpt@")
        else:
            assert name not in written and report["rejected_by_reason"]["empty_recaption"] >= 1
