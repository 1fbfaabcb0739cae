"""Microsoft.Resources: resource groups. Every subscription id is taken as existing."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from emulator.engine import RESOURCE_GROUP_TYPE, Call, Response
from emulator.errors import ArmError, bad_request, resource_group_not_found

if TYPE_CHECKING:
    from emulator.engine import Engine

_RG = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
_NAME = re.compile(r"^[-\w\._\(\)]{1,90}$")


def _canonical_id(sub: str, rg: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}"


def validate_body(name: str, body: dict[str, Any]) -> dict[str, Any]:
    if not _NAME.match(name) or name.endswith("."):
        raise bad_request(
            "InvalidResourceGroup",
            "The provided resource group name has these invalid characters or length: 1-90 characters of "
            "letters, digits, '_', '-', '.', '(', ')', not ending in '.'.",
            target="resourceGroupName",
        )
    location = body.get("location")
    if not isinstance(location, str) or not location:
        raise bad_request("LocationRequired", "The location property is required for this definition.")
    tags = body.get("tags", {})
    if not isinstance(tags, dict):
        raise bad_request("InvalidRequestFormat", "tags must be an object of strings.", target="tags")
    return {
        "location": location,
        "tags": tags,
        **({"managedBy": body["managedBy"]} if "managedBy" in body else {}),
    }


def _render(sub: str, rg: str, stored: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _canonical_id(sub, rg),
        "name": rg,
        "type": RESOURCE_GROUP_TYPE,
        **stored,
        "properties": {"provisioningState": "Succeeded"},
    }


def put_resource_group(call: Call, match: re.Match[str]) -> Response:
    sub, rg = match.group("sub"), match.group("rg")
    existing = call.store.get(_canonical_id(sub, rg))
    rg = existing.body["name"] if existing else rg  # ARM keeps the case it was created with
    body = _render(sub, rg, validate_body(rg, call.json_object()))
    if existing and existing.body["location"].lower() != body["location"].lower():
        raise ArmError(
            409,
            "InvalidResourceGroupLocation",
            f"Invalid resource group location '{body['location']}'. The Resource group already exists in "
            f"location '{existing.body['location']}' in resource group '{rg}'.",
        )
    call.store.put(_canonical_id(sub, rg), RESOURCE_GROUP_TYPE, body)
    return Response(200 if existing else 201, body)


def get_resource_group(call: Call, match: re.Match[str]) -> Response:
    record = call.store.get(_canonical_id(match.group("sub"), match.group("rg")))
    if record is None:
        raise resource_group_not_found(match.group("rg"))
    return Response(200, record.body)


def head_resource_group(call: Call, match: re.Match[str]) -> Response:
    exists = call.store.get(_canonical_id(match.group("sub"), match.group("rg"))) is not None
    return Response(204 if exists else 404)


def delete_resource_group(call: Call, match: re.Match[str]) -> Response:
    """Deletes the group and everything in it at once (ARM takes minutes; nobody here waits on it)."""
    rg_id = _canonical_id(match.group("sub"), match.group("rg"))
    if call.store.get(rg_id) is None:
        raise resource_group_not_found(match.group("rg"))
    for record in call.store.children(rg_id):
        call.store.delete(record.id)
    call.store.delete(rg_id)
    return Response(200)


def list_resource_groups(call: Call, match: re.Match[str]) -> Response:
    records = call.store.list(RESOURCE_GROUP_TYPE, under=f"/subscriptions/{match.group('sub')}")
    return Response(200, {"value": [r.body for r in records]})


def list_resources_in_group(call: Call, match: re.Match[str]) -> Response:
    rg_id = _canonical_id(match.group("sub"), match.group("rg"))
    if call.store.get(rg_id) is None:
        raise resource_group_not_found(match.group("rg"))
    value = [
        {k: r.body[k] for k in ("id", "name", "type", "location", "tags") if k in r.body}
        for r in call.store.children(rg_id)
        if r.body.get("id", "").lower().count("/providers/") == 1 and len(r.body["id"].split("/")) == 9
    ]
    return Response(200, {"value": value})


def register(engine: Engine) -> None:
    engine.route("PUT", _RG, put_resource_group)
    engine.route("GET", _RG, get_resource_group)
    engine.route("HEAD", _RG, head_resource_group)
    engine.route("DELETE", _RG, delete_resource_group)
    engine.route("GET", r"/subscriptions/(?P<sub>[^/]+)/resourceGroups", list_resource_groups)
    engine.route("GET", _RG + r"/resources", list_resources_in_group)
