"""Pluggable captioners: what text goes into `txt`, and what is recorded in `captions.json`.

`keep` uses the source caption, `template` the exact caption that embedded/class data knows, `hf:PATH` a
local transformers image-to-text model, `showo:PATH` a trained Show-o checkpoint describing the images
itself (its own image tokenizer and resolution, KV-cached understanding decode). All run batched and
greedy, so reruns give the same text. Show-o's caption
policies (first sentence half the time, prefix stripping) are training-time options, not applied here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from showo.errors import ShowoError

KINDS = ("keep", "template", "hf:PATH", "showo:PATH")
SHOWO_DEFAULT_PROMPT = "Describe the image."


class Captioner:
    """`keep`: the training text is the source's own caption; nothing is generated."""

    id = "keep"
    prompt: str | None = None
    needs_caption = True
    needs_template = False
    needs_rgb = False

    def describe(self) -> dict:
        return {"id": self.id, "prompt": self.prompt}

    def recaption(
        self, images: list[list[np.ndarray] | None], templates: list[str | None]
    ) -> list[str | None]:
        """One new caption per input (None: keep the original)."""
        return [None] * len(images)


class TemplateCaptioner(Captioner):
    """`template`: the exact caption generated data knows (embedded scenes, class names)."""

    id = "template"
    needs_caption = False
    needs_template = True

    def recaption(self, images, templates):
        return list(templates)


class _ModelCaptioner(Captioner):
    """A model directory that writes new captions; its id pins the directory's name and weights, so every
    recaption records which model wrote it."""

    scheme = ""
    needs_caption = False
    needs_rgb = True

    def __init__(
        self,
        path: str,
        prompt: str | None = None,
        max_new_tokens: int = 48,
        device: torch.device | None = None,
    ):
        self._load(path, prompt, device)
        self.max_new_tokens = max_new_tokens
        self.id = f"{self.scheme}:{Path(path).resolve().name}@{_directory_hash(Path(path))}"

    def _load(self, path: str, prompt: str | None, device: torch.device | None) -> None:
        """Sets `prompt` as well: each model has its own default for it."""
        raise NotImplementedError


class HFCaptioner(_ModelCaptioner):
    """`hf:PATH`: a local transformers image-to-text model directory (e.g. a VisionEncoderDecoderModel
    saved with its image processor and tokenizer), run batched with greedy decoding."""

    scheme = "hf"

    def _load(self, path: str, prompt: str | None, device: torch.device | None) -> None:
        directory = Path(path)
        if not (directory / "config.json").is_file():
            raise ShowoError(f"hf captioner {path} is not a transformers model directory (no config.json)")
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

        try:
            self.device = device or torch.device("cpu")
            # a captioner downloaded from strangers: safetensors weights only, none of its own code
            model = AutoModelForImageTextToText.from_pretrained(
                directory, use_safetensors=True, trust_remote_code=False
            )
            self.model = model.to(self.device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
            self.processor = (
                AutoProcessor.from_pretrained(directory, trust_remote_code=False) if prompt else None
            )
            self.image_processor = (
                None if prompt else AutoImageProcessor.from_pretrained(directory, trust_remote_code=False)
            )
        except (OSError, ValueError, KeyError) as err:
            raise ShowoError(f"hf captioner {path} could not be loaded: {err}") from None
        self.prompt = prompt

    def recaption(self, images, templates):
        pictures = [Image.fromarray(frames[0]) for frames in images]
        if self.processor is not None:
            inputs = self.processor(images=pictures, text=[self.prompt] * len(pictures), return_tensors="pt")
        else:
            inputs = self.image_processor(images=pictures, return_tensors="pt")
        inputs = inputs.to(self.device)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1
            )
        if "input_ids" in inputs and not self.model.config.is_encoder_decoder:
            out = out[:, inputs["input_ids"].shape[1] :]
        return [text.strip() for text in self.tokenizer.batch_decode(out, skip_special_tokens=True)]


class ShowoCaptioner(_ModelCaptioner):
    """`showo:PATH`: a Show-o checkpoint directory (ours or exported, with its `image_tokenizer/`) answers
    `prompt` about each original image, encoded with the checkpoint's own tokenizer at its resolution."""

    scheme = "showo"

    def _load(self, path: str, prompt: str | None, device: torch.device | None) -> None:
        from showo.sampling.pipeline import load_pipeline

        self.pipe = load_pipeline(path, device=None if device is None else str(device))
        self.prompt = prompt or SHOWO_DEFAULT_PROMPT

    def recaption(self, images, templates):
        from showo.sampling import understand
        from showo.sampling.images import encode_image

        pipe = self.pipe
        codes = torch.cat(
            [encode_image(pipe.image_tokenizer, Image.fromarray(f[0]), pipe.resolution)[0] for f in images]
        )
        return understand.decode(
            pipe.model,
            pipe.prompter,
            pipe.model.vocab.codes_to_ids(codes),
            [self.prompt] * len(images),
            max_new_tokens=self.max_new_tokens,
            temperature=0.0,
        )


def _directory_hash(directory: Path) -> str:
    """Config and weights identify the captioner; recorded next to every recaption it wrote."""
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        if path.is_file() and (path.suffix in (".json", ".safetensors", ".bin", ".model", ".txt")):
            digest.update(path.name.encode())
            with open(path, "rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:12]


def make_captioner(
    spec: str, prompt: str | None = None, max_new_tokens: int = 48, device: torch.device | None = None
) -> Captioner:
    """Parse `--recaptioner`: keep | template | hf:PATH | showo:PATH."""
    if spec == "keep":
        return Captioner()
    if spec == "template":
        return TemplateCaptioner()
    if spec.startswith("hf:") and len(spec) > 3:
        return HFCaptioner(spec[3:], prompt, max_new_tokens, device)
    if spec.startswith("showo:") and len(spec) > 6:
        return ShowoCaptioner(spec[6:], prompt, max_new_tokens, device)
    raise ShowoError(f"unknown recaptioner {spec!r}; expected one of {', '.join(KINDS)}")
