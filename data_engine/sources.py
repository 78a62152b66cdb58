"""Input sources: each lists its inputs in a fixed order, cut into units (one unit = one output shard).

Shard boundaries come from the input order alone (list sources: consecutive runs of `shard_size`
inputs; `wds:` sources: one output shard per input tar, as open-muse's pre-encoder does), so a rerun,
a resumed run and any number of partitions all produce the same shards. Sources are plain picklable
objects: DataLoader workers call `samples(unit, resolution)` and read the bytes themselves.
`embedded:` sources live in `data_engine.embedded`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import tarfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image

from data_engine.decode import Reject, safe_member_name
from data_engine.json_array import index_array, read_elements
from data_engine.listing import Listing, build_index, index_file, read_meta
from data_engine.paths import Entry, class_folders, read_under, real_root
from showo.errors import ShowoError
from showo.safeio import loads_json
from showo.tasks import SAMPLE_KINDS

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"})
CAPTION_EXTENSIONS = ("txt", "caption", "text")
MISSING_TEXT = "missing_text"
BAD_JSON = "bad_json_line"
BAD_CAPTION = "bad_caption_file"
NO_IMAGE = "missing_image"
UNSAFE_MEMBER = "unsafe_member_name"
CORRUPT_TAR = "corrupt_tar"
BAD_CONVERSATION = "bad_conversation"
CHECKPOINT_EVERY = 1024
"""A jsonl index keeps the byte offset of every 1024th non-blank line (8 bytes per 1024 lines): a unit
seeks to the checkpoint before its first line and reads on from there."""


@dataclass
class RawSample:
    """One input as a source hands it over: encoded image bytes (`data`) or generated pixels
    (`images`, several for a keyframe sequence), the source's own caption, its kind (`task`, one of
    `showo.tasks.SAMPLE_KINDS`) and metadata, or a reject."""

    position: int
    source: str
    task: str
    data: bytes | None = None
    images: list[Image.Image] | None = None
    caption: str | None = None
    template: str | None = None
    meta: dict = field(default_factory=dict)
    reject: Reject | None = None

    def __post_init__(self) -> None:
        assert self.task in SAMPLE_KINDS, f"sample kind {self.task!r} is not one of {SAMPLE_KINDS}"


@dataclass(frozen=True)
class Unit:
    """The inputs of one output shard: a span of the source order, or one input tar."""

    index: int
    start: int
    stop: int
    path: str | None = None

    @property
    def size(self) -> int | None:
        return None if self.path is not None else self.stop - self.start


class Source:
    """Base class: `units` cuts the ordered inputs, `samples` yields one unit's inputs in order."""

    kind = ""
    has_templates = False

    def __init__(self, path: str, default_name: str):
        self.path = path
        self.spec = f"{self.kind}:{path}"
        self.default_name = sanitize_name(default_name)

    def __len__(self) -> int:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """What the inputs are (listing and sizes, or the index file's bytes): recorded in build.json so a
        rerun over changed inputs is refused instead of silently mixing old and new shards."""
        raise NotImplementedError

    def attach(self, out: Path, relist: bool = False) -> None:
        """Called by the build (under the output lock) before `units`: directory sources list themselves
        into `out` once (see `data_engine.listing`); `relist` lists again even if nothing changed."""

    def units(self, shard_size: int, limit: int | None = None) -> list[Unit]:
        total = len(self) if limit is None else min(len(self), limit)
        return [
            Unit(i, start, min(start + shard_size, total))
            for i, start in enumerate(range(0, total, shard_size))
        ]

    def samples(self, unit: Unit, resolution: int) -> Iterator[RawSample]:
        raise NotImplementedError


def sanitize_name(name: str) -> str:
    """A shard/key prefix without dots or path characters (webdataset splits keys at the first dot)."""
    clean = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")
    return clean or "data"


def _digest_listing(root: Path, rels: list[str]) -> str:
    """Names and sizes of the input files (not their bytes: a listing is cheap at any scale)."""
    digest = hashlib.sha1()
    for rel in rels:
        try:
            size = (root / rel).stat().st_size
        except OSError as err:
            raise ShowoError(f"cannot read source file {root / rel}: {err.strerror or err}") from None
        digest.update(f"{rel}\0{size}\n".encode())
    return digest.hexdigest()


