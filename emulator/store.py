"""The shared, thread-safe resource store, persisted write-behind as one JSON file in the data dir.

Bodies handed out by `get`/`list` are the stored objects: treat them as read-only and `copy.deepcopy`
before changing; `put` stores its own deep copy.
"""

from __future__ import annotations

import builtins
import copy
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from emulator.ids import key

log = logging.getLogger("emulator.store")


class StoreListener(Protocol):
    """Keeps a derived index current: told of every change, under the store lock."""

    def update(self, old: Record | None, new: Record | None) -> None: ...

    def reset(self) -> None: ...


@dataclass
class Record:
    id: str
    type_key: str  # e.g. "Microsoft.Network/networkSecurityGroups"
    body: dict[str, Any]


class Store:
    def __init__(self, path: Path | None) -> None:
        self.lock = threading.RLock()
        self._path = path
        self._records: dict[str, Record] = {}
        self._by_type: dict[str, dict[str, Record]] = {}
        self.extra: dict[str, Any] = {}  # other persistent state (operations), owned by the engine
        self.indexes: dict[str, Any] = {}  # derived, in-memory indexes providers keep (see add_listener)
        self._listeners: builtins.list[StoreListener] = []
        self._dirty = False
        self.version = 0  # bumped on every change; lets providers cache derived indexes
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        if path is not None and path.exists():
            self._load(path)

    # --- reading -------------------------------------------------------------------------------

    def get(self, resource_id: str) -> Record | None:
        with self.lock:
            return self._records.get(key(resource_id))

    def list(self, type_key: str, *, under: str | None = None) -> list[Record]:
        """Records of one type, optionally only those whose id starts with `under` + "/"."""
        with self.lock:
            records = list(self._by_type.get(type_key.lower(), {}).values())
        if under is None:
            return records
        prefix = key(under) + "/"
        return [r for r in records if key(r.id).startswith(prefix)]

    def children(self, parent_id: str) -> builtins.list[Record]:
        prefix = key(parent_id) + "/"
        with self.lock:
            return [r for k, r in self._records.items() if k.startswith(prefix)]

    def all(self) -> Iterator[Record]:
        with self.lock:
            records = list(self._records.values())
        return iter(records)

    def __len__(self) -> int:
        return len(self._records)

    # --- writing -------------------------------------------------------------------------------

    def put(self, resource_id: str, type_key: str, body: dict[str, Any]) -> Record:
        record = Record(resource_id, type_key, copy.deepcopy(body))
        with self.lock:
            k = key(resource_id)
            old = self._records.get(k)
            if old is not None and old.type_key.lower() != type_key.lower():
                self._by_type.get(old.type_key.lower(), {}).pop(k, None)
            self._records[k] = record
            self._by_type.setdefault(type_key.lower(), {})[k] = record
            for listener in self._listeners:
                listener.update(old, record)
            self.mark_dirty()
        return record

    def delete(self, resource_id: str) -> Record | None:
        with self.lock:
            k = key(resource_id)
            record = self._records.pop(k, None)
            if record is not None:
                self._by_type.get(record.type_key.lower(), {}).pop(k, None)
                for listener in self._listeners:
                    listener.update(record, None)
                self.mark_dirty()
            return record

    def clear(self) -> None:
        with self.lock:
            self._records.clear()
            self._by_type.clear()
            self.extra.clear()
            for listener in self._listeners:
                listener.reset()
            self.mark_dirty()

    def add_listener(self, listener: StoreListener) -> None:
        """Register an index; it is first fed every record already stored."""
        with self.lock:
            self._listeners.append(listener)
            for record in self._records.values():
                listener.update(None, record)

    def mark_dirty(self) -> None:
        """Something changed: persist soon, and drop caches derived from the store (`version`)."""
        with self.lock:
            self._dirty = True
            self.version += 1

    # --- persistence ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "resources": [
                    {"id": r.id, "type": r.type_key, "body": r.body} for r in self._records.values()
                ],
                "extra": self.extra,
            }

    def _load(self, path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        for item in data.get("resources", []):
            self.put(item["id"], item["type"], item["body"])
        self.extra.update(data.get("extra", {}))
        self._dirty = False
        log.info("store.loaded resources=%d path=%s", len(self._records), path)

    def flush(self) -> None:
        if self._path is None:
            return
        with self.lock:
            if not self._dirty:
                return
            # Stored bodies are never changed in place, so they can be serialised outside the lock.
            records = [{"id": r.id, "type": r.type_key, "body": r.body} for r in self._records.values()]
            extra = json.loads(json.dumps(self.extra))
            self._dirty = False
        text = json.dumps({"resources": records, "extra": extra}, separators=(",", ":"))
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self._path)

    def start_writer(self, interval: float = 0.3) -> None:
        """Write behind: a change is on disk within `interval` seconds (longer for large estates)."""
        if self._path is None or self._writer is not None:
            return

        def run() -> None:
            pause = interval
            while not self._stopping.wait(pause):
                started = time.monotonic()
                try:
                    self.flush()
                    # Large estates take a while to serialise: write less often rather than
                    # spending most of the CPU on it.
                    pause = max(interval, 3 * (time.monotonic() - started))
                except Exception:
                    log.exception("store.flush_failed")

        self._writer = threading.Thread(target=run, name="store-writer", daemon=True)
        self._writer.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._writer is not None:
            self._writer.join(timeout=5)
        self.flush()
