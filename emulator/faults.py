"""Fault injection: fail, delay or drop the next N requests that match a method and a path regex."""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Fault:
    method: str = "*"  # HTTP method or "*"
    path: str = ".*"  # regex searched in the URL path (case-insensitive)
    status: int | None = None  # answer this status with an ARM error body instead of serving
    code: str = "InternalServerError"
    message: str = "Injected fault."
    count: int | None = 1  # how many matching requests it applies to; None = until removed
    retry_after: int | None = None  # Retry-After header on the injected error (e.g. with 429)
    latency_ms: int = 0  # delay before answering (also combinable with the others)
    drop_connection: bool = False  # close the connection without an answer
    lro_fail: bool = False  # serve the write, but its long-running operation ends Failed (code/message)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    matched: int = 0

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path, re.IGNORECASE)

    def matches(self, method: str, path: str) -> bool:
        return (self.method == "*" or self.method.upper() == method.upper()) and bool(
            self._pattern.search(path)
        )

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


_FIELDS = {
    "method": str,
    "path": str,
    "status": int,
    "code": str,
    "message": str,
    "count": int,
    "retry_after": int,
    "latency_ms": int,
    "drop_connection": bool,
    "lro_fail": bool,
}


def parse_fault(data: Any) -> Fault:
    """A fault rule from JSON; ValueError names the field that is wrong."""
    if not isinstance(data, dict):
        raise ValueError("a fault must be a JSON object")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
    for name, kind in _FIELDS.items():
        value = data.get(name)
        if value is None:
            continue
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"fault field '{name}' must be an integer")
        if kind is not int and not isinstance(value, kind):
            raise ValueError(f"fault field '{name}' must be a {kind.__name__}")
    status = data.get("status")
    if status is not None and not 400 <= status <= 599:
        raise ValueError("fault field 'status' must be an HTTP error status (400-599)")
    count = data.get("count", 1)
    if count is not None and count < 1:
        raise ValueError("fault field 'count' must be at least 1 (or null for no limit)")
    if data.get("latency_ms", 0) < 0 or data.get("latency_ms", 0) > 600_000:
        raise ValueError("fault field 'latency_ms' must be between 0 and 600000")
    try:
        re.compile(data.get("path", ".*"))
    except re.error as error:
        raise ValueError(f"fault field 'path' is not a valid regex: {error}") from error
    if not (status or data.get("latency_ms") or data.get("drop_connection") or data.get("lro_fail")):
        raise ValueError("a fault needs at least one of: status, latency_ms, drop_connection, lro_fail")
    return Fault(**{k: v for k, v in data.items() if v is not None or k in ("count",)})


class FaultRules:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._rules.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._rules)

    def take(self, method: str, path: str) -> Fault | None:
        """The first rule matching this request, counted; used-up rules are removed."""
        with self._lock:
            for fault in self._rules:
                if fault.matches(method, path):
                    fault.matched += 1
                    if fault.count is not None:
                        fault.count -= 1
                        if fault.count <= 0:
                            self._rules.remove(fault)
                    return fault
        return None
