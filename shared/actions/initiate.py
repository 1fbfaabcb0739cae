"""InitiateAccess: a Defender initiate body, from HTTP or the queue, becomes grants or a refusal.

parse -> policy -> RBAC on every VM -> fits the policy -> audit the decision (`request.accepting`,
before anything is written) -> write the request and its grants (Initiating, no targets: enforcement
resolves them) -> audit -> supersede the same requester's older grants on the same VM and port
-> ConvergeGrant now and at the end time. Refusals are audited with their reason.

An answer is always true. Until the grants are written, a storage failure is a 503 "nothing was
changed" (the intent record may exist; no grant does). Once they are written, the request stands:
HTTP answers 202 with its id even if the audit rows after the write cannot be written (retried a few
times here; the intent record already names the request and every grant), and the queue raises so
that redelivery finds the request by its ticket and writes whatever audit is missing.

A ticket id makes the request id deterministic, so a resend finds the first request instead of
creating a second; the steps after the write are idempotent and are repeated for a resend, so a
crash between them is repaired by redelivery.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from azure.core.exceptions import AzureError

from shared.actions.refusal import UNAVAILABLE, Refusal, TransientFailureError
from shared.actions.revoke import revoke_grant
from shared.approval import (
    Approval,
    ApprovalStatus,
    check_break_glass,
    listed,
    new_break_glass,
    new_pending,
    people,
    relayed,
    request_policy,
)
from shared.authz import INITIATE_ACTION
from shared.defender import InitiateWire, access_request_from_wire, check_json_depth, parse_model
from shared.events import EventId
from shared.grants import (
    MAX_GRANTS_PER_REQUEST,
    RequestExistsError,
    RequestRecord,
    StoredRequest,
    grant_id,
    new_request_id,
    request_id_for_ticket,
)
from shared.identity import same_principal
from shared.model import DomainError, Grant, PolicyRef, PortStatus, Principal, StatusReason, VmRef
from shared.notify.cloudevents import grant_context, requester_details
from shared.observability import brief, log_event
from shared.policy import AccessRequest, ApprovedPort, evaluate
from shared.policy_store import StoredPolicy
from shared.services import RequestAudit, Services

Channel = Literal["http", "queue"]

# Audit rows written after the grants: tries and the pause between them (the intent record is already
# written, so this only decides how hard we try before answering 202 anyway).
_AUDIT_ATTEMPTS = 3
_AUDIT_PAUSE_SECONDS = 0.2


@dataclass(frozen=True)
class InitiateCommand:
    body: Any  # the initiate body as parsed JSON, validated here
    requester: Principal
    channel: Channel
    # None: the policy that lists the first VM (queued requests may omit it).
    policy: PolicyRef | None = None
    caller_address: str | None = None
    ticket_id: str | None = None
    # From a trusted queue sender only: (approver, sender, reference) of an approval it obtained.
    prior_approval: tuple[Principal, str, str | None] | None = None


@dataclass(frozen=True)
class InitiateResult:
    request: StoredRequest
    created: bool  # False: a resend of a ticket already recorded


class InitiateAccess:
    def __init__(self, services: Services) -> None:
        self._services = services

    def __call__(self, command: InitiateCommand) -> InitiateResult:
        try:
            return self._initiate(command)
        except Refusal as refusal:
            self._services.audit.record(
                EventId.REQUEST_REFUSED,
                subject=command.ticket_id or (command.policy.id if command.policy else "request"),
                actor=command.requester.object_id,
                **requester_details(command.requester),
                channel=command.channel,
                status=refusal.status,
                code=refusal.code,
                field=refusal.target,
                reason=refusal.message,
            )
            raise

    def _initiate(self, command: InitiateCommand) -> InitiateResult:
        services = self._services
        now = services.clock()
        try:
            # Before anything serialises the body (the fingerprint): a deep body is refused, not a crash.
            check_json_depth(command.body)
            wire = parse_model(InitiateWire, command.body)
            request = access_request_from_wire(wire, command.caller_address)
        except DomainError as error:
            raise Refusal.invalid(error) from None
        stored_policy = self._policy(
            command, request.virtual_machines[0].vm.id if request.virtual_machines else None
        )
        fingerprint = _fingerprint(stored_policy.ref, command.body)
        if command.ticket_id is not None:
            existing = services.grants.get_request(request_id_for_ticket(command.ticket_id))
            if existing is not None:
                return self._resend(existing, command, fingerprint)
        self._authorize(command.requester, [vm.vm.id for vm in request.virtual_machines], command.channel)
        decision = evaluate(request, stored_policy.policy, now, services.limits)
        if not decision.allowed:
            raise Refusal.all_invalid(list(decision.refusals))
        if len(decision.approved) > MAX_GRANTS_PER_REQUEST:
            raise Refusal.invalid(
                DomainError("virtualMachines", f"at most {MAX_GRANTS_PER_REQUEST} ports in one request")
            )
        approval = self._approval(command, wire.breakGlass, request, stored_policy, now)
        request_id = request_id_for_ticket(command.ticket_id) if command.ticket_id else new_request_id()
        record = RequestRecord(
            request_id=request_id,
            policy=stored_policy.ref,
            requester=command.requester,
            start_time=request.start_time or now,
            justification=request.justification,
            ticket_id=command.ticket_id,
            fingerprint=fingerprint,
            caller_address=command.caller_address,
            approval=approval,
        )
        pending = approval is not None and approval.status is ApprovalStatus.PENDING
        grants = [
            _grant(record, index, approved, pending=pending, not_before=request.start_time)
            for index, approved in enumerate(decision.approved)
        ]
        # The decision is audited before anything is written: if this fails, nothing was changed.
        services.audit.record(
            EventId.REQUEST_ACCEPTING,
            subject=request_id,
            actor=command.requester.object_id,
            **requester_details(command.requester),
            channel=command.channel,
            policy=stored_policy.ref.id,
            ticket=command.ticket_id,
            grants=[g.grant_id for g in grants],
            approval=approval.status.value if approval is not None else None,
            start=request.start_time.isoformat() if request.start_time else None,
        )
        try:
            services.grants.create_request(record, grants)
        except RequestExistsError as raced:
            return self._resend(raced.existing, command, fingerprint)
        stored = StoredRequest(record, grants)
        # From here on the request stands: a failure is reported as such, never as "nothing changed".
        try:
            self._audit_accepted(stored, command.channel)
        except AzureError as error:
            log_event(
                EventId.REQUEST_AUDIT_DEFERRED,
                logging.ERROR,
                request=request_id,
                grants=[g.grant_id for g in grants],
                error=brief(error),
            )
            if command.channel == "queue":
                raise  # redelivery finds the request by its ticket and writes the missing audit rows
        try:
            self._hand_over(stored)
        except AzureError as error:
            if command.channel == "queue":
                raise  # redelivery finds the request by its ticket and repeats the hand-over
            # The grants are recorded, so answering "nothing was changed" would be false, and a client
            # retrying would get a second request. Enforcement's reconcile resolves grants whose hint
            # was lost and the expiry sweep closes them on time, so the request stands.
            log_event(
                EventId.REQUEST_HANDOVER_FAILED,
                logging.ERROR,
                request=request_id,
                grants=[g.grant_id for g in grants],
                error=brief(error),
            )
        # The request as written (no re-read): its progress is what GET /api/requests/{id} reports.
        return InitiateResult(stored, created=True)

    def _audit_accepted(self, stored: StoredRequest, channel: Channel) -> None:
        """`request.accepted` and one `grant.initiating` per grant, with a few quick retries."""
        for attempt in range(_AUDIT_ATTEMPTS):
            try:
                self._write_accepted(stored, channel)
                return
            except AzureError:
                if attempt == _AUDIT_ATTEMPTS - 1:
                    raise
                time.sleep(_AUDIT_PAUSE_SECONDS)

    def _write_accepted(self, stored: StoredRequest, channel: Channel) -> None:
        audit = self._services.audit
        record = stored.record
        audit.record(
            EventId.REQUEST_ACCEPTED,
            subject=record.request_id,
            actor=record.requester.object_id,
            **requester_details(record.requester),
            channel=channel,
            policy=record.policy.id,
            ticket=record.ticket_id,
            grants=[g.grant_id for g in stored.grants],
            justification=record.justification,
        )
        if record.approval is not None:
            audit_approval_opened(audit, record, channel)
        for grant in stored.grants:
            audit.record(
                EventId.GRANT_INITIATING,
                subject=grant.grant_id,
                actor=record.requester.object_id,
                **grant_context(grant),
                vm=grant.vm.id,
                port=grant.port,
                protocol=grant.protocol.value,
                sources=list(grant.source_prefixes),
                end=grant.end_time.isoformat(),
            )

    def _approval(
        self,
        command: InitiateCommand,
        break_glass: bool,
        request: AccessRequest,
        stored_policy: StoredPolicy,
        now: datetime,
    ) -> Approval | None:
        """The request's approval state: None (no VM needs approval), Pending, BreakGlass, or Approved
        by a trusted queue sender's prior approval. Refusals name the body field at fault."""
        entries = [
            (f"virtualMachines[{index}].id", vm_policy.approval if vm_policy is not None else None)
            for index, requested in enumerate(request.virtual_machines)
            for vm_policy in (stored_policy.policy.vm_policy(requested.vm),)
        ]
        try:
            rule = request_policy(entries)
            if break_glass:
                check_break_glass(rule, request.justification)
        except DomainError as error:
            raise Refusal.invalid(error) from None
        if rule is None:
            return None
        if break_glass:
            return new_break_glass(rule, now)
        pending = new_pending(rule, now)
        if command.prior_approval is not None:
            approver, sender, reference = command.prior_approval
            return relayed(pending, approver, sender, reference, now)
        return pending

    def _policy(self, command: InitiateCommand, first_vm_id: str | None) -> StoredPolicy:
        policies = self._services.policies
        if command.policy is not None:
            stored = policies.get(command.policy)
            if stored is None:
                raise Refusal.not_found(
                    "PolicyNotFound", f"JIT network access policy {command.policy.id} does not exist"
                )
            return stored
        if first_vm_id is None:
            raise Refusal.invalid(DomainError("virtualMachines", "list at least one virtual machine"))
        vm = VmRef.parse(first_vm_id, "virtualMachines[0].id")
        found = next(iter(policies.for_vm(vm)), None)
        if found is None:
            raise Refusal(
                400,
                "VmNotInPolicy",
                f"virtualMachines[0].id: no JIT policy lists virtual machine {vm.id}",
                "virtualMachines[0].id",
            )
        return found

    def _authorize(self, requester: Principal, vm_ids: list[str], channel: Channel) -> None:
        for index, vm_id in enumerate(vm_ids):
            try:
                self._services.authorizer.require(
                    requester, INITIATE_ACTION, vm_id, target=f"virtualMachines[{index}].id"
                )
            except Refusal as refusal:
                if refusal.status != UNAVAILABLE:
                    raise
                if channel == "queue":
                    # Transient: the queue retries, then the poison queue keeps the message.
                    raise TransientFailureError(refusal.message) from None
                raise Refusal.unavailable(
                    f"{refusal.message}; nothing was opened, try again shortly"
                ) from None

    def _resend(self, existing: StoredRequest, command: InitiateCommand, fingerprint: str) -> InitiateResult:
        record = existing.record
        if record.fingerprint != fingerprint or record.requester.object_id != command.requester.object_id:
            raise Refusal(
                409,
                "TicketAlreadyUsed",
                f"ticket {command.ticket_id!r} was already used for request {record.request_id} with a "
                "different requester or body",
                "ticketId",
            )
        audit = self._services.audit
        if not any(event.event == EventId.REQUEST_ACCEPTED for event in audit.for_subject(record.request_id)):
            # The first delivery wrote the request but not its audit (storage failed in between).
            self._audit_accepted(existing, command.channel)
        audit.record(
            EventId.REQUEST_RESENT,
            subject=record.request_id,
            actor=command.requester.object_id,
            channel=command.channel,
            ticket=command.ticket_id,
        )
        self._hand_over(existing)
        return InitiateResult(self._services.grants.get_request(record.request_id) or existing, created=False)

    def _hand_over(self, stored: StoredRequest) -> None:
        hand_over(self._services, stored.grants)


