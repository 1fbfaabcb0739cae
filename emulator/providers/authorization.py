"""Microsoft.Authorization: role definitions (built-in and custom) and role assignments at any scope.

ARM only stores and filters here; evaluating actions/notActions is the caller's job. The rules
themselves (scopes, `$filter`, validation, built-in roles) live in `emulator.rbac`.
"""

from __future__ import annotations

import copy
import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from emulator import ids, rbac
from emulator.engine import Call, Response
from emulator.errors import ArmError, resource_group_not_found

if TYPE_CHECKING:
    from emulator.engine import Engine

log = logging.getLogger("emulator.authorization")

# Versions the Authorization provider serves for these two types (azure-mgmt-authorization 4.0.0
# sends 2022-04-01; older tools send the others).
API_VERSIONS = frozenset(
    {
        "2015-06-01",
        "2015-07-01",
        "2017-05-01",
        "2018-01-01-preview",
        "2018-07-01",
        "2018-09-01-preview",
        "2020-03-01-preview",
        "2020-04-01-preview",
        "2020-08-01-preview",
        "2020-10-01-preview",
        "2021-04-01-preview",
        "2022-01-01-preview",
        "2022-04-01",
        "2022-05-01-preview",
    }
)
_PROVIDER = r"/providers/Microsoft\.Authorization"
_ASSIGNMENT = r"(?P<scope>.*?)" + _PROVIDER + r"/roleAssignments/(?P<name>[^/]+)"
_ASSIGNMENTS = r"(?P<scope>.*?)" + _PROVIDER + r"/roleAssignments"
_DEFINITION = r"(?P<scope>.*?)" + _PROVIDER + r"/roleDefinitions/(?P<name>[^/]+)"
_DEFINITIONS = r"(?P<scope>.*?)" + _PROVIDER + r"/roleDefinitions"


def _now() -> str:
    moment = datetime.now(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}0Z"


def _check_api_version(call: Call) -> None:
    if not call.admin and call.api_version not in API_VERSIONS:
        raise ArmError(
            400,
            "NoRegisteredProviderFound",
            f"No registered resource provider found for location 'global' and API version "
            f"'{call.api_version}' for type 'roleAssignments'. The supported api-versions are "
            f"'{', '.join(sorted(API_VERSIONS))}'.",
        )


def _scope(call: Call, match: re.Match[str], *, must_exist: bool = True, resources_too: bool = True) -> str:
    """The request's scope, well-formed, and existing when asked: its resource group, and (for writes)
    the resource it names if the emulator models that type. Lists check the group only."""
    _check_api_version(call)
    scope = rbac.normalize_scope(re.sub(r"/{2,}", "/", match.group("scope") or "/"))
    if scope == "/":
        return scope
    try:
        chain = rbac.scope_chain(scope)
    except ValueError as error:
        raise ArmError(400, "InvalidScope", f"The scope '{scope}' is not valid: {error}.") from None
    if not chain or not chain[0].lower().startswith(("/subscriptions/", "/providers/")):
        raise ArmError(400, "InvalidScope", f"The scope '{scope}' is not valid.")
    if must_exist:
        _require_scope_exists(call, chain, resources_too=resources_too)
    return scope


def _require_scope_exists(call: Call, chain: list[str], *, resources_too: bool) -> None:
    for scope in chain:
        if re.fullmatch(r"/subscriptions/[^/]+/resourceGroups/[^/]+", scope, re.IGNORECASE):
            if call.store.get(scope) is None:
                raise resource_group_not_found(scope.rsplit("/", 1)[1])
            continue
        if not resources_too:
            continue
        rid = ids.parse(scope)
        resource_type = call.engine.type_of(rid) if rid else None
        if rid is not None and resource_type is not None:
            call.engine.require(call, resource_type, rid)


# --- role definitions ------------------------------------------------------------------------------


def _custom_definition_id(guid: str) -> str:
    return f"/providers/{rbac.ROLE_DEFINITIONS}/{guid}"


def _custom_definitions(call: Call) -> list[tuple[str, dict[str, Any]]]:
    return [(r.body["name"], r.body["properties"]) for r in call.store.list(rbac.ROLE_DEFINITIONS)]


