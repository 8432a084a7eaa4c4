"""The vendors' records, served from the generated JSONL files without holding them in memory.

A file is indexed once per version (`Table`): where each record's line starts and ends, and the
few fields of each record that requests sort and filter by. A page is its records' lines read
back from the file and joined, so the records themselves never sit in the server's memory:
held as Python objects, the `large` company's 1.4 GB of files took 8.7 GB. The lines stay in
the operating system's page cache, which the kernel shares and reclaims, rather than in the
process.

A file is indexed again when it changes on disk (`spine change` and `spine add-day` replace the
sources while a server runs), and so is anything derived from it (`RecordStore.derived`): sort
orders and lookups. An index is kept beside its file (`.index/<file>.pickle`, stamped with the
file's version and the fields indexed), so a server started on unchanged files does not read
them again, and the commands that change the vendors' data index what they wrote
(`index_files`), as a vendor's own systems do when its data changes: indexing the `large`
company takes about 20 s, which a run would otherwise spend waiting for its first pages.

The vendors' deletion endpoints write: `RecordStore.rewrite` replaces a file the same way those
commands do (written beside it, then moved over it), so it is indexed again like any other
change, and every deletion request is noted in the vendor's `deletion_requests.jsonl`
(`RecordStore.note_deletion`), which is no object of the vendor's and is never served.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import orjson

T = TypeVar("T")
# A vendor's fields a table keeps per record, given the object's name and the record.
Fields = Callable[[str, dict], tuple]


# Bumped when what an index holds changes shape.
INDEX_FORMAT = 1
# Where each vendor's folder notes the deletion requests it received (one JSON line each).
DELETION_REQUESTS = "deletion_requests.jsonl"


class Write(NamedTuple):
    """A vendor's answer to a request that changes its records: the status, the body (None for
    an answer without one) and the id of the object the request named, as the deletion log
    keeps it (None when the request named none the vendor holds)."""

    status: int
    body: dict | None
    object_id: str | None = None


@functools.cache
def _digest(fields: Fields | None) -> str:
    """Which code built an index: the source of the module defining `fields` (a change to it,
    or to anything it calls there, indexes again)."""
    if fields is None:
        return ""
    return hashlib.sha256(Path(sys.modules[fields.__module__].__file__).read_bytes()).hexdigest()


def _keep(path: Path, index: tuple) -> None:
    """Write an index beside its file, whole or not at all; a folder it cannot write to only
    means the next server indexes the file again."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(exist_ok=True)
        with open(partial, "wb") as f:
            pickle.dump(index, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(partial, path)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


class Table:
    """One version of one object's file: its records by position (file order), read on demand,
    and `columns[name][position]` for the fields its vendor indexes."""

    def __init__(self, system: str, obj: str, path: str, names: Sequence[str], fields: Fields | None):
        self.system, self.obj = system, obj
        self._file = open(path, "rb")  # noqa: SIM115 (held while the version is served; closed with the table)
        self._fd = self._file.fileno()
        stat = os.fstat(self._fd)
        # The version of the file this table reads, whatever has replaced the path since.
        self.version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        stamp = (INDEX_FORMAT, self.version, tuple(names), _digest(fields))
        kept = Path(path).parent / ".index" / f"{Path(path).name}.pickle"
        try:
            with open(kept, "rb") as f:
                found = pickle.load(f)
            if found[0] == stamp:
                self.offsets, self.lengths, self.columns = found[1:]
                return
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, IndexError, TypeError):
            pass
        self._index(names, fields)
        _keep(kept, (stamp, self.offsets, self.lengths, self.columns))

    def _index(self, names: Sequence[str], fields: Fields | None) -> None:
        self.offsets, self.lengths = array("q"), array("q")
        rows: list[tuple] = []
        offset = 0
        loads, obj = orjson.loads, self.obj
        for line in self._file:
            size = len(line)
            body = line.rstrip()
            if body:
                self.offsets.append(offset)
                self.lengths.append(len(body))
                if fields is not None:
                    rows.append(fields(obj, loads(body)))
            offset += size
        self.columns: dict[str, list] = {
            name: list(column) for name, column in zip(names, zip(*rows) if rows else [()] * len(names))
        }

    @classmethod
    def empty(cls, system: str, obj: str, names: Sequence[str]) -> Table:
        """A missing optional object: no records."""
        table = cls.__new__(cls)
        table.system, table.obj, table.version = system, obj, None
        table._file, table._fd = None, -1
        table.offsets, table.lengths = array("q"), array("q")
        table.columns = {name: [] for name in names}
        return table

    def __len__(self) -> int:
        return len(self.offsets)

    def raw(self, position: int) -> bytes:
        """The record's JSON, as its line in the file holds it."""
        return os.pread(self._fd, self.lengths[position], self.offsets[position])

    def raws(self, positions: Sequence[int]) -> list[bytes]:
        """The lines of `positions`: one read when they lie close together in the file (a list in
        file order), else one read each."""
        if not positions:
            return []
        first, last = min(positions), max(positions)
        start, end = self.offsets[first], self.offsets[last] + self.lengths[last]
        if end - start <= 2 * sum(self.lengths[p] for p in positions):
            span = memoryview(os.pread(self._fd, end - start, start))
            return [bytes(span[self.offsets[p] - start : self.offsets[p] - start + self.lengths[p]]) for p in positions]
        return [self.raw(p) for p in positions]

    def record(self, position: int) -> dict:
        return orjson.loads(self.raw(position))

    def records(self, positions: Sequence[int]) -> list[dict]:
        return [orjson.loads(raw) for raw in self.raws(positions)]

    def scan(self) -> Iterator[tuple[int, dict]]:
        """Every record with its position, in file order."""
        for position in range(len(self)):
            yield position, self.record(position)

    def fragment(self, positions: Sequence[int]) -> orjson.Fragment:
        """The records at `positions` as one JSON array, from their lines' bytes."""
        return orjson.Fragment(b"[" + b",".join(self.raws(positions)) + b"]")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def rewrite_lines(path: Path, edit: Callable[[bytes], bytes | None], append: Sequence[bytes] = ()) -> bool:
    """Apply `edit` to every record line of the file (its JSON, without the line end): the line
    it returns replaces it, None drops it; then add the `append` lines (a missing file is made
    of them alone). Only when something changed is the file replaced, in one step: a server
    reading it meanwhile sees the old or the new version, and the new one (a new file, so a new
    version) is indexed again on its next request. True if it was replaced."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    changed = bool(append)
    try:
        with open(partial, "wb") as out:
            if path.exists():
                with open(path, "rb") as source:
                    for line in source:
                        body = line.rstrip()
                        edited = edit(body) if body else body
                        if edited is not body:
                            changed = True
                        elif not line.endswith(b"\n"):
                            line += b"\n"
                        if edited is not None:
                            out.write(line if edited is body else edited + b"\n")
            for line in append:
                out.write(line + b"\n")
        if changed:
            if path.exists():
                os.chmod(partial, os.stat(path).st_mode & 0o7777)
            os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return changed


class RecordStore:
    def __init__(self, sources_dir: Path):
        self.sources_dir = sources_dir
        self._tables: dict[tuple[str, str], Table] = {}
        self._derived: dict[tuple[str, str, str], tuple[tuple | None, Any]] = {}
        self._lock = threading.RLock()
        # Held by a request while it changes records: one deletion's reads and rewrites of a
        # vendor's files are not interleaved with another's.
        self.writing = threading.RLock()

    def path(self, system: str, obj: str) -> Path:
        return self.sources_dir / system / f"{obj}.jsonl"

    def rewrite(
        self, system: str, obj: str, edit: Callable[[bytes], bytes | None], append: Sequence[bytes] = ()
    ) -> bool:
        """`rewrite_lines` on the object's file (a missing file is a 404, `KeyError`, unless
        there are lines to `append`: they make it)."""
        path = self.path(system, obj)
        if not append and not path.exists():
            raise KeyError(obj)
        with self.writing:
            return rewrite_lines(path, edit, append)

    def note_deletion(self, system: str, method: str, path: str, object_id: str | None, status: int) -> None:
        """Append one line to the vendor's deletion log: what was asked, of which object, when,
        and what the vendor answered."""
        line = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "method": method,
            "path": path,
            "object_id": object_id,
            "status": status,
        }
        with self.writing, open(self.sources_dir / system / DELETION_REQUESTS, "ab") as log:
            log.write(orjson.dumps(line) + b"\n")

    def table(
        self, system: str, obj: str, names: Sequence[str] = (), fields: Fields | None = None, optional: bool = False
    ) -> Table:
        """The object's current table, indexed by `fields` (named `names`); one `stat` per call,
        as every request makes one. A missing file is a 404 (`KeyError`) unless the object is
        `optional`. A vendor asks with the same fields for every object of its own."""
        path = str(self.sources_dir / system / f"{obj}.jsonl")
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            if optional:
                return Table.empty(system, obj, names)
            raise KeyError(obj) from None
        version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        with self._lock:
            table = self._tables.get((system, obj))
            if table is None or table.version != version:
                if table is not None:
                    self._forget(system, obj)
                table = self._tables[(system, obj)] = Table(system, obj, path, names, fields)
            return table

    def _forget(self, system: str, obj: str) -> None:
        """Drop what was derived from a replaced version (its file closes once no request
        still reads it)."""
        for key in [k for k in self._derived if k[:2] == (system, obj)]:
            del self._derived[key]
        del self._tables[(system, obj)]

    def derived(self, table: Table, name: str, build: Callable[[Table], T]) -> T:
        """`build(table)`, computed once per version of the table's file."""
        key = (table.system, table.obj, name)
        with self._lock:
            cached = self._derived.get(key)
            if cached is None or cached[0] != table.version:
                cached = self._derived[key] = (table.version, build(table))
            return cached[1]
