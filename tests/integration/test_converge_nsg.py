"""converge() against the ARM emulator and Azurite through the real SDKs: NSG shapes."""

from __future__ import annotations

from collections.abc import Callable

from shared import enforcement, plan
from shared.model import PortStatus, TargetState

from .conftest import World


def test_grant_on_vm_with_subnet_and_nic_nsg(world_factory: Callable[..., World]) -> None:
    world = world_factory()
    before_subnet = world.nsg_rules("nsg-web-subnet")
    grant = world.request(world.estate.vm_web, 22)
    enforcement.handle_grant(world.deps, grant.grant_id)
    stored = world.store.get(grant.grant_id)
    assert stored is not None
    assert {key.rsplit("/", 1)[-1] for key in stored.targets} == {"nsg-web-subnet", "nsg-web-nic"}
    assert all(s is TargetState.APPLIED for s in stored.targets.values())
    assert stored.status is PortStatus.INITIATED
    assert stored.connect_address == world.estate.web_public_ip
    for nsg in ("nsg-web-subnet", "nsg-web-nic"):
        rules = {r["name"]: r["properties"] for r in world.nsg_rules(nsg)}
        allow = rules[plan.allow_rule_name(stored)]
        assert allow["access"] == "Allow" and allow["sourceAddressPrefix"] == "203.0.113.7"
        assert allow["destinationAddressPrefix"] == "10.0.0.4" and allow["destinationPortRange"] == "22"
        assert plan.parse_marker(allow["description"]).grant_id == grant.grant_id  # type: ignore[union-attr]
    subnet_rules = {r["name"]: r for r in world.nsg_rules("nsg-web-subnet")}
    for foreign in before_subnet:
        assert subnet_rules[foreign["name"]]["properties"] == foreign["properties"]
    # vm-db shares the subnet NSG: its Deny baseline lives there too.
    denies = [
        r
        for r in world.nsg_rules("nsg-web-subnet")
        if r["properties"]["access"] == "Deny" and plan.is_ours(r["name"])
    ]
    assert {r["properties"]["destinationAddressPrefix"] for r in denies} == {"10.0.0.4", "10.0.0.5"}

    # Converging again writes nothing.
    writes_before = len(world.writes())
    assert writes_before == 2  # one PUT per NSG (seeding goes through the admin endpoint)
    outcomes = enforcement.handle_grant(world.deps, grant.grant_id)
    assert not any(o.wrote for o in outcomes)
    assert len(world.writes()) == writes_before

    # Expiry: rules gone, status Revoked/Expired, NSGs back to the state before the grant.
    baseline_subnet = world.nsg_rules("nsg-web-subnet")
    world.clock.advance(11 * 60)
    enforcement.sweep_expired(world.deps)
    closed = world.store.get(grant.grant_id)
    assert closed is not None and closed.status is PortStatus.REVOKED
    assert closed.status_reason is not None and closed.status_reason.value == "Expired"
    assert all(s is TargetState.REMOVED for s in closed.targets.values())
    names = {r["name"] for r in world.nsg_rules("nsg-web-subnet")}
    assert plan.allow_rule_name(stored) not in names
    assert len(world.nsg_rules("nsg-web-subnet")) == len(baseline_subnet) - 1


def test_policy_change_brings_and_removes_the_deny_baseline(world_factory: Callable[..., World]) -> None:
    from shared.defender import parse_policy_body
    from shared.messages import ConvergePolicy, dump_converge_message
    from shared.policy_store import TablePolicyStore

    world = world_factory(policy=False)
    assert not [r for r in world.nsg_rules("nsg-web-nic") if plan.is_ours(r["name"])]
    policy, canonical = parse_policy_body(world.estate.policy_body(), world.policy_ref)
    store = TablePolicyStore(world.settings)
    store.put(world.policy_ref, canonical)
    message = ConvergePolicy(
        policy_id=world.policy_ref.id, vm_ids=[vm.vm.id for vm in policy.virtual_machines]
    )
    enforcement.handle_converge_message(dump_converge_message(message), world.deps)
    denies = {
        r["properties"]["destinationPortRange"]
        for r in world.nsg_rules("nsg-web-nic")
        if plan.is_ours(r["name"])
    }
    assert denies == {"22", "3389"}
    store.delete(world.policy_ref)
    enforcement.handle_converge_message(dump_converge_message(message), world.deps)
    assert not [r for r in world.nsg_rules("nsg-web-nic") if plan.is_ours(r["name"])]