def strip_bom(text: str) -> str:
    """Drop a leading UTF-8 byte-order mark (editors on Windows write one; it is not part of the text)."""
    return text.removeprefix("\ufeff")


def _caption_from_json(data: dict) -> str | None:
    for name in ("caption", "text", "txt"):
        if isinstance(data.get(name), str):
            return strip_bom(data[name])
    return None


def _index_lines(path: Path) -> tuple[int, array, str]:
    """One pass over an index file: how many non-blank lines it has, the byte offset of every
    `CHECKPOINT_EVERY`-th of them, and the sha1 of its bytes (the fingerprint)."""
    count, position, checkpoints, digest = 0, 0, array("q"), hashlib.sha1()
    try:
        with path.open("rb") as handle:
            for line in handle:
                digest.update(line)
                if line.strip():
                    if count % CHECKPOINT_EVERY == 0:
                        checkpoints.append(position)
                    count += 1
                position += len(line)
    except OSError as err:
        raise ShowoError(f"cannot read source {path}: {err.strerror or err}") from None
    return count, checkpoints, digest.hexdigest()


def _read_lines(path: Path, checkpoints: array, start: int, stop: int) -> Iterator[tuple[int, object]]:
    """(line index among the non-blank lines, parsed record or `Reject`) for lines start..stop-1."""
    if start >= stop:
        return
    number = start - start % CHECKPOINT_EVERY
    with _open_source(path) as handle:
        handle.seek(checkpoints[start // CHECKPOINT_EVERY])
        for raw in handle:
            if not raw.strip():
                continue
            if number >= stop:
                return
            if number >= start:
                try:
                    yield number, loads_json(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as err:
                    yield number, Reject(BAD_JSON, f"line {number + 1}: {err}")
            number += 1


def _open_source(path: Path):
    """Open an index file in a worker; losing it mid-build is the user's fault, named in one line."""
    try:
        return path.open("rb")
    except OSError as err:
        raise ShowoError(f"cannot read source {path}: {err.strerror or err}") from None


def _skipped(position: int, entry: Entry, task: str) -> RawSample:
    """A listing entry that is not an input file, counted with its reason like any rejected input."""
    return RawSample(position, entry.rel, task, reject=Reject(entry.reason, entry.detail))


class _DirectoryListing(Listing):
    """A directory source's stored listing plus what the build needs from it without reading it."""

    count: int = 0
    fingerprint: str = ""

    @classmethod
    def open(cls, out: Path, spec: str, root: Path, walks: list, first: list[Entry], relist: bool):
        path = index_file(out, spec)
        meta = None if relist else read_meta(path, root)
        if meta is None:
            meta = build_index(path, root, walks, first)
        listing = cls(path)
        listing.count, listing.fingerprint = meta["count"], meta["fingerprint"]
        return listing

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "count": self.count, "fingerprint": self.fingerprint}


class PairsSource(Source):
    """`pairs:DIR`: images with same-stem .txt (or .json with a `caption`) files, in sorted path order.
    Every other entry (other file types, folders named like images, symlink loops or links leading out
    of DIR, captions without an image) is an input rejected with its reason."""

    kind = "pairs"

    def __init__(self, path: str):
        if not Path(path).is_dir():
            raise ShowoError(f"pairs source {path} is not a directory")
        root = real_root(path, "pairs source")
        super().__init__(str(root), root.name)
        self.listing: _DirectoryListing | None = None

    def attach(self, out: Path, relist: bool = False) -> None:
        walks = [(0, "", IMAGE_EXTENSIONS, frozenset({"txt", "json"}))]
        self.listing = _DirectoryListing.open(out, self.spec, Path(self.path), walks, [], relist)

    def __len__(self) -> int:
        assert self.listing is not None, "attach() lists the source first"
        return self.listing.count

    def fingerprint(self) -> str:
        assert self.listing is not None, "attach() lists the source first"
        return self.listing.fingerprint

    def samples(self, unit: Unit, resolution: int) -> Iterator[RawSample]:
        assert self.listing is not None, "attach() lists the source first"
        root = Path(self.path)
        for position, (_, entry) in enumerate(self.listing.entries(unit.start, unit.stop)):
            if entry.reason is not None:
                yield _skipped(position, entry, "image_text")
                continue
            sample = RawSample(position, entry.rel, "image_text")
            try:
                sample.data = read_under(root, entry.rel)
                sample.caption = self._caption(root, entry.rel)
            except Reject as reject:
                sample.reject = reject
            yield sample

    @staticmethod
    def _caption(root: Path, rel: str) -> str | None:
        """The same-stem .txt (else .json) caption; it is read under the same rules as the image."""
        for suffix in (".txt", ".json"):
            name = str(PurePosixPath(rel).with_suffix(suffix))
            if not os.path.lexists(root / name):
                continue
            data = read_under(root, name)
            try:
                if suffix == ".txt":
                    return strip_bom(data.decode("utf-8")).strip()
                return _caption_from_json(loads_json(data))
            except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
                raise Reject(BAD_CAPTION, str(err)) from None
        return None


class _JsonLinesSource(Source):
    """A JSON-lines file indexed by line offsets, so each unit reads only its own lines."""

    def __init__(self, path: str):
        file = Path(path)
        if not file.is_file():
            raise ShowoError(f"{self.kind} source {path} is not a file")
        super().__init__(str(file.resolve()), file.stem)
        self.count, self.checkpoints, self.digest = _index_lines(file)

    def __len__(self) -> int:
        return self.count

    def fingerprint(self) -> str:
        return self.digest

    def _records(self, unit: Unit) -> Iterator[tuple[int, int, object]]:
        """(position in the unit, line index in the file, parsed record or `Reject`)."""
        lines = _read_lines(Path(self.path), self.checkpoints, unit.start, unit.stop)
        for position, (number, record) in enumerate(lines):
            yield position, number, record


class JsonlSource(_JsonLinesSource):
    """`jsonl:FILE`: one `{"image": path, "caption": text}` per line; paths relative to --image-root
    (default: the file's directory)."""

    kind = "jsonl"

    def __init__(self, path: str, image_root: str | None = None):
        super().__init__(path)
        root = Path(self.path).parent if image_root is None else real_root(image_root, "--image-root")
        self.image_root = str(root)

    def samples(self, unit: Unit, resolution: int) -> Iterator[RawSample]:
        for position, number, record in self._records(unit):
            sample = RawSample(position, f"line {number + 1}", "image_text")
            try:
                if isinstance(record, Reject):
                    raise record
                image = record.get("image") if isinstance(record, dict) else None
                if not isinstance(image, str):
                    raise Reject(NO_IMAGE, f"line {number + 1} has no image path")
                sample.source = image[:500]
                sample.caption = _caption_from_json(record)
                sample.data = read_under(Path(self.image_root), image)
            except Reject as reject:
                sample.reject = reject
            yield sample


class WdsSource(Source):
    """`wds:GLOB`: raw image-text tars as LAION/CC12M ship them; one output shard per input tar."""

    kind = "wds"

    def __init__(self, pattern: str):
        from braceexpand import braceexpand

        super().__init__(pattern, Path(pattern.split("{")[0].split("*")[0]).name or "wds")
        self.tars = sorted({p for part in braceexpand(pattern) for p in glob.glob(part)})
        if not self.tars:
            raise ShowoError(f"wds source {pattern} matches no tar files")

    def __len__(self) -> int:
        return len(self.tars)

    def fingerprint(self) -> str:
        return _digest_listing(Path.cwd(), [str(Path(t).resolve()) for t in self.tars])

    def units(self, shard_size: int, limit: int | None = None) -> list[Unit]:
        if limit is not None:
            raise ShowoError(
                "--limit does not apply to wds: sources (one shard per input tar): narrow the glob"
            )
        return [Unit(i, 0, 0, path) for i, path in enumerate(self.tars)]

    def samples(self, unit: Unit, resolution: int) -> Iterator[RawSample]:
        tar_name = Path(unit.path).name
        position = 0
        try:
            for key, members in _grouped_members(unit.path):
                yield self._sample(position, tar_name, key, members)
                position += 1
        except (tarfile.TarError, OSError, EOFError) as err:
            yield RawSample(
                position, f"{tar_name}:<rest>", "image_text", reject=Reject(CORRUPT_TAR, str(err))
            )

    @staticmethod
    def _sample(position: int, tar_name: str, key: str | None, members: dict[str, bytes]) -> RawSample:
        sample = RawSample(position, f"{tar_name}:{key}", "image_text")
        if key is None:
            sample.source = f"{tar_name}:{members.get('__name__', b'').decode('utf-8', 'replace')[:200]}"
            sample.reject = Reject(UNSAFE_MEMBER, "absolute, upward or non-regular tar member")
            return sample
        image = next((ext for ext in ("jpg", "jpeg", "png", "webp") if ext in members), None)
        if image is None:
            sample.reject = Reject(NO_IMAGE, f"no image member among {sorted(members)}")
            return sample
        sample.data = members[image]
        try:
            text = next((members[ext] for ext in CAPTION_EXTENSIONS if ext in members), None)
            if text is not None:
                sample.caption = strip_bom(text.decode("utf-8")).strip()
            elif "json" in members:
                sample.caption = _caption_from_json(loads_json(members["json"]))
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
            sample.reject = Reject(BAD_CAPTION, str(err))
        return sample


def _grouped_members(path: str) -> Iterator[tuple[str | None, dict[str, bytes]]]:
    """Consecutive members sharing a key (the name up to the first dot of its basename), like
    webdataset's grouping; an unsafe member is its own group with key None and is never read."""
    key, group = None, {}
    with tarfile.open(path, "r|*") as tar:
        for member in tar:
            if member.isdir():
                continue
            name = safe_member_name(member.name)
            if name is None or not member.isfile():
                if group:
                    yield key, group
                    key, group = None, {}
                yield None, {"__name__": member.name.encode("utf-8", "replace")}
                continue
            directory, base = posixpath_split(name)
            stem, _, ext = base.partition(".")
            member_key = f"{directory}/{stem}" if directory else stem
            if group and member_key != key:
                yield key, group
                group = {}
            key = member_key
            handle = tar.extractfile(member)
            group[ext.lower()] = handle.read() if handle is not None else b""
    if group:
        yield key, group


def posixpath_split(name: str) -> tuple[str, str]:
    directory, _, base = name.rpartition("/")
    return directory, base


class ImageFolderSource(Source):
    """`imagefolder:DIR`: one subfolder per class; the label is the sorted class index and the text is
    the class name (stage-1 class-conditional data)."""

    kind = "imagefolder"
    has_templates = True

    def __init__(self, path: str):
        if not Path(path).is_dir():
            raise ShowoError(f"imagefolder source {path} is not a directory")
        root = real_root(path, "imagefolder source")
        super().__init__(str(root), root.name)
        self.top = class_folders(root)
        self.classes = [entry.rel for entry in self.top if entry.reason is None]
        if not self.classes:
            raise ShowoError(f"imagefolder source {path} has no class subfolders")
        self.listing: _DirectoryListing | None = None

    def attach(self, out: Path, relist: bool = False) -> None:
        """Group 0: the skipped top-level entries; group label + 1: each class folder, in sorted order."""
        walks = [(label + 1, name, IMAGE_EXTENSIONS, frozenset()) for label, name in enumerate(self.classes)]
        skipped = [entry for entry in self.top if entry.reason is not None]
        self.listing = _DirectoryListing.open(out, self.spec, Path(self.path), walks, skipped, relist)

    def __len__(self) -> int:
        assert self.listing is not None, "attach() lists the source first"
        return self.listing.count

    def fingerprint(self) -> str:
        assert self.listing is not None, "attach() lists the source first"
        return self.listing.fingerprint

    def samples(self, unit: Unit, resolution: int) -> Iterator[RawSample]:
        assert self.listing is not None, "attach() lists the source first"
        for position, (group, entry) in enumerate(self.listing.entries(unit.start, unit.stop)):
            label = group - 1 if group else None
            if label is None or entry.reason is not None:
                yield _skipped(position, entry, "class")
                continue
            name = self.classes[label].replace("_", " ")
            sample = RawSample(position, entry.rel, "class", caption=name, template=name)
            sample.meta = {"label": label, "class_name": name}
            try:
                sample.data = read_under(Path(self.path), entry.rel)
            except Reject as reject:
                sample.reject = reject
                sample.meta = {}
            yield sample


class TextSource(_JsonLinesSource):
    """`text:FILE.jsonl`: the language-modelling stream, one `{"text": ...}` per line."""

    kind = "text"

    def samples(self, unit: Unit, resolution: int) -> Iterator[RawSample]:
        for position, number, record in self._records(unit):
            sample = RawSample(position, f"line {number + 1}", "lm")
            text = (
                record
                if isinstance(record, str)
                else record.get("text")
                if isinstance(record, dict)
                else None
            )
            if isinstance(record, Reject):
                sample.reject = record
            elif not isinstance(text, str) or not text.strip():
                sample.reject = Reject(MISSING_TEXT, f"line {number + 1} has no text")
            else:
                sample.caption = strip_bom(text)
            yield sample


class LlavaSource(Source):
    """`llava:FILE.json --image-root DIR`: LLaVA instruction conversations (`id`, `image`,
    `conversations` of human/gpt turns); items without an image are rejected, as the official loader
    drops them. The conversation is stored as is; `txt` holds the first answer. The file is indexed in one
    pass and read a unit at a time (`data_engine.json_array`), never held whole."""

    kind = "llava"

    def __init__(self, path: str, image_root: str | None):
        file = Path(path)
        if not file.is_file():
            raise ShowoError(f"llava source {path} is not a file")
        if image_root is None or not Path(image_root).is_dir():
            raise ShowoError(f"llava source needs --image-root DIR (got {image_root})")
        super().__init__(str(file.resolve()), file.stem)
        self.image_root = str(real_root(image_root, "--image-root"))
        self.name = f"llava source {path}"
        try:
            with file.open("rb") as handle:
                self.count, self.offsets, self.digest = index_array(handle, self.name, CHECKPOINT_EVERY)
        except OSError as err:
            raise ShowoError(f"cannot read {self.name}: {err.strerror or err}") from None
        except UnicodeDecodeError as err:
            raise ShowoError(f"{self.name} is not valid JSON: {err.reason}") from None

    def __len__(self) -> int:
        return self.count

    def fingerprint(self) -> str:
        return self.digest

    def samples(self, unit: Unit, resolution: int) -> Iterator[RawSample]:
        with _open_source(Path(self.path)) as handle:
            items = read_elements(handle, self.offsets, CHECKPOINT_EVERY, unit.start, unit.stop, self.name)
            yield from self._samples(unit, items)

    def _samples(self, unit: Unit, items: Iterator[object]) -> Iterator[RawSample]:
        for position, item in enumerate(items):
            ident = str(item.get("id", unit.start + position)) if isinstance(item, dict) else str(position)
            sample = RawSample(position, ident, "instruct")
            try:
                if not isinstance(item, dict) or not isinstance(item.get("image"), str):
                    raise Reject(NO_IMAGE, "no image")
                turns = item.get("conversations")
                if not _valid_conversation(turns):
                    raise Reject(BAD_CONVERSATION, "conversations must alternate human/gpt string turns")
                sample.source = f"{ident}:{item['image']}"[:500]
                turns = [{**turn, "value": strip_bom(turn["value"])} for turn in turns]
                sample.meta = {"conversations": turns}
                sample.caption = next(t["value"] for t in turns if t["from"] == "gpt")
                sample.data = read_under(Path(self.image_root), item["image"])
            except Reject as reject:
                sample.reject = reject
                sample.meta = {}
            yield sample


def _valid_conversation(turns: object) -> bool:
    if not isinstance(turns, list) or len(turns) < 2 or len(turns) % 2:
        return False
    expected = ("human", "gpt")
    return all(
        isinstance(t, dict) and t.get("from") == expected[i % 2] and isinstance(t.get("value"), str)
        for i, t in enumerate(turns)
    )


def open_source(
    spec: str, *, image_root: str | None = None, split: str = "train", limit: int | None = None
) -> Source:
    """Parse `KIND:PATH` into a source; unknown kinds and missing paths are `ShowoError`s."""
    kind, sep, path = spec.partition(":")
    if not sep or not path:
        raise ShowoError(f"source {spec!r} must look like KIND:PATH (kinds: {', '.join(KINDS)})")
    if kind not in KINDS:
        raise ShowoError(f"unknown source kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "embedded":
        from data_engine.embedded import EmbeddedSource

        return EmbeddedSource(path, split, limit)
    if kind in ("jsonl", "llava"):
        return FILE_KINDS[kind](path, image_root)
    return FILE_KINDS[kind](path)


FILE_KINDS: dict[str, type[Source]] = {
    "pairs": PairsSource,
    "jsonl": JsonlSource,
    "wds": WdsSource,
    "imagefolder": ImageFolderSource,
    "text": TextSource,
    "llava": LlavaSource,
}
KINDS = (*FILE_KINDS, "embedded")  # embedded: data_engine.embedded, imported on use
