"""A JSON array read element by element, never whole (LLaVA instruction files run to a gigabyte and more).

One pass (`index_array`) decodes the elements in turn, counting them, noting the byte offset of every
`every`-th one and hashing the file's bytes; a worker then decodes any range of elements (`read_elements`)
by seeking to the nearest noted offset. Memory stays at one read chunk plus one element, in the builder and
in every worker, where the whole list was held (and copied to each worker) before.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from array import array
from collections.abc import Iterator
from typing import BinaryIO

from showo.errors import ShowoError

CHUNK = 1 << 22
"""Bytes read at a time (4 MiB)."""
WHITESPACE = " \t\r\n"


class _Reader:
    """Decoded text of a byte stream with the byte offset of any consumed position (UTF-8 split safely)."""

    def __init__(self, handle: BinaryIO, offset: int, digest: hashlib._Hash | None = None) -> None:
        self.handle, self.digest = handle, digest
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.text, self.pos, self.offset, self.eof = "", 0, offset, False

    def more(self) -> bool:
        """Read the next chunk; False at the end of the file."""
        if self.eof:
            return False
        data = self.handle.read(CHUNK)
        if self.digest is not None:
            self.digest.update(data)
        self.eof = not data
        self.text = self.text[self.pos :] + self.decoder.decode(data, final=self.eof)
        self.pos = 0
        return bool(data)

    def advance(self, end: int) -> None:
        """Consume the text up to `end`, keeping the byte offset in step."""
        self.offset += len(self.text[self.pos : end].encode("utf-8"))
        self.pos = end

    def skip(self, chars: str) -> str | None:
        """Consume any of `chars`; the next character after them (None at the end of the file)."""
        while True:
            end = self.pos
            while end < len(self.text) and self.text[end] in chars:
                end += 1
            self.advance(end)
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return None


def _elements(reader: _Reader, name: str) -> Iterator[tuple[int, object]]:
    """(byte offset, value) of each element from the reader's position (the start of an element, or of an
    empty list's end) up to the closing bracket; separators are checked as strictly as ``json.loads``."""
    decoder = json.JSONDecoder()
    first = True
    while True:
        char = reader.skip(WHITESPACE)
        if char == "]":
            reader.advance(reader.pos + 1)
            return
        if not first:
            if char != ",":
                found = "the end of the file" if char is None else repr(char)
                raise ShowoError(
                    f"{name} is not valid JSON: expected ',' or ']' at byte {reader.offset}, got {found}"
                )
            reader.advance(reader.pos + 1)
            char = reader.skip(WHITESPACE)
        if char is None:
            raise ShowoError(f"{name} is not valid JSON: the list is never closed")
        while True:
            try:
                value, end = decoder.raw_decode(reader.text, reader.pos)
            except json.JSONDecodeError as err:
                if reader.more():
                    continue
                raise ShowoError(
                    f"{name} is not valid JSON: {err.msg} (element at byte {reader.offset})"
                ) from None
            except RecursionError:
                raise ShowoError(
                    f"{name}: the element at byte {reader.offset} is nested too deeply"
                ) from None
            if end == len(reader.text) and reader.more():
                continue  # a number or literal may go on in the next chunk
            break
        start = reader.offset
        reader.advance(end)
        first = False
        yield start, value


def index_array(handle: BinaryIO, name: str, every: int) -> tuple[int, array, str]:
    """(element count, byte offset of every `every`-th element, sha1 of the file) of a file holding one
    JSON array; anything else (another value, bad JSON, trailing data) is a one-line error naming `name`."""
    digest = hashlib.sha1()
    reader = _Reader(handle, 0, digest)
    if reader.skip("\ufeff" + WHITESPACE) != "[":
        raise ShowoError(f"{name} must hold a JSON list")
    reader.advance(reader.pos + 1)
    count, offsets = 0, array("q")
    for offset, _ in _elements(reader, name):
        if count % every == 0:
            offsets.append(offset)
        count += 1
    if reader.skip(WHITESPACE) is not None:
        raise ShowoError(f"{name} is not valid JSON: extra data after the list")
    while reader.more():  # hash to the end
        pass
    return count, offsets, digest.hexdigest()


def read_elements(
    handle: BinaryIO, offsets: array, every: int, start: int, stop: int, name: str
) -> Iterator[object]:
    """Elements start..stop-1 of an indexed array (those that exist), decoded from the nearest noted offset."""
    if start >= stop or start // every >= len(offsets):
        return
    first = start - start % every
    handle.seek(offsets[start // every])
    reader = _Reader(handle, offsets[start // every])
    for number, (_, value) in enumerate(_elements(reader, name), first):
        if number >= stop:
            return
        if number >= start:
            yield value
