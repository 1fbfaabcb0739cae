"""Small clients the demo and the end-to-end tests share: the app's HTTP API (as a dev user of
localrig/devusers.py, signed in the way the local stack runs: a bearer token from its OpenID Connect
issuer, or the Easy Auth stand-in's headers; `Stack.headers_for`) and role assignments in the
emulator."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from demo.estate import Estate
from localrig.devusers import ADMIN, ALICE, DevUser
from localrig.emulator_client import EmulatorClient

OWNER_ROLE = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"  # built-in Owner
READER_ROLE = "acdd72a7-3385-48ef-bd42-f606fba81ae7"  # built-in Reader
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
        data = None if body is None else json.dumps(body).encode()
        headers = {
            "Content-Type": "application/json",
            **self._sign_in(self.user),
        }
        url = f"{self.api_url}{path}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - local host
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, json.loads(raw) if raw else None

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, body)
        if status >= 400:
            raise ApiError(status, answer)
        return answer

    @staticmethod
    def policy_path(estate: Estate, name: str = "default") -> str:
        return (
            f"/subscriptions/{estate.subscription_id}/resourceGroups/{estate.resource_group}"
            f"/providers/Microsoft.Security/locations/{estate.location}/jitNetworkAccessPolicies/{name}"
        )

    def put_policy(self, estate: Estate, body: dict[str, Any]) -> Any:
        return self.ok("PUT", f"{self.policy_path(estate)}?api-version={API_VERSION}", body)

    def initiate(self, estate: Estate, ports: dict[str, list[tuple[int, str]]], end: datetime) -> Any:
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


def grant_roles(arm: EmulatorClient, estate: Estate) -> tuple[DevUser, DevUser]:
    """The dev users `admin` (Owner on the resource group, Reader on the subscription) and `alice`,
    allowed to initiate JIT access on the estate's VMs, as role assignments in the emulator's
    Microsoft.Authorization."""
    from azure.mgmt.authorization import AuthorizationManagementClient
    from azure.mgmt.authorization.v2022_04_01.models import (
        Permission,
        RoleAssignmentCreateParameters,
        RoleDefinition,
    )

    auth = arm.client(AuthorizationManagementClient)
    sub = f"/subscriptions/{arm.subscription_id}"
    admin, alice = ADMIN, ALICE
    role = str(uuid.uuid4())
    auth.role_definitions.create_or_update(
        sub,
        role,
        RoleDefinition(
            role_name=f"JIT requester {role[:8]}",
            permissions=[
                Permission(
                    actions=[
                        "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action",
                        "Microsoft.Security/locations/jitNetworkAccessPolicies/*/read",
                        "Microsoft.Compute/virtualMachines/read",
                        "Microsoft.Network/networkInterfaces/*/read",
                        "Microsoft.Network/publicIPAddresses/read",
                    ]
                )
            ],
            assignable_scopes=[sub],
        ),
    )
    assignments = [(f"{sub}/resourceGroups/{estate.resource_group}", OWNER_ROLE, admin)]
    # Compliance findings are shown to those who may read the subscription's JIT policies.
    assignments += [(sub, READER_ROLE, admin)]
    assignments += [(estate.vm_id(vm), role, alice) for vm in (estate.vm_web, estate.vm_app, estate.vm_ops)]
    for scope, role_id, user in assignments:
        auth.role_assignments.create(
            scope,
            str(uuid.uuid4()),
            RoleAssignmentCreateParameters(
                role_definition_id=f"{sub}/providers/Microsoft.Authorization/roleDefinitions/{role_id}",
                principal_id=user.object_id,
                principal_type="User",
            ),
        )
    return admin, alice
