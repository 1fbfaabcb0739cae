"""Import of Defender's JIT policies (POST /api/subscriptions/{sub}/importDefenderJitPolicies) against
the ARM emulator's Microsoft.Security provider, written with azure-mgmt-security as an administrator
would have written them, and Azurite. The adopted policies must then be served by our GET routes as
Defender serves them (modulo our extension fields and Defender's request history, which is not copied:
it describes rules Defender opened, not ours)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.mgmt.security import SecurityCenter
from azure.mgmt.security.v2020_01_01.models import (
    JitNetworkAccessPolicy,
    JitNetworkAccessPolicyInitiatePort,
    JitNetworkAccessPolicyInitiateRequest,
    JitNetworkAccessPolicyInitiateVirtualMachine,
    JitNetworkAccessPolicyVirtualMachine,
    JitNetworkAccessPortRule,
)

from localrig.estates.sample import Estate
from shared.api import defender_routes, records
from shared.authz import WRITE_POLICY_ACTION
from tests.integration.jit_world import API_VERSION, OWNER, Person, World

LOCATION = "westeurope"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


@pytest.fixture
def defender(world: World) -> SecurityCenter:
    """azure-mgmt-security against the emulator: Defender's side of the import."""
    return world.arm.client(SecurityCenter)


def port_rule(number: int, protocol: str, duration: str, *prefixes: str) -> JitNetworkAccessPortRule:
    if len(prefixes) == 1:
        return JitNetworkAccessPortRule(
            number=number,
            protocol=protocol,
            allowed_source_address_prefix=prefixes[0],
            max_request_access_duration=duration,
        )
    return JitNetworkAccessPortRule(
        number=number,
        protocol=protocol,
        allowed_source_address_prefixes=list(prefixes),
        max_request_access_duration=duration,
    )


def write_defender_policy(
    defender: SecurityCenter, resource_group: str, name: str, vms: list[JitNetworkAccessPolicyVirtualMachine]
) -> JitNetworkAccessPolicy:
    return defender.jit_network_access_policies.create_or_update(
        resource_group, LOCATION, name, JitNetworkAccessPolicy(kind="Basic", virtual_machines=vms)
    )


def run_import(world: World, person: Person, subscription: str | None = None) -> tuple[int, Any]:
    sub = subscription or world.subscription
    status, body, _ = world.call(
        records.import_defender_policies,
        "POST",
        f"/subscriptions/{sub}/importDefenderJitPolicies",
        person,
        route={"subscriptionId": sub},
    )
    return status, body


def served_by_app(world: World, name: str) -> dict[str, Any]:
    status, body, _ = world.call(
        defender_routes.get_policy,
        "GET",
        world.policy_path(name) + API_VERSION,
        world.admin,
        route=world.policy_route(name),
    )
    assert status == 200, body
    return body


def as_defender_sdk_reads_it(body: dict[str, Any]) -> dict[str, Any]:
    """The body through the SDK's model (what a Defender client sees: unknown fields dropped), without
    the request history and provisioning state, which differ by design."""
    data = JitNetworkAccessPolicy.deserialize(body).serialize(keep_readonly=True)
    data["properties"].pop("requests", None)
    data["properties"].pop("provisioningState", None)
    return data


def mine(ids: list[str], world: World) -> list[str]:
    return sorted(i for i in ids if f"/resourcegroups/{world.resource_group.lower()}/" in i.lower())


