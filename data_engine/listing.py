"""On-disk sorted listings of directory sources (`pairs:`, `imagefolder:`), made once per build.

A directory of 100M images cannot be listed, sorted and stat-ed in memory by every rank on every start
and resume (about 1.2 KB per input as Python objects). Instead the first partition walks it once,
streaming every entry (with its skip reason, see `data_engine.paths`) into a SQLite file in `--out`;
SQLite sorts on disk, and the file holds the final order with a position per entry, so a unit reads
its span by position and the fingerprint is computed from it in one pass. Every rank and every resume
reuses it, after checking that no listed folder changed (their modification times: adding, removing or
renaming a file changes its folder's). `--verify` lists the source again.

Order: by path relative to the root as Python sorts strings (code points; names are stored as UTF-8
with surrogates passed through, whose byte order is the same), within groups (imagefolder: the
skipped top-level entries, then each class in sorted order).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from data_engine.decode import UNREADABLE
from data_engine.paths import NOT_A_FILE, ORPHAN_CAPTION, UNSUPPORTED_TYPE, Entry, _classify, _ext
from data_engine.writer import remove_temporaries, temporary
from showo.errors import ShowoError
from showo.safeio import loads_json

VERSION = 1
CACHE_KIB = 32 * 1024
"""SQLite's page cache while listing: the memory a listing may use, whatever the number of files."""


def index_file(out: Path, spec: str) -> Path:
    """The listing of source `spec` inside the build directory (named by the spec, so a build into the
    same directory from another source does not reuse it)."""
    return out / f".index-{hashlib.sha1(spec.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}.sqlite"


def is_index_file(name: str) -> bool:
    return name.startswith(".index-") and (name.endswith(".sqlite") or name.endswith(".tmp"))


def encode(rel: str) -> bytes:
    return rel.encode("utf-8", "surrogatepass")


def decode(key: bytes) -> str:
    return key.decode("utf-8", "surrogatepass")


def _connect(path: Path, read_only: bool = False) -> sqlite3.Connection:
    if read_only:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    else:
        db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=OFF", "synchronous=OFF", "temp_store=FILE", f"cache_size=-{CACHE_KIB}"):
        db.execute(f"PRAGMA {pragma}")
    return db


class _Writer:
    """Streams entries into a staging table (attached from its own file, deleted afterwards), in batches
    of at most 10,000 rows."""

    def __init__(self, db: sqlite3.Connection, staging: Path):
        self.db = db
        db.execute("ATTACH DATABASE ? AS s", (str(staging),))
        db.execute("BEGIN")
        db.execute("CREATE TABLE s.entries(grp INTEGER, key BLOB, reason TEXT, detail TEXT, size INTEGER)")
        db.execute("CREATE TABLE s.stems(stem BLOB PRIMARY KEY) WITHOUT ROWID")
        db.execute("CREATE TABLE s.companions(key BLOB, reason TEXT, detail TEXT, stem BLOB)")
        db.execute("CREATE TABLE dirs(key BLOB, mtime_ns INTEGER)")
        self.rows: list[tuple] = []
        self.stems: list[tuple[bytes]] = []
        self.companions: list[tuple] = []

    def entry(self, group: int, entry: Entry) -> None:
        self.rows.append((group, encode(entry.rel), entry.reason, entry.detail, entry.size))
        if len(self.rows) >= 10_000:
            self.flush()

    def flush(self) -> None:
        self.db.executemany("INSERT INTO s.entries VALUES (?, ?, ?, ?, ?)", self.rows)
        self.db.executemany("INSERT OR IGNORE INTO s.stems VALUES (?)", self.stems)
        self.db.executemany("INSERT INTO s.companions VALUES (?, ?, ?, ?)", self.companions)
        self.rows, self.stems, self.companions = [], [], []

    def stem(self, rel: str) -> None:
        self.stems.append((encode(_stem(rel)),))

    def companion(self, entry: Entry) -> None:
        self.companions.append((encode(entry.rel), entry.reason, entry.detail, encode(_stem(entry.rel))))
        if len(self.companions) >= 10_000:
            self.flush()

    def directory(self, rel: str, mtime_ns: int) -> None:
        self.db.execute("INSERT INTO dirs VALUES (?, ?)", (encode(rel), mtime_ns))


def _stem(rel: str) -> str:
    return str(PurePosixPath(rel).with_suffix(""))


def _entries(directory: Path) -> Iterator[os.DirEntry]:
    """A folder's entries in the order the file system gives them (the index sorts; holding a folder of
    millions of entries to sort it here would not be bounded)."""
    try:
        with os.scandir(directory) as listing:
            yield from listing
    except OSError as err:
        raise ShowoError(f"cannot list {directory}: {err.strerror or err}") from None


def _walk(
    root: Path, out: _Writer, group: int, wanted: frozenset[str], companions: frozenset[str], under: str = ""
) -> None:
    """`data_engine.paths` rules for every entry under `root` (or its subfolder `under`), streamed: files
    with a `wanted` extension to read; every entry that is neither wanted nor a companion with the reason
    it is skipped; companions are kept aside to be matched with images by stem."""

    def visit(directory: Path, prefix: str, mtime_ns: int) -> None:
        out.directory(prefix.rstrip("/"), mtime_ns)
        try:
            for item in _entries(directory):
                rel = prefix + item.name
                extension = _ext(item.name)
                reason, detail, info = _classify(root, directory / item.name, item.is_symlink())
                if info is not None and stat.S_ISDIR(info.st_mode):
                    if extension in wanted:
                        out.entry(group, Entry(rel, NOT_A_FILE, "a directory named like an image"))
                        out.stem(rel)
                    visit(directory / item.name, rel + "/", info.st_mtime_ns)
                    continue
                if reason is None and not stat.S_ISREG(info.st_mode):
                    reason, detail = NOT_A_FILE, "not a regular file"
                if extension in companions:
                    out.companion(Entry(rel, reason, detail))
                elif reason is None and extension not in wanted:
                    message = f"extension {extension!r}" if extension else ""
                    out.entry(group, Entry(rel, UNSUPPORTED_TYPE, message))
                else:
                    out.entry(group, Entry(rel, reason, detail, info.st_size if reason is None else 0))
                    if extension in wanted:
                        out.stem(rel)
        except ShowoError:
            if not prefix:
                raise
            out.entry(group, Entry(prefix.rstrip("/"), UNREADABLE, "cannot list the folder"))

    start = root / under
    try:
        mtime_ns = start.stat().st_mtime_ns
    except OSError as err:
        raise ShowoError(f"cannot list {start}: {err.strerror or err}") from None
    visit(start, f"{under}/" if under else "", mtime_ns)