def hand_over(services: Services, grants: Sequence[Grant]) -> None:
    """After the write (or the approval that opens them): supersede older grants, then tell
    enforcement, now, at a scheduled start and at the end. Grants still waiting for approval are
    left alone: nothing of theirs opens and nothing older is superseded by them yet."""
    live = [grant for grant in grants if grant.status not in (PortStatus.REVOKED, PortStatus.PENDING)]
    for grant in live:
        _supersede_older(services, grant)
    converge = services.converge
    for grant in live:
        converge.notify(grant.grant_id)
        if grant.not_before is not None:
            converge.notify(grant.grant_id, visible_at=grant.not_before)
        converge.notify(grant.grant_id, visible_at=grant.end_time)


def _supersede_older(services: Services, newer: Grant) -> None:
    """A newer request replaces the same person's older grants on this VM and port (Defender's
    NewerRequestInitiated); other people's grants coexist, each with its own rules, so no requester
    can end a colleague's session. A scheduled grant supersedes nothing (it is not open yet); nor
    is a grant still pending approval superseded (it opened nothing)."""
    if newer.not_before is not None:
        return
    for older in services.grants.list_for_vm(newer.vm, open_only=True, port=newer.port):
        if older.port != newer.port or older.request_id == newer.request_id:
            continue
        if older.status is PortStatus.PENDING or older.not_before is not None:
            continue
        if not same_principal(older.requester, newer.requester):
            continue
        if (older.start_time, older.grant_id) >= (newer.start_time, newer.grant_id):
            continue
        revoke_grant(
            services,
            older,
            StatusReason.NEWER_REQUEST_INITIATED,
            actor=newer.requester.object_id,
            audit_first=False,  # the newer request's own decision is already on record
            by_request=newer.request_id,
        )


