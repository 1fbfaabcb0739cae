"""A fixed bearer token for the ARM emulator (which accepts any token and records who called)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from azure.core.credentials import AccessToken


def _unsigned_jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.emulator"


class StaticTokenCredential:
    """An azure.core TokenCredential that always returns the same token. With `principal_id`, the
    token is an unsigned JWT carrying it as `oid`, which the emulator records as the caller."""

    def __init__(self, token: str | None = None, *, principal_id: str | None = None) -> None:
        if token is None:
            token = _unsigned_jwt({"oid": principal_id or "00000000-0000-0000-0000-00000000e001"})
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)

    def close(self) -> None:
        return None

    def __enter__(self) -> StaticTokenCredential:
        return self

    def __exit__(self, *args: object) -> None:
        return None