def _finish(db: sqlite3.Connection, writer: _Writer, group: int) -> None:
    """Companions with no image of their stem are inputs of their own (rejected); then the final order."""
    writer.flush()
    db.execute(
        "INSERT INTO s.entries SELECT ?, key, COALESCE(reason, ?),"
        " CASE WHEN reason IS NULL THEN ? ELSE detail END, 0"
        " FROM s.companions WHERE stem NOT IN (SELECT stem FROM s.stems)",
        (group, ORPHAN_CAPTION, "no image of the same name"),
    )
    db.execute(
        "CREATE TABLE listing(pos INTEGER PRIMARY KEY, grp INTEGER, key BLOB, reason TEXT, detail TEXT,"
        " size INTEGER)"
    )
    db.execute(
        "INSERT INTO listing SELECT row_number() OVER (ORDER BY grp, key, rowid) - 1, grp, key, reason, detail,"
        " size FROM s.entries ORDER BY grp, key, rowid"
    )


def build_index(
    path: Path,
    root: Path,
    walks: list[tuple[int, str, frozenset[str], frozenset[str]]],
    first: list[Entry] = (),
) -> dict:
    """List `root` into `path` (under a temporary name, renamed when complete) and return its metadata
    (`count`, `fingerprint`): `first` are entries of group 0 known already, each walk is (group,
    subfolder, wanted extensions, companion extensions)."""
    staging_name = path.with_name(path.stem + "-staging.sqlite")
    remove_temporaries(path)  # left by a killed listing (the caller holds the metadata lock)
    remove_temporaries(staging_name)
    tmp, staging = temporary(path), temporary(staging_name)
    try:
        db = _connect(tmp)
        try:
            writer = _Writer(db, staging)
            writer.directory("", root.stat().st_mtime_ns)  # a new class folder changes the root's time
            for entry in first:
                writer.entry(0, entry)
            for group, under, wanted, companions in walks:
                _walk(root, writer, group, wanted, companions, under)
            _finish(db, writer, walks[0][0])
            db.execute("COMMIT")
            db.execute("DETACH DATABASE s")
            digest, count = hashlib.sha1(), 0
            for key, reason, size in db.execute("SELECT key, reason, size FROM listing ORDER BY pos"):
                digest.update(f"{decode(key)}\0{reason or size}\n".encode("utf-8", "surrogateescape"))
                count += 1
            info = {
                "version": VERSION,
                "root": str(root),
                "count": count,
                "fingerprint": digest.hexdigest(),
            }
            db.execute("CREATE TABLE meta(value TEXT)")
            db.execute("INSERT INTO meta VALUES (?)", (json.dumps(info),))
        finally:
            db.close()
        os.replace(tmp, path)
        return info
    except sqlite3.Error as err:
        raise ShowoError(f"cannot write the source listing {path}: {err}") from None
    except OSError as err:
        raise ShowoError(f"cannot write the source listing {path}: {err.strerror or err}") from None
    finally:
        tmp.unlink(missing_ok=True)
        staging.unlink(missing_ok=True)


def read_meta(path: Path, root: Path) -> dict | None:
    """The stored listing's metadata when it is complete, of this root, and no listed folder changed."""
    try:
        db = _connect(path, read_only=True)
    except sqlite3.Error:
        return None
    try:
        (text,) = db.execute("SELECT value FROM meta").fetchone()
        meta = loads_json(text)
        if meta.get("version") != VERSION or meta.get("root") != str(root):
            return None
        for key, mtime_ns in db.execute("SELECT key, mtime_ns FROM dirs"):
            if (root / decode(key)).stat().st_mtime_ns != mtime_ns:
                return None
        return meta
    except (sqlite3.Error, OSError, TypeError, ValueError):
        return None
    finally:
        db.close()


class Listing:
    """Read side: entries by position, one connection per process (DataLoader workers open their own)."""

    def __init__(self, path: Path):
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._pid = 0

    def __getstate__(self) -> dict:
        return {"path": self.path, "_db": None, "_pid": 0}

    def entries(self, start: int, stop: int) -> Iterator[tuple[int, Entry]]:
        """(group, entry) at positions start..stop-1."""
        if self._db is None or self._pid != os.getpid():
            try:
                self._db = _connect(self.path, read_only=True)
            except sqlite3.Error as err:
                raise ShowoError(f"cannot read the source listing {self.path}: {err}") from None
            self._pid = os.getpid()
        try:
            rows = self._db.execute(
                "SELECT grp, key, reason, detail, size FROM listing WHERE pos >= ? AND pos < ? ORDER BY pos",
                (start, stop),
            ).fetchall()
        except sqlite3.Error as err:
            raise ShowoError(f"cannot read the source listing {self.path}: {err}") from None
        for group, key, reason, detail, size in rows:
            yield group, Entry(decode(key), reason, detail, size)
