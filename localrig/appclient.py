"""A small client of the app's HTTP API that `make up`'s seed, the demo and the end-to-end tests
share: it calls as a dev user of localrig/devusers.py, signed in the way the local stack runs (a bearer
token from its OpenID Connect issuer, or the Easy Auth stand-in's headers: pass `Stack.headers_for`
as `sign_in`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from localrig.devusers import DevUser
from localrig.emulator_client import send_json
from localrig.estates.ids import ResourceGroupIds

API_VERSION = "2020-01-01"


class ApiError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {json.dumps(body)[:500]}")
        self.status = status
        self.body = body


class AppClient:
    def __init__(self, api_url: str, user: DevUser, sign_in: Callable[[DevUser], dict[str, str]]) -> None:
        self.api_url = api_url.rstrip("/")
        self.user = user
        self._sign_in = sign_in

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return send_json(method, f"{self.api_url}{path}", body, self._sign_in(self.user))

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, body)
        if status >= 400:
            raise ApiError(status, answer)
        return answer

    @staticmethod
    def policy_path(estate: ResourceGroupIds, name: str = "default") -> str:
        return estate.policy_path(name)

    def put_policy(self, estate: ResourceGroupIds, body: dict[str, Any]) -> Any:
        return self.ok("PUT", f"{self.policy_path(estate)}?api-version={API_VERSION}", body)

    def initiate(
        self, estate: ResourceGroupIds, ports: dict[str, list[tuple[int, str]]], end: datetime
    ) -> Any:
        """`ports`: VM name -> [(port, source prefix)]. Answers Defender's request plus `requestId`."""
        body = {
            "virtualMachines": [
                {
                    "id": estate.vm_id(vm),
                    "ports": [
                        {
                            "number": number,
                            "endTimeUtc": end.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                            "allowedSourceAddressPrefix": source,
                        }
                        for number, source in entries
                    ],
                }
                for vm, entries in ports.items()
            ],
            "justification": "incident INC-4711: check the disk",
        }
        return self.ok("POST", f"{self.policy_path(estate)}/initiate?api-version={API_VERSION}", body)

    def request_status(self, request_id: str) -> Any:
        return self.ok("GET", f"/requests/{request_id}")

    def compliance(self) -> Any:
        return self.ok("GET", "/compliance")
