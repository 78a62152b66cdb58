"""Answering a rerun of a finished build without torch.

A pipeline reruns every step, so rerunning a complete build must cost about nothing. Its real work is
small (records and sizes, see `writer.finished_record`), but the build module needs torch for the
tokenizer's or VAE's identity (a hash of its weights), and importing torch takes seconds. When a build
completes, `record_finished` writes `finished.json`: the options that shape the output, a sha256 of every
file of the image tokenizer or VAE directory (and of a recaptioning model), the source's spec and fingerprint, the shard names, and the
sha256 of build.json and report.json. A rerun whose options and files hash the same, whose shards all have
their records and sizes and whose source is unchanged is answered from report.json here. Anything else,
`--verify` included, goes through the full build, which stays the authority: this file is only a cache of
its verdict (a tokenizer re-saved in another format, say, takes the full path and is accepted there).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from data_engine.manifest import BUILD_FILE, OUTPUT_FILES, REPORT_FILE
from data_engine.options import BuildOptions, check_encoder, check_numbers, partition
from data_engine.outdir import metadata_lock
from data_engine.sources import Source, open_source
from data_engine.writer import atomic_write, dumps_json, finished_record
from showo.errors import ShowoError
from showo.safeio import loads_json, plain_file_name

FINISHED_FILE = "finished.json"
FORMAT = 1
# the options besides the source and the model paths that shard bytes or the report depend on
OUTPUT_OPTIONS = (
    "resolution",
    "recaptioner",
    "caption_prompt",
    "caption_max_tokens",
    "shard_size",
    "name",
    "batch_size",
    "dedup",
    "min_size",
    "max_pixels",
    "max_caption_chars",
    "split",
    "limit",
    "device",
)
MODEL_SCHEMES = ("hf:", "showo:")


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _files(path: str | None) -> dict | None:
    """The resolved path and a sha256 of each file directly in it (or of the file itself)."""
    if path is None:
        return None
    root = Path(path).resolve()
    if root.is_file():
        return {"path": str(root), "files": {root.name: _sha256(root)}}
    if not root.is_dir():
        return None
    files = {p.name: _sha256(p) for p in sorted(root.iterdir()) if p.is_file()}
    return {"path": str(root), "files": files}


def _inputs(options: BuildOptions) -> dict:
    """Everything of the rerun that is cheap to compare (the source is compared last: opening a jsonl
    source indexes the whole file)."""
    recaptioner = options.recaptioner
    model = next((recaptioner[len(s) :] for s in MODEL_SCHEMES if recaptioner.startswith(s)), None)
    return {
        "format": FORMAT,
        "options": {name: getattr(options, name) for name in OUTPUT_OPTIONS},
        "image_root": None if options.image_root is None else str(Path(options.image_root).resolve()),
        "tokenizer": _files(options.tokenizer),
        "vae": _files(options.vae),
        "recaptioner": _files(model),
    }


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_finished(out: Path, options: BuildOptions, source: Source, shards: list[str]) -> None:
    """Called by the build under the metadata lock once report.json describes every shard."""
    record = _inputs(options)
    record.update(
        source={"spec": source.spec, "fingerprint": source.fingerprint()},
        build_sha256=_digest((out / BUILD_FILE).read_bytes()),
        report_sha256=_digest((out / REPORT_FILE).read_bytes()),
        shards=shards,
    )
    atomic_write(out / FINISHED_FILE, dumps_json(record))


def _shards_intact(out: Path, names: object) -> bool:
    if not isinstance(names, list) or not names:
        return False
    for name in names:
        try:
            plain = plain_file_name(name, FINISHED_FILE)
        except ShowoError:
            return False
        if finished_record(out / plain) is None:
            return False
    return all((out / name).is_file() for name in OUTPUT_FILES)


def finished_report(options: BuildOptions) -> dict | None:
    """report.json of the build in `options.out` when it is complete and this rerun would change nothing;
    None when the full build must decide (it resumes, rebuilds or refuses)."""
    check_numbers(options)
    check_encoder(options)
    partition(options.rank, options.world_size)
    out = Path(options.out)
    if options.verify or not (out / FINISHED_FILE).is_file():
        return None
    with metadata_lock(out):
        try:
            record = loads_json((out / FINISHED_FILE).read_bytes())
            build_bytes = (out / BUILD_FILE).read_bytes()
            report_bytes = (out / REPORT_FILE).read_bytes()
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        if not isinstance(record, dict) or any(record.get(k) != v for k, v in _inputs(options).items()):
            return None
        if record.get("build_sha256") != _digest(build_bytes) or record.get("report_sha256") != _digest(
            report_bytes
        ):
            return None
        if not _shards_intact(out, record.get("shards")):
            return None
        source = open_source(
            options.source, image_root=options.image_root, split=options.split, limit=options.limit
        )
        source.attach(out)
        if record.get("source") != {"spec": source.spec, "fingerprint": source.fingerprint()}:
            return None
    try:
        report = loads_json(report_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return report if isinstance(report, dict) else None
