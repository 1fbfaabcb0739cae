"""The HTTP route table: every route of the API, once. `function_app.py` registers one Function per
entry (its name is the Function's name in App Insights and in the per-function disable switch
`AzureWebJobs.<name>.Disabled`); /api/openapi.json builds its paths from it (shared/api/openapi.py);
the README's route table is rendered from it and checked by tests/unit/test_route_table.py.

Adding a route: a handler (`@endpoint()` in shared/api/), its answer model (shared/answers.py) and
one `Route` here; then `python -m shared.api.routes` prints the README table to paste.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
from pydantic import BaseModel

from shared.actions.approvals import CommentBody, ExtendBody
from shared.actions.request_lists import SKIP_TOKEN
from shared.answers import (
    ComplianceList,
    Error,
    GrantList,
    Health,
    ImportReport,
    JitNetworkAccessRequest,
    Me,
    RequestList,
)
from shared.api import approvals, compliance, defender_routes, me, openapi, records
from shared.defender import API_VERSION, InitiateWire, JitNetworkAccessPolicy, PolicyList, PolicyWire
from shared.web import serve as serve_page

Handler = Callable[[func.HttpRequest], func.HttpResponse]


@dataclass(frozen=True)
class Reply:
    """One documented answer of a route (errors are added for every route by openapi.py)."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # header -> description


@dataclass(frozen=True)
class Query:
    name: str
    description: str = ""
    kind: str = "string"
    default: Any = None


@dataclass(frozen=True)
class Route:
    function: str  # the Function's name
    method: str
    path: str  # below the route prefix (host.json: /api)
    handler: Handler
    operation_id: str
    tag: str
    summary: str  # what it does (README, OpenAPI summary)
    rbac: str  # the Azure RBAC the caller needs (README)
    replies: tuple[Reply, ...]
    description: str = ""
    body: type[BaseModel] | None = None
    body_name: str | None = None
    query: tuple[Query, ...] = ()
    defender: bool = False  # Defender's route: `api-version` is required
    public: bool = False  # no sign-in

    @property
    def readme_route(self) -> str:
        suffix = f"?api-version={API_VERSION}" if self.defender else ""
        return f"{self.method} /api/{self.path}{suffix}"


def health(request: func.HttpRequest, services: Any = None) -> func.HttpResponse:
    """Liveness only: reads no setting, storage or ARM, so it answers while they are down."""
    return func.HttpResponse(
        json.dumps(Health(status="ok").wire()), status_code=200, mimetype="application/json"
    )


_SECURITY = "providers/Microsoft.Security"
_POLICY = (
    "subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/"
    f"{_SECURITY}/locations/{{ascLocation}}/jitNetworkAccessPolicies/{{jitNetworkAccessPolicyName}}"
)
_LIST_SCOPES = (
    ("jit_policies_list_subscription", f"subscriptions/{{subscriptionId}}/{_SECURITY}", "a subscription"),
    (
        "jit_policies_list_region",
        f"subscriptions/{{subscriptionId}}/{_SECURITY}/locations/{{ascLocation}}",
        "a subscription's location",
    ),
    (
        "jit_policies_list_resource_group",
        f"subscriptions/{{subscriptionId}}/resourceGroups/{{resourceGroupName}}/{_SECURITY}",
        "a resource group",
    ),
    (
        "jit_policies_list_resource_group_region",
        f"subscriptions/{{subscriptionId}}/resourceGroups/{{resourceGroupName}}/{_SECURITY}"
        "/locations/{ascLocation}",
        "a resource group's location",
    ),
)


_LOCATION = {
    "Location": "/api/requests/{requestId} (relative): poll until every port reads Initiated (or Revoked)"
}

