"""Drift and tamper, refusals and outages: converge repairs ours, never touches theirs, never reports
a grant active before every hop has its rule, and opens nothing without the Table."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from shared import enforcement, plan
from shared.audit import TableAuditTrail
from shared.model import PortStatus, TargetKind, TargetRef, TargetState

from .conftest import World


def _nsg_body(world: World, nsg: str) -> dict:
    return copy.deepcopy(world.emulator.resource(world.estate.nsg_id(nsg)))


def _rules(world: World, nsg: str) -> dict[str, dict]:
    return {r["name"]: r["properties"] for r in _nsg_body(world, nsg)["properties"]["securityRules"]}


def test_edited_deleted_and_forged_rules_of_ours_are_repaired_foreign_kept(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory()
    grant = world.request(world.estate.vm_web, 22)
    enforcement.handle_grant(world.deps, grant.grant_id)
    stored = world.store.get(grant.grant_id)
    assert stored is not None and stored.status is PortStatus.INITIATED
    name = plan.allow_rule_name(stored)
    good = _rules(world, "nsg-web-nic")[name]

    # Someone widens our rule to the Internet on the NIC NSG, deletes it on the subnet NSG, forges
    # a rule with our prefix, and edits a foreign rule.
    body = _nsg_body(world, "nsg-web-nic")
    for rule in body["properties"]["securityRules"]:
        if rule["name"] == name:
            rule["properties"]["sourceAddressPrefix"] = "*"
        if rule["name"] == "allow-monitoring":
            rule["properties"]["destinationPortRange"] = "9101"
    body["properties"]["securityRules"].append(
        {
            "name": "Portcullis-JIT-Allow-22-forged",
            "properties": {
                "priority": 3300,
                "access": "Allow",
                "direction": "Inbound",
                "protocol": "Tcp",
                "sourcePortRange": "*",
                "sourceAddressPrefix": "*",
                "destinationAddressPrefix": "*",
                "destinationPortRange": "22",
                "description": "portcullis:grant=forged;exp=2099-01-01T00:00:00Z",
            },
        }
    )
    world.emulator.put_resource(world.estate.nsg_id("nsg-web-nic"), body)
    subnet = _nsg_body(world, "nsg-web-subnet")
    subnet["properties"]["securityRules"] = [
        r for r in subnet["properties"]["securityRules"] if r["name"] != name
    ]
    world.emulator.put_resource(world.estate.nsg_id("nsg-web-subnet"), subnet)
    foreign_after_edit = {k: v for k, v in _rules(world, "nsg-web-nic").items() if not plan.is_ours(k)}

    # The reconcile timer repairs it.
    enforcement.reconcile_all(world.deps)
    nic_rules = _rules(world, "nsg-web-nic")
    assert nic_rules[name] == good
    assert "Portcullis-JIT-Allow-22-forged" not in nic_rules
    assert name in _rules(world, "nsg-web-subnet")
    assert {k: v for k, v in nic_rules.items() if not plan.is_ours(k)} == foreign_after_edit
    assert nic_rules["allow-monitoring"]["destinationPortRange"] == "9101"  # theirs, theirs to keep

    audit = TableAuditTrail(world.settings)
    nic_events = [e.event for e in audit.for_subject(f"nsg|{world.estate.nsg_id('nsg-web-nic')}".lower())]
    assert "drift.repaired" in nic_events and "drift.removed_unknown" in nic_events
    grant_events = [e.event for e in audit.for_subject(grant.grant_id)]
    assert {"grant.path_resolved", "grant.applied", "grant.initiated"} <= set(grant_events)

    # Once expired, even an edited copy of our rule is removed.
    world.clock.advance(11 * 60)
    enforcement.sweep_expired(world.deps)
    assert name not in _rules(world, "nsg-web-nic") and name not in _rules(world, "nsg-web-subnet")
    assert "grant.expired" in [e.event for e in audit.for_subject(grant.grant_id)]


def test_grant_is_not_initiated_while_a_hop_refuses_and_is_once_it_accepts(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory()
    grant = world.request(world.estate.vm_app, 22)
    world.emulator.add_fault(
        method="PUT",
        path=f"(?i)/resourceGroups/{world.estate.resource_group}/.*azureFirewalls",
        status=409,
        code="AnotherOperationInProgress",
        count=None,
    )
    with pytest.raises(enforcement.TargetWriteError):
        enforcement.handle_grant(world.deps, grant.grant_id)
    stuck = world.store.get(grant.grant_id)
    assert stuck is not None and stuck.status is PortStatus.INITIATING
    states = {TargetRef.from_key(k).kind: s for k, s in stuck.targets.items()}
    assert states == {TargetKind.NSG: TargetState.APPLIED, TargetKind.FIREWALL_CLASSIC: TargetState.FAILED}
    assert len(world.sleeps) == enforcement.MAX_WRITE_ATTEMPTS - 1  # bounded back-off, then loud failure
    world.emulator.clear_faults()
    enforcement.reconcile_all(world.deps)
    ready = world.store.get(grant.grant_id)
    assert ready is not None and ready.status is PortStatus.INITIATED
    assert all(s is TargetState.APPLIED for s in ready.targets.values())


def test_retry_after_is_honoured_when_arm_is_busy(world_factory: Callable[..., World]) -> None:
    world = world_factory()
    grant = world.request(world.estate.vm_db, 22)
    world.emulator.add_fault(
        method="PUT",
        path=f"(?i)/resourceGroups/{world.estate.resource_group}/.*networkSecurityGroups",
        status=409,
        code="AnotherOperationInProgress",
        count=4,
        retry_after=1,
    )
    world.emulator.admin_ok("DELETE", "/_emulator/requests")
    enforcement.handle_grant(world.deps, grant.grant_id)
    # Converge's loop is the only one retrying writes (shared/azure_clients.py): each refusal reaches
    # it after exactly one HTTP attempt, and it waits exactly what ARM asked for instead of its own
    # back-off, until the write goes through.
    assert world.sleeps == [1.0, 1.0, 1.0, 1.0]
    puts = [
        r for r in world.writes() if r["method"] == "PUT" and "networksecuritygroups" in r["path"].lower()
    ]
    assert len(puts) == 4 + 1  # four refused, then the one PUT of vm-db's subnet NSG
    stored = world.store.get(grant.grant_id)
    assert stored is not None and stored.status is PortStatus.INITIATED


def test_nothing_opens_when_the_grant_table_is_gone(world_factory: Callable[..., World]) -> None:
    from shared.storage import table_service

    world = world_factory()
    grant = world.request(world.estate.vm_web, 22)
    # The grants table disappears (deleted, wrong account, outage) before any trigger runs.
    table_service(world.settings).delete_table(f"{world.settings.table_prefix}grants")
    enforcement.handle_grant(world.deps, grant.grant_id)  # the grant cannot be read: nothing to open
    enforcement.reconcile_all(world.deps)  # per-target failures are logged, never opened around
    enforcement.sweep_expired(world.deps)
    for nsg in ("nsg-web-subnet", "nsg-web-nic"):
        assert not [r for r in world.nsg_rules(nsg) if plan.is_ours(r["name"]) and "Allow" in r["name"]]


def test_rules_of_a_revoked_grant_close_even_with_its_message_lost_and_policy_deleted(
    world_factory: Callable[..., World],
) -> None:
    from dataclasses import replace

    from shared.model import StatusReason
    from shared.policy_store import TablePolicyStore

    world = world_factory()
    grant = world.request(world.estate.vm_web, 22)
    enforcement.handle_grant(world.deps, grant.grant_id)
    name = plan.allow_rule_name(grant)
    assert name in _rules(world, "nsg-web-nic")
    TablePolicyStore(world.settings).delete(world.policy_ref)
    stored = world.store.get(grant.grant_id)
    assert stored is not None
    world.store.update(replace(stored, status=PortStatus.REVOKED, status_reason=StatusReason.USER_REQUESTED))
    # No ConvergeGrant arrives; only the reconcile timer runs.
    enforcement.reconcile_all(world.deps)
    assert name not in _rules(world, "nsg-web-nic") and name not in _rules(world, "nsg-web-subnet")
    closed = world.store.get(grant.grant_id)
    assert closed is not None and all(s is TargetState.REMOVED for s in closed.targets.values())
    assert closed.status_reason is StatusReason.USER_REQUESTED
