"""Microsoft.Resources: resource groups. Every subscription id is taken as existing."""

from __future__ import annotations

import base64
import copy
import json
import math
import re
import time
import uuid
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


def being_deleted(rg: str) -> ArmError:
    return ArmError(
        409,
        "ResourceGroupBeingDeleted",
        f"The resource group '{rg}' is in deprovisioning state and cannot perform this operation.",
    )


def put_resource_group(call: Call, match: re.Match[str]) -> Response:
    sub, rg = match.group("sub"), match.group("rg")
    existing = call.store.get(_canonical_id(sub, rg))
    rg = existing.body["name"] if existing else rg  # ARM keeps the case it was created with
    if existing and existing.body.get("properties", {}).get("provisioningState") == "Deleting":
        raise being_deleted(rg)
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
    """ARM deletes a group as a long-running operation: 202 with `Location`
    (`/subscriptions/{s}/operationresults/{token}`), the group reading `provisioningState: Deleting`
    until done; the Location URL answers 202 (with `Retry-After`) until then, 200 after. Everything in
    the group goes with it. Duration: `--lro-seconds Microsoft.Resources/resourceGroups=S` (default 0,
    i.e. at the next settle)."""
    sub = match.group("sub")
    record = call.store.get(_canonical_id(sub, match.group("rg")))
    if record is None:
        raise resource_group_not_found(match.group("rg"))
    if call.admin:
        _remove_group(call.engine, record.id)
        return Response(200)
    pending = _deletions(call.engine)
    token = next((t for t, d in pending.items() if d["rg_id"].lower() == record.id.lower()), None)
    if token is None:
        body = copy.deepcopy(record.body)
        body["properties"] = {"provisioningState": "Deleting"}
        call.store.put(record.id, RESOURCE_GROUP_TYPE, body)
        token = (
            base64.urlsafe_b64encode(
                json.dumps(
                    {
                        "jobId": f"ResourceGroupDeletionJob-{uuid.uuid4().hex[:12].upper()}",
                        "jobLocation": "westeurope",
                    }
                ).encode()
            )
            .decode()
            .rstrip("=")
        )
        pending[token] = {
            "rg_id": record.id,
            "status": "InProgress",
            "completes_at": time.time() + call.engine.lro_duration(RESOURCE_GROUP_TYPE),
        }
        call.store.mark_dirty()
    return Response(202, headers=_deletion_headers(call, sub, token))


def _deletions(engine: Engine) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = engine.store.extra.setdefault("resource_group_deletions", {})
    return found


def _deletion_headers(call: Call, sub: str, token: str) -> dict[str, str]:
    job = _deletions(call.engine).get(token)
    left = (
        max(0, math.ceil(job["completes_at"] - time.time())) if job and job["status"] == "InProgress" else 0
    )
    version = call.api_version or "2025-04-01"
    return {
        "Location": f"{call.base_url}/subscriptions/{sub}/operationresults/{token}?api-version={version}",
        "Retry-After": str(max(left, 0)),
    }


def _remove_group(engine: Engine, rg_id: str) -> None:
    for record in engine.store.children(rg_id):
        engine.store.delete(record.id)
    engine.store.delete(rg_id)


def settle_deletions(engine: Engine) -> None:
    now = time.time()
    pending = _deletions(engine)
    for token, job in list(pending.items()):
        if job["status"] == "InProgress" and job["completes_at"] <= now:
            _remove_group(engine, job["rg_id"])
            job["status"] = "Succeeded"
            job["ended"] = now
            engine.store.mark_dirty()
        elif job["status"] != "InProgress" and now - job.get("ended", now) > 3600:
            del pending[token]
            engine.store.mark_dirty()


def deletion_result(call: Call, match: re.Match[str]) -> Response:
    job = _deletions(call.engine).get(match.group("token"))
    if job is None:
        raise ArmError(
            404, "OperationNotFound", f"The operation '{match.group('token')}' could not be found."
        )
    if job["status"] == "InProgress":
        return Response(202, headers=_deletion_headers(call, match.group("sub"), match.group("token")))
    return Response(200)


def list_resource_groups(call: Call, match: re.Match[str]) -> Response:
    records = call.store.list(RESOURCE_GROUP_TYPE, under=f"/subscriptions/{match.group('sub')}")
    return Response(200, {"value": [r.body for r in records]})


def register(engine: Engine) -> None:
    engine.route("PUT", _RG, put_resource_group)
    engine.route("GET", _RG, get_resource_group)
    engine.route("HEAD", _RG, head_resource_group)
    engine.route("DELETE", _RG, delete_resource_group)
    engine.route("GET", r"/subscriptions/(?P<sub>[^/]+)/resourceGroups", list_resource_groups)
    engine.route("GET", r"/subscriptions/(?P<sub>[^/]+)/operationresults/(?P<token>[^/]+)", deletion_result)
    engine.settle_hooks.append(lambda: settle_deletions(engine))
