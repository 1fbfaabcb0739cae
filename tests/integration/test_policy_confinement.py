"""Issue 15 item 1: a policy may put a VM behind a firewall only when the firewall can reach the VM
(same VNet or a connected peering, read from ARM) and the policy's author could write the firewall.

Two estates in the emulator: `rg-a`'s (the victim: a classic firewall and a Firewall-Policy firewall)
and the world's own resource group, `rg-m`, whose admin is Owner there only. Both estates use the
same private ranges, as the attacker's unpeered VNet did in the report.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest

from localrig.emulator_client import EmulatorClient
from localrig.estates.sample import Estate
from shared.api import defender_routes
from tests.integration.jit_world import API_VERSION, OWNER, World, app_env


@pytest.fixture
def world(storage_env: dict[str, str], arm_emulator: EmulatorClient) -> World:
    """No RBAC decision cache: these tests grant a right between two PUTs."""
    return World.create(app_env(storage_env, arm_emulator, PORTCULLIS_RBAC_CACHE_SECONDS="0"), arm_emulator)


@pytest.fixture
def victim(world: World) -> Estate:
    estate = Estate(world.subscription, f"rg-a-{uuid.uuid4().hex[:8]}")
    world.arm.seed(estate.resources())
    return estate


def attacker_estate(world: World) -> Estate:
    return Estate(world.subscription, world.resource_group)


def port(number: int = 22) -> dict[str, Any]:
    return {
        "number": number,
        "protocol": "TCP",
        "allowedSourceAddressPrefix": "*",
        "maxRequestAccessDuration": "PT3H",
    }


def put(world: World, body: dict[str, Any]) -> tuple[int, Any]:
    status, answer, _ = world.call(
        defender_routes.put_policy,
        "PUT",
        world.policy_path() + API_VERSION,
        world.admin,
        body,
        world.policy_route(),
    )
    return status, answer


def policy(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "Basic", "properties": {"virtualMachines": list(entries)}}


def stored(world: World) -> list[Any]:
    return world.services.policies.list_in(world.subscription, world.resource_group)


def refusals(world: World) -> list[dict[str, Any]]:
    return [
        e.details
        for e in world.services.audit.for_subject(world.policy_path())
        if e.event == "policy.refused"
    ]


def peer(world: World, estate: Estate, vnet: str, remote_vnet_id: str, state: str = "Connected") -> None:
    """Give `estate`'s VNet an inline peering (the emulator echoes `virtualNetworkPeerings`)."""
    item = next(i for i in estate.resources() if i["id"] == estate.rid("virtualNetworks", vnet))
    body = copy.deepcopy(item["body"])
    body["properties"]["virtualNetworkPeerings"] = [
        {
            "name": f"to-{remote_vnet_id.rsplit('/', 1)[-1]}",
            "properties": {"remoteVirtualNetwork": {"id": remote_vnet_id}, "peeringState": state},
        }
    ]
    world.arm.seed([{"id": item["id"], "body": body}])


def test_an_rg_owner_cannot_put_another_groups_firewalls_in_front_of_an_unpeered_vm(
    world: World, victim: Estate
) -> None:
    """The report's attack: rg-m's owner names rg-a's classic firewall (firewallId) and rg-a's
    Firewall-Policy firewall (publicIpAddress) for VMs in unpeered VNets reusing rg-a's ranges."""
    mine = attacker_estate(world)
    by_id = policy(
        {
            "id": mine.vm_id(mine.vm_app),
            "ports": [port()],
            "portcullis": {"firewallId": victim.classic_firewall_id},
        }
    )
    status, answer = put(world, by_id)
    assert status == 400, answer
    assert answer["error"]["target"] == "properties.virtualMachines[0].portcullis.firewallId"
    assert "neither the virtual network" in answer["error"]["message"]

    by_ip = policy(
        {"id": mine.vm_id(mine.vm_web), "ports": [port()]},
        {
            "id": mine.vm_id(mine.vm_ops),
            "ports": [port()],
            "publicIpAddress": victim.policy_fw_public_ip,
        },
    )
    status, answer = put(world, by_ip)
    assert status == 400, answer
    assert answer["error"]["target"] == "properties.virtualMachines[1].publicIpAddress"

    assert stored(world) == []
    fields = [r["field"] for r in refusals(world)]
    assert "properties.virtualMachines[0].portcullis.firewallId" in fields
    assert "properties.virtualMachines[1].publicIpAddress" in fields