def audit_approval_opened(audit: RequestAudit, record: RequestRecord, channel: str) -> None:
    """The approval side of a new request: pending (who must approve, until when), break-glass
    (every listed approver named, so the notice reaches them), or approved by a relayed approval."""
    approval = record.approval
    if approval is None:
        return
    common = {**requester_details(record.requester), "channel": channel, "policy": record.policy.id}
    if approval.status is ApprovalStatus.BREAK_GLASS:
        audit.record(
            EventId.REQUEST_BREAK_GLASS,
            subject=record.request_id,
            actor=record.requester.object_id,
            **common,
            approvers=listed(approval),
            reason=record.justification,
            review_required=True,
        )
    elif approval.status is ApprovalStatus.APPROVED:
        audit.record(
            EventId.REQUEST_APPROVED,
            subject=record.request_id,
            actor=record.requester.object_id,
            **common,
            approvers=people(approval.approved_by),
            relayed_by=approval.decisions[0].relayed_by,
            reference=approval.decisions[0].comment,
            opened=True,
        )
    else:
        audit.record(
            EventId.REQUEST_PENDING,
            subject=record.request_id,
            actor=record.requester.object_id,
            **common,
            approvers=[],
            required_approvers=list(approval.approvers),
            required=approval.required,
            pending_until=approval.pending_until.isoformat(),
        )


def _grant(
    record: RequestRecord, index: int, approved: ApprovedPort, *, pending: bool, not_before: datetime | None
) -> Grant:
    """A grant of the request: Pending (waiting for approval; its window is set when approved) or
    Initiating; a scheduled one opens at `not_before`."""
    return Grant(
        grant_id=grant_id(record.request_id, index),
        request_id=record.request_id,
        policy=record.policy,
        vm=approved.vm,
        port=approved.policy_port.number,
        protocol=approved.policy_port.protocol,
        source_prefixes=approved.source_prefixes,
        start_time=record.start_time,
        end_time=approved.end_time,
        requester=record.requester,
        justification=record.justification,
        ticket_id=record.ticket_id,
        status=PortStatus.PENDING if pending else PortStatus.INITIATING,
        not_before=not_before,
    )


def _fingerprint(policy: PolicyRef, body: Any) -> str:
    canonical = json.dumps({"policy": policy.key, "body": body}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
