"""Microsoft.Authorization through the real azure-mgmt-authorization 4.0.0 client, against the emulator."""

from __future__ import annotations

import uuid

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01.models import (
    Permission,
    RoleAssignmentCreateParameters,
    RoleDefinition,
)

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
VM_CONTRIBUTOR = "9980e02c-c2be-4d73-94e8-173b1dc7cf3c"


@pytest.fixture(scope="module")
def auth(arm_emulator):
    return arm_emulator.client(AuthorizationManagementClient)


@pytest.fixture
def scopes(arm_emulator):
    sub = f"/subscriptions/{arm_emulator.subscription_id}"
    rg = arm_emulator.new_resource_group()
    return {"sub": sub, "rg": f"{sub}/resourceGroups/{rg}", "rg_name": rg}


def role_id(sub_scope, guid):
    return f"{sub_scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def assign(auth, scope, role, principal, name=None):
    return auth.role_assignments.create(
        scope,
        name or str(uuid.uuid4()),
        RoleAssignmentCreateParameters(
            role_definition_id=role, principal_id=principal, principal_type="User"
        ),
    )


def test_built_in_roles_are_there_with_real_ids(auth, scopes):
    reader = auth.role_definitions.get(scopes["sub"], READER)
    assert reader.role_name == "Reader"
    assert reader.role_type == "BuiltInRole"
    assert reader.permissions[0].actions == ["*/read"]
    assert reader.id == role_id(scopes["sub"], READER)
    by_name = list(
        auth.role_definitions.list(scopes["rg"], filter="roleName eq 'Virtual Machine Contributor'")
    )
    assert [d.name for d in by_name] == [VM_CONTRIBUTOR]
    assert "Microsoft.Compute/virtualMachines/*" in by_name[0].permissions[0].actions
    same = auth.role_definitions.get_by_id(role_id(scopes["sub"], VM_CONTRIBUTOR))
    assert same.role_name == "Virtual Machine Contributor"


def test_missing_role_definition_is_404(auth, scopes):
    with pytest.raises(ResourceNotFoundError) as caught:
        auth.role_definitions.get(scopes["sub"], str(uuid.uuid4()))
    assert caught.value.error.code == "RoleDefinitionDoesNotExist"


def test_assignment_round_trip_by_name_and_by_id(auth, scopes):
    principal = str(uuid.uuid4())
    name = str(uuid.uuid4())
    created = assign(auth, scopes["rg"], role_id(scopes["sub"], READER), principal, name)
    assert created.name == name
    assert created.scope == scopes["rg"]
    assert created.principal_id == principal
    assert created.id == f"{scopes['rg']}/providers/Microsoft.Authorization/roleAssignments/{name}"
    assert auth.role_assignments.get(scopes["rg"], name).principal_id == principal
    assert auth.role_assignments.get_by_id(created.id).name == name
    deleted = auth.role_assignments.delete(scopes["rg"], name)
    assert deleted.name == name
    assert auth.role_assignments.delete(scopes["rg"], name) is None  # 204 when already gone
    with pytest.raises(ResourceNotFoundError) as caught:
        auth.role_assignments.get(scopes["rg"], name)
    assert caught.value.error.code == "RoleAssignmentNotFound"


def test_list_for_scope_includes_inherited_assignments(auth, arm_emulator, scopes):
    principal = str(uuid.uuid4())
    other_rg = (
        f"/subscriptions/{arm_emulator.subscription_id}/resourceGroups/{arm_emulator.new_resource_group()}"
    )
    at_sub = assign(auth, scopes["sub"], role_id(scopes["sub"], READER), principal)
    at_rg = assign(auth, scopes["rg"], role_id(scopes["sub"], VM_CONTRIBUTOR), principal)
    elsewhere = assign(auth, other_rg, role_id(scopes["sub"], VM_CONTRIBUTOR), principal)
    try:
        for listing in (
            auth.role_assignments.list_for_scope(scopes["rg"], filter=f"assignedTo('{principal}')"),
            auth.role_assignments.list_for_resource_group(
                scopes["rg_name"], filter=f"principalId eq '{principal}'"
            ),
        ):
            names = {a.name for a in listing}
            assert names == {at_sub.name, at_rg.name}
        at_scope = {a.name for a in auth.role_assignments.list_for_scope(scopes["sub"], filter="atScope()")}
        assert at_sub.name in at_scope
        assert at_rg.name not in at_scope
        everything = {
            a.name
            for a in auth.role_assignments.list_for_subscription(filter=f"principalId eq '{principal}'")
        }
        assert everything == {at_sub.name, at_rg.name, elsewhere.name}
    finally:
        for assignment in (at_sub, at_rg, elsewhere):
            auth.role_assignments.delete_by_id(assignment.id)


def test_assignment_on_a_resource_scope(auth, arm_emulator, scopes):
    # A type the emulator does not model: ARM's existence check is skipped for those.
    resource_scope = f"{scopes['rg']}/providers/Microsoft.Storage/storageAccounts/sa1"
    principal = str(uuid.uuid4())
    created = assign(auth, resource_scope, role_id(scopes["sub"], READER), principal)
    names = {
        a.name
        for a in auth.role_assignments.list_for_resource(
            scopes["rg_name"],
            "Microsoft.Storage",
            "storageAccounts",
            "sa1",
            filter=f"assignedTo('{principal}')",
        )
    }
    assert names == {created.name}
    assert {
        a.name
        for a in auth.role_assignments.list_for_scope(scopes["rg"], filter=f"principalId eq '{principal}'")
    } == {created.name}
    assert not list(
        auth.role_assignments.list_for_scope(scopes["rg"], filter=f"atScope() and assignedTo('{principal}')")
    )


