"""In-memory copy of each vendor's records, loaded once from the generated JSONL files."""

from __future__ import annotations

import json
import threading
from pathlib import Path


class RecordStore:
    def __init__(self, sources_dir: Path):
        self.sources_dir = sources_dir
        self._cache: dict[tuple[str, str], list[dict]] = {}
        self._lock = threading.Lock()

    def records(self, system: str, obj: str) -> list[dict]:
        key = (system, obj)
        with self._lock:
            if key not in self._cache:
                path = self.sources_dir / system / f"{obj}.jsonl"
                if not path.exists():
                    raise KeyError(obj)
                with path.open() as f:
                    self._cache[key] = [json.loads(line) for line in f if line.strip()]
            return self._cache[key]
