"""Microsoft.Security: Defender for Cloud just-in-time network access policies (api-version 2020-01-01).

Plain, synchronous resource: PUT answers 200, DELETE 200 (204 when absent), no etags, no operations;
`POST .../initiate` answers 202 with a JitNetworkAccessRequest and appends it to the policy's
`properties.requests[]`. Validation and request history rules live in `emulator.jit`.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from emulator import jit
from emulator.engine import Call, Response
from emulator.errors import ArmError, resource_group_not_found

if TYPE_CHECKING:
    from emulator.engine import Engine

log = logging.getLogger("emulator.security")

API_VERSIONS = frozenset({"2015-06-01-preview", "2020-01-01"})
_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_RG = _SUB + r"/resourceGroups/(?P<rg>[^/]+)"
_PROVIDER = r"/providers/Microsoft\.Security"
_POLICIES = r"/jitNetworkAccessPolicies"
_POLICY = _RG + _PROVIDER + r"/locations/(?P<loc>[^/]+)" + _POLICIES + r"/(?P<name>[^/]+)"
_NAME = re.compile(r"^[A-Za-z0-9][-\w.]{0,259}$")


def _check_api_version(call: Call) -> None:
    if call.admin or call.api_version in API_VERSIONS:
        return
    raise ArmError(
        400,
        "NoRegisteredProviderFound",
        f"No registered resource provider found for API version '{call.api_version}' and type "
        "'locations/jitNetworkAccessPolicies'. The supported api-versions are "
        f"'{', '.join(sorted(API_VERSIONS))}'.",
    )


def _policy_id(match: re.Match[str]) -> str:
    return (
        f"/subscriptions/{match['sub']}/resourceGroups/{match['rg']}/providers/Microsoft.Security/locations/"
        f"{match['loc']}/jitNetworkAccessPolicies/{match['name']}"
    )


def _require_group(call: Call, match: re.Match[str]) -> None:
    if call.store.get(f"/subscriptions/{match['sub']}/resourceGroups/{match['rg']}") is None:
        raise resource_group_not_found(match["rg"])


def _check_policy_request(call: Call, match: re.Match[str]) -> None:
    """What every request on one policy checks first: the api-version, then the resource group."""
    _check_api_version(call)
    _require_group(call, match)


def _region(text: str) -> str:
    return text.replace(" ", "").lower()


def _render(body: dict[str, Any]) -> dict[str, Any]:
    """A policy as read now: requests past their end time read Revoked/Expired."""
    answer = copy.deepcopy(body)
    answer["properties"]["requests"] = jit.with_expiry(
        answer["properties"].get("requests", []), datetime.now(UTC)
    )
    return answer


def _requestor(call: Call) -> str:
    """Defender reports the user principal name; service principals come back empty."""
    token = call.headers.get("authorization", "").partition(" ")[2]
    parts = token.split(".")
    if len(parts) == 3:
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except (ValueError, TypeError):
            claims = {}
        for claim in ("upn", "unique_name", "email", "preferred_username"):
            if isinstance(claims.get(claim), str):
                return str(claims[claim])
    return ""


def _caller_ip(call: Call) -> str:
    """The requester's address when initiate names no source; the emulator only serves local clients."""
    forwarded = call.headers.get("x-forwarded-for", "").split(",")[0].strip()
    return forwarded or "127.0.0.1"


def get_policy(call: Call, match: re.Match[str]) -> Response:
    _check_policy_request(call, match)
    record = call.store.get(_policy_id(match))
    if record is None:
        raise ArmError(
            404,
            "ResourceNotFound",
            f"The Resource 'Microsoft.Security/locations/{match['loc']}/jitNetworkAccessPolicies/"
            f"{match['name']}' "
            f"under resource group '{match['rg']}' was not found.",
        )
    return Response(200, _render(record.body))