def _definition_properties(call: Call, guid: str) -> dict[str, Any] | None:
    guid = guid.lower()
    if guid in rbac.BUILT_IN_ROLES:
        return rbac.BUILT_IN_ROLES[guid]
    record = call.store.get(_custom_definition_id(guid))
    return record.body["properties"] if record else None


def _definition_not_found(guid: str) -> ArmError:
    return ArmError(
        404, "RoleDefinitionDoesNotExist", f"The specified role definition with ID '{guid}' does not exist."
    )


def _visible_at(properties: dict[str, Any], scope: str) -> bool:
    if properties["type"] == "BuiltInRole" or scope == "/":
        return True
    return rbac.definition_assignable_at(properties, scope, or_below=True)


def _definition_answer(guid: str, properties: dict[str, Any], scope: str) -> dict[str, Any]:
    answer_scope = scope
    if rbac.subscription_of(scope) is None and properties["type"] == "CustomRole":
        answer_scope = properties["assignableScopes"][0]
    return rbac.definition_resource(guid, copy.deepcopy(properties), answer_scope)


def get_definition(call: Call, match: re.Match[str]) -> Response:
    scope = _scope(call, match, must_exist=False)
    guid = match.group("name")
    properties = _definition_properties(call, guid)
    if properties is None or not _visible_at(properties, scope):
        raise _definition_not_found(guid)
    return Response(200, _definition_answer(guid.lower(), properties, scope))


def put_definition(call: Call, match: re.Match[str]) -> Response:
    scope = _scope(call, match)
    guid = match.group("name")
    body = call.json_object()
    existing = call.store.get(_custom_definition_id(guid)) if rbac.GUID.match(guid) else None
    properties = rbac.validate_custom_role(
        guid, body, _now(), existing.body["properties"] if existing else None
    )
    guid = guid.lower()
    name_key = properties["roleName"].lower()
    clashes = [g for g, p in rbac.BUILT_IN_ROLES.items() if p["roleName"].lower() == name_key]
    clashes += [g for g, p in _custom_definitions(call) if p["roleName"].lower() == name_key and g != guid]
    if clashes:
        raise ArmError(
            409,
            "RoleDefinitionWithSameNameExists",
            f"A role definition named '{properties['roleName']}' already exists in this directory.",
        )
    stored = {"name": guid, "properties": properties}
    call.store.put(_custom_definition_id(guid), rbac.ROLE_DEFINITIONS, stored)
    log.info("authorization.role_definition_written name=%s role=%s", guid, properties["roleName"])
    return Response(201, _definition_answer(guid, properties, scope))


def delete_definition(call: Call, match: re.Match[str]) -> Response:
    scope = _scope(call, match, must_exist=False)
    guid = match.group("name").lower()
    if guid in rbac.BUILT_IN_ROLES:
        raise rbac.built_in_role_not_changeable(guid)
    record = call.store.get(_custom_definition_id(guid))
    if record is None:
        return Response(204)
    in_use = [
        r.body["name"]
        for r in call.store.list(rbac.ROLE_ASSIGNMENTS)
        if rbac.role_definition_guid(r.body["properties"]["roleDefinitionId"]) == guid
    ]
    if in_use:
        raise ArmError(
            409,
            "RoleDefinitionHasAssignments",
            f"There are existing role assignments referencing role '{guid}' ({', '.join(in_use)}); "
            "delete them first.",
        )
    answer = _definition_answer(guid, record.body["properties"], scope)
    call.store.delete(record.id)
    return Response(200, answer)


def list_definitions(call: Call, match: re.Match[str]) -> Response:
    scope = _scope(call, match, must_exist=False)
    wanted = rbac.parse_definition_filter(call.query_value("$filter"))
    value = []
    candidates = [*rbac.BUILT_IN_ROLES.items(), *_custom_definitions(call)]
    for guid, properties in candidates:
        if not wanted.matches(properties):
            continue
        hidden = properties["type"] == "CustomRole" and scope != "/"
        if hidden and not rbac.definition_assignable_at(
            properties, scope, or_below=wanted.at_scope_and_below
        ):
            continue
        value.append(_definition_answer(guid, properties, scope))
    return Response(200, {"value": value})


