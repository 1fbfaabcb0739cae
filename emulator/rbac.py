"""Microsoft.Authorization's storage rules, without HTTP: scopes, `$filter`, built-in roles, validation.

ARM stores role definitions and assignments and filters them; deciding whether a set of
actions/notActions grants an operation is the caller's job (the app's), not ARM's, so nothing here
evaluates wildcards in actions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from emulator.errors import ArmError, bad_request
from emulator.ids import fold, same

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
ROLE_DEFINITIONS = "Microsoft.Authorization/roleDefinitions"
ROLE_ASSIGNMENTS = "Microsoft.Authorization/roleAssignments"
PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")
_ROLE_DEFINITION_ID = re.compile(
    r"^(?P<scope>.*)/providers/Microsoft\.Authorization/roleDefinitions/(?P<guid>[^/]+)$", re.IGNORECASE
)
# Built-in roles date from the platform's early days; ARM reports these fixed timestamps.
_BUILT_IN_CREATED = "2015-02-02T21:55:09.8806423Z"
_BUILT_IN_UPDATED = "2024-04-16T18:21:43.4321454Z"


# --- scopes --------------------------------------------------------------------------------------


def scope_chain(scope: str) -> list[str]:
    """Every scope from the subscription (or management group) down to `scope` itself, inclusive.

    `/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/n/securityRules/r`
    gives the subscription, the resource group, the NSG and the rule. Raises ValueError when
    `scope` is not a well-formed ARM scope.
    """
    segments = [s for s in scope.strip().split("/") if s]
    if not segments:
        return []
    chain: list[str] = []
    prefix = ""
    index = 0
    while index < len(segments):
        head = segments[index]
        if head.lower() == "providers":
            if index + 3 >= len(segments):
                raise ValueError(f"'{scope}' has a provider namespace without a resource type and name")
            prefix += f"/{head}/{segments[index + 1]}"
            index += 2
            while index < len(segments) and segments[index].lower() != "providers":
                if index + 1 >= len(segments):
                    raise ValueError(f"'{scope}' ends with a resource type without a name")
                prefix += f"/{segments[index]}/{segments[index + 1]}"
                chain.append(prefix)
                index += 2
            continue
        if head.lower() not in ("subscriptions", "resourcegroups") or index + 1 >= len(segments):
            raise ValueError(f"'{scope}' is not a valid scope")
        if head.lower() == "resourcegroups" and not chain:
            raise ValueError(f"'{scope}' names a resource group outside a subscription")
        prefix += f"/{head}/{segments[index + 1]}"
        chain.append(prefix)
        index += 2
    return chain


def normalize_scope(scope: str) -> str:
    """`scope` without a trailing slash; `/` for the root (tenant) scope."""
    stripped = "/" + scope.strip().strip("/")
    return stripped if stripped != "/" else "/"


def _keys(scopes: Iterable[str]) -> set[str]:
    return {fold(s.rstrip("/")) for s in scopes}


def is_at_or_above(candidate: str, scope: str) -> bool:
    """True when `candidate` is `scope` itself or one of its ancestors (assignments there apply)."""
    if normalize_scope(candidate) == "/":
        return True
    try:
        return fold(normalize_scope(candidate)) in _keys(scope_chain(scope))
    except ValueError:
        return False


def is_at_or_below(candidate: str, scope: str) -> bool:
    return is_at_or_above(scope, candidate)


def subscription_of(scope: str) -> str | None:
    match = re.match(r"^/subscriptions/([^/]+)", scope, re.IGNORECASE)
    return match.group(1) if match else None


# --- $filter -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssignmentFilter:
    """A parsed roleAssignments `$filter`. Without `at_scope`, ARM lists assignments at, above and
    below the scope; with it, only at and above."""

    at_scope: bool = False
    principal_id: str | None = None

    def matches(self, assignment_scope: str, principal_id: str, request_scope: str) -> bool:
        if self.principal_id is not None and principal_id.lower() != self.principal_id.lower():
            return False
        if is_at_or_above(assignment_scope, request_scope):
            return True
        return not self.at_scope and is_at_or_below(assignment_scope, request_scope)


_AT_SCOPE = re.compile(r"^atScope\(\)$", re.IGNORECASE)
_ASSIGNED_TO = re.compile(r"^assignedTo\('(?P<id>[^']*)'\)$", re.IGNORECASE)
_PRINCIPAL_EQ = re.compile(r"^principalId\s+eq\s+'(?P<id>[^']*)'$", re.IGNORECASE)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)


def _unsupported_assignment_filter(text: str) -> ArmError:
    return ArmError(
        400,
        "UnsupportedQuery",
        f"The filter '{text}' is not supported. Supported filters are either 'atScope()' or "
        "'principalId eq '{value}' or assignedTo('{value}')'.",
    )


def parse_assignment_filter(text: str | None) -> AssignmentFilter:
    """`atScope()`, `principalId eq '{id}'`, `assignedTo('{id}')`, or `atScope() and assignedTo(...)`.

    `assignedTo` also matches the principal's groups in Azure; the emulator has no directory, so
    it matches the principal id itself.
    """
    if text is None or not text.strip():
        return AssignmentFilter()
    at_scope = False
    principal: str | None = None
    terms = _AND.split(text.strip())
    for term in terms:
        term = term.strip()
        if _AT_SCOPE.match(term) and not at_scope:
            at_scope = True
            continue
        match = _ASSIGNED_TO.match(term) or _PRINCIPAL_EQ.match(term)
        if match and principal is None:
            principal = match.group("id")
            if not GUID.match(principal):
                raise ArmError(
                    400,
                    "InvalidPrincipalId",
                    f"The principal ID '{principal}' in the filter is not valid. It must be a GUID.",
                )
            continue
        raise _unsupported_assignment_filter(text)
    return AssignmentFilter(at_scope=at_scope, principal_id=principal)


@dataclass(frozen=True)
class DefinitionFilter:
    role_name: str | None = None
    role_type: str | None = None
    at_scope_and_below: bool = False

    def matches(self, properties: dict[str, Any]) -> bool:
        if (
            self.role_name is not None
            and str(properties.get("roleName", "")).lower() != self.role_name.lower()
        ):
            return False
        return self.role_type is None or str(properties.get("type", "")).lower() == self.role_type.lower()


_ROLE_NAME_EQ = re.compile(r"^roleName\s+eq\s+'(?P<v>(?:[^']|'')*)'$", re.IGNORECASE)
_TYPE_EQ = re.compile(r"^type\s+eq\s+'(?P<v>[^']*)'$", re.IGNORECASE)
_AT_SCOPE_AND_BELOW = re.compile(r"^atScopeAndBelow\(\)$", re.IGNORECASE)


def parse_definition_filter(text: str | None) -> DefinitionFilter:
    """`roleName eq '{name}'`, `type eq 'BuiltInRole'|'CustomRole'`, `atScopeAndBelow()`, joined by `and`."""
    if text is None or not text.strip():
        return DefinitionFilter()
    role_name: str | None = None
    role_type: str | None = None
    below = False
    for term in _AND.split(text.strip()):
        term = term.strip()
        if match := _ROLE_NAME_EQ.match(term):
            role_name = match.group("v").replace("''", "'")
        elif match := _TYPE_EQ.match(term):
            role_type = match.group("v")
        elif _AT_SCOPE_AND_BELOW.match(term):
            below = True
        else:
            raise ArmError(
                400,
                "UnsupportedQuery",
                f"The filter '{text}' is not supported. Supported filters are 'roleName eq '{{value}}'', "
                "'type eq '{value}'' and 'atScopeAndBelow()'.",
            )
    return DefinitionFilter(role_name=role_name, role_type=role_type, at_scope_and_below=below)


# --- role definitions ----------------------------------------------------------------------------


def role_definition_guid(role_definition_id: str) -> str | None:
    """The GUID at the end of `{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}`."""
    match = _ROLE_DEFINITION_ID.match(role_definition_id.strip())
    if not match or not GUID.match(match.group("guid")):
        return None
    return match.group("guid").lower()


def role_definition_id(guid: str, request_scope: str) -> str:
    """ARM answers a definition's id under the subscription of the request, or at tenant level."""
    subscription = subscription_of(request_scope)
    prefix = f"/subscriptions/{subscription}" if subscription else ""
    return f"{prefix}/providers/{ROLE_DEFINITIONS}/{guid}"