ROUTES: tuple[Route, ...] = (
    Route(
        "jit_policy_put",
        "PUT",
        _POLICY,
        defender_routes.put_policy,
        "JitNetworkAccessPolicies_CreateOrUpdate",
        "Defender",
        'create or replace a JIT policy (Defender\'s JSON; our extension per VM: `"portcullis": '
        '{"firewallId": ..., "approval": {"approvers": [...], "required": 1, "pendingTimeout": "PT1H", '
        '"breakGlass": false}}`)',
        "`.../jitNetworkAccessPolicies/write`",
        (Reply(200, "stored (created or replaced)", JitNetworkAccessPolicy),),
        body=PolicyWire,
        defender=True,
    ),
    Route(
        "jit_policy_get",
        "GET",
        _POLICY,
        defender_routes.get_policy,
        "JitNetworkAccessPolicies_Get",
        "Defender",
        "read a JIT policy and its request history",
        "`.../jitNetworkAccessPolicies/read`",
        (Reply(200, "the policy and its request history", JitNetworkAccessPolicy),),
        defender=True,
    ),
    Route(
        "jit_policy_delete",
        "DELETE",
        _POLICY,
        defender_routes.delete_policy,
        "JitNetworkAccessPolicies_Delete",
        "Defender",
        "delete a JIT policy (Defender's answers: 200, or 204 when there was none)",
        "`.../jitNetworkAccessPolicies/delete`",
        (Reply(200, "deleted"), Reply(204, "there was no such policy")),
        defender=True,
    ),
    Route(
        "jit_policy_initiate",
        "POST",
        _POLICY + "/initiate",
        defender_routes.initiate,
        "JitNetworkAccessPolicies_Initiate",
        "Defender",
        "request access: 202 with Defender's `JitNetworkAccessRequest`, a `requestId` and "
        "`Location: /api/requests/{id}` (relative)",
        "`.../initiate/action` on the VM",
        (Reply(202, "accepted and recorded; poll Location", JitNetworkAccessRequest, headers=_LOCATION),),
        description="Ask for access. Without allowedSourceAddressPrefix the caller's own address (as the "
        "platform reports it) is used. Answers with Defender's request plus `requestId`; ports read "
        "`Initiating` until enforcement has opened every rule.",
        body=InitiateWire,
        body_name="JitNetworkAccessPolicyInitiateRequest",
        defender=True,
    ),
    *(
        Route(
            function,
            "GET",
            scope + "/jitNetworkAccessPolicies",
            defender_routes.list_policies,
            f"JitNetworkAccessPolicies_List{index}",
            "Defender",
            f"list the JIT policies of {what} the caller may read",
            "`.../jitNetworkAccessPolicies/read`",
            (Reply(200, "the policies the caller may read", PolicyList),),
            defender=True,
        )
        for index, (function, scope, what) in enumerate(_LIST_SCOPES)
    ),
    Route(
        "policies_list_readable",
        "GET",
        "policies",
        defender_routes.list_readable_policies,
        "Policies_ListReadable",
        "Records",
        "every JIT policy the caller may read, in any subscription (what `portcullis vm list` shows)",
        "`.../jitNetworkAccessPolicies/read` (each policy)",
        (Reply(200, "the policies the caller may read", PolicyList),),
        description="Defender's policy list without a scope: a client that does not know the caller's "
        "subscriptions (the command line) finds the VMs it may request here.",
    ),
    Route(
        "request_get",
        "GET",
        "requests/{requestId}",
        records.get_request,
        "Requests_Get",
        "Records",
        "the request, per port: status (`Initiating`, `Initiated`, `Revoked` + reason; `Pending`, "
        "`Denied`, `Expired` with approvals), mapped port, connection details (`ssh -p ...`, "
        "`mstsc /v:...`); `approval`: who must approve, who decided, when it lapses, the review flag",
        "requester, policy read, or a listed approver; a firewall's writer sees the ports on that firewall",
        (Reply(200, "the request", JitNetworkAccessRequest),),
    ),
    Route(
        "request_revoke",
        "DELETE",
        "requests/{requestId}",
        records.revoke_request,
        "Requests_Revoke",
        "Records",
        "revoke early (`UserRequested`)",
        "requester, or policy write (all ports); a firewall's writer revokes the ports on that firewall",
        (
            Reply(
                202,
                "revoked; rules close shortly",
                JitNetworkAccessRequest,
                headers={
                    "Location": "/api/requests/{requestId} (relative): poll until every port reads Revoked"
                },
            ),
        ),
    ),
    Route(
        "requests_list",
        "GET",
        "requests",
        approvals.list_requests,
        "Requests_List",
        "Approvals",
        "`?requester=me` (`&active=true`: open or waiting ones only): your own requests on every VM, newest "
        "first, 50 a page (`nextLink`); `?status=Pending&approver=me`: the requests (and extensions) "
        "waiting for your decision; `?status=ReviewRequired&approver=me`: break-glass requests waiting "
        "for your review",
        "none beyond sign-in (you see your own requests, and what lists you as an approver, directly or "
        "through a group)",
        (Reply(200, "your requests, or what waits for you", RequestList),),
        description="Three lists, by their parameters; a mix of them or another value is a 400 naming the "
        "parameter, another person's object id as `requester` a 403. `requester=me` reads an index by "
        "requester (requests recorded before it existed are not listed) and answers at most 50 requests "
        "with `nextLink` to the next page.",
        query=(
            Query("requester", "`me`: your own requests (not with status or approver)"),
            Query(
                "active",
                "with requester=me: only requests still open, scheduled or waiting for approval",
                "boolean",
                False,
            ),
            Query(SKIP_TOKEN, "with requester=me: where the page starts (follow `nextLink` as it is)"),
            Query(
                "status", "`Pending` (waiting for a decision) or `ReviewRequired` (break-glass, not reviewed)"
            ),
            Query("approver", "`me` (with status)"),
        ),
    ),
    *(
        Route(
            f"request_{verb}",
            "POST",
            f"requests/{{requestId}}/{verb}",
            handler,
            f"Requests_{verb.capitalize()}",
            "Approvals",
            summary,
            rbac,
            (
                Reply(200, "the request after the decision", JitNetworkAccessRequest),
                Reply(
                    409,
                    "nothing waits for this decision: decided already, lapsed, withdrawn, or an "
                    "extension already waits",
                    Error,
                ),
            ),
            description=description,
            body=body,
        )
        for verb, handler, summary, rbac, description, body in (
            (
                "approve",
                approvals.approve,
                'approve a pending request or extension, body `{"comment": ...}` (optional); `required` '
                "approvals by distinct approvers open it, the window starting then",
                "listed approver (directly or through a group), not the requester, with policy read; the "
                "requester must still hold `.../initiate/action`",
                "Approve what waits: the request, or else its extension. Refused: the requester (403 "
                "SelfApprovalNotAllowed), anyone not listed (403 NotAnApprover), a second decision by the "
                "same approver (409), a lapsed request (409 ApprovalTimedOut), a requester who lost the "
                "initiate right (403 RequesterNotAuthorized).",
                CommentBody,
            ),
            (
                "deny",
                approvals.deny,
                'deny a pending request or extension, body `{"comment": ...}` (optional): one denial '
                "ends it (`Denied`)",
                "listed approver, not the requester, with policy read",
                "Deny what waits: the request (its ports read Denied) or its extension (the ports keep "
                "their end).",
                CommentBody,
            ),
            (
                "extend",
                approvals.extend,
                'move the end of the open ports, body `{"endTimeUtc": "<ISO 8601>"}`, within the policy '
                "maximum from their start; on an approval VM it waits for approval",
                "the requester, still holding `.../initiate/action` on the VMs",
                "The rules stay in place: the grant keeps its id and its end moves, so no rule is removed "
                "between the old end and the new one.",
                ExtendBody,
            ),
            (
                "review",
                approvals.review,
                'mark a break-glass request reviewed, body `{"comment": ...}` (optional)',
                "listed approver, not the requester, with policy read",
                "Clears the review flag of a request opened by break-glass (once).",
                CommentBody,
            ),
        )
    ),
    Route(
        "grants_list",
        "GET",
        "grants",
        records.list_grants,
        "Grants_List",
        "Records",
        "`?vm={vm id}`: grants on a VM (your own, plus everyone's under policies you may read or on "
        "firewalls you may write); `?firewall={firewall or Firewall Policy id}`: every grant with a "
        "rule on it; `&active=true`: open ones only; `?active=true` alone: who holds access now on "
        "every VM (the grants open now you may see, by the `?vm=` rule), soonest end first, 100 a page "
        "(`nextLink`)",
        "`?vm=` and `?active=true`: none beyond sign-in (you see only what those rights allow); "
        "`?firewall=`: `Microsoft.Network/azureFirewalls/write` on a classic firewall, "
        "`Microsoft.Network/firewallPolicies/ruleCollectionGroups/write` on a Firewall Policy",
        (Reply(200, "the grants you may see", GrantList),),
        description="Give `vm`, `firewall`, or `active=true` alone. `active=true` alone reads the open "
        "grants from the index of unrevoked grants (never closed grants of all time) and answers a page "
        "of at most 100 with `nextLink` while more follow; a page reads at most 500 index rows, so it "
        "may be short (even empty) and still have a `nextLink`.",
        query=(
            Query(
                "vm",
                "a VM's resource id: your own grants on it, and everyone's under policies you may read or "
                "on firewalls you may write (give vm or firewall)",
            ),
            Query(
                "firewall",
                "an Azure Firewall id, or a Firewall Policy id: every grant with a rule on it, if you may "
                "write it (give vm or firewall)",
            ),
            Query("active", kind="boolean", default=False),
            Query(
                SKIP_TOKEN,
                "with active=true alone: where the page starts (follow `nextLink` as it is)",
            ),
        ),
    ),
    Route(
        "defender_policies_import",
        "POST",
        "subscriptions/{subscriptionId}/importDefenderJitPolicies",
        records.import_defender_policies,
        "Policies_ImportFromDefender",
        "Records",
        "adopt the subscription's Defender JIT policies: `{adopted, unchanged, skipped}`",
        "policy write",
        (
            Reply(200, "what was adopted", ImportReport),
            Reply(502, "Defender's policies could not be read; nothing was changed"),
        ),
        description="Adopt the subscription's Defender JIT policies the caller may write (validated as a "
        "PUT; Defender's request history is not copied). Policies the caller may not read are not named "
        "in the answer.",
    ),
    Route(
        "compliance_get",
        "GET",
        "compliance",
        compliance.get_compliance,
        "Compliance_List",
        "Records",
        "findings: foreign rules that open a protected port to the Internet ahead of our Deny",
        "policy read at the finding's subscription",
        (Reply(200, "current findings", ComplianceList),),
        description="Findings enforcement reports but must not fix (a foreign rule opening a protected "
        "port ahead of our Deny, a full priority band).",
    ),
    Route(
        "me_get",
        "GET",
        "me",
        me.get_me,
        "Me_Get",
        "Meta",
        "who you are signed in as (object id, name, tenant, groups, `easyauth` or `jwt`) and the "
        "address the app sees you from (`sourceAddress`, what a request without a source uses)",
        "none beyond sign-in",
        (Reply(200, "the caller", Me),),
        description="The caller as the app authenticated them and their address as the platform reports "
        "it (the last X-Forwarded-For entry, PORTCULLIS_TRUSTED_PROXY_HOPS further left behind your own "
        "proxies). Reads no role assignment.",
    ),
    Route(
        "health",
        "GET",
        "health",
        health,
        "Health_Get",
        "Meta",
        "liveness",
        "none",
        (Reply(200, "the app is up", Health),),
        public=True,
    ),
    Route(
        "ui_page",
        "GET",
        "ui",
        serve_page,
        "Ui_Page",
        "Meta",
        "the self-service web page (`/api/ui/`): request access, see and revoke your requests; "
        "administrators see policies, compliance and who holds access. Sign in with Easy Auth",
        "none (the page signs in at `/.auth/login/aad`; the API calls it makes need their own rights)",
        (Reply(200, "the page (HTML)"),),
        description="Static files only (shared/web/static), with a Content-Security-Policy allowing "
        "only this origin.",
        public=True,
    ),
    Route(
        "ui_asset",
        "GET",
        "ui/{file}",
        serve_page,
        "Ui_Asset",
        "Meta",
        "a file of the web page (`index.html`, `app.js`, `app.css`)",
        "none",
        (Reply(200, "the file"), Reply(404, "no such file")),
        public=True,
    ),
    Route(
        "openapi_document",
        "GET",
        "openapi.json",
        openapi.get_openapi,
        "OpenApi_Get",
        "Meta",
        "this API as an OpenAPI 3.1 document",
        "none",
        (Reply(200, "this document"),),
        public=True,
    ),
)


def register(app: func.FunctionApp) -> None:
    """One Function per route, named by the table."""
    for route in ROUTES:
        app.function_name(route.function)(
            app.route(route=route.path, methods=[route.method])(_trigger(route))
        )


def _trigger(route: Route) -> Handler:
    handler = route.handler

    def trigger(req: func.HttpRequest) -> func.HttpResponse:
        return handler(req)

    trigger.__name__ = trigger.__qualname__ = route.function
    return trigger


def readme_table() -> str:
    """The README's route table, rendered from ROUTES."""
    lines = ["| route | what it does | Azure RBAC the caller needs |", "|---|---|---|"]
    lines += [f"| `{route.readme_route}` | {route.summary} | {route.rbac} |" for route in ROUTES]
    return "\n".join(lines)


if __name__ == "__main__":
    print(readme_table())