# --- role assignments ------------------------------------------------------------------------------


def _assignment_id(scope: str, name: str) -> str:
    return f"{'' if scope == '/' else scope}/providers/{rbac.ROLE_ASSIGNMENTS}/{name}"


def _assignment_not_found(name: str) -> ArmError:
    return ArmError(404, "RoleAssignmentNotFound", f"The role assignment '{name}' is not found.")


def get_assignment(call: Call, match: re.Match[str]) -> Response:
    scope = _scope(call, match, must_exist=False)
    record = call.store.get(_assignment_id(scope, match.group("name")))
    if record is None:
        raise _assignment_not_found(match.group("name"))
    return Response(200, record.body)


def put_assignment(call: Call, match: re.Match[str]) -> Response:
    scope = _scope(call, match)
    name = match.group("name")
    properties = rbac.validate_assignment(name, scope, call.json_object(), _now())
    guid = rbac.role_definition_guid(properties["roleDefinitionId"]) or ""
    definition = _definition_properties(call, guid)
    if definition is None:
        raise ArmError(
            400,
            "RoleDefinitionDoesNotExist",
            f"The specified role definition with ID '{guid}' does not exist.",
            target="properties.roleDefinitionId",
        )
    # ARM answers the definition id in its subscription form, whichever form was sent.
    properties["roleDefinitionId"] = rbac.role_definition_id(guid, scope)
    record_id = _assignment_id(scope, name)
    existing = call.store.get(record_id)
    if existing is not None:
        if not rbac.same_assignment(existing.body["properties"], properties):
            raise ArmError(
                409,
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            )
        properties["createdOn"] = existing.body["properties"]["createdOn"]
    else:
        for other in call.store.list(rbac.ROLE_ASSIGNMENTS):
            other_props = other.body["properties"]
            if rbac.same_assignment(other_props, properties) and other_props.get(
                "condition"
            ) == properties.get("condition"):
                raise ArmError(
                    409,
                    "RoleAssignmentExists",
                    f"The role assignment already exists. The ID of the existing role assignment is "
                    f"{other.body['name']}.",
                )
    resource = rbac.assignment_resource(name, properties)
    resource["id"] = record_id
    call.store.put(record_id, rbac.ROLE_ASSIGNMENTS, resource)
    log.info(
        "authorization.role_assignment_written name=%s principal=%s role=%s scope=%s",
        name,
        properties["principalId"],
        guid,
        scope,
    )
    return Response(201, resource)


def delete_assignment(call: Call, match: re.Match[str]) -> Response:
    scope = _scope(call, match, must_exist=False)
    record = call.store.get(_assignment_id(scope, match.group("name")))
    if record is None:
        return Response(204)
    call.store.delete(record.id)
    log.info("authorization.role_assignment_deleted name=%s", record.body["name"])
    return Response(200, record.body)


def list_assignments(call: Call, match: re.Match[str]) -> Response:
    """At, above and below the scope; `atScope()` keeps at and above; principal filters narrow it."""
    scope = _scope(call, match, resources_too=False)
    wanted = rbac.parse_assignment_filter(call.query_value("$filter"))
    value = [
        r.body
        for r in call.store.list(rbac.ROLE_ASSIGNMENTS)
        if scope == "/"
        or wanted.matches(r.body["properties"]["scope"], r.body["properties"]["principalId"], scope)
    ]
    if scope == "/" and wanted.principal_id:
        value = [v for v in value if v["properties"]["principalId"].lower() == wanted.principal_id.lower()]
    return Response(200, {"value": value})


def register(engine: Engine) -> None:
    engine.route("GET", _ASSIGNMENT, get_assignment)
    engine.route("PUT", _ASSIGNMENT, put_assignment)
    engine.route("DELETE", _ASSIGNMENT, delete_assignment)
    engine.route("GET", _ASSIGNMENTS, list_assignments)
    engine.route("GET", _DEFINITION, get_definition)
    engine.route("PUT", _DEFINITION, put_definition)
    engine.route("DELETE", _DEFINITION, delete_definition)
    engine.route("GET", _DEFINITIONS, list_definitions)
