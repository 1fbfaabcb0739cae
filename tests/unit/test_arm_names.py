"""Issue 15 item 2: names are compared and keyed as ARM compares them (.NET OrdinalIgnoreCase: the
invariant simple upper-case mapping per character), not with Python's `lower()`, which makes KELVIN
SIGN a 'k' and so lets a look-alike resource group stand for another."""

from __future__ import annotations

import pytest

from shared import defender
from shared.authz import Authorizer, Permission, RoleAssignment, scope_covers
from shared.model import (
    DomainError,
    PolicyRef,
    Principal,
    PrincipalSource,
    ResourceId,
    TargetKind,
    TargetRef,
    VmRef,
    arm_key,
    same_arm_name,
)
from shared.table_keys import hashed_key

KELVIN = "\u212a"
SUB = "/subscriptions/00000000-0000-0000-0000-000000000001"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (f"rg{KELVIN}-web", "rgk-web"),  # KELVIN SIGN is upper-case already: not K, not k
        (f"rg{KELVIN}-web", "rgK-web"),
        ("stra\u00dfe", "strasse"),  # ß has no simple upper-case mapping: not "SS"
        ("stra\u00dfe", "STRASSE"),
        ("stra\u00dfe", "stra\u1e9ee"),  # nor capital sharp s
        ("\u0131nfra", "infra"),  # dotless i: kept by .NET's ordinal casing, not 'I'
        ("\u0131nfra", "INFRA"),
        ("\u0130nfra", "infra"),  # dotted capital I: upper-case already, not 'i'
        ("\u0130nfra", "INFRA"),
        ("\u017fecure", "secure"),  # long s: kept, not 'S'
    ],
)
def test_look_alike_names_are_different_names(a: str, b: str) -> None:

    assert not same_arm_name(a, b)
    assert arm_key(a) != arm_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("RG-Web", "rg-web"),
        ("\u00c9mile", "\u00e9MILE"),  # É / é: a simple pair
        (f"rg{KELVIN}", f"RG{KELVIN}"),
        ("\u0130nfra", "\u0130NFRA"),
        ("\u0131nfra", "\u0131NFRA"),
        ("\u1f80", "\u1f88"),  # Greek with ypogegrammeni: simple mapping one to one
        ("stra\u00dfe", "STRA\u00dfE"),
    ],
)
def test_what_arm_calls_the_same_name_is_the_same(a: str, b: str) -> None:
    assert same_arm_name(a, b)


def test_keys_of_ascii_names_are_what_lower_made_them() -> None:
    """Stored keys (Table PartitionKey/RowKey, hashes) of ordinary names do not change."""
    name = "/subscriptions/ABC/resourceGroups/RG-Web/providers/Microsoft.Compute/virtualMachines/VM1"
    assert arm_key(name) == name.lower()
    assert hashed_key(name) == hashed_key(name.lower())


def test_resource_ids_vms_policies_and_targets_key_the_arm_way() -> None:
    look_alike = VmRef("sub", f"rg{KELVIN}", "vm1")
    victim = VmRef("sub", "rgk", "vm1")
    assert look_alike != victim and look_alike.key != victim.key
    assert VmRef("sub", "RGK", "VM1") == victim
    assert ResourceId(look_alike.id) != ResourceId(victim.id)
    nsg = f"{SUB}/resourceGroups/rgk/providers/Microsoft.Network/networkSecurityGroups/n"
    assert (
        TargetRef(TargetKind.NSG, ResourceId(nsg)).key
        != TargetRef(TargetKind.NSG, ResourceId(nsg.replace("rgk", f"rg{KELVIN}"))).key
    )
    policy_key = PolicyRef("s", "rgk", "westeurope", "p").key
    assert policy_key != PolicyRef("s", f"rg{KELVIN}", "westeurope", "p").key
    assert hashed_key(look_alike.key) != hashed_key(victim.key)


def test_a_policy_cannot_list_a_vm_of_a_look_alike_resource_group() -> None:
    ref = PolicyRef("sub", "rgk", "westeurope", "default")
    body = {
        "properties": {
            "virtualMachines": [
                {
                    "id": f"/subscriptions/sub/resourceGroups/rg{KELVIN}/providers/Microsoft.Compute"
                    "/virtualMachines/vm",
                    "ports": [
                        {
                            "number": 22,
                            "protocol": "TCP",
                            "allowedSourceAddressPrefix": "*",
                            "maxRequestAccessDuration": "PT1H",
                        }
                    ],
                }
            ]
        }
    }
    with pytest.raises(DomainError) as refused:
        defender.parse_policy_body(body, ref)
    assert refused.value.field == "properties.virtualMachines[0].id"


class Roles:
    """The owner of `rg\u212a` (look-alike) only; RBAC answered from plain data."""

    def __init__(self) -> None:
        self.reads = 0

    def assignments_at_or_above(self, scope: str) -> list[RoleAssignment]:
        self.reads += 1
        assignment = RoleAssignment("mallory", "owner", f"{SUB}/resourceGroups/rg{KELVIN}")
        return [assignment] if scope_covers(assignment.scope, scope) else []

    def assignments_in_subscription(self, subscription_id: str) -> list[RoleAssignment]:
        return []

    def role_permissions(self, role_definition_id: str) -> list[Permission]:
        return [Permission(("*",))]


def test_a_cached_decision_for_a_look_alike_scope_never_answers_for_another() -> None:
    """The report: a 60 s decision cached under the folded scope let a refused initiate through."""
    roles = Roles()
    authorizer = Authorizer(lambda sub: roles, cache_seconds=60)
    mallory = Principal("mallory", "mallory", PrincipalSource.EASY_AUTH)
    action = "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action"
    own = f"{SUB}/resourceGroups/rg{KELVIN}/providers/Microsoft.Compute/virtualMachines/vm1"
    victims = f"{SUB}/resourceGroups/rgk/providers/Microsoft.Compute/virtualMachines/vm1"

    assert authorizer.is_allowed(mallory, action, own)
    assert not authorizer.is_allowed(mallory, action, victims)
    assert not authorizer.is_allowed(mallory, action, victims)  # refused again, from the cache
    assert not scope_covers(f"{SUB}/resourceGroups/rg{KELVIN}", victims)
    assert scope_covers(f"{SUB}/resourceGroups/RGK", victims)