def test_a_firewall_on_a_peered_hub_needs_its_write_right_and_is_accepted_with_it(
    world: World, victim: Estate
) -> None:
    """Hub and spoke: rg-m's vm-web (vnet-direct) is peered with rg-a's hub (vnet-classic, classic
    firewall). Path fine, but rg-m's owner cannot write the hub firewall: 403 naming the field. With
    `azureFirewalls/write` on it: accepted. The same holds for the Firewall-Policy firewall, whose
    right is `ruleCollectionGroups/write` on its policy."""
    mine = attacker_estate(world)
    peer(world, mine, "vnet-direct", victim.rid("virtualNetworks", "vnet-classic"))
    peer(world, mine, "vnet-classic", victim.rid("virtualNetworks", "vnet-policy"))
    body = policy(
        {
            "id": mine.vm_id(mine.vm_web),
            "ports": [port()],
            "portcullis": {"firewallId": victim.classic_firewall_id},
        },
        {
            "id": mine.vm_id(mine.vm_app),
            "ports": [port()],
            "publicIpAddress": victim.policy_fw_public_ip,
        },
    )

    status, answer = put(world, body)
    assert status == 403, answer
    assert answer["error"]["target"] == "properties.virtualMachines[0].portcullis.firewallId"
    assert "Microsoft.Network/azureFirewalls/write" in answer["error"]["message"]
    assert stored(world) == []

    world.assign(
        victim.classic_firewall_id,
        world.custom_role(["Microsoft.Network/azureFirewalls/write"]),
        world.admin.object_id,
    )
    status, answer = put(world, body)
    assert status == 403, answer
    assert answer["error"]["target"] == "properties.virtualMachines[1].publicIpAddress"
    assert "ruleCollectionGroups/write" in answer["error"]["message"]
    assert stored(world) == []

    world.assign(
        victim.firewall_policy_id,
        world.custom_role(["Microsoft.Network/firewallPolicies/ruleCollectionGroups/write"]),
        world.admin.object_id,
    )
    status, answer = put(world, body)
    assert status == 200, answer
    assert len(stored(world)) == 1


def test_a_peering_that_is_not_connected_does_not_make_a_path(world: World, victim: Estate) -> None:
    mine = attacker_estate(world)
    peer(world, mine, "vnet-direct", victim.rid("virtualNetworks", "vnet-classic"), state="Initiated")
    world.assign(victim.classic_firewall_id, OWNER, world.admin.object_id)
    status, answer = put(
        world,
        policy(
            {
                "id": mine.vm_id(mine.vm_web),
                "ports": [port()],
                "portcullis": {"firewallId": victim.classic_firewall_id},
            }
        ),
    )
    assert status == 400, answer
    assert answer["error"]["target"] == "properties.virtualMachines[0].portcullis.firewallId"
    assert stored(world) == []


def test_a_firewall_in_the_vms_own_vnet_is_accepted_for_its_owner(world: World) -> None:
    """The estate's own firewalls (same VNet, same resource group the admin owns): as before."""
    mine = attacker_estate(world)
    status, answer = put(world, mine.policy_body())
    assert status == 200, answer


def arm_log_since(world: World, mark: int) -> list[dict[str, Any]]:
    return world.arm.requests_since(mark)


