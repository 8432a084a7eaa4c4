"""In-memory copy of each vendor's records, read from the generated JSONL files.

A file is read again when it changes on disk (`spine change` edits the sources while a server
runs), and so is anything derived from it (`derived`): sort orders, indexes, and each record
serialized once (`encoded`), so that a page is the records' bytes joined, not a fresh
serialization of every record on every request.
"""

from __future__ import annotations

import os
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
        self._paths: dict[tuple[str, str], str] = {}
        self._lock = threading.RLock()

    def _path(self, system: str, obj: str) -> str:
        path = self._paths.get((system, obj))
        if path is None:
            path = self._paths[(system, obj)] = str(self.sources_dir / system / f"{obj}.jsonl")
        return path

    def _load(self, system: str, obj: str, optional: bool) -> tuple[int, list[dict]]:
        """(version, records): the file's modification time, and its records read again if it
        changed; one `stat` per call, as every request makes several."""
        key = (system, obj)
        path = self._path(system, obj)
        try:
            version = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            if optional:
                return -1, []
            raise KeyError(obj) from None
        cached = self._cache.get(key)
        if cached is None or cached[0] != version:
            with open(path) as f:
                cached = self._cache[key] = (version, [orjson.loads(line) for line in f if line.strip()])
        return cached

    def records(self, system: str, obj: str, optional: bool = False) -> list[dict]:
        """The object's records; a missing file is a 404 unless the object is `optional`."""
        with self._lock:
            return self._load(system, obj, optional)[1]

    def derived(
        self, system: str, obj: str, name: str, build: Callable[[list[dict]], Any], optional: bool = False
    ) -> Any:
        """`build(records)`, computed once per version of the object's file."""
        key = (system, obj, name)
        with self._lock:
            version, rows = self._load(system, obj, optional)
            cached = self._derived.get(key)
            if cached is None or cached[0] != version:
                cached = self._derived[key] = (version, build(rows))
            return cached[1]

    def encoded(self, system: str, obj: str, optional: bool = False) -> dict[int, bytes]:
        """Each record's JSON, by the record's identity (`id(record)`)."""
        return self.derived(
            system, obj, "encoded", lambda rows: {id(r): compact(orjson.dumps(r)) for r in rows}, optional
        )

    def fragment(self, system: str, obj: str, rows: list[dict]) -> orjson.Fragment:
        """`rows` (records of this object) as a JSON array, from their stored serializations."""
        encoded = self.encoded(system, obj, optional=True)
        return orjson.Fragment(b"[" + b",".join([encoded[id(r)] for r in rows]) + b"]")
