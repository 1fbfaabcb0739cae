"""Pure rules of the Microsoft.Authorization emulation: scopes, $filter, validation, built-in roles."""

from __future__ import annotations

import pytest

from emulator import rbac
from emulator.errors import ArmError

pytestmark = pytest.mark.unit  # pure: `make test-unit` runs it

SUB = "/subscriptions/11111111-2222-3333-4444-555555555555"
RG = f"{SUB}/resourceGroups/rg1"
NSG = f"{RG}/providers/Microsoft.Network/networkSecurityGroups/nsg1"
RULE = f"{NSG}/securityRules/r1"
PRINCIPAL = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
NOW = "2026-01-01T00:00:00.0000000Z"
READER_ID = f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"


def test_scope_chain_walks_from_subscription_to_nested_resource():
    assert rbac.scope_chain(RULE) == [SUB, RG, NSG, RULE]


def test_scope_chain_of_subscription_and_resource_group():
    assert rbac.scope_chain(SUB) == [SUB]
    assert rbac.scope_chain(RG + "/") == [SUB, RG]


@pytest.mark.parametrize(
    "bad",
    [
        "/resourceGroups/rg1",
        "/subscriptions",
        f"{RG}/providers/Microsoft.Network",
        f"{RG}/providers/Microsoft.Network/networkSecurityGroups",
        "/foo/bar",
    ],
)
def test_scope_chain_rejects_malformed_scopes(bad):
    with pytest.raises(ValueError):
        rbac.scope_chain(bad)


def test_at_or_above_is_case_insensitive_and_includes_root():
    assert rbac.is_at_or_above(SUB.upper(), NSG)
    assert rbac.is_at_or_above(RG, NSG)
    assert rbac.is_at_or_above(NSG, NSG)
    assert rbac.is_at_or_above("/", NSG)
    assert not rbac.is_at_or_above(NSG, RG)
    assert not rbac.is_at_or_above(f"{SUB}/resourceGroups/rg10", f"{RG}")
    assert not rbac.is_at_or_above(f"{SUB}/resourceGroups/rg", f"{RG}")


def test_at_or_below():
    assert rbac.is_at_or_below(NSG, RG)
    assert not rbac.is_at_or_below(SUB, RG)


def test_empty_assignment_filter_lists_above_at_and_below():
    f = rbac.parse_assignment_filter(None)
    assert f.matches(SUB, PRINCIPAL, RG)
    assert f.matches(RG, PRINCIPAL, RG)
    assert f.matches(NSG, PRINCIPAL, RG)
    assert not f.matches(f"{SUB}/resourceGroups/other", PRINCIPAL, RG)


def test_at_scope_filter_excludes_below():
    f = rbac.parse_assignment_filter("atScope()")
    assert f.at_scope
    assert f.matches(SUB, PRINCIPAL, RG)
    assert not f.matches(NSG, PRINCIPAL, RG)


@pytest.mark.parametrize(
    "text",
    [
        f"principalId eq '{PRINCIPAL}'",
        f"assignedTo('{PRINCIPAL}')",
        f"atScope() and assignedTo('{PRINCIPAL}')",
    ],
)
def test_principal_filters(text):
    f = rbac.parse_assignment_filter(text)
    assert f.principal_id == PRINCIPAL
    assert f.matches(RG, PRINCIPAL.upper(), RG)
    assert not f.matches(RG, "00000000-0000-0000-0000-000000000001", RG)


@pytest.mark.parametrize(
    "text",
    [
        "principalId",
        "roleDefinitionId eq 'x'",
        f"principalId eq '{PRINCIPAL}' and roleDefinitionId eq 'y'",
        "atScope",
    ],
)
def test_unsupported_assignment_filter_is_a_400_unsupported_query(text):
    with pytest.raises(ArmError) as caught:
        rbac.parse_assignment_filter(text)
    assert caught.value.status == 400
    assert caught.value.code == "UnsupportedQuery"
    assert "atScope()" in caught.value.message


def test_definition_filter_by_name_and_type():
    f = rbac.parse_definition_filter("roleName eq 'Virtual Machine Contributor'")
    vm_contributor = rbac.BUILT_IN_ROLES["9980e02c-c2be-4d73-94e8-173b1dc7cf3c"]
    assert f.matches(vm_contributor)
    assert not f.matches(rbac.BUILT_IN_ROLES["acdd72a7-3385-48ef-bd42-f606fba81ae7"])
    custom = rbac.parse_definition_filter("type eq 'CustomRole'")
    assert not custom.matches(vm_contributor)
    assert rbac.parse_definition_filter("atScopeAndBelow()").at_scope_and_below
    with pytest.raises(ArmError):
        rbac.parse_definition_filter("description eq 'x'")


def test_built_in_roles_carry_real_ids_names_and_actions():
    by_name = {p["roleName"]: guid for guid, p in rbac.BUILT_IN_ROLES.items()}
    assert by_name == {
        "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
        "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "Network Contributor": "4d97b98b-1d4f-4787-a291-c67834d212e7",
        "Virtual Machine Contributor": "9980e02c-c2be-4d73-94e8-173b1dc7cf3c",
        "Security Admin": "fb1c8493-542b-48eb-b624-b4c8fea62acd",
    }
    contributor = rbac.BUILT_IN_ROLES[by_name["Contributor"]]["permissions"][0]
    assert contributor["actions"] == ["*"]
    assert "Microsoft.Authorization/*/Write" in contributor["notActions"]
    assert (
        "Microsoft.Security/*" in rbac.BUILT_IN_ROLES[by_name["Security Admin"]]["permissions"][0]["actions"]
    )


