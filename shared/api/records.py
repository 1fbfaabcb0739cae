"""Our extensions beside Defender's routes, read from the records:
GET/DELETE /api/requests/{requestId}, GET /api/grants?vm=...|firewall=...&active=true (or
`?active=true` alone: open grants on every VM, paged), and the import endpoint. Who sees and
revokes which grant is shared.actions.oversight."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

import azure.functions as func

from shared.actions.holders import who_holds_access
from shared.actions.importer import ImportDefenderPolicies
from shared.actions.oversight import Oversight, firewall_target, firewall_write_action
from shared.actions.refusal import Refusal
from shared.actions.request_lists import SKIP_TOKEN
from shared.actions.revoke import RevokeAccess
from shared.answers import (
    ApprovalDecision,
    ApprovalInfo,
    ConnectionDetails,
    ExtensionInfo,
    GrantAnswer,
    GrantList,
    GrantRequestor,
    JitNetworkAccessRequest,
    RequestPort,
)
from shared.api.http import ApiCall, endpoint, json_response, request_location
from shared.approval import Approval, ApprovalStatus, Decision, is_listed
from shared.authz import READ_POLICY_ACTION
from shared.defender import format_time, request_port_to_wire, request_vms, status_reason, wire_status
from shared.grants import StoredRequest, is_open_cursor
from shared.model import DomainError, Grant, VmRef
from shared.plan import connection_commands


def grant_to_wire(grant: Grant, now: datetime) -> GrantAnswer:
    return GrantAnswer(
        grantId=grant.grant_id,
        requestId=grant.request_id,
        policyId=grant.policy.id,
        vmId=grant.vm.id,
        port=grant.port,
        protocol=grant.protocol,
        sourceAddressPrefixes=list(grant.source_prefixes),
        startTimeUtc=format_time(grant.start_time),
        endTimeUtc=format_time(grant.end_time),
        requestor=GrantRequestor(objectId=grant.requester.object_id, name=grant.requester.display_name),
        justification=grant.justification,
        ticketId=grant.ticket_id,
        status=wire_status(grant),
        statusReason=status_reason(grant),
        active=grant.is_open_at(now),
        targets=dict(grant.targets),
        mappedPort=grant.mapped_port,
        connectAddress=grant.connect_address,
        connectPort=grant.connect_port,
    )


def connection_details(grant: Grant) -> ConnectionDetails | None:
    """Address, port and ready-to-paste ssh / rdp lines; None until enforcement knows the address."""
    commands = connection_commands(grant.connect_address, grant.connect_port)
    if commands is None:
        return None
    return ConnectionDetails(
        address=commands["address"], port=grant.connect_port, ssh=commands["ssh"], rdp=commands["rdp"]
    )


def request_answer(stored: StoredRequest) -> JitNetworkAccessRequest:
    """Defender's JitNetworkAccessRequest plus what we know beside it (ids, ticket, connect details)."""
    record = stored.record

    def port(grant: Grant) -> RequestPort:
        return request_port_to_wire(
            grant,
            grantId=grant.grant_id,
            protocol=grant.protocol,
            connectAddress=grant.connect_address,
            connectPort=grant.connect_port,
            connection=connection_details(grant),
            targets=dict(grant.targets),
        )

    answer = JitNetworkAccessRequest(
        requestId=record.request_id,
        policyId=record.policy.id,
        virtualMachines=request_vms(stored.grants, port),
        startTimeUtc=format_time(record.start_time),
        requestor=record.requester.display_name,
        requestorObjectId=record.requester.object_id,
        justification=record.justification,
        ticketId=record.ticket_id,
    )
    if record.approval is not None:
        answer.approval = approval_info(record.approval)
    return answer


def _decision(decision: Decision) -> ApprovalDecision:
    answer = ApprovalDecision(
        objectId=decision.object_id,
        displayName=decision.display_name,
        verdict=decision.verdict,
        timeUtc=format_time(decision.time),
        comment=decision.comment,
    )
    if decision.relayed_by is not None:
        answer.relayedBy = decision.relayed_by
    return answer


def approval_info(approval: Approval) -> ApprovalInfo:
    """Who must approve, who decided (when, with what comment), until when it waits, the review flag."""
    extension = approval.extension
    return ApprovalInfo(
        status=approval.status,
        approvers=list(approval.approvers),
        required=approval.required,
        pendingUntilUtc=format_time(approval.pending_until)
        if approval.status is ApprovalStatus.PENDING
        else None,
        decisions=[_decision(d) for d in approval.decisions],
        breakGlass=approval.break_glass,
        reviewRequired=approval.needs_review,
        review=_decision(approval.review) if approval.review is not None else None,
        extension=None
        if extension is None
        else ExtensionInfo(
            endTimeUtc=format_time(extension.end_time),
            requestedAtUtc=format_time(extension.requested_at),
            status=extension.status,
            pendingUntilUtc=format_time(extension.pending_until),
            decisions=[_decision(d) for d in extension.decisions],
        ),
    )


