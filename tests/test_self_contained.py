"""The project stands on its own: no code, test, recipe, doc or script cites a file outside the repository,
and every `docs/<page>.md#<section>` pointer names a section that exists.

Facts about the official implementation and the libraries live in docs/official-differences.md; a pointer
to anything outside the repository (a sibling checkout, an absolute path of one machine) breaks for every
user. The patterns are assembled from pieces so that this file does not match itself.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("showo", "data_engine", "tests", "recipes", "docs", "bench", "docker", ".ci")
TOP_FILES = ("README.md", "Makefile", "pyproject.toml", ".gitignore")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ini", ".sh", ".json", ".jsonl", ""}
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}

SIBLING = ".." + "/" + "shared"
REFERENCE_DIR = "shared" + "/" + "reference"
OUTSIDE_NAMES = ("showo" + "-official.md", "anchors" + ".md", "user" + "-needs.md", "environment" + ".md")
FORBIDDEN = [
    (re.compile(re.escape(SIBLING)), "a sibling directory outside the repository"),
    (re.compile(re.escape(REFERENCE_DIR)), "reference notes outside the repository"),
    (re.compile(r"(?<![\w.~-])/" + "work" + r"/"), "an absolute path of one machine"),
    (re.compile(r"(?<![\w.~-])/" + "tmp/" + "team"), "an absolute path of one machine"),
    (re.compile("\u00a7" + r"\s?\d"), "a section number of a document outside the repository"),
]
ANCHOR = re.compile(r"(?:docs/)?([\w-]+\.md)#([\w-]+)")


def _files(root: Path) -> list[Path]:
    out = [root / name for name in TOP_FILES if (root / name).is_file()]
    for top in SCANNED:
        for path in sorted((root / top).rglob("*")):
            if path.is_file() and not SKIP_DIRS & set(path.parts) and path.suffix in TEXT_SUFFIXES:
                out.append(path)
    return out


def _local_names(root: Path) -> set[str]:
    return {p.name for p in _files(root)}


def outside_references(root: Path) -> list[str]:
    """`file:line: what` for every reference to a path outside `root`."""
    found = []
    local = _local_names(root)
    names = [
        (re.compile(re.escape(n)), "a file outside the repository") for n in OUTSIDE_NAMES if n not in local
    ]
    for path in _files(root):
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            whats = [what for pattern, what in FORBIDDEN + names if pattern.search(line)]
            if whats:
                found.append(f"{path.relative_to(root)}:{number}: {whats[0]}: {line.strip()[:120]}")
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def broken_anchors(root: Path) -> list[str]:
    """`file:line: page#section` for every pointer to a docs section that does not exist."""
    sections: dict[str, set[str]] = {}
    for page in (root / "docs").glob("*.md"):
        headings = re.findall(r"^#+\s+(.+)$", page.read_text(encoding="utf-8"), flags=re.MULTILINE)
        sections[page.name] = {slug(h) for h in headings}
    found = []
    for path in _files(root):
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            for page, anchor in ANCHOR.findall(line):
                if page in sections and anchor not in sections[page]:
                    found.append(f"{path.relative_to(root)}:{number}: {page}#{anchor}")
    return found


def test_nothing_cites_a_file_outside_the_repository():
    found = outside_references(REPO)
    assert not found, "references outside the repository:\n" + "\n".join(found)


def test_every_docs_section_pointer_resolves():
    assert len(_files(REPO)) > 100  # the scan really covers the project
    found = broken_anchors(REPO)
    assert not found, "pointers to missing doc sections:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        "see " + SIBLING + "/reference/notes.md",
        "(" + REFERENCE_DIR + "/x.md section 3)",
        "# facts from " + OUTSIDE_NAMES[0],
        "path = '/" + "work/main/showo'",
        "read /" + "tmp/" + "team/common.md",
        "as the official code does (\u00a7" + "6.1)",
    ],
)
def test_the_scan_catches_each_kind_of_outside_reference(tmp_path, line):
    (tmp_path / "showo").mkdir()
    (tmp_path / "showo" / "mod.py").write_text(f'"""Module."""\n# {line}\n')
    assert [f.split(":")[:2] for f in outside_references(tmp_path)] == [["showo/mod.py", "2"]]


def test_a_pointer_to_a_missing_section_is_caught(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# Page\n\n## Sampling rules\n")
    (tmp_path / "README.md").write_text("See docs/page.md#sampling-rules and docs/page.md#masking.\n")
    assert broken_anchors(tmp_path) == ["README.md:1: page.md#masking"]
