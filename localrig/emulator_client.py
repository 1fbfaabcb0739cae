"""Talking to a running ARM emulator: SDK clients pointed at it, and its admin endpoints."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from localrig.credentials import StaticTokenCredential

DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-0000000000e1"
ClientT = TypeVar("ClientT")


def send_json(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    *,
    context: ssl.SSLContext | None = None,
    timeout: float = 30,
) -> tuple[int, Any]:
    """One JSON call to a service of the local stack: (status, parsed JSON or None), errors included
    (a 4xx/5xx is an answer to look at, not an exception)."""
    data = None if body is None else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)  # noqa: S310 - local
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout) as response:  # noqa: S310
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None


class EmulatorClient:
    def __init__(self, base_url: str, ca_file: Path, subscription_id: str = DEFAULT_SUBSCRIPTION) -> None:
        self.base_url = base_url.rstrip("/")
        self.ca_file = ca_file
        self.subscription_id = subscription_id
        self.credential = StaticTokenCredential()
        self._ssl = ssl.create_default_context(cafile=str(ca_file))

    def client(
        self, client_class: type[ClientT], subscription_id: str | None = None, **kwargs: Any
    ) -> ClientT:
        """An azure-mgmt-* client talking to the emulator: only base URL, CA bundle and polling
        interval differ from Azure."""
        options: dict[str, Any] = {
            "base_url": self.base_url,
            "connection_verify": str(self.ca_file),
            "polling_interval": 0,
            **kwargs,
        }
        credential = options.pop("credential", self.credential)
        return client_class(credential, subscription_id or self.subscription_id, **options)  # type: ignore[call-arg]

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call an admin endpoint (`/_emulator/...`); returns (status, parsed JSON or None)."""
        return send_json(method, f"{self.base_url}{path}", body, context=self._ssl)

    def admin_ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.admin(method, path, body)
        if status >= 400:
            raise AssertionError(f"{method} {path} -> {status}: {answer}")
        return answer

    def new_resource_group(self, location: str = "westeurope", prefix: str = "rg") -> str:
        """A resource group with a unique name (tests share one emulator)."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.admin_ok(
            "PUT",
            f"/_emulator/resources/subscriptions/{self.subscription_id}/resourceGroups/{name}",
            {"location": location},
        )
        return name

    def seed(self, resources: list[dict[str, Any]]) -> Any:
        return self.admin_ok("POST", "/_emulator/seed", {"resources": resources})

    def add_fault(self, **fault: Any) -> Any:
        return self.admin_ok("POST", "/_emulator/faults", fault)

    def clear_faults(self) -> None:
        self.admin_ok("DELETE", "/_emulator/faults")

    def requests(self) -> Any:
        return self.admin_ok("GET", "/_emulator/requests")

    def log_mark(self) -> int:
        """The number the next logged request will get: pass it to `requests_since` later."""
        return int(self.admin_ok("GET", f"/_emulator/requests?since={2**62}")["next"])

    def requests_since(self, mark: int) -> list[dict[str, Any]]:
        """The requests logged from `mark` (a `log_mark()`) on, however long the log has grown."""
        return list(self.admin_ok("GET", f"/_emulator/requests?since={mark}")["log"])

    def resource(self, resource_id: str) -> Any:
        return self.admin_ok("GET", f"/_emulator/resources{resource_id}")

    def put_resource(self, resource_id: str, body: dict[str, Any]) -> Any:
        """Write behind the app's back (drift): no locks, no preconditions, no LRO."""
        return self.admin_ok("PUT", f"/_emulator/resources{resource_id}", body)

    @contextmanager
    def lro_seconds(self, durations: dict[str, float]) -> Iterator[None]:
        """Temporarily change long-running operation durations per type (`default` for all others)."""
        before = self.admin_ok("GET", "/_emulator/config")["lro_seconds"]
        self.admin_ok("POST", "/_emulator/config", {"lro_seconds": durations})
        try:
            yield
        finally:
            restore = {k: before.get(k.lower(), before.get(k, before["default"])) for k in durations}
            self.admin_ok("POST", "/_emulator/config", {"lro_seconds": restore})