def test_import_adopts_what_the_caller_may_write_and_serves_it_as_defender_does(
    world: World, defender: SecurityCenter
) -> None:
    vm1 = world.vm_id("vm1")
    write_defender_policy(
        defender,
        world.resource_group,
        "default",
        [
            JitNetworkAccessPolicyVirtualMachine(
                id=vm1,
                ports=[
                    port_rule(22, "TCP", "PT3H", "10.0.0.0/16", "192.168.1.0/24"),
                    port_rule(3389, "*", "PT1H", "*"),
                ],
            ),
            # Behind the estate's classic firewall (same VNet, the admin owns it), Defender's way.
            JitNetworkAccessPolicyVirtualMachine(
                id=world.vm_id(Estate.vm_app),
                ports=[port_rule(5985, "UDP", "P1D", "10.1.2.3")],
                public_ip_address=Estate(world.subscription, world.resource_group).classic_fw_public_ip,
            ),
        ],
    )
    write_defender_policy(
        defender,
        world.resource_group,
        "web",
        [JitNetworkAccessPolicyVirtualMachine(id=vm1, ports=[port_rule(22, "tcp", "PT30M", "10.0.0.0/8")])],
    )
    # Defender's own history on "web": not copied, our history is of our grants.
    defender.jit_network_access_policies.initiate(
        world.resource_group,
        LOCATION,
        "web",
        JitNetworkAccessPolicyInitiateRequest(
            virtual_machines=[
                JitNetworkAccessPolicyInitiateVirtualMachine(
                    id=vm1,
                    ports=[
                        JitNetworkAccessPolicyInitiatePort(
                            number=22,
                            end_time_utc=datetime.now(UTC) + timedelta(minutes=20),
                            allowed_source_address_prefix="10.0.0.0/8",
                        )
                    ],
                )
            ],
            justification="opened by Defender",
        ),
    )
    # A policy in a resource group the admin may only read: skipped, not adopted, and said so.
    other_rg = world.arm.new_resource_group()
    other_scope = f"/subscriptions/{world.subscription}/resourceGroups/{other_rg}/providers"
    write_defender_policy(
        defender,
        other_rg,
        "default",
        [
            JitNetworkAccessPolicyVirtualMachine(
                id=f"{other_scope}/Microsoft.Compute/virtualMachines/x",
                ports=[port_rule(22, "TCP", "PT1H", "*")],
            )
        ],
    )
    world.assign(
        f"/subscriptions/{world.subscription}/resourceGroups/{other_rg}", READER, world.admin.object_id
    )
    # And one where the admin has no role at all: not even named (the app reads more than the caller may).
    hidden_rg = world.arm.new_resource_group()
    write_defender_policy(
        defender,
        hidden_rg,
        "secret",
        [
            JitNetworkAccessPolicyVirtualMachine(
                id=f"/subscriptions/{world.subscription}/resourceGroups/{hidden_rg}/providers/Microsoft.Compute"
                "/virtualMachines/y",
                ports=[port_rule(22, "TCP", "PT1H", "*")],
            )
        ],
    )

    status, report = run_import(world, world.admin)

    assert status == 200, report
    assert mine(report["adopted"], world) == sorted([world.policy_path("default"), world.policy_path("web")])
    assert mine(report["unchanged"], world) == []
    skipped_elsewhere = [s for s in report["skipped"] if f"/resourceGroups/{other_rg}/" in s["id"]]
    assert skipped_elsewhere == [
        {
            "id": f"{other_scope}/Microsoft.Security/locations/{LOCATION}/jitNetworkAccessPolicies/default",
            "reason": "caller lacks Microsoft.Security/locations/jitNetworkAccessPolicies/write",
        }
    ]
    everything_named = [*report["adopted"], *report["unchanged"], *(s["id"] for s in report["skipped"])]
    assert not [i for i in everything_named if hidden_rg in i]
    for name in ("default", "web"):
        ours = served_by_app(world, name)
        theirs = defender.jit_network_access_policies.get(world.resource_group, LOCATION, name)
        assert as_defender_sdk_reads_it(ours) == as_defender_sdk_reads_it(
            theirs.serialize(keep_readonly=True)
        )
        assert ours["properties"]["requests"] == []
        assert ours["properties"]["provisioningState"] == "Succeeded"
    assert defender.jit_network_access_policies.get(world.resource_group, LOCATION, "web").requests
    # The imported policy is live: alice (initiate on vm1) can now ask through our app.
    status, body, _ = world.call(
        defender_routes.initiate,
        "POST",
        world.policy_path("web") + "/initiate" + API_VERSION,
        world.alice,
        world.initiate_body(source="10.20.0.0/16", hours=0.25),
        world.policy_route("web"),
    )
    assert status == 202, body
    events = [e.event for e in world.services.audit.for_subject(world.policy_path("default"))]
    assert "policy.imported" in events


