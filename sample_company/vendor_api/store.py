"""In-memory copy of each vendor's records, read from the generated JSONL files.

A file is read again when it changes on disk (`spine change` edits the sources while a server
runs), and so is anything derived from it (`derived`): sort orders, indexes, and each record
serialized once (`encoded`), so that a page is the records' bytes joined, not a fresh
serialization of every record on every request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson


def compact(encoded: bytes) -> bytes:
    """`encoded` in a block of its own size: orjson's output keeps its growth buffer's memory
    allocated, which made a million small cached serializations cost gigabytes."""
    return bytes(memoryview(encoded))


class RecordStore:
    def __init__(self, sources_dir: Path):
        self.sources_dir = sources_dir
        self._cache: dict[tuple[str, str], tuple[int, list[dict]]] = {}
        self._derived: dict[tuple[str, str, str], tuple[int, Any]] = {}
        self._lock = threading.RLock()

    def _path(self, system: str, obj: str) -> Path:
        return self.sources_dir / system / f"{obj}.jsonl"

    def _version(self, system: str, obj: str) -> int:
        try:
            return self._path(system, obj).stat().st_mtime_ns
        except FileNotFoundError:
            return -1

    def records(self, system: str, obj: str, optional: bool = False) -> list[dict]:
        """The object's records; a missing file is a 404 unless the object is `optional`."""
        key = (system, obj)
        with self._lock:
            version = self._version(system, obj)
            cached = self._cache.get(key)
            if cached is None or cached[0] != version:
                path = self._path(system, obj)
                if not path.exists():
                    if optional:
                        return []
                    raise KeyError(obj)
                with path.open() as f:
                    self._cache[key] = (version, [orjson.loads(line) for line in f if line.strip()])
            return self._cache[key][1]

    def derived(self, system: str, obj: str, name: str, build: Callable[[list[dict]], Any], optional: bool = False) -> Any:
        """`build(records)`, computed once per version of the object's file."""
        key = (system, obj, name)
        with self._lock:
            rows = self.records(system, obj, optional=optional)
            version = self._version(system, obj)
            cached = self._derived.get(key)
            if cached is None or cached[0] != version:
                self._derived[key] = (version, build(rows))
            return self._derived[key][1]

    def encoded(self, system: str, obj: str, optional: bool = False) -> dict[int, bytes]:
        """Each record's JSON, by the record's identity (`id(record)`)."""
        return self.derived(system, obj, "encoded", lambda rows: {id(r): compact(orjson.dumps(r)) for r in rows}, optional)

    def fragment(self, system: str, obj: str, rows: list[dict]) -> orjson.Fragment:
        """`rows` (records of this object) as a JSON array, from their stored serializations."""
        encoded = self.encoded(system, obj, optional=True)
        return orjson.Fragment(b"[" + b",".join([encoded[id(r)] for r in rows]) + b"]")
