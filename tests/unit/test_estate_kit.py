"""The estate kit's pure parts (localrig/estates/): every estate's seed items come in an order the
emulator can apply (what an item references was seeded before it), ids are spelled one way, the
sample's policy covers its VMs, the scale estate has the size it was asked for, and `make up`'s seed
switch and role table say what the README says."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from localrig.devusers import ADMIN, ALICE, BOB, EVE, SAMPLE_RESOURCE_GROUP, SAMPLE_SUBSCRIPTION_ID
from localrig.estates import bodies
from localrig.estates.roles import (
    OWNER_ROLE,
    READER_ROLE,
    REQUESTER_ACTIONS,
    SAMPLE_REQUESTER_ROLE,
    Assignment,
    sample_assignments,
)
from localrig.estates.sample import ESTATE_NSGS, Estate, sample_estate
from localrig.estates.scale import VMS_PER_POLICY, FirewallGroup, ScaleEstate
from localrig.estates.seed import POLICY_NAME, SeedReport, seed_wanted, seeded_policy_body
from shared.authz import INITIATE_ACTION, READ_POLICY_ACTION
from shared.defender import parse_policy_body
from shared.model import ApprovalPolicy, PolicyRef


def referenced_ids(value: Any) -> list[str]:
    """Every `{"id": ...}` reference inside a body."""
    found = []
    if isinstance(value, dict):
        if isinstance(value.get("id"), str) and len(value) == 1:
            found.append(value["id"])
        for inner in value.values():
            found += referenced_ids(inner)
    elif isinstance(value, list):
        for inner in value:
            found += referenced_ids(inner)
    return found


def assert_seedable(items: list[dict[str, Any]]) -> None:
    """Each reference names a resource (or a subnet of a VNet) seeded earlier; ids are unique."""
    seen: set[str] = set()
    for item in items:
        for ref in referenced_ids(item["body"]):
            parent = re.sub(r"/subnets/[^/]+$", "", ref, flags=re.IGNORECASE)
            assert parent.lower() in seen, f"{item['id']} references {ref} before it is seeded"
        assert item["id"].lower() not in seen, f"{item['id']} seeded twice"
        seen.add(item["id"].lower())


def test_the_sample_estate_is_seedable_in_its_order() -> None:
    estate = Estate("00000000-0000-0000-0000-0000000000e1", "rg-kit")
    items = estate.resources()
    assert_seedable(items)
    with pytest.raises(AssertionError, match="references"):
        assert_seedable(items[::-1])  # the check sees references: VMs before their NICs fail it
    ids = {item["id"] for item in items}
    assert {estate.vm_id(name) for name in estate.vm_names} <= ids
    assert {estate.nsg_id(name) for name in ESTATE_NSGS} <= ids
    assert {estate.classic_firewall_id, estate.policy_firewall_id, estate.firewall_policy_id} <= ids
    # Located resources carry the estate's region; the rule collection group (a child) none.
    assert all(
        item["body"].get("location") == "westeurope"
        for item in items
        if "ruleCollectionGroups" not in item["id"]
    )


def test_sample_public_ips_differ_between_resource_groups() -> None:
    one, two = Estate("s", "rg-one"), Estate("s", "rg-two")
    assert one.web_public_ip != two.web_public_ip
    assert len({one.web_public_ip, one.classic_fw_public_ip, one.policy_fw_public_ip}) == 3


def test_the_sample_policy_covers_the_sample_vms_with_firewall_addresses() -> None:
    estate = sample_estate()
    assert (estate.subscription_id, estate.resource_group) == (SAMPLE_SUBSCRIPTION_ID, SAMPLE_RESOURCE_GROUP)
    body = estate.policy_body(max_duration="PT1H")
    vms = {vm["id"]: vm for vm in body["properties"]["virtualMachines"]}
    assert list(vms) == [estate.vm_id(name) for name in estate.vm_names]
    assert [p["number"] for p in vms[estate.vm_id("vm-web")]["ports"]] == [22, 3389]
    assert vms[estate.vm_id("vm-app")]["publicIpAddress"] == estate.classic_fw_public_ip
    assert vms[estate.vm_id("vm-ops")]["publicIpAddress"] == estate.policy_fw_public_ip
    assert "publicIpAddress" not in vms[estate.vm_id("vm-web")]
    assert {p["maxRequestAccessDuration"] for vm in vms.values() for p in vm["ports"]} == {"PT1H"}
    assert estate.policy_path() == (
        f"/subscriptions/{SAMPLE_SUBSCRIPTION_ID}/resourceGroups/{SAMPLE_RESOURCE_GROUP}"
        "/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default"
    )


def test_the_seeded_policy_needs_bobs_approval_on_vm_db_only_and_the_default_body_none() -> None:
    """What `make up` PUTs passes the app's own policy parser with the approval on vm-db alone; the
    body the demo and the tests start from stays without approvals."""
    estate = sample_estate()
    ref = PolicyRef(estate.subscription_id, estate.resource_group, estate.location, POLICY_NAME)
    seeded, _ = parse_policy_body(seeded_policy_body(estate), ref)
    rules = {vm.vm.name: vm.approval for vm in seeded.virtual_machines}
    assert rules == {
        "vm-web": None,
        "vm-db": ApprovalPolicy(approvers=(BOB.object_id,), required=1, pending_timeout=timedelta(hours=1)),
        "vm-app": None,
        "vm-ops": None,
    }
    plain, _ = parse_policy_body(estate.policy_body(), ref)
    assert all(vm.approval is None for vm in plain.virtual_machines)
    assert not any("portcullis" in vm for vm in estate.policy_body()["properties"]["virtualMachines"])
    with pytest.raises(ValueError, match="vm-nope"):
        estate.policy_body(approval_on={"vm-nope": {"approvers": [BOB.object_id]}})


def test_a_scale_estate_has_the_size_asked_for_and_is_seedable() -> None:
    groups = [FirewallGroup("f00", "classic", 30), FirewallGroup("f01", "policy", 25, subnet_nsg=False)]
    estate = ScaleEstate("s", "rg", direct_vms=1100, firewalls=groups, ports=3)
    items = estate.resources()
    assert_seedable(items)
    vms = list(estate.vms())
    assert len(vms) == 1155
    assert len(estate.nsg_ids()) == 1155 + 1  # a NIC NSG per VM, one subnet NSG (f00)
    assert len({vm.private_ip for vm in vms}) == len(vms)
    policies = estate.policy_bodies()
    entries = [vm for body in policies.values() for vm in body["properties"]["virtualMachines"]]
    assert len(policies) == -(-1155 // VMS_PER_POLICY) and len(entries) == 1155
    behind = [e for e in entries if "portcullis" in e]
    assert len(behind) == 55
    assert {e["portcullis"]["firewallId"] for e in behind} == {estate.firewall_id(g) for g in groups}
    assert all(len(e["ports"]) == 3 for e in entries)


def test_policy_entries_are_built_one_way() -> None:
    entry = bodies.jit_vm("/vm", (22,), public_ip="20.0.0.1", firewall_id="/fw")
    assert entry == {
        "id": "/vm",
        "ports": [bodies.jit_port(22)],
        "publicIpAddress": "20.0.0.1",
        "portcullis": {"firewallId": "/fw"},
    }
    assert bodies.jit_port(22) == {
        "number": 22,
        "protocol": "TCP",
        "allowedSourceAddressPrefix": "*",
        "maxRequestAccessDuration": "PT3H",
    }


@pytest.mark.parametrize(
    ("no_seed", "value", "wanted"),
    [
        (False, None, True),
        (False, "", True),
        (False, "1", True),
        (False, " On ", True),
        (False, "0", False),
        (False, "false", False),
        (False, "off", False),
        (True, None, False),
        (True, "1", False),
    ],
)
def test_the_seed_switch(no_seed: bool, value: str | None, wanted: bool) -> None:
    env = {} if value is None else {"PORTCULLIS_LOCAL_SEED": value}
    assert seed_wanted(no_seed, env) is wanted


def test_a_seed_switch_that_is_not_one_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"PORTCULLIS_LOCAL_SEED='maybe' is not a switch"):
        seed_wanted(False, {"PORTCULLIS_LOCAL_SEED": "maybe"})


def test_the_sample_roles() -> None:
    estate = sample_estate()
    assignments = sample_assignments(estate)
    held = {(a.user.name, a.scope, a.role) for a in assignments}
    assert held == {
        ("alice", estate.scope, SAMPLE_REQUESTER_ROLE),
        ("bob", estate.scope, READER_ROLE),
        ("bob", estate.scope, SAMPLE_REQUESTER_ROLE),
        ("admin", f"/subscriptions/{SAMPLE_SUBSCRIPTION_ID}", OWNER_ROLE),
    }
    assert EVE.name not in {a.user.name for a in assignments}
    assert {INITIATE_ACTION, READ_POLICY_ACTION} <= set(REQUESTER_ACTIONS)
    # Stable names: the same assignment twice is the same PUT, different ones never collide.
    again = sample_assignments(estate)
    assert [a.name for a in assignments] == [a.name for a in again]
    assert len({a.name for a in assignments}) == len(assignments)
    assert (
        Assignment(estate.scope, READER_ROLE, ALICE).name != Assignment(estate.scope, READER_ROLE, BOB).name
    )
    assert ADMIN.role == "admin" and ALICE.role == "requester"


def test_the_seed_report_says_what_make_up_prints() -> None:
    estate = sample_estate()
    report = SeedReport(estate, 22, True, sample_assignments(estate), 0.61)
    assert report.lines() == [
        f"Sample estate   subscription {SAMPLE_SUBSCRIPTION_ID}, resource group {SAMPLE_RESOURCE_GROUP} "
        "(22 resources; policy written; roles for admin, alice, bob; 0.6 s)",
        "Sample VMs      vm-web, vm-db, vm-app, vm-ops  "
        "(JIT policy default: SSH 22 on all, RDP 3389 on vm-web; vm-db needs bob's approval)",
    ]
    again = SeedReport(estate, 0, False, sample_assignments(estate), 0.2).lines()[0]
    assert "(resources already there; policy already there;" in again
