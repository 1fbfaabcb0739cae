"""Azure RBAC semantics, as Microsoft documents them ("Understand Azure role definitions"):

- `*` matches any run of characters, `/` included: `Microsoft.Compute/*` is every operation of the
  provider, `Microsoft.Network/*/read` every read of every (nested) Network type, `*/read` every read;
- operation strings are case-insensitive (Contributor's `Microsoft.Authorization/*/Delete` excludes
  `.../roleAssignments/delete`);
- `notActions` subtract from `actions` of the same role; they are not a deny: another role assignment
  that grants the action still grants it;
- an assignment applies at its scope and below, to the principal or to a group in its claims;
  a management group assignment reported for a scope is an ancestor of it.

The decision is pure (RoleReader is an interface); these tests give it plain role data.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

import pytest

from shared.authz import (
    INITIATE_ACTION,
    READ_POLICY_ACTION,
    WRITE_POLICY_ACTION,
    Authorizer,
    Permission,
    RoleAssignment,
    action_matches,
    permits,
    scope_covers,
)
from shared.identity import Authenticator
from shared.model import Principal, PrincipalSource
from shared.settings import load_settings

SUB = "/subscriptions/00000000-0000-0000-0000-000000000001"
RG = f"{SUB}/resourceGroups/rg"
VM = f"{RG}/providers/Microsoft.Compute/virtualMachines/vm1"
OTHER_VM = f"{SUB}/resourceGroups/rg2/providers/Microsoft.Compute/virtualMachines/vm9"

# Microsoft's built-in definitions (permissions as published).
OWNER = [Permission(("*",))]
READER = [Permission(("*/read",))]
CONTRIBUTOR = [
    Permission(
        ("*",),
        (
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
        ),
    )
]


@pytest.mark.parametrize(
    ("pattern", "action", "matches"),
    [
        # `*` at the end: everything below the prefix, and nothing that merely starts like it.
        ("Microsoft.Compute/*", "Microsoft.Compute/virtualMachines/read", True),
        ("Microsoft.Compute/*", "Microsoft.ComputeSchedule/actions/read", False),
        ("Microsoft.Security/locations/jitNetworkAccessPolicies/*", INITIATE_ACTION, True),
        (
            "Microsoft.Security/locations/jitNetworkAccessPolicies/*",
            "Microsoft.Security/locations/read",
            False,
        ),
        # `*` in the middle spans segments, nested types included.
        ("Microsoft.Network/*/read", "Microsoft.Network/networkSecurityGroups/read", True),
        ("Microsoft.Network/*/read", "Microsoft.Network/networkSecurityGroups/securityRules/read", True),
        ("Microsoft.Network/*/read", "Microsoft.Network/networkSecurityGroups/write", False),
        ("Microsoft.Security/locations/*/initiate/action", INITIATE_ACTION, True),
        ("*/read", READ_POLICY_ACTION, True),
        ("*/read", INITIATE_ACTION, False),
        # Not a prefix match: the whole operation must match.
        ("Microsoft.Security/locations/jitNetworkAccessPolicies/read", READ_POLICY_ACTION + "x", False),
        ("Microsoft.Security/locations/jitNetworkAccessPolicies", READ_POLICY_ACTION, False),
        # `*/read` after a type needs a segment there: it does not give the type's own read.
        ("Microsoft.Security/locations/jitNetworkAccessPolicies/*/read", READ_POLICY_ACTION, False),
        # Case-insensitive, and `.` is literal.
        ("microsoft.security/LOCATIONS/jitnetworkaccesspolicies/INITIATE/ACTION", INITIATE_ACTION, True),
        ("Microsoft.Authorization/*/Delete", "microsoft.authorization/roleAssignments/delete", True),
        ("MicrosoftXSecurity/*", INITIATE_ACTION, False),
        ("Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action", INITIATE_ACTION, True),
        # Several wildcards.
        ("Microsoft.*/locations/*/action", INITIATE_ACTION, True),
        ("*", INITIATE_ACTION, True),
    ],
)
def test_action_patterns(pattern: str, action: str, matches: bool) -> None:
    assert action_matches(pattern, action) is matches


def test_built_in_roles_decide_as_in_azure() -> None:
    assert permits(OWNER, INITIATE_ACTION) and permits(OWNER, "Microsoft.Authorization/roleAssignments/write")
    assert permits(CONTRIBUTOR, INITIATE_ACTION) and permits(CONTRIBUTOR, WRITE_POLICY_ACTION)
    assert not permits(CONTRIBUTOR, "Microsoft.Authorization/roleAssignments/write")
    assert not permits(CONTRIBUTOR, "Microsoft.Authorization/roleAssignments/delete")
    assert permits(CONTRIBUTOR, "Microsoft.Authorization/roleAssignments/read")
    assert permits(READER, READ_POLICY_ACTION)
    assert not permits(READER, INITIATE_ACTION) and not permits(READER, WRITE_POLICY_ACTION)


def test_not_actions_subtract_with_wildcards() -> None:
    role = [Permission(("Microsoft.Security/*",), ("Microsoft.Security/locations/*/initiate/action",))]
    assert not permits(role, INITIATE_ACTION)
    assert permits(role, READ_POLICY_ACTION)
    assert not permits([Permission(("*",), ("*",))], READ_POLICY_ACTION)
    assert not permits([], READ_POLICY_ACTION)


@dataclass
class Roles:
    """Plain role data: what ARM would answer for `atScope()` on a scope (assignments at or above)."""

    definitions: dict[str, list[Permission]]
    assignments: list[RoleAssignment] = field(default_factory=list)

    def assignments_at_or_above(self, scope: str) -> list[RoleAssignment]:
        return [a for a in self.assignments if scope_covers(a.scope, scope) or "managementGroups" in a.scope]

    def assignments_in_subscription(self, subscription_id: str) -> list[RoleAssignment]:
        return list(self.assignments)

    def role_permissions(self, role_definition_id: str) -> list[Permission]:
        return self.definitions[role_definition_id]


def person(*groups: str) -> Principal:
    return Principal("user-1", "user@contoso.com", PrincipalSource.EASY_AUTH, group_ids=frozenset(groups))


def decide(roles: Roles, principal: Principal, action: str, scope: str) -> bool:
    return Authorizer(lambda subscription: roles, cache_seconds=0).is_allowed(principal, action, scope)


def test_not_actions_are_not_a_deny_another_assignment_still_grants() -> None:
    roles = Roles(
        {
            "no-initiate": [Permission(("Microsoft.Security/*",), (INITIATE_ACTION,))],
            "requester": [Permission((INITIATE_ACTION,))],
        },
        [RoleAssignment("user-1", "no-initiate", RG)],
    )
    assert not decide(roles, person(), INITIATE_ACTION, VM)
    roles.assignments.append(RoleAssignment("user-1", "requester", VM))
    assert decide(roles, person(), INITIATE_ACTION, VM)


def test_assignments_apply_at_their_scope_and_below_only() -> None:
    roles = Roles(
        {"requester": [Permission((INITIATE_ACTION,))]}, [RoleAssignment("user-1", "requester", RG)]
    )
    assert decide(roles, person(), INITIATE_ACTION, VM)
    assert decide(roles, person(), INITIATE_ACTION, RG)
    assert not decide(roles, person(), INITIATE_ACTION, SUB)
    assert not decide(roles, person(), INITIATE_ACTION, OTHER_VM)
    # rg vs rg2: a scope is not a string prefix of a sibling's.
    sibling = Roles(
        {"requester": [Permission((INITIATE_ACTION,))]}, [RoleAssignment("user-1", "requester", RG)]
    )
    assert not decide(sibling, person(), INITIATE_ACTION, f"{SUB}/resourceGroups/rg2")


def test_group_membership_from_claims_grants_what_the_group_holds() -> None:
    roles = Roles(
        {"requester": [Permission(("Microsoft.Security/locations/jitNetworkAccessPolicies/*",))]},
        [RoleAssignment("GROUP-A", "requester", SUB)],
    )
    assert decide(roles, person("group-a"), INITIATE_ACTION, VM)  # object ids compare case-insensitively
    assert not decide(roles, person("group-b"), INITIATE_ACTION, VM)
    assert not decide(roles, person(), INITIATE_ACTION, VM)


USER_OID = "5f0c2a1e-7d3b-4c8e-9a61-0b2d4e6f8a10"
GROUP_A = "0d9e8f7a-1b2c-4d3e-8f4a-5b6c7d8e9f01"
GROUP_B = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"


def test_groups_reach_the_decision_from_easy_auth_claims() -> None:
    """Both spellings of the groups claim that App Service puts in X-MS-CLIENT-PRINCIPAL."""
    claims = [
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": USER_OID},
        {"typ": "groups", "val": GROUP_A},
        {"typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups", "val": GROUP_B},
    ]
    encoded = base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()
    authenticator = Authenticator(
        load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "WEBSITE_AUTH_ENABLED": "true"})
    )
    principal = authenticator.authenticate({"X-MS-CLIENT-PRINCIPAL": encoded})
    assert principal.group_ids == {GROUP_A, GROUP_B}
    roles = Roles(
        {"requester": [Permission((INITIATE_ACTION,))]}, [RoleAssignment(GROUP_B.upper(), "requester", RG)]
    )
    assert decide(roles, principal, INITIATE_ACTION, VM)


def test_a_management_group_assignment_reported_for_the_scope_applies() -> None:
    """ARM reports inherited management-group (and root `/`) assignments for `atScope()`; their scope
    is no string prefix of a subscription's, yet they apply."""
    mg = "/providers/Microsoft.Management/managementGroups/contoso"
    roles = Roles({"owner": OWNER}, [RoleAssignment("user-1", "owner", mg)])
    assert decide(roles, person(), INITIATE_ACTION, VM)
    root = Roles({"owner": OWNER}, [RoleAssignment("user-1", "owner", "/")])
    assert decide(root, person(), INITIATE_ACTION, VM)


def test_an_assignment_reported_for_an_unrelated_scope_is_ignored() -> None:
    """Defence in depth: if a reader ever returned an assignment below or beside the scope, it must not
    grant (only management groups are ancestors that a resource id does not spell out)."""
    roles = Roles({"owner": OWNER}, [])
    roles.assignments_at_or_above = lambda scope: [RoleAssignment("user-1", "owner", OTHER_VM)]  # type: ignore[method-assign]
    assert not decide(roles, person(), INITIATE_ACTION, VM)