def test_a_second_import_changes_nothing_and_a_changed_defender_policy_is_adopted_again(
    world: World, defender: SecurityCenter
) -> None:
    vm1 = world.vm_id("vm1")
    write_defender_policy(
        defender,
        world.resource_group,
        "default",
        [JitNetworkAccessPolicyVirtualMachine(id=vm1, ports=[port_rule(22, "TCP", "PT3H", "10.0.0.0/16")])],
    )
    assert run_import(world, world.admin)[0] == 200
    before = served_by_app(world, "default")

    status, again = run_import(world, world.admin)

    assert status == 200
    assert mine(again["adopted"], world) == []
    assert mine(again["unchanged"], world) == [world.policy_path("default")]
    assert served_by_app(world, "default") == before

    write_defender_policy(
        defender,
        world.resource_group,
        "default",
        [
            JitNetworkAccessPolicyVirtualMachine(
                id=vm1,
                ports=[port_rule(22, "TCP", "PT3H", "10.0.0.0/16"), port_rule(443, "TCP", "PT2H", "*")],
            )
        ],
    )
    status, third = run_import(world, world.admin)
    assert status == 200
    assert mine(third["adopted"], world) == [world.policy_path("default")]
    ports = served_by_app(world, "default")["properties"]["virtualMachines"][0]["ports"]
    assert [p["number"] for p in ports] == [22, 443]


def test_import_checks_the_callers_right_before_reading_defender(
    world: World, defender: SecurityCenter
) -> None:
    """alice may initiate on vm1 but write JIT policies nowhere: 403 before the app reads Defender's
    policies with its own identity (issue 15 item 12)."""
    write_defender_policy(
        defender,
        world.resource_group,
        "default",
        [
            JitNetworkAccessPolicyVirtualMachine(
                id=world.vm_id("vm1"), ports=[port_rule(22, "TCP", "PT3H", "10.0.0.0/16")]
            )
        ],
    )
    mark = world.arm.log_mark()

    status, body = run_import(world, world.alice)

    assert status == 403, body
    assert body["error"]["code"] == "AuthorizationFailed"
    assert WRITE_POLICY_ACTION in body["error"]["message"]
    defender_reads = [
        r
        for r in world.arm.requests_since(mark)
        if "microsoft.security/jitnetworkaccesspolicies" in r["path"].lower()
    ]
    assert defender_reads == []
    assert world.services.policies.list_in(world.subscription, world.resource_group) == []


def test_a_policy_we_cannot_address_is_skipped_naming_the_field(
    world: World, defender: SecurityCenter
) -> None:
    """ARM takes a region's display name in a path; our routes take its name ('westeurope') only, so
    the import reports such a policy instead of failing or storing what no route can serve."""
    defender.jit_network_access_policies.create_or_update(
        world.resource_group,
        "West Europe",
        "default",
        JitNetworkAccessPolicy(
            kind="Basic",
            virtual_machines=[
                JitNetworkAccessPolicyVirtualMachine(
                    id=world.vm_id("vm1"), ports=[port_rule(22, "TCP", "PT3H", "10.0.0.0/16")]
                )
            ],
        ),
    )

    status, report = run_import(world, world.admin)

    assert status == 200
    skipped = [s for s in report["skipped"] if world.resource_group in s["id"]]
    assert len(skipped) == 1 and skipped[0]["reason"].startswith("ascLocation:"), skipped
    assert world.services.policies.list_in(world.subscription, world.resource_group) == []


