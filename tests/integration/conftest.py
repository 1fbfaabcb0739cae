"""Fixtures for converge tests: the sample estate seeded in the emulator, settings pointing the app at
the emulator and Azurite, a controllable clock, and helpers that write grants as intake does."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from localrig.azurite import Azurite
from localrig.emulator_client import EmulatorClient
from localrig.estates.sample import Estate
from shared import enforcement
from shared.api import defender_routes
from shared.grants import RequestRecord, TableGrantStore, grant_id, new_request_id
from shared.model import Grant, PolicyRef, Principal, PrincipalSource, TargetRef, TransportProtocol, VmRef
from shared.policy_store import TablePolicyStore
from shared.settings import Settings, load_settings
from tests.integration.jit_world import API_VERSION, app_env
from tests.integration.jit_world import World as RequestsWorld


@dataclass
class Clock:
    moment: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def now(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


@dataclass
class World:
    emulator: EmulatorClient
    estate: Estate
    settings: Settings
    clock: Clock
    deps: enforcement.ConvergeDeps
    store: TableGrantStore
    policy_ref: PolicyRef
    sleeps: list[float]
    settings_env: dict[str, str]
    table_port: int

    def network(self) -> Any:
        return self.deps.network(self.estate.subscription_id)

    def request(
        self,
        vm_name: str,
        port: int = 22,
        *,
        source: str = "203.0.113.7",
        minutes: float = 10,
        protocol: TransportProtocol = TransportProtocol.TCP,
    ) -> Grant:
        """Write a request with one grant, as intake does (Initiating, no targets yet)."""
        request_id = new_request_id()
        now = self.clock.now()
        vm = VmRef.parse(self.estate.vm_id(vm_name))
        requester = Principal("user-oid", "alice@example.com", PrincipalSource.EASY_AUTH)
        grant = Grant(
            grant_id=grant_id(request_id, 0),
            request_id=request_id,
            policy=self.policy_ref,
            vm=vm,
            port=port,
            protocol=protocol,
            source_prefixes=(source,),
            start_time=now,
            end_time=now + timedelta(minutes=minutes),
            requester=requester,
            justification="test",
            ticket_id=None,
        )
        record = RequestRecord(request_id, self.policy_ref, requester, now, "test", None, uuid.uuid4().hex)
        self.store.create_request(record, [grant])
        stored = self.store.get(grant.grant_id)
        assert stored is not None
        return stored

    def nsg_rules(self, name: str) -> list[dict[str, Any]]:
        body = self.network().network_security_groups.get(self.estate.resource_group, name).as_dict()
        return list(body["properties"].get("securityRules") or [])

    def nsg(self, name: str) -> dict[str, Any]:
        return self.emulator.resource(self.estate.nsg_id(name))

    def writes(self, resource_name: str | None = None) -> list[dict[str, Any]]:
        """Writes the emulator saw on this test's resource group (optionally one resource)."""
        log = self.emulator.requests()["log"]
        rg = f"/resourcegroups/{self.estate.resource_group.lower()}/"
        return [
            r
            for r in log
            if r["method"] in ("PUT", "DELETE", "PATCH")
            and rg in r["path"].lower()
            and (resource_name is None or f"/{resource_name.lower()}" in r["path"].lower())
        ]

    def target(self, kind: str, resource_id: str) -> TargetRef:
        return TargetRef.from_key(f"{kind}|{resource_id}")


@pytest.fixture
def world_factory(
    arm_emulator: EmulatorClient, storage_env: dict[str, str], azurite: Azurite
) -> Iterator[Callable[..., World]]:
    def make(*, policy: bool = True, env: dict[str, str] | None = None) -> World:
        resource_group = f"rg-{uuid.uuid4().hex[:10]}"
        estate = Estate(arm_emulator.subscription_id, resource_group)
        arm_emulator.seed(estate.resources())
        settings_env = {
            **storage_env,
            "PORTCULLIS_ARM_ENDPOINT": arm_emulator.base_url,
            "PORTCULLIS_ARM_CA_BUNDLE": str(arm_emulator.ca_file),
            "PORTCULLIS_ARM_CREDENTIAL": "static-token",
            "PORTCULLIS_ARM_POLLING_INTERVAL": "0",
            **(env or {}),
        }
        settings = load_settings(settings_env)
        clock = Clock()
        sleeps: list[float] = []
        deps = enforcement.build_deps(settings, now=clock.now, sleep=sleeps.append)
        ref = PolicyRef(estate.subscription_id, resource_group, estate.location, "default")
        if policy:
            from shared.defender import parse_policy_body

            _, canonical = parse_policy_body(estate.policy_body(), ref)
            TablePolicyStore(settings).put(ref, canonical)
        store = deps.store
        assert isinstance(store, TableGrantStore)
        return World(
            arm_emulator, estate, settings, clock, deps, store, ref, sleeps, settings_env, azurite.table_port
        )

    yield make
    arm_emulator.clear_faults()


# ---- the requests side: one JIT world (policy, people, roles) per test, through the app's handlers ----


@pytest.fixture
def world(storage_env: dict[str, str], arm_emulator: EmulatorClient) -> RequestsWorld:
    return RequestsWorld.create(app_env(storage_env, arm_emulator), arm_emulator)


@pytest.fixture
def policy(world: RequestsWorld) -> dict[str, Any]:
    """The world's JIT policy, PUT through the Defender-compatible route as its admin."""
    status, body, _ = world.call(
        defender_routes.put_policy,
        "PUT",
        world.policy_path() + API_VERSION,
        world.admin,
        world.policy_body(),
        world.policy_route(),
    )
    assert status == 200, body
    return body
