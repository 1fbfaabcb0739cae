"""Driving the app as its users do: the Functions host (devhost) with a scenario's settings, Azure RBAC
for an administrator and a requester, policies written with Defender's PUT, access asked for with
Defender's POST .../initiate, over HTTP with the headers Easy Auth would set."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from bench.harness import Services
from localrig.estates.roles import OWNER_ROLE, REQUESTER_ACTIONS, assign_role, define_role
from localrig.estates.scale import ScaleEstate, VmInfo
from localrig.processes import ManagedProcess
from localrig.stack import start_host
from shared.identity import easy_auth_header

API_VERSION = "api-version=2020-01-01"
ENFORCEMENT_FUNCTIONS = ("jit_converge", "jit_expiry_sweep", "jit_reconcile")


@dataclass(frozen=True)
class Person:
    object_id: str
    name: str

    def headers(self) -> dict[str, str]:
        return easy_auth_header(self.object_id, self.name)


def new_person(name: str) -> Person:
    return Person(str(uuid.uuid4()), name)


def grant_roles(running: Services, estate: ScaleEstate, admin: Person, requester: Person) -> None:
    """Owner on the resource group for the admin; a custom JIT requester role on it for the requester."""
    from azure.mgmt.authorization import AuthorizationManagementClient

    auth = running.arm.client(AuthorizationManagementClient)
    role_guid = str(uuid.uuid4())
    sub = estate.subscription_id
    define_role(auth, sub, role_guid, f"JIT requester (bench {role_guid[:8]})", REQUESTER_ACTIONS)
    for role, person in ((OWNER_ROLE, admin), (role_guid, requester)):
        assign_role(auth, sub, estate.scope, role, person.object_id)


@contextlib.contextmanager
def host(
    running: Services,
    settings: dict[str, str],
    log_name: str,
    *,
    disabled: tuple[str, ...] = (),
) -> Iterator[str]:
    """The function app on devhost with `settings`; yields its base URL (`http://127.0.0.1:P`)."""
    env = dict(settings)
    for name in disabled:
        env[f"AzureWebJobs.{name}.Disabled"] = "true"
    process: ManagedProcess
    process, port = start_host(env=env, log_path=running.work_dir / f"{log_name}.log", timeout=90)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


class ApiClient:
    """One HTTP session per thread (keep-alive), as a script or tool calling the API would hold."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def call(self, method: str, path: str, person: Person, body: Any = None) -> tuple[int, Any]:
        response = self._session().request(
            method,
            f"{self.base_url}/api{path}",
            json=body,
            headers={**person.headers(), "X-Forwarded-For": "198.51.100.7"},
            timeout=120,
        )
        text = response.text
        try:
            answer = response.json() if text else None
        except ValueError:
            answer = text
        return response.status_code, answer

    def put_policies(
        self, estate: ScaleEstate, admin: Person, include: Callable[[VmInfo], bool] | None = None
    ) -> list[str]:
        names = []
        for name, body in estate.policy_bodies(include=include).items():
            status, answer = self.call("PUT", f"{estate.policy_path(name)}?{API_VERSION}", admin, body)
            if status != 200:
                raise RuntimeError(f"PUT policy {name} -> {status}: {answer}")
            names.append(name)
        return names

    def initiate(
        self,
        estate: ScaleEstate,
        policy_name: str,
        person: Person,
        vm_id: str,
        port: int,
        *,
        source: str = "198.51.100.0/24",
        hours: float = 1.0,
    ) -> tuple[int, Any]:
        end = (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "virtualMachines": [
                {
                    "id": vm_id,
                    "ports": [{"number": port, "endTimeUtc": end, "allowedSourceAddressPrefix": source}],
                }
            ],
            "justification": "benchmark",
        }
        return self.call("POST", f"{estate.policy_path(policy_name)}/initiate?{API_VERSION}", person, body)

    def request_status(self, request_id: str, person: Person) -> tuple[int, Any]:
        return self.call("GET", f"/requests/{request_id}", person)


def policy_of(estate: ScaleEstate, include: Callable[[VmInfo], bool] | None = None) -> dict[str, str]:
    """vm id (lower-case) -> the name of the policy listing it."""
    owner: dict[str, str] = {}
    for name, body in estate.policy_bodies(include=include).items():
        for entry in body["properties"]["virtualMachines"]:
            owner[entry["id"].lower()] = name
    return owner


def scenario_dir(running: Services, name: str) -> Path:
    path = running.work_dir / name
    path.mkdir(parents=True, exist_ok=True)
    return path
