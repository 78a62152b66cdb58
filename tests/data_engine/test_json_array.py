"""`data_engine.json_array`: an indexed JSON array read in ranges gives exactly `json.loads` of the whole
file, across read chunks and index checkpoints; a file that is not one JSON list is one line."""

from __future__ import annotations

import hashlib
import io
import json

import pytest

from data_engine import json_array
from data_engine.json_array import index_array, read_elements
from showo.errors import ShowoError

ITEMS = [
    {"id": "a", "conversations": [{"from": "human", "value": 'say "[1, 2]", then } and ,'}]},
    [1, 2.5, -3e4, True, False, None, [], {}],
    "é ü 漢字 \U0001f600 \\u escapes: \u00e9",
    12345678901234567890,
    {"nested": {"deep": [[[{"x": "]"}]]]}},
    0,
    "",
]


def encoded(items: list, indent: int | None = None, bom: bool = False) -> bytes:
    text = json.dumps(items, indent=indent, ensure_ascii=False)
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


@pytest.mark.parametrize("chunk", [1, 3, 7, 4096])
@pytest.mark.parametrize("every", [1, 2, 5])
@pytest.mark.parametrize("indent", [None, 2])
def test_every_range_decodes_like_the_whole_file(monkeypatch, chunk, every, indent):
    monkeypatch.setattr(json_array, "CHUNK", chunk)  # elements and UTF-8 characters straddle reads
    data = encoded(ITEMS * 3, indent, bom=indent is not None)
    count, offsets, digest = index_array(io.BytesIO(data), "f", every)
    assert count == len(ITEMS) * 3 and digest == hashlib.sha1(data).hexdigest()
    assert len(offsets) == -(-count // every)
    whole = json.loads(data.decode("utf-8-sig"))
    for start in range(count + 1):
        for stop in (start, start + 1, start + 4, count):
            got = list(read_elements(io.BytesIO(data), offsets, every, start, stop, "f"))
            assert got == whole[start:stop], (start, stop)


@pytest.mark.parametrize(
    ("data", "cause"),
    [
        (b'{"a": 1}', "must hold a JSON list"),
        (b"", "must hold a JSON list"),
        (b'[{"a": 1}, {"b": ]', "is not valid JSON: Expecting value"),
        (b'[{"a": 1}, {"b": 2}', "got the end of the file"),
        (b"[1, 2] [3]", "extra data after the list"),
        (b'["unterminated', "is not valid JSON: Unterminated string"),
        (b"[1, 2,]", "is not valid JSON: Expecting value"),
        (b"[1,, 2]", "is not valid JSON: Expecting value"),
        (b"[, 1]", "is not valid JSON: Expecting value"),
        (b"[1 2]", "expected ',' or ']' at byte 3, got '2'"),
        (b"[1,", "the list is never closed"),
        (b"[1, 2", "expected ',' or ']' at byte 5, got the end of the file"),
        (b"[" + b"[" * 100_000 + b"]" * 100_000 + b"]", "nested too deeply"),
    ],
)
def test_anything_but_one_json_list_is_one_line(data, cause):
    """As strict as ``json.loads`` (no missing, doubled or trailing commas)."""
    with pytest.raises(ShowoError, match=cause) as info:
        index_array(io.BytesIO(data), "llava source x.json", 4)
    assert "\n" not in str(info.value) and str(info.value).startswith("llava source x.json")


def test_an_empty_list_has_no_elements():
    count, offsets, _ = index_array(io.BytesIO(b" [ ] \n"), "f", 4)
    assert count == 0 and len(offsets) == 0
    assert list(read_elements(io.BytesIO(b"[]"), offsets, 4, 0, 5, "f")) == []
