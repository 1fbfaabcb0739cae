"""Where the requests side meets enforcement: a policy PUT / DELETE hands one policy message to the
converge queue (the Deny baseline follows without the reconcile timer), request status carries
connection details, and compliance findings are shown only to readers of the subscription's policies."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from shared import enforcement, plan
from shared.api import compliance, defender_routes, records
from shared.compliance import FindingStore
from shared.model import TargetRef, VmRef
from shared.plan import Finding, FindingKind
from shared.storage import queue
from tests.integration.jit_world import API_VERSION, Person, World

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


def nsg_key(world: World, name: str) -> str:
    nsg_id = f"{world.rg_scope}/providers/Microsoft.Network/networkSecurityGroups/{name}"
    return TargetRef.from_key(f"nsg|{nsg_id}").key


def drain_converge_queue(world: World) -> list[dict[str, Any]]:
    """Receive (and delete) every visible converge message, as the queue trigger would."""
    client = queue(world.services.settings.converge_queue, world.services.settings)
    bodies = []
    for message in client.receive_messages(messages_per_page=32, visibility_timeout=30):
        bodies.append(json.loads(message.content))
        client.delete_message(message)
    return bodies


def our_denies(world: World, nsg: str) -> list[str]:
    from azure.mgmt.network import NetworkManagementClient

    network = world.arm.client(NetworkManagementClient)
    rules = network.network_security_groups.get(world.resource_group, nsg).security_rules or []
    return sorted(r.name for r in rules if r.access == "Deny" and plan.is_ours(r.name))


def put_policy(world: World, body: dict[str, Any]) -> None:
    status, answer, _ = world.call(
        defender_routes.put_policy,
        "PUT",
        world.policy_path() + API_VERSION,
        world.admin,
        body,
        world.policy_route(),
    )
    assert status == 200, answer


def test_policy_put_and_delete_hand_one_policy_message_to_the_converge_queue(world: World) -> None:
    deps = enforcement.build_deps(world.services.settings, now=lambda: datetime.now(UTC), sleep=time.sleep)
    put_policy(world, world.policy_body())
    vm_ids = {vm["id"].lower() for vm in world.policy_body()["properties"]["virtualMachines"]}

    def one_policy_message() -> dict[str, object]:
        hints = drain_converge_queue(world)
        assert [h["kind"] for h in hints] == ["policy"]
        assert {str(v).lower() for v in hints[0]["vm_ids"]} == vm_ids
        return hints[0]

    # What the host's queue trigger does with it: vm1 (web) sits behind the subnet NSG and its NIC's
    # NSG; vm2 (db) behind the subnet NSG only.
    enforcement.handle_converge_message(json.dumps(one_policy_message()), deps)
    assert our_denies(world, "nsg-web-subnet") and our_denies(world, "nsg-web-nic")

    # Dropping port 3389 from the policy drops its Deny rules with the next message.
    body = world.policy_body()
    for vm in body["properties"]["virtualMachines"]:
        vm["ports"] = [p for p in vm["ports"] if p["number"] == 22]
    put_policy(world, body)
    enforcement.handle_converge_message(json.dumps(one_policy_message()), deps)
    assert all("-3389-" not in name for name in our_denies(world, "nsg-web-subnet"))

    status, _, _ = world.call(
        defender_routes.delete_policy,
        "DELETE",
        world.policy_path() + API_VERSION,
        world.admin,
        route=world.policy_route(),
    )
    assert status == 200
    enforcement.handle_converge_message(json.dumps(one_policy_message()), deps)
    assert our_denies(world, "nsg-web-subnet") == [] and our_denies(world, "nsg-web-nic") == []


def test_request_status_shows_connection_details_once_enforcement_knows_the_address(world: World) -> None:
    put_policy(world, world.policy_body())
    status, body, _ = world.call(
        defender_routes.initiate,
        "POST",
        world.policy_path() + "/initiate" + API_VERSION,
        world.alice,
        world.initiate_body(),
        world.policy_route(),
    )
    assert status == 202, body
    request_id = body["requestId"]

    def port_status() -> dict[str, Any]:
        code, answer, _ = world.call(
            records.get_request,
            "GET",
            f"/requests/{request_id}",
            world.alice,
            route={"requestId": request_id},
        )
        assert code == 200, answer
        port: dict[str, Any] = answer["virtualMachines"][0]["ports"][0]
        return port

    assert port_status()["connection"] is None  # the path is not resolved yet
    stored = world.services.grants.get_request(request_id)
    assert stored is not None
    (grant,) = stored.grants
    world.services.grants.update(replace(grant, connect_address="198.51.100.20", mapped_port=50022))
    assert port_status()["connection"] == {
        "address": "198.51.100.20",
        "port": 50022,
        "ssh": "ssh -p 50022 <user>@198.51.100.20",
        "rdp": "mstsc /v:198.51.100.20:50022",
    }


def test_compliance_findings_are_shown_only_to_readers_of_the_subscriptions_policies(world: World) -> None:
    store = FindingStore.from_settings(world.services.settings)
    vm_here = VmRef.parse(world.vm_id("vm1"))
    vm_elsewhere = VmRef.parse(vm_here.id.replace(world.subscription, "00000000-0000-4000-8000-0000000000ee"))
    findings_here = [Finding(FindingKind.PORT_OPEN_AHEAD_OF_DENY, "legacy", vm_here, 22, "here")]
    nsg = f"{world.rg_scope}/providers/Microsoft.Network/networkSecurityGroups/nsg-web-subnet"
    store.replace(TargetRef.from_key(f"nsg|{nsg}"), findings_here, datetime.now(UTC))
    elsewhere = nsg.replace(world.subscription, vm_elsewhere.subscription_id)
    store.replace(
        TargetRef.from_key(f"nsg|{elsewhere}"),
        [Finding(FindingKind.PORT_OPEN_AHEAD_OF_DENY, "legacy", vm_elsewhere, 22, "elsewhere")],
        datetime.now(UTC),
    )

    def visible_to(person: Person) -> set[str]:
        status, body, _ = world.call(compliance.get_compliance, "GET", "/compliance", person)
        assert status == 200, body
        return {f["virtualMachineId"] for f in body["value"]}

    # Alice may read policies on one VM only, the admin owns one resource group: neither sees findings.
    assert visible_to(world.alice) == set()
    assert visible_to(world.admin) == set()
    reader = Person("0a1b2c3d-0000-4000-8000-0000000000bb", "auditor@contoso.com")
    world.assign(world.sub_scope, READER, reader.object_id)
    seen = visible_to(reader)
    assert vm_here.id in seen and vm_elsewhere.id not in seen