def test_defender_unreadable_is_a_502_in_our_words_and_stores_nothing(
    world: World, defender: SecurityCenter
) -> None:
    write_defender_policy(
        defender,
        world.resource_group,
        "default",
        [
            JitNetworkAccessPolicyVirtualMachine(
                id=world.vm_id("vm1"), ports=[port_rule(22, "TCP", "PT3H", "10.0.0.0/16")]
            )
        ],
    )
    world.arm.add_fault(
        method="GET",
        path="/providers/Microsoft.Security/jitNetworkAccessPolicies$",
        status=403,
        code="AuthorizationFailed",
        message="the app's identity may not read Defender's policies",
        count=1,
    )
    try:
        status, body = run_import(world, world.admin)
    finally:
        world.arm.clear_faults()

    assert status == 502, body
    assert body["error"]["code"] == "DefenderUnavailable"
    # Our words, never ARM's: its text carries the app identity's ids.
    assert "AuthorizationFailed" not in body["error"]["message"]
    assert "app's identity" not in body["error"]["message"]
    assert world.services.policies.list_in(world.subscription, world.resource_group) == []


@pytest.mark.parametrize("subscription", ["not a subscription", "x" * 65])
def test_a_bad_subscription_is_a_400_naming_it(world: World, subscription: str) -> None:
    status, body = run_import(world, world.admin, subscription)
    assert status == 400
    assert body["error"]["target"] == "subscriptionId"


def test_the_owner_role_constant_is_the_built_in_owner(world: World) -> None:
    # The import's RBAC check relies on the built-in Owner's `*`; guard the GUID the world uses.
    role = world.auth.role_definitions.get_by_id(
        f"/subscriptions/{world.subscription}/providers/Microsoft.Authorization/roleDefinitions/{OWNER}"
    )
    assert role.role_name == "Owner"


def test_a_policy_too_large_to_store_is_skipped_and_the_others_adopted(
    world: World, defender: SecurityCenter
) -> None:
    """Defender takes bodies up to 4 MB, our PUT route 64 KiB; the import bypasses the route, so the
    store's own bound answers, for that policy only."""
    prefixes = [f"10.{i // 256}.{i % 256}.0/24" for i in range(200)]
    huge = [port_rule(number, "TCP", "PT1H", *prefixes) for number in range(1, 301)]
    write_defender_policy(
        defender,
        world.resource_group,
        "huge",
        [JitNetworkAccessPolicyVirtualMachine(id=world.vm_id("vm1"), ports=huge)],
    )
    write_defender_policy(
        defender,
        world.resource_group,
        "small",
        [
            JitNetworkAccessPolicyVirtualMachine(
                id=world.vm_id("vm2"), ports=[port_rule(22, "TCP", "PT1H", "*")]
            )
        ],
    )

    try:
        status, report = run_import(world, world.admin)
    finally:  # the emulator is shared by the session: do not make every later list carry a megabyte
        defender.jit_network_access_policies.delete(world.resource_group, LOCATION, "huge")

    assert status == 200, report
    assert mine(report["adopted"], world) == [world.policy_path("small")]
    skipped = [s for s in report["skipped"] if world.resource_group in s["id"]]
    assert [s["id"] for s in skipped] == [world.policy_path("huge")]
    assert skipped[0]["reason"].startswith("properties.virtualMachines: the policy is too large")


def test_an_imported_policy_naming_a_firewall_off_the_vms_path_is_skipped_naming_the_field(
    world: World, defender: SecurityCenter
) -> None:
    """Item 1 applies to imports: a Defender policy in the admin's group whose VM names another group's
    firewall by public IP (an unpeered VNet) is skipped, not stored."""
    victim = Estate(world.subscription, f"rg-a-{uuid.uuid4().hex[:8]}")
    world.arm.seed(victim.resources())
    write_defender_policy(
        defender,
        world.resource_group,
        "default",
        [
            JitNetworkAccessPolicyVirtualMachine(
                id=world.vm_id("vm-app"),
                ports=[port_rule(22, "TCP", "PT3H", "*")],
                public_ip_address=victim.classic_fw_public_ip,
            )
        ],
    )

    status, report = run_import(world, world.admin)

    assert status == 200, report
    assert mine(report["adopted"], world) == []
    skipped = [s for s in report["skipped"] if world.resource_group in s["id"]]
    assert len(skipped) == 1, report
    assert skipped[0]["reason"].startswith("properties.virtualMachines[0].publicIpAddress:"), skipped
    assert world.services.policies.list_in(world.subscription, world.resource_group) == []
