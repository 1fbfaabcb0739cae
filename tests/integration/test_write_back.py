"""The adapters write back what they read (issue 16 item 6): properties the pinned SDK does not model,
put on an NSG, a foreign rule, a classic firewall and our Firewall Policy rule collection group,
are still there after a converge rewrote the target. And `list_raw` yields the same wire JSON from
list pages, so a snapshot planned from a listing equals one from a GET.

Through the real azure-mgmt-network SDK against the ARM emulator, which stores the fields it does not
model as sent (emulator/providers/network/common.py `keep_unmodelled`)."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared import enforcement, plan
from shared.model import PortStatus
from shared.plan import RULE_COLLECTION_GROUP_NAME
from shared.targets.firewall_common import FirewallSnapshot
from shared.targets.firewall_policy import FirewallPolicyTarget
from shared.targets.nsg import NsgSnapshot, NsgTarget
from shared.targets.wire import NETWORK_API_VERSION, get_raw, list_raw

from .conftest import World

TOP = {"zzFutureTop": {"since": "2099-01-01", "values": [1, 2, 3]}}
PROPS = {"zzFutureProperty": {"mode": "Strict", "enabled": True}}
RULE_TOP = {"zzFutureRuleTop": "kept"}
RULE_PROPS = {"zzFutureRuleProperty": ["a", "b"]}


def _with_unknowns(body: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    changed.update(copy.deepcopy(TOP))
    changed.setdefault("properties", {}).update(copy.deepcopy(PROPS))
    return changed


def _has_unknowns(body: dict[str, Any]) -> bool:
    return all(body.get(k) == v for k, v in TOP.items()) and all(
        body["properties"].get(k) == v for k, v in PROPS.items()
    )


def _raw(world: World, operation: str, *names: str) -> dict[str, Any]:
    ops = getattr(world.network(), operation)
    return get_raw(ops.get, world.estate.resource_group, *names)


def test_nsg_keeps_unknown_properties_and_foreign_rule_fields(world_factory: Callable[..., World]) -> None:
    world = world_factory()
    nsg_id = world.estate.nsg_id("nsg-web-subnet")
    body = _with_unknowns(_raw(world, "network_security_groups", "nsg-web-subnet"))
    (foreign,) = [r for r in body["properties"]["securityRules"] if r["name"] == "allow-https"]
    foreign.update(RULE_TOP)
    foreign["properties"].update(RULE_PROPS)
    world.emulator.put_resource(nsg_id, body)
    before = _raw(world, "network_security_groups", "nsg-web-subnet")
    assert _has_unknowns(before)  # the emulator keeps them: otherwise this test would prove nothing

    grant = world.request(world.estate.vm_web, 22)
    enforcement.handle_grant(world.deps, grant.grant_id)
    stored = world.store.get(grant.grant_id)
    assert stored is not None and stored.status is PortStatus.INITIATED

    assert len(world.writes("nsg-web-subnet")) == 1  # converge rewrote the whole NSG once
    after = _raw(world, "network_security_groups", "nsg-web-subnet")
    assert _has_unknowns(after)
    rules = {r["name"]: r for r in after["properties"]["securityRules"]}
    assert plan.allow_rule_name(stored) in rules
    assert rules["allow-https"]["zzFutureRuleTop"] == "kept"
    assert rules["allow-https"]["properties"]["zzFutureRuleProperty"] == ["a", "b"]
    before_rule = {r["name"]: r for r in before["properties"]["securityRules"]}["allow-https"]
    assert {k: v for k, v in rules["allow-https"].items() if k != "etag"} == {
        k: v for k, v in before_rule.items() if k != "etag"
    }


def test_classic_firewall_keeps_unknown_properties(world_factory: Callable[..., World]) -> None:
    world = world_factory()
    firewall_id = world.estate.classic_firewall_id
    name = firewall_id.rsplit("/", 1)[-1]
    world.emulator.put_resource(firewall_id, _with_unknowns(_raw(world, "azure_firewalls", name)))
    assert _has_unknowns(_raw(world, "azure_firewalls", name))

    grant = world.request(world.estate.vm_app, 22)
    enforcement.handle_grant(world.deps, grant.grant_id)
    stored = world.store.get(grant.grant_id)
    assert stored is not None and stored.status is PortStatus.INITIATED, stored.targets

    assert len(world.writes(name)) == 1
    after = _raw(world, "azure_firewalls", name)
    assert _has_unknowns(after)
    assert plan.COLLECTION_NAME in {c["name"] for c in after["properties"]["natRuleCollections"]}


def test_firewall_policy_group_keeps_unknown_properties(world_factory: Callable[..., World]) -> None:
    world = world_factory()
    first = world.request(world.estate.vm_ops, 22)
    enforcement.handle_grant(world.deps, first.grant_id)  # creates our rule collection group
    group_id = f"{world.estate.firewall_policy_id}/ruleCollectionGroups/{RULE_COLLECTION_GROUP_NAME}"
    group = _raw(world, "firewall_policy_rule_collection_groups", "fwpol", RULE_COLLECTION_GROUP_NAME)
    world.emulator.put_resource(group_id, _with_unknowns(group))
    assert _has_unknowns(
        _raw(world, "firewall_policy_rule_collection_groups", "fwpol", RULE_COLLECTION_GROUP_NAME)
    )

    writes_before = len(world.writes(RULE_COLLECTION_GROUP_NAME))
    second = world.request(world.estate.vm_ops, 3389, source="198.51.100.9")
    enforcement.handle_grant(world.deps, second.grant_id)
    stored = world.store.get(second.grant_id)
    assert stored is not None and stored.status is PortStatus.INITIATED, stored.targets

    assert len(world.writes(RULE_COLLECTION_GROUP_NAME)) == writes_before + 1
    after = _raw(world, "firewall_policy_rule_collection_groups", "fwpol", RULE_COLLECTION_GROUP_NAME)
    assert _has_unknowns(after)
    (collection,) = after["properties"]["ruleCollections"]
    assert len(collection["rules"]) == 2


def test_snapshots_from_a_listing_equal_snapshots_from_a_get(world_factory: Callable[..., World]) -> None:
    world = world_factory()
    network = world.network()
    rg = world.estate.resource_group
    sub = f"/subscriptions/{world.estate.subscription_id}"
    grant_id = world.request(world.estate.vm_ops, 22).grant_id
    groups_url = f"{world.estate.firewall_policy_id}/ruleCollectionGroups"
    # Reconcile is level-triggered: on a loaded machine a first pass may defer the Firewall Policy
    # (its outcome says why); passes repeat until our group exists, as the queue would repeat them.
    outcomes = enforcement.handle_grant(world.deps, grant_id)
    deadline = time.monotonic() + 60
    while RULE_COLLECTION_GROUP_NAME not in {g["name"] for g in list_raw(network, groups_url)}:
        assert time.monotonic() < deadline, f"our rule collection group never written: {outcomes}"
        time.sleep(1)
        outcomes = enforcement.handle_grant(world.deps, grant_id)

    listed = {
        nsg["id"].lower(): nsg
        for nsg in list_raw(network, f"{sub}/providers/Microsoft.Network/networkSecurityGroups")
        if f"/resourcegroups/{rg.lower()}/" in nsg["id"].lower()
    }
    assert len(listed) == 4
    for nsg_id, body in listed.items():
        target = NsgTarget(world.target("nsg", body["id"]), world.deps.network)
        assert NsgSnapshot.from_wire(body) == target.read(), nsg_id

    classic = world.estate.classic_firewall_id.lower()
    firewalls = list_raw(network, f"{sub}/providers/Microsoft.Network/azureFirewalls")
    (firewall,) = [f for f in firewalls if f["id"].lower() == classic]
    fw_name = classic.rsplit("/", 1)[-1]
    from_get = FirewallSnapshot.from_classic_wire(_raw(world, "azure_firewalls", fw_name))
    assert FirewallSnapshot.from_classic_wire(firewall) == from_get
    assert from_get.foreign_ports == {world.estate.classic_fw_public_ip: {50000}}

    groups = list(list_raw(network, groups_url))
    assert {g["name"] for g in groups} == {"iac-dnat", RULE_COLLECTION_GROUP_NAME}
    policy = FirewallPolicyTarget(
        world.target("firewall-policy", world.estate.firewall_policy_id), world.deps.network
    )
    from_list = FirewallSnapshot.from_policy_wire(groups)
    assert from_list == policy.read()
    assert from_list.our_rules is not None and len(from_list.our_rules) == 1


def test_list_raw_follows_next_link_and_yields_a_retried_page_once(
    world_factory: Callable[..., World],
) -> None:
    """1,001 NSGs are two pages (the emulator pages at 1,000 as ARM does); a 429 on the first page is
    retried by the client's read retry, and the page is yielded once, from the successful answer."""
    world = world_factory(policy=False)
    arm_emulator = world.emulator
    subscription = str(uuid.uuid4())
    rg = "rg-paging"
    prefix = f"/subscriptions/{subscription}/resourceGroups/{rg}/providers/Microsoft.Network"
    arm_emulator.seed(
        [
            {
                "id": f"{prefix}/networkSecurityGroups/nsg-{i:04d}",
                "body": {"location": "westeurope", "properties": {"securityRules": []}, **TOP},
            }
            for i in range(1001)
        ]
    )
    network = world.deps.network(subscription)  # built by shared/azure_clients.py, as the app's
    list_path = f"/subscriptions/{subscription}/providers/Microsoft.Network/networkSecurityGroups"
    arm_emulator.add_fault(method="GET", path=f"{list_path}$", status=429, retry_after=0, count=1)
    arm_emulator.admin_ok("DELETE", "/_emulator/requests")
    try:
        items = list(list_raw(network, list_path))
    finally:
        arm_emulator.clear_faults()
    assert len(items) == 1001
    assert len({item["name"] for item in items}) == 1001
    assert all(item["zzFutureTop"] == TOP["zzFutureTop"] and item["etag"] for item in items)
    gets = [r for r in arm_emulator.requests()["log"] if r["path"].lower() == list_path.lower()]
    assert len(gets) == 3  # page 1 refused, page 1 again, page 2 (nextLink)
    # The same api-version as the SDK's own operations, so listed bodies match GET bodies.
    network.network_security_groups.get(rg, "nsg-0000")
    sdk_get = arm_emulator.requests()["log"][-1]
    assert sdk_get["path"].lower().endswith("/nsg-0000")
    assert {r["api_version"] for r in gets} == {sdk_get["api_version"]} == {NETWORK_API_VERSION}


def test_list_raw_raises_as_the_sdk_does(world_factory: Callable[..., World]) -> None:
    world = world_factory(policy=False)
    missing = world.estate.firewall_policy_id.replace("fwpol", "no-such-policy")
    with pytest.raises(ResourceNotFoundError):
        list(list_raw(world.network(), f"{missing}/ruleCollectionGroups"))
    world.emulator.add_fault(method="GET", path="/azureFirewalls$", status=400, code="BadThing", count=1)
    try:
        with pytest.raises(HttpResponseError) as refused:
            list(
                list_raw(
                    world.network(),
                    f"/subscriptions/{world.estate.subscription_id}/providers/Microsoft.Network/azureFirewalls",
                )
            )
    finally:
        world.emulator.clear_faults()
    assert refused.value.status_code == 400 and refused.value.error is not None
    assert refused.value.error.code == "BadThing"