def put_policy(call: Call, match: re.Match[str]) -> Response:
    _check_policy_request(call, match)
    if not _NAME.match(match["name"]):
        raise jit.bad_request(f"'{match['name']}' is not a valid policy name.", "jitNetworkAccessPolicyName")
    body = call.json()
    properties = jit.validate_policy(body, subscription=match["sub"], resource_group=match["rg"])
    record_id = _policy_id(match)
    existing = call.store.get(record_id)
    # A PUT replaces the VM list; the request history survives unless the body carries one.
    sent_history = body["properties"].get("requests")
    if sent_history is not None:
        history = jit.validate_history(sent_history)
    else:
        history = copy.deepcopy(existing.body["properties"].get("requests", [])) if existing else []
    stored = {
        "kind": body.get("kind", "Basic"),
        "properties": {
            **properties,
            "requests": history,
            "provisioningState": "Succeeded",
            "appendMode": False,
        },
        "id": record_id,
        "name": match["name"],
        "type": jit.POLICY_TYPE,
        "location": match["loc"],
    }
    call.store.put(record_id, jit.POLICY_TYPE, stored)
    log.info("security.jit_policy_written id=%s vms=%d", record_id, len(properties["virtualMachines"]))
    return Response(200, _render(stored))


def delete_policy(call: Call, match: re.Match[str]) -> Response:
    _check_policy_request(call, match)
    record = call.store.delete(_policy_id(match))
    return Response(200 if record else 204)


def initiate(call: Call, match: re.Match[str]) -> Response:
    _check_policy_request(call, match)
    body = call.json()
    record = call.store.get(_policy_id(match))
    if record is None:
        raise ArmError(
            404,
            "PolicyNotFound",
            f"Just-in-time network access policy '{match['name']}' was not found in location "
            f"'{match['loc']}' "
            f"of resource group '{match['rg']}'.",
        )
    now = datetime.now(UTC)
    request = jit.initiate(
        record.body["properties"], body, requestor=_requestor(call), caller_ip=_caller_ip(call), now=now
    )
    stored = copy.deepcopy(record.body)
    history = jit.with_expiry(stored["properties"].get("requests", []), now)
    stored["properties"]["requests"] = jit.record_request(history, request)
    call.store.put(record.id, jit.POLICY_TYPE, stored)
    log.info("security.jit_initiated policy=%s vms=%d", record.id, len(request["virtualMachines"]))
    return Response(202, request)


def _list(call: Call, *, sub: str, rg: str | None = None, loc: str | None = None) -> Response:
    _check_api_version(call)
    under = f"/subscriptions/{sub}" + (f"/resourceGroups/{rg}" if rg else "")
    if rg and call.store.get(under) is None:
        raise resource_group_not_found(rg)
    records = call.store.list(jit.POLICY_TYPE, under=under)
    value = [_render(r.body) for r in records if loc is None or _region(r.body["location"]) == _region(loc)]
    return Response(200, {"value": value})


def list_subscription(call: Call, match: re.Match[str]) -> Response:
    return _list(call, sub=match["sub"])


def list_subscription_region(call: Call, match: re.Match[str]) -> Response:
    return _list(call, sub=match["sub"], loc=match["loc"])


def list_group(call: Call, match: re.Match[str]) -> Response:
    return _list(call, sub=match["sub"], rg=match["rg"])


def list_group_region(call: Call, match: re.Match[str]) -> Response:
    return _list(call, sub=match["sub"], rg=match["rg"], loc=match["loc"])


def register(engine: Engine) -> None:
    engine.route("GET", _POLICY, get_policy)
    engine.route("PUT", _POLICY, put_policy)
    engine.route("DELETE", _POLICY, delete_policy)
    engine.route("POST", _POLICY + r"/initiate", initiate)
    engine.route("GET", _SUB + _PROVIDER + _POLICIES, list_subscription)
    engine.route("GET", _SUB + _PROVIDER + r"/locations/(?P<loc>[^/]+)" + _POLICIES, list_subscription_region)
    engine.route("GET", _RG + _PROVIDER + _POLICIES, list_group)
    engine.route("GET", _RG + _PROVIDER + r"/locations/(?P<loc>[^/]+)" + _POLICIES, list_group_region)
