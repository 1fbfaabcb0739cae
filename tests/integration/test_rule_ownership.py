"""Issue 15 item 10 through the real NSG adapter: a rule named with our prefix but carrying no marker
of ours is someone else's. Converge sends it back byte for byte, never deletes it, and reports it."""

from __future__ import annotations

from collections.abc import Callable

from shared import enforcement, plan

from .conftest import World

BACKUP = "portcullis-jit-backup-exception"


def test_a_prefixed_rule_without_our_marker_survives_converge_and_is_a_finding(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory()
    nsg_id = world.estate.nsg_id("nsg-web-nic")
    body = world.nsg("nsg-web-nic")
    backup = {
        "name": BACKUP,
        "properties": {
            "priority": 3001,
            "access": "Allow",
            "direction": "Inbound",
            "protocol": "Tcp",
            "sourcePortRange": "*",
            "sourceAddressPrefix": "198.51.100.0/24",
            "destinationAddressPrefix": "*",
            "destinationPortRange": "22",
            "description": "ops break-glass, do not remove",
        },
    }
    body["properties"]["securityRules"].append(backup)
    world.emulator.put_resource(nsg_id, body)
    before = next(r for r in world.nsg_rules("nsg-web-nic") if r["name"] == BACKUP)

    grant = world.request(world.estate.vm_web, 22)
    enforcement.handle_grant(world.deps, grant.grant_id)
    world.clock.advance(11 * 60)
    enforcement.sweep_expired(world.deps)  # our rules removed: the lookalike must not go with them

    after = {r["name"]: r for r in world.nsg_rules("nsg-web-nic")}
    assert BACKUP in after
    assert after[BACKUP]["properties"] == before["properties"]
    assert plan.allow_rule_name(grant) not in after
    findings = [
        f for f in world.deps.findings.list() if f.rule == BACKUP and nsg_id.lower() in f.target.lower()
    ]
    assert [f.kind for f in findings] == [plan.FindingKind.FOREIGN_RULE_WITH_OUR_PREFIX.value]