def test_a_put_naming_many_missing_vms_reads_nothing_of_them_from_arm(world: World) -> None:
    """Issue 15 item 13: 200 VMs that do not exist, no firewall named: the PUT reads no VM, NIC or
    VNet (only the policy's own RBAC check reaches ARM); topology work is enforcement's."""
    scope = f"/subscriptions/{world.subscription}/resourceGroups/{world.resource_group}"
    body = policy(
        *(
            {"id": f"{scope}/providers/Microsoft.Compute/virtualMachines/ghost{i}", "ports": [port()]}
            for i in range(200)
        )
    )
    mark = world.arm.log_mark()

    status, answer = put(world, body)

    assert status == 200, answer
    calls = arm_log_since(world, mark)
    assert not [c for c in calls if "microsoft.authorization" not in c["path"].lower()], calls
    assert len(calls) <= 3, calls


def test_firewall_checks_read_each_vnet_and_firewall_once_per_put(world: World, victim: Estate) -> None:
    """Two spoke VMs in one VNet behind the same hub firewall: one read of that VNet and of that
    firewall, however many VMs name it."""
    mine = attacker_estate(world)
    peer(world, mine, "vnet-direct", victim.rid("virtualNetworks", "vnet-classic"))
    world.assign(victim.classic_firewall_id, OWNER, world.admin.object_id)
    entries = [
        {
            "id": mine.vm_id(name),
            "ports": [port()],
            "portcullis": {"firewallId": victim.classic_firewall_id},
        }
        for name in (mine.vm_web, mine.vm_db)
    ]
    mark = world.arm.log_mark()

    status, answer = put(world, policy(*entries))

    assert status == 200, answer
    gets = [c["path"].lower() for c in arm_log_since(world, mark) if c["method"] == "GET"]
    assert sum(p.endswith("/virtualnetworks/vnet-direct") for p in gets) == 1, gets
    assert sum(p.endswith("/azurefirewalls/fw-classic") for p in gets) == 1, gets


def test_more_vms_than_the_setting_allows_is_a_400_naming_the_field_and_reads_nothing(
    storage_env: dict[str, str], arm_emulator: EmulatorClient
) -> None:
    world = World.create(app_env(storage_env, arm_emulator, PORTCULLIS_MAX_VMS_PER_POLICY="3"), arm_emulator)
    scope = f"/subscriptions/{world.subscription}/resourceGroups/{world.resource_group}"
    body = policy(
        *(
            {"id": f"{scope}/providers/Microsoft.Compute/virtualMachines/vm{i}", "ports": [port()]}
            for i in range(4)
        )
    )
    mark = world.arm.log_mark()

    status, answer = put(world, body)

    assert status == 400, answer
    assert answer["error"]["target"] == "properties.virtualMachines"
    assert "at most 3" in answer["error"]["message"]
    assert not [c for c in arm_log_since(world, mark) if "microsoft.authorization" not in c["path"].lower()]
    assert stored(world) == []


def test_a_path_the_app_may_not_read_is_a_400_in_our_words(world: World, victim: Estate) -> None:
    """ARM's 403 carries the app identity's ids: the caller gets our text, naming the field."""
    mine = attacker_estate(world)
    peer(world, mine, "vnet-direct", victim.rid("virtualNetworks", "vnet-classic"))
    world.arm.add_fault(
        method="GET",
        path="/azureFirewalls/fw-classic$",
        status=403,
        code="AuthorizationFailed",
        message="The client 'app-identity-0000' with object id 'secret-oid' does not have authorization",
        count=None,
    )
    try:
        status, answer = put(
            world,
            policy(
                {
                    "id": mine.vm_id(mine.vm_web),
                    "ports": [port()],
                    "portcullis": {"firewallId": victim.classic_firewall_id},
                }
            ),
        )
    finally:
        world.arm.clear_faults()
    assert status == 400, answer
    assert answer["error"]["target"] == "properties.virtualMachines[0].portcullis.firewallId"
    assert "secret-oid" not in answer["error"]["message"]
    assert stored(world) == []