def test_assignment_refusals(auth, scopes):
    principal = str(uuid.uuid4())
    name = str(uuid.uuid4())
    assign(auth, scopes["rg"], role_id(scopes["sub"], READER), principal, name)
    cases = [
        (
            lambda: assign(auth, scopes["rg"], role_id(scopes["sub"], READER), principal),
            409,
            "RoleAssignmentExists",
        ),
        (
            lambda: assign(auth, scopes["rg"], role_id(scopes["sub"], VM_CONTRIBUTOR), principal, name),
            409,
            "RoleAssignmentUpdateNotPermitted",
        ),
        (
            lambda: assign(auth, scopes["rg"], role_id(scopes["sub"], str(uuid.uuid4())), principal),
            400,
            "RoleDefinitionDoesNotExist",
        ),
        (
            lambda: assign(auth, scopes["rg"], role_id(scopes["sub"], READER), "bob"),
            400,
            "InvalidPrincipalId",
        ),
        (
            lambda: assign(auth, scopes["rg"], role_id(scopes["sub"], READER), principal, "not-a-guid"),
            400,
            "InvalidRoleAssignmentId",
        ),
        (
            lambda: assign(
                auth,
                scopes["sub"] + "/resourceGroups/nope-" + uuid.uuid4().hex,
                role_id(scopes["sub"], READER),
                principal,
            ),
            404,
            "ResourceGroupNotFound",
        ),
        (
            lambda: list(auth.role_assignments.list_for_scope(scopes["rg"], filter="principalId")),
            400,
            "UnsupportedQuery",
        ),
    ]
    for action, status, code in cases:
        with pytest.raises(HttpResponseError) as caught:
            action()
        assert (caught.value.status_code, caught.value.error.code) == (status, code)
    assert auth.role_assignments.get(scopes["rg"], name).role_definition_id.endswith(READER)


def test_custom_role_round_trip(auth, scopes):
    guid = str(uuid.uuid4())
    role_name = f"JIT requester {guid[:8]}"
    created = auth.role_definitions.create_or_update(
        scopes["sub"],
        guid,
        RoleDefinition(
            role_name=role_name,
            description="may request just-in-time access",
            role_type="CustomRole",
            permissions=[
                Permission(actions=["Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action"])
            ],
            assignable_scopes=[scopes["sub"]],
        ),
    )
    assert created.name == guid
    assert created.role_type == "CustomRole"
    listed = list(auth.role_definitions.list(scopes["rg"], filter=f"roleName eq '{role_name}'"))
    assert [d.name for d in listed] == [guid]
    assert all(
        d.role_type == "CustomRole"
        for d in auth.role_definitions.list(scopes["sub"], filter="type eq 'CustomRole'")
    )
    assignment = assign(auth, scopes["rg"], created.id, str(uuid.uuid4()))
    with pytest.raises(HttpResponseError) as caught:
        auth.role_definitions.delete(scopes["sub"], guid)
    assert caught.value.status_code == 409
    auth.role_assignments.delete_by_id(assignment.id)
    assert auth.role_definitions.delete(scopes["sub"], guid).name == guid
    with pytest.raises(ResourceNotFoundError):
        auth.role_definitions.get(scopes["sub"], guid)


def test_built_in_roles_cannot_be_changed(auth, scopes):
    with pytest.raises(HttpResponseError) as caught:
        auth.role_definitions.delete(scopes["sub"], READER)
    assert caught.value.status_code == 403
    assert auth.role_definitions.get(scopes["sub"], READER).role_name == "Reader"


def test_assignment_on_an_emulated_resource_needs_the_resource(auth, arm_emulator, scopes):
    from azure.mgmt.network import NetworkManagementClient

    network = arm_emulator.client(NetworkManagementClient)
    nsg = network.network_security_groups.begin_create_or_update(
        scopes["rg_name"], "nsg1", {"location": "westeurope", "properties": {}}
    ).result()
    principal = str(uuid.uuid4())
    created = assign(auth, nsg.id, role_id(scopes["sub"], READER), principal)
    assert created.scope == nsg.id
    listed = auth.role_assignments.list_for_resource(
        scopes["rg_name"],
        "Microsoft.Network",
        "networkSecurityGroups",
        "nsg1",
        filter=f"assignedTo('{principal}')",
    )
    assert [a.name for a in listed] == [created.name]
    with pytest.raises(ResourceNotFoundError) as caught:
        assign(auth, nsg.id.replace("/nsg1", "/ghost"), role_id(scopes["sub"], READER), principal)
    assert caught.value.error.code == "ResourceNotFound"


def test_tenant_form_role_id_is_answered_in_subscription_form(auth, scopes):
    created = assign(
        auth, scopes["rg"], f"/providers/Microsoft.Authorization/roleDefinitions/{READER}", str(uuid.uuid4())
    )
    assert created.role_definition_id == role_id(scopes["sub"], READER)
    auth.role_assignments.delete_by_id(created.id)
