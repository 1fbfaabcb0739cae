"""A small JIT world for request-side tests: Azurite-backed services, the ARM emulator's RBAC, a
policy admin, a requester with a custom "JIT requester" role on one VM, and helpers to call the
HTTP handlers exactly as the Functions host would."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
from azure.mgmt.authorization import AuthorizationManagementClient

from localrig.emulator_client import EmulatorClient
from localrig.estates.roles import OWNER_ROLE, assign_role, define_role
from localrig.estates.sample import Estate
from shared.identity import easy_auth_header
from shared.services import Services, build_services
from shared.settings import load_settings

OWNER = OWNER_ROLE
API_VERSION = "?api-version=2020-01-01"


def app_env(storage_env: dict[str, str], arm_emulator: EmulatorClient, **extra: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return {
        **storage_env,
        "PORTCULLIS_ARM_ENDPOINT": arm_emulator.base_url,
        "PORTCULLIS_ARM_CA_BUNDLE": str(arm_emulator.ca_file),
        "PORTCULLIS_ARM_CREDENTIAL": "static-token",
        "PORTCULLIS_ARM_POLLING_INTERVAL": "0",
        "WEBSITE_AUTH_ENABLED": "true",
        "PORTCULLIS_CONVERGE_QUEUE": f"conv-{suffix}",
        "PORTCULLIS_EVENTS_QUEUE": f"events-{suffix}",
        "PORTCULLIS_REQUESTS_QUEUE": f"req-{suffix}",
        **extra,
    }


@dataclass
class Person:
    object_id: str
    name: str
    groups: tuple[str, ...] = ()

    def headers(self) -> dict[str, str]:
        return easy_auth_header(self.object_id, self.name, self.groups)


@dataclass
class World:
    services: Services
    arm: EmulatorClient
    subscription: str
    resource_group: str
    admin: Person
    alice: Person
    bob: Person
    auth: Any = field(repr=False)

    @classmethod
    def create(cls, env: dict[str, str], arm: EmulatorClient) -> World:
        services = build_services(load_settings(env))
        rg = f"rg-{uuid.uuid4().hex[:10]}"
        # Real VMs (with NICs, subnets): RBAC on a VM scope needs the VM to exist, as in Azure.
        arm.seed(Estate(arm.subscription_id, rg).resources())
        auth = arm.client(AuthorizationManagementClient)
        world = cls(
            services=services,
            arm=arm,
            subscription=arm.subscription_id,
            resource_group=rg,
            admin=Person(str(uuid.uuid4()), "admin@contoso.com"),
            alice=Person(str(uuid.uuid4()), "alice@contoso.com"),
            bob=Person(str(uuid.uuid4()), "bob@contoso.com"),
            auth=auth,
        )
        world.assign(world.rg_scope, OWNER, world.admin.object_id)
        requester_role = world.custom_role(
            [
                "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action",
                "Microsoft.Security/locations/jitNetworkAccessPolicies/read",
            ]
        )
        world.assign(world.vm_id("vm1"), requester_role, world.alice.object_id)
        return world

    @property
    def sub_scope(self) -> str:
        return f"/subscriptions/{self.subscription}"

    @property
    def rg_scope(self) -> str:
        return f"{self.sub_scope}/resourceGroups/{self.resource_group}"

    def vm_id(self, name: str) -> str:
        """`vm1` and `vm2` are the estate's web and database VMs."""
        real = {"vm1": Estate.vm_web, "vm2": Estate.vm_db}.get(name, name)
        return f"{self.rg_scope}/providers/Microsoft.Compute/virtualMachines/{real}"

    def policy_path(self, name: str = "default") -> str:
        security = f"{self.rg_scope}/providers/Microsoft.Security"
        return f"{security}/locations/westeurope/jitNetworkAccessPolicies/{name}"

    def custom_role(self, actions: list[str], not_actions: list[str] | None = None) -> str:
        guid = str(uuid.uuid4())
        define_role(self.auth, self.subscription, guid, f"JIT test {guid[:8]}", actions, not_actions or ())
        return guid

    def assign(self, scope: str, role_guid: str, principal_id: str, principal_type: str = "User") -> None:
        assign_role(
            self.auth, self.subscription, scope, role_guid, principal_id, principal_type=principal_type
        )

    def policy_body(self, **port_overrides: Any) -> dict[str, Any]:
        return {
            "kind": "Basic",
            "properties": {
                "virtualMachines": [
                    {
                        "id": self.vm_id(vm),
                        "ports": [
                            {
                                "number": 22,
                                "protocol": "TCP",
                                "allowedSourceAddressPrefix": "10.0.0.0/16",
                                "maxRequestAccessDuration": "PT3H",
                                **port_overrides,
                            },
                            {
                                "number": 3389,
                                "protocol": "*",
                                "allowedSourceAddressPrefix": "*",
                                "maxRequestAccessDuration": "PT1H",
                            },
                        ],
                    }
                    for vm in ("vm1", "vm2")
                ]
            },
        }

    def initiate_body(
        self, vm: str = "vm1", port: int = 22, source: str | None = "10.0.1.0/24", hours: float = 1
    ) -> dict[str, Any]:
        port_body: dict[str, Any] = {"number": port, "endTimeUtc": end_time(hours)}
        if source is not None:
            port_body["allowedSourceAddressPrefix"] = source
        return {
            "virtualMachines": [{"id": self.vm_id(vm), "ports": [port_body]}],
            "justification": "ticket 7",
        }

    def call(
        self,
        handler: Any,
        method: str,
        path: str,
        person: Person | None,
        body: Any = None,
        route: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        all_headers = {**(person.headers() if person else {}), **(headers or {})}
        _path_only, _, query = path.partition("?")
        params = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        request = func.HttpRequest(
            method=method,
            url=f"http://127.0.0.1:7071/api{path}",
            headers={"Content-Type": "application/json", **all_headers},
            params=params,
            route_params=route or {},
            body=data,
        )
        response = handler(request, self.services)
        text = response.get_body()
        return response.status_code, json.loads(text) if text else None, dict(response.headers)

    def policy_route(self, name: str = "default") -> dict[str, str]:
        return {
            "subscriptionId": self.subscription,
            "resourceGroupName": self.resource_group,
            "ascLocation": "westeurope",
            "jitNetworkAccessPolicyName": name,
        }


def end_time(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