def definition_resource(guid: str, properties: dict[str, Any], request_scope: str) -> dict[str, Any]:
    return {
        "properties": properties,
        "id": role_definition_id(guid, request_scope),
        "type": ROLE_DEFINITIONS,
        "name": guid,
    }


def _built_in(name: str, description: str, actions: list[str], not_actions: list[str]) -> dict[str, Any]:
    return {
        "roleName": name,
        "type": "BuiltInRole",
        "description": description,
        "assignableScopes": ["/"],
        "permissions": [
            {"actions": actions, "notActions": not_actions, "dataActions": [], "notDataActions": []}
        ],
        "createdOn": _BUILT_IN_CREATED,
        "updatedOn": _BUILT_IN_UPDATED,
        "createdBy": None,
        "updatedBy": None,
    }


# Ids and permissions as published in Microsoft's "Azure built-in roles" reference.
BUILT_IN_ROLES: dict[str, dict[str, Any]] = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": _built_in(
        "Owner",
        "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
        ["*"],
        [],
    ),
    "b24988ac-6180-42a0-ab88-20f7382dd24c": _built_in(
        "Contributor",
        "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC, "
        "manage assignments in Azure Blueprints, or share image galleries.",
        ["*"],
        [
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
            "Microsoft.Blueprint/blueprintAssignments/write",
            "Microsoft.Blueprint/blueprintAssignments/delete",
            "Microsoft.Compute/galleries/share/action",
        ],
    ),
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": _built_in(
        "Reader", "View all resources, but does not allow you to make any changes.", ["*/read"], []
    ),
    "4d97b98b-1d4f-4787-a291-c67834d212e7": _built_in(
        "Network Contributor",
        "Lets you manage networks, but not access to them.",
        [
            "Microsoft.Authorization/*/read",
            "Microsoft.Insights/alertRules/*",
            "Microsoft.Network/*",
            "Microsoft.ResourceHealth/availabilityStatuses/read",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Support/*",
        ],
        [],
    ),
    "9980e02c-c2be-4d73-94e8-173b1dc7cf3c": _built_in(
        "Virtual Machine Contributor",
        "Lets you manage virtual machines, but not access to them, and not the virtual network or storage "
        "account they're connected to.",
        [
            "Microsoft.Authorization/*/read",
            "Microsoft.Compute/availabilitySets/*",
            "Microsoft.Compute/locations/*",
            "Microsoft.Compute/virtualMachines/*",
            "Microsoft.Compute/virtualMachineScaleSets/*",
            "Microsoft.Compute/disks/write",
            "Microsoft.Compute/disks/read",
            "Microsoft.Compute/disks/delete",
            "Microsoft.DevTestLab/schedules/*",
            "Microsoft.Insights/alertRules/*",
            "Microsoft.Network/applicationGateways/backendAddressPools/join/action",
            "Microsoft.Network/loadBalancers/backendAddressPools/join/action",
            "Microsoft.Network/loadBalancers/inboundNatPools/join/action",
            "Microsoft.Network/loadBalancers/inboundNatRules/join/action",
            "Microsoft.Network/loadBalancers/probes/join/action",
            "Microsoft.Network/loadBalancers/read",
            "Microsoft.Network/locations/*",
            "Microsoft.Network/networkInterfaces/*",
            "Microsoft.Network/networkSecurityGroups/join/action",
            "Microsoft.Network/networkSecurityGroups/read",
            "Microsoft.Network/publicIPAddresses/join/action",
            "Microsoft.Network/publicIPAddresses/read",
            "Microsoft.Network/virtualNetworks/read",
            "Microsoft.Network/virtualNetworks/subnets/join/action",
            "Microsoft.RecoveryServices/locations/*",
            "Microsoft.RecoveryServices/Vaults/backupFabrics/backupProtectionIntent/write",
            "Microsoft.RecoveryServices/Vaults/backupFabrics/protectionContainers/protectedItems/*/read",
            "Microsoft.RecoveryServices/Vaults/backupFabrics/protectionContainers/protectedItems/read",
            "Microsoft.RecoveryServices/Vaults/backupFabrics/protectionContainers/protectedItems/write",
            "Microsoft.RecoveryServices/Vaults/backupPolicies/read",
            "Microsoft.RecoveryServices/Vaults/backupPolicies/write",
            "Microsoft.RecoveryServices/Vaults/read",
            "Microsoft.RecoveryServices/Vaults/usages/read",
            "Microsoft.RecoveryServices/Vaults/write",
            "Microsoft.ResourceHealth/availabilityStatuses/read",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.SqlVirtualMachine/*",
            "Microsoft.Storage/storageAccounts/listKeys/action",
            "Microsoft.Storage/storageAccounts/read",
            "Microsoft.Support/*",
        ],
        [],
    ),
    "fb1c8493-542b-48eb-b624-b4c8fea62acd": _built_in(
        "Security Admin",
        "Security Admin Role",
        [
            "Microsoft.Authorization/*/read",
            "Microsoft.Authorization/policyAssignments/*",
            "Microsoft.Authorization/policyDefinitions/*",
            "Microsoft.Authorization/policyExemptions/*",
            "Microsoft.Authorization/policySetDefinitions/*",
            "Microsoft.Insights/alertRules/*",
            "Microsoft.Management/managementGroups/read",
            "Microsoft.operationalInsights/workspaces/*/read",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Security/*",
            "Microsoft.IoTSecurity/*",
            "Microsoft.IoTFirmwareDefense/*",
            "Microsoft.Support/*",
        ],
        [],
    ),
}


def _string_list(value: Any, field: str, *, required: bool) -> list[str]:
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise bad_request("InvalidRoleDefinition", f"'{field}' must be an array of non-empty strings.", field)
    return list(value)


def built_in_role_not_changeable(guid: str) -> ArmError:
    return ArmError(
        403,
        "RoleDefinitionUpdateNotPermitted",
        f"The built-in role definition '{guid}' cannot be created, updated or deleted.",
    )


def validate_custom_role(guid: str, body: Any, now: str, existing: dict[str, Any] | None) -> dict[str, Any]:
    """The stored properties of a custom role PUT, or an ArmError naming the field at fault."""
    if not GUID.match(guid):
        raise bad_request(
            "InvalidRoleDefinitionId", f"The role definition ID '{guid}' is not valid. It must be a GUID."
        )
    if guid.lower() in BUILT_IN_ROLES:
        raise built_in_role_not_changeable(guid)
    if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
        raise bad_request(
            "InvalidRoleDefinition", "The request body must carry a 'properties' object.", "properties"
        )
    props = body["properties"]
    role_name = props.get("roleName")
    if not isinstance(role_name, str) or not role_name.strip():
        raise bad_request(
            "InvalidRoleDefinition", "'properties.roleName' is required.", "properties.roleName"
        )
    role_type = props.get("type", "CustomRole")
    if role_type != "CustomRole":
        raise bad_request(
            "InvalidRoleDefinition",
            f"'properties.type' must be 'CustomRole' for a role created through the API, not '{role_type}'.",
            "properties.type",
        )
    scopes = _string_list(props.get("assignableScopes"), "properties.assignableScopes", required=True)
    if not scopes:
        raise bad_request(
            "InvalidAssignableScopes",
            "'properties.assignableScopes' must name at least one scope.",
            "properties.assignableScopes",
        )
    for scope in scopes:
        try:
            if not scope_chain(scope):
                raise ValueError(scope)
        except ValueError:
            raise bad_request(
                "InvalidAssignableScopes",
                f"The assignable scope '{scope}' is not a valid subscription, resource group or "
                "resource scope.",
                "properties.assignableScopes",
            ) from None
    permissions_in = props.get("permissions")
    if not isinstance(permissions_in, list) or not permissions_in:
        raise bad_request(
            "InvalidRoleDefinition",
            "'properties.permissions' must be a non-empty array.",
            "properties.permissions",
        )
    permissions: list[dict[str, list[str]]] = []
    for index, entry in enumerate(permissions_in):
        where = f"properties.permissions[{index}]"
        if not isinstance(entry, dict):
            raise bad_request("InvalidRoleDefinition", f"'{where}' must be an object.", where)
        permissions.append(
            {
                "actions": _string_list(entry.get("actions"), f"{where}.actions", required=False),
                "notActions": _string_list(entry.get("notActions"), f"{where}.notActions", required=False),
                "dataActions": _string_list(entry.get("dataActions"), f"{where}.dataActions", required=False),
                "notDataActions": _string_list(
                    entry.get("notDataActions"), f"{where}.notDataActions", required=False
                ),
            }
        )
    description = props.get("description")
    if description is not None and not isinstance(description, str):
        raise bad_request(
            "InvalidRoleDefinition", "'properties.description' must be a string.", "properties.description"
        )
    return {
        "roleName": role_name,
        "type": "CustomRole",
        "description": description,
        "assignableScopes": scopes,
        "permissions": permissions,
        "createdOn": existing["createdOn"] if existing else now,
        "updatedOn": now,
        "createdBy": existing.get("createdBy") if existing else None,
        "updatedBy": None,
    }


def definition_assignable_at(properties: dict[str, Any], scope: str, *, or_below: bool = False) -> bool:
    """True when a role with these properties can be assigned at `scope` (or below it, if asked)."""
    for assignable in properties.get("assignableScopes", []):
        if is_at_or_above(assignable, scope) or (or_below and is_at_or_below(assignable, scope)):
            return True
    return False


# --- role assignments ----------------------------------------------------------------------------


def validate_assignment(
    name: str,
    scope: str,
    body: Any,
    now: str,
) -> dict[str, Any]:
    """The stored properties of a role assignment PUT (before cross-checks against the store)."""
    if not GUID.match(name):
        raise bad_request(
            "InvalidRoleAssignmentId",
            f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.",
        )
    if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
        raise bad_request(
            "InvalidRequestFormat", "The request body must carry a 'properties' object.", "properties"
        )
    props = body["properties"]
    definition_id = props.get("roleDefinitionId")
    if not isinstance(definition_id, str) or not definition_id:
        raise bad_request(
            "InvalidRoleDefinitionId",
            "'properties.roleDefinitionId' is required.",
            "properties.roleDefinitionId",
        )
    if role_definition_guid(definition_id) is None:
        raise bad_request(
            "InvalidRoleDefinitionId",
            f"The role definition ID '{definition_id}' is not valid; expected "
            "'{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}'.",
            "properties.roleDefinitionId",
        )
    principal_id = props.get("principalId")
    if not isinstance(principal_id, str) or not GUID.match(principal_id):
        raise bad_request(
            "InvalidPrincipalId",
            f"The principal ID '{principal_id}' is not valid. It must be the object id (a GUID) of a user, "
            "group or service principal.",
            "properties.principalId",
        )
    principal_type = props.get("principalType", "User")
    if principal_type not in PRINCIPAL_TYPES:
        raise bad_request(
            "InvalidPrincipalType",
            f"'properties.principalType' must be one of {', '.join(PRINCIPAL_TYPES)}, "
            f"not '{principal_type}'.",
            "properties.principalType",
        )
    body_scope = props.get("scope")
    if body_scope is not None and not same(normalize_scope(str(body_scope)), normalize_scope(scope)):
        raise bad_request(
            "InvalidRequestFormat",
            f"'properties.scope' ('{body_scope}') does not match the scope in the URL ('{scope}').",
            "properties.scope",
        )
    description = props.get("description")
    condition = props.get("condition")
    condition_version = props.get("conditionVersion")
    if condition_version is not None and condition is None:
        raise bad_request(
            "InvalidRequestFormat",
            "'properties.conditionVersion' is set but 'properties.condition' is empty.",
            "properties.condition",
        )
    if condition is not None and condition_version is None:
        condition_version = "2.0"
    return {
        "roleDefinitionId": definition_id,
        "principalId": principal_id.lower(),
        "principalType": principal_type,
        "scope": normalize_scope(scope),
        "condition": condition,
        "conditionVersion": condition_version,
        "createdOn": now,
        "updatedOn": now,
        "createdBy": None,
        "updatedBy": None,
        "delegatedManagedIdentityResourceId": props.get("delegatedManagedIdentityResourceId"),
        "description": description,
    }


def same_assignment(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same principal, role and scope: ARM refuses a second assignment with another name."""
    return (
        a["principalId"].lower() == b["principalId"].lower()
        and role_definition_guid(a["roleDefinitionId"]) == role_definition_guid(b["roleDefinitionId"])
        and same(normalize_scope(a["scope"]), normalize_scope(b["scope"]))
    )


def assignment_resource(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    scope = properties["scope"]
    prefix = "" if scope == "/" else scope
    return {
        "properties": properties,
        "id": f"{prefix}/providers/{ROLE_ASSIGNMENTS}/{name}",
        "type": ROLE_ASSIGNMENTS,
        "name": name,
    }