def test_role_definition_guid_parses_subscription_and_tenant_ids():
    guid = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
    assert (
        rbac.role_definition_guid(f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}") == guid
    )
    assert (
        rbac.role_definition_guid(f"/providers/Microsoft.Authorization/roleDefinitions/{guid.upper()}")
        == guid
    )
    assert (
        rbac.role_definition_guid(f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/Reader") is None
    )


def _assignment_body(**overrides):
    props = {
        "roleDefinitionId": READER_ID,
        "principalId": PRINCIPAL,
    }
    props.update(overrides)
    return {"properties": props}


def test_valid_assignment_is_normalised():
    props = rbac.validate_assignment(
        "0b6a2a2e-0000-4000-8000-000000000001", RG + "/", _assignment_body(), NOW
    )
    assert props["scope"] == RG
    assert props["principalType"] == "User"
    assert props["createdOn"] == NOW
    resource = rbac.assignment_resource("0b6a2a2e-0000-4000-8000-000000000001", props)
    assert (
        resource["id"]
        == f"{RG}/providers/Microsoft.Authorization/roleAssignments/0b6a2a2e-0000-4000-8000-000000000001"
    )
    assert resource["type"] == "Microsoft.Authorization/roleAssignments"


@pytest.mark.parametrize(
    ("name", "body", "code", "target"),
    [
        ("not-a-guid", _assignment_body(), "InvalidRoleAssignmentId", None),
        ("0b6a2a2e-0000-4000-8000-000000000001", {}, "InvalidRequestFormat", "properties"),
        (
            "0b6a2a2e-0000-4000-8000-000000000001",
            _assignment_body(principalId="bob"),
            "InvalidPrincipalId",
            "properties.principalId",
        ),
        (
            "0b6a2a2e-0000-4000-8000-000000000001",
            _assignment_body(roleDefinitionId="Reader"),
            "InvalidRoleDefinitionId",
            "properties.roleDefinitionId",
        ),
        (
            "0b6a2a2e-0000-4000-8000-000000000001",
            _assignment_body(principalType="Robot"),
            "InvalidPrincipalType",
            "properties.principalType",
        ),
        (
            "0b6a2a2e-0000-4000-8000-000000000001",
            _assignment_body(scope=SUB),
            "InvalidRequestFormat",
            "properties.scope",
        ),
    ],
)
def test_invalid_assignments_are_400_naming_the_field(name, body, code, target):
    with pytest.raises(ArmError) as caught:
        rbac.validate_assignment(name, RG, body, NOW)
    assert caught.value.status == 400
    assert caught.value.code == code
    assert caught.value.target == target


def test_same_assignment_compares_principal_role_and_scope():
    a = rbac.validate_assignment("0b6a2a2e-0000-4000-8000-000000000001", RG, _assignment_body(), NOW)
    b = rbac.validate_assignment("0b6a2a2e-0000-4000-8000-000000000002", RG.upper(), _assignment_body(), NOW)
    c = rbac.validate_assignment("0b6a2a2e-0000-4000-8000-000000000003", SUB, _assignment_body(), NOW)
    assert rbac.same_assignment(a, b)
    assert not rbac.same_assignment(a, c)


def _role_body(**overrides):
    props = {
        "roleName": "JIT requester",
        "type": "CustomRole",
        "description": "request JIT",
        "assignableScopes": [SUB],
        "permissions": [
            {"actions": ["Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action"]}
        ],
    }
    props.update(overrides)
    return {"properties": props}


def test_custom_role_is_stored_with_all_permission_lists():
    props = rbac.validate_custom_role("0b6a2a2e-0000-4000-8000-0000000000aa", _role_body(), NOW, None)
    assert props["permissions"][0]["notActions"] == []
    assert props["type"] == "CustomRole"
    assert rbac.definition_assignable_at(props, RG)
    assert not rbac.definition_assignable_at(props, "/subscriptions/99999999-2222-3333-4444-555555555555")


@pytest.mark.parametrize(
    ("body", "target"),
    [
        (_role_body(roleName=""), "properties.roleName"),
        (_role_body(assignableScopes=[]), "properties.assignableScopes"),
        (_role_body(assignableScopes=["/nonsense/x"]), "properties.assignableScopes"),
        (_role_body(permissions=[]), "properties.permissions"),
        (_role_body(permissions=[{"actions": "x"}]), "properties.permissions[0].actions"),
        (_role_body(type="BuiltInRole"), "properties.type"),
    ],
)
def test_invalid_custom_roles_are_400_naming_the_field(body, target):
    with pytest.raises(ArmError) as caught:
        rbac.validate_custom_role("0b6a2a2e-0000-4000-8000-0000000000aa", body, NOW, None)
    assert caught.value.status == 400
    assert caught.value.target == target


def test_built_in_roles_cannot_be_overwritten():
    with pytest.raises(ArmError) as caught:
        rbac.validate_custom_role("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", _role_body(), NOW, None)
    assert caught.value.status == 403
