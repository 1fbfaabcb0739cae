"""Defender's JIT routes (api-version 2020-01-01), same bodies, answers and status codes as Azure:
PUT/GET/DELETE a policy, list at subscription and resource-group scope (with or without a location),
and POST .../initiate (202, plus our `requestId` and a `Location` to poll)."""

from __future__ import annotations

import azure.functions as func

from shared.actions.initiate import InitiateAccess, InitiateCommand
from shared.actions.policies import DeletePolicy, GetPolicy, ListPolicies, ListReadablePolicies, PutPolicy
from shared.api.http import ApiCall, endpoint, json_response, request_location
from shared.defender import request_to_wire
from shared.model import PolicyRef
from shared.policy_store import policy_ref


def _ref(call: ApiCall) -> PolicyRef:
    return policy_ref(
        call.route("subscriptionId"),
        call.route("resourceGroupName"),
        call.route("ascLocation"),
        call.route("jitNetworkAccessPolicyName"),
    )


@endpoint(defender=True)
def put_policy(call: ApiCall) -> func.HttpResponse:
    ref = _ref(call)
    outcome = PutPolicy(call.services)(ref, call.json_body(), call.principal)
    # Defender answers 200 to both create and update (its spec has no 201).
    return json_response(200, outcome.body)


@endpoint(defender=True)
def get_policy(call: ApiCall) -> func.HttpResponse:
    return json_response(200, GetPolicy(call.services)(_ref(call), call.principal))


@endpoint(defender=True)
def delete_policy(call: ApiCall) -> func.HttpResponse:
    deleted = DeletePolicy(call.services)(_ref(call), call.principal)
    return func.HttpResponse(status_code=200 if deleted else 204)


@endpoint(defender=True)
def list_policies(call: ApiCall) -> func.HttpResponse:
    body = ListPolicies(call.services)(
        call.principal,
        call.route("subscriptionId"),
        call.route("resourceGroupName") or None,
        call.route("ascLocation") or None,
    )
    return json_response(200, body)


@endpoint()
def list_readable_policies(call: ApiCall) -> func.HttpResponse:
    """Ours, beside Defender's lists: every subscription at once, so a client need not know them."""
    return json_response(200, ListReadablePolicies(call.services)(call.principal))


@endpoint(defender=True)
def initiate(call: ApiCall) -> func.HttpResponse:
    ref = _ref(call)
    command = InitiateCommand(
        body=call.json_body(depth_checked_by_action=True),
        requester=call.principal,
        channel="http",
        policy=ref,
        caller_address=call.caller_address,
    )
    result = InitiateAccess(call.services)(command)
    stored = result.request
    body = request_to_wire(
        stored.grants,
        start_time=stored.record.start_time,
        requestor=stored.record.requester.display_name,
        justification=stored.record.justification,
    )
    body.requestId = stored.record.request_id
    location = request_location(stored.record.request_id)
    return json_response(202, body, {"Location": location, "Retry-After": "5"})