def _stored_request(call: ApiCall) -> StoredRequest:
    request_id = call.route("requestId")
    stored = call.services.grants.get_request(request_id)
    if stored is None:
        raise Refusal.not_found("RequestNotFound", f"request {request_id} does not exist")
    return stored


@endpoint()
def get_request(call: ApiCall) -> func.HttpResponse:
    stored = _stored_request(call)
    principal = call.principal
    oversight = Oversight(call.services, principal)
    # A listed approver sees the request they are asked to decide, whatever else they may read.
    approver = stored.record.approval is not None and is_listed(stored.record.approval, principal)
    visible = [grant for grant in stored.grants if approver or oversight.may_see(grant)]
    if not visible:
        raise Refusal.forbidden(
            f"{principal.display_name} is neither the requester nor allowed '{READ_POLICY_ACTION}' on "
            f"{stored.record.policy.id}, nor may write a firewall its grants use"
        )
    return json_response(200, request_answer(StoredRequest(stored.record, visible)))


@endpoint()
def revoke_request(call: ApiCall) -> func.HttpResponse:
    stored = RevokeAccess(call.services)(call.route("requestId"), call.principal)
    # The rules close asynchronously: poll the request until every port reads Revoked and Removed.
    location = request_location(stored.record.request_id)
    return json_response(202, request_answer(stored), {"Location": location})


@endpoint()
def list_grants(call: ApiCall) -> func.HttpResponse:
    """`?active=true` alone: the grants open now on every VM, those the caller may see (the `?vm=`
    rule), paged by `nextLink` (shared.actions.holders). `?vm=`: the caller's own grants on the VM,
    and everyone's under policies the caller may read or on firewalls the caller may write.
    `?firewall=`: every grant with a rule on that firewall (a classic firewall's id, or the Firewall
    Policy's id for a policy-managed one), for whoever may write it."""
    vm_text, firewall_text = call.query("vm"), call.query("firewall")
    active_text = (call.query("active") or "false").lower()
    if active_text not in ("true", "false"):
        raise Refusal.invalid(DomainError("active", f"{active_text[:64]!r} must be true or false"))
    active = active_text == "true"
    cursor = call.query(SKIP_TOKEN)
    if not vm_text and not firewall_text:
        if not active:
            raise Refusal.invalid(
                DomainError(
                    "vm",
                    "give vm (a virtual machine id), firewall (a firewall id), or active=true for the "
                    "grants open now on every VM you may see",
                )
            )
        return _open_grants(call, cursor)
    if vm_text and firewall_text:
        raise Refusal.invalid(
            DomainError("vm", "give exactly one of vm (a virtual machine id) or firewall (a firewall id)")
        )
    if cursor is not None:
        raise Refusal.invalid(DomainError(SKIP_TOKEN, "only with active=true and neither vm nor firewall"))
    oversight = Oversight(call.services, call.principal)
    store = call.services.grants
    if vm_text:
        vm = VmRef.parse(vm_text, "vm")
        grants = [g for g in store.list_for_vm(vm, open_only=active) if oversight.may_see(g)]
    else:
        target = firewall_target(str(firewall_text), "firewall")
        action = firewall_write_action(target)
        assert action is not None
        if not oversight.allowed(action, str(target.id)):
            raise Refusal.forbidden(
                f"{call.principal.display_name} is not allowed '{action}' on {target.id}", "firewall"
            )
        grants = store.list_for_target(target, include_closed=not active)
    now = call.services.clock()
    if active:
        grants = [g for g in grants if g.is_open_at(now)]
    grants.sort(key=lambda g: (g.start_time, g.grant_id))
    return json_response(200, GrantList(value=[grant_to_wire(g, now) for g in grants]))


def _open_grants(call: ApiCall, cursor: str | None) -> func.HttpResponse:
    """`?active=true` alone: who holds access now across every VM, a page at a time."""
    if cursor is not None and not is_open_cursor(cursor):
        raise Refusal.invalid(
            DomainError(SKIP_TOKEN, "not a token this API gave out: follow nextLink as it is")
        )
    page = who_holds_access(call.services, call.principal, cursor)
    now = call.services.clock()
    answer = GrantList(value=[grant_to_wire(g, now) for g in page.grants])
    if page.cursor is not None:
        answer.nextLink = "/api/grants?" + urlencode({"active": "true", SKIP_TOKEN: page.cursor})
    return json_response(200, answer)


@endpoint()
def import_defender_policies(call: ApiCall) -> func.HttpResponse:
    report = ImportDefenderPolicies(call.services)(call.route("subscriptionId"), call.principal)
    return json_response(200, report)
