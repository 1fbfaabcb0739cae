"""converge() for VMs behind an Azure Firewall: classic NAT collections and Firewall Policy groups."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared import enforcement, plan
from shared.model import PortStatus, TargetRef, TargetState

from .conftest import World


def _classic_nat(world: World) -> list[dict[str, Any]]:
    body = world.emulator.resource(world.estate.classic_firewall_id)
    return list(body["properties"].get("natRuleCollections") or [])


def _policy_groups(world: World) -> dict[str, dict[str, Any]]:
    network = world.network()
    groups = network.firewall_policy_rule_collection_groups.list(world.estate.resource_group, "fwpol")
    return {g.as_dict()["name"]: g.as_dict() for g in groups}


def _strip(collections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Collections without what every write changes (etags, provisioning state)."""
    result = []
    for c in collections:
        props = {k: v for k, v in c["properties"].items() if k != "provisioningState"}
        result.append({"name": c["name"], "properties": props})
    return result


def test_classic_firewall_dnat_and_nsg_allow_from_firewall_subnet(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory()
    before = _strip(_classic_nat(world))
    grant = world.request(world.estate.vm_app, 22, source="198.51.100.0/28")
    enforcement.handle_grant(world.deps, grant.grant_id)
    stored = world.store.get(grant.grant_id)
    assert stored is not None
    assert stored.status is PortStatus.INITIATED, stored.targets
    assert stored.connect_address == world.estate.classic_fw_public_ip
    # 50000 is used by a foreign DNAT rule on the same public IP: never handed out.
    assert stored.mapped_port == 50001
    collections = {c["name"]: c["properties"] for c in _classic_nat(world)}
    ours = collections[plan.COLLECTION_NAME]
    assert ours["priority"] == 100 and ours["action"]["type"] == "Dnat"
    (rule,) = ours["rules"]
    assert rule["sourceAddresses"] == ["198.51.100.0/28"]
    assert rule["destinationAddresses"] == [world.estate.classic_fw_public_ip]
    assert rule["destinationPorts"] == ["50001"]
    assert (rule["translatedAddress"], str(rule["translatedPort"])) == ("10.1.0.4", "22")
    assert rule["protocols"] == ["TCP"]
    # The NSG admits the firewall subnet (DNAT traffic is SNATed), not the requester.
    allow = {r["name"]: r["properties"] for r in world.nsg_rules("nsg-app-nic")}[plan.allow_rule_name(stored)]
    assert allow["sourceAddressPrefix"] == "10.1.1.0/26"
    # Foreign collections (IaC's, Defender's MDC-JIT) are untouched.
    assert [c for c in _strip(_classic_nat(world)) if c["name"] != plan.COLLECTION_NAME] == before

    world.clock.advance(11 * 60)
    enforcement.sweep_expired(world.deps)
    closed = world.store.get(grant.grant_id)
    assert closed is not None and closed.status is PortStatus.REVOKED
    assert all(s is TargetState.REMOVED for s in closed.targets.values())
    assert _strip(_classic_nat(world)) == before


def test_firewall_policy_group_of_ours_created_then_deleted(world_factory: Callable[..., World]) -> None:
    world = world_factory()
    before = _policy_groups(world)
    grant = world.request(world.estate.vm_ops, 22)
    enforcement.handle_grant(world.deps, grant.grant_id)
    stored = world.store.get(grant.grant_id)
    assert stored is not None and stored.status is PortStatus.INITIATED, stored.targets
    assert any(k.startswith("firewall-policy|") for k in stored.targets)
    assert stored.mapped_port == 50001  # 50000 is taken by the IaC group's DNAT rule
    groups = _policy_groups(world)
    ours = groups[plan.RULE_COLLECTION_GROUP_NAME]["properties"]
    assert ours["priority"] == 100
    (collection,) = ours["ruleCollections"]
    (rule,) = collection["rules"]
    assert rule["destinationAddresses"] == [world.estate.policy_fw_public_ip]
    assert rule["destinationPorts"] == ["50001"] and rule["translatedAddress"] == "10.2.0.4"
    assert (
        groups["iac-dnat"]["properties"]["ruleCollections"]
        == before["iac-dnat"]["properties"]["ruleCollections"]
    )

    world.clock.advance(11 * 60)
    enforcement.sweep_expired(world.deps)
    assert set(_policy_groups(world)) == set(before)


def test_burst_of_grants_behind_one_firewall_costs_one_firewall_write(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory()
    queued: list[str] = []
    world.deps.enqueue_target = lambda target, delay: queued.append(target.key)
    grants = [world.request(world.estate.vm_app, 22, source=f"198.51.100.{i}") for i in range(50)]
    for grant in grants:
        enforcement.handle_grant(world.deps, grant.grant_id)  # resolves targets, queues hints
    # One pending hint per target (NIC NSG, firewall), not one per grant.
    assert sorted(k.split("|")[0] for k in queued) == ["firewall-classic", "nsg"]
    for key in queued:  # drained as the queue trigger would
        enforcement.converge(world.deps, TargetRef.from_key(key))
    # Duplicates (at-least-once delivery) cost reads, not writes.
    for key in queued:
        assert not enforcement.converge(world.deps, TargetRef.from_key(key)).wrote
    firewall_writes = [w for w in world.writes("fw-classic") if w["method"] == "PUT"]
    assert len(firewall_writes) == 1
    ports = set()
    for grant in grants:
        stored = world.store.get(grant.grant_id)
        assert stored is not None and stored.status is PortStatus.INITIATED
        ports.add(stored.mapped_port)
    assert len(ports) == 50
    (ours,) = [c for c in _classic_nat(world) if c["name"] == plan.COLLECTION_NAME]
    assert len(ours["properties"]["rules"]) == 50


def test_explicit_firewall_id_in_our_extension_field(world_factory: Callable[..., World]) -> None:
    from shared.defender import parse_policy_body
    from shared.policy_store import TablePolicyStore

    world = world_factory()
    body = world.estate.policy_body()
    for entry in body["properties"]["virtualMachines"]:
        if entry["id"].endswith("/vm-app"):
            entry.pop("publicIpAddress")
            entry["portcullis"] = {"firewallId": world.estate.classic_firewall_id}
    _, canonical = parse_policy_body(body, world.policy_ref)
    TablePolicyStore(world.settings).put(world.policy_ref, canonical)
    grant = world.request(world.estate.vm_app, 22)
    enforcement.handle_grant(world.deps, grant.grant_id)
    stored = world.store.get(grant.grant_id)
    assert stored is not None and stored.status is PortStatus.INITIATED
    assert stored.connect_address == world.estate.classic_fw_public_ip
    assert any(key.startswith("firewall-classic|") for key in stored.targets)
