"""Approve, deny, extend, review, list what waits, and lapse: the approvals side of a request
(issue 13). The rules are pure (`shared/approval.py`); this module reads the request, checks Azure
RBAC again at decision time (the approver may read the request's policy; on approval, the requester
may still initiate on every VM), writes the request row with its ETag, then brings the grants in line
(`settle`) and audits who decided what and why.

Order of writes: the request row (the decision) first, then its grants, then the waiting index row
goes. If the process dies in between, the lapse timer (`lapse_due`, every minute) finds the index row,
sees the decision and finishes (`settle` is idempotent).

Extensions keep the grant: its end time moves in place (one ETag-guarded write), so the NSG rule is
rewritten with its new expiry marker in the same whole-target PUT and is never absent between the
old end and the new one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from shared.actions.initiate import hand_over
from shared.actions.refusal import Refusal
from shared.approval import (
    Approval,
    ApprovalRefusedError,
    ApprovalStatus,
    Verdict,
    ask_extension,
    check_decider,
    check_extension,
    decide,
    is_listed,
    lapse,
    names_principal,
    opened_window,
    people,
    review,
)
from shared.authz import INITIATE_ACTION, READ_POLICY_ACTION
from shared.defender import parse_model
from shared.events import EventId
from shared.grants import RequestRecord, StoredRequest
from shared.identity import same_principal
from shared.model import (
    ConcurrentUpdateError,
    DomainError,
    Grant,
    PortStatus,
    Principal,
    StatusReason,
    VmPolicy,
    retry_on_conflict,
)
from shared.notify.cloudevents import grant_context, requester_details
from shared.observability import brief, log_event
from shared.policy import END_TIME_SLACK
from shared.services import Services

_ATTEMPTS = 5
ACTOR = "approvals"
# How long past its time an index row without its request is kept (its request may be mid-write).
ORPHAN_GRACE = timedelta(minutes=10)


# ---- bodies ----


class CommentBody(BaseModel):
    """Body of approve, deny and review: an optional comment."""

    model_config = ConfigDict(extra="forbid")
    comment: StrictStr | None = Field(default=None, max_length=1024)


class ExtendBody(BaseModel):
    """Body of extend: the new end time of every open port of the request."""

    model_config = ConfigDict(extra="forbid")
    endTimeUtc: datetime  # noqa: N815


def parse_comment(body: Any) -> str | None:
    if body is None:
        return None
    try:
        return parse_model(CommentBody, body).comment
    except DomainError as error:
        raise Refusal.invalid(error) from None


def parse_extend(body: Any) -> datetime:
    try:
        return parse_model(ExtendBody, body).endTimeUtc
    except DomainError as error:
        raise Refusal.invalid(error) from None


# ---- the actions ----


class Approvals:
    """One caller's approvals actions on the request side."""

    def __init__(self, services: Services, principal: Principal) -> None:
        self._services = services
        self._principal = principal

    def decide(self, request_id: str, verdict: Verdict, comment: str | None) -> StoredRequest:
        """Approve or deny what waits on the request (the request itself, else its extension)."""
        action = "approve" if verdict is Verdict.APPROVED else "deny"

        def change(stored: StoredRequest, approval: Approval, now: datetime) -> Approval:
            check_decider(approval, self._principal, stored.record.requester)
            self._check_rbac(stored, requester_too=verdict is Verdict.APPROVED, action=action)
            return decide(approval, self._principal, stored.record.requester, verdict, now, comment)

        return self._change(request_id, action, change, comment=comment)

    def review(self, request_id: str, comment: str | None) -> StoredRequest:
        def change(stored: StoredRequest, approval: Approval, now: datetime) -> Approval:
            check_decider(approval, self._principal, stored.record.requester)
            self._check_rbac(stored, requester_too=False, action="review")
            return review(approval, self._principal, stored.record.requester, now, comment)

        return self._change(request_id, "review", change, comment=comment)

    def extend(self, request_id: str, end_time: datetime) -> StoredRequest:
        """The requester moves the end of the request's open ports, within each port's maximum counted
        from its start; on a VM that needs approval the extension waits for it."""
        services, principal = self._services, self._principal
        stored = _stored(services, request_id)
        record = stored.record
        try:
            if not same_principal(principal, record.requester):
                raise ApprovalRefusedError(403, "NotTheRequester", "only the requester may extend a request")
            self._check_requester_rbac(stored)
            now = services.clock()
            check_extension(stored.grants, self._maxima(stored.grants), end_time, now, END_TIME_SLACK)
            approval = record.approval
            if approval is not None:
                timeout = self._pending_timeout(stored) or timedelta(hours=1)
                approval = ask_extension(approval, end_time, now, timeout)
        except DomainError as error:
            self._refused(request_id, "extend", 400, error.code, f"{error.field}: {error.reason}")
            raise Refusal.invalid(error) from None
        except ApprovalRefusedError as error:
            self._refused(request_id, "extend", error.status, error.code, error.message)
            raise Refusal(error.status, error.code, error.message) from None
        if approval is None:
            extend_grants(services, stored.grants, end_time, actor=principal.object_id, approvers=[])
            return services.grants.get_request(request_id) or stored
        written = services.grants.update_request(replace(record, approval=approval))
        services.audit.record(
            EventId.REQUEST_PENDING,
            subject=request_id,
            actor=principal.object_id,
            **requester_details(record.requester),
            kind="extension",
            approvers=[],
            required_approvers=list(approval.approvers),
            required=approval.required,
            end=end_time.isoformat(),
            pending_until=approval.waits_until.isoformat() if approval.waits_until else None,
        )
        return StoredRequest(written, stored.grants)

    def waiting(self) -> list[StoredRequest]:
        """Requests (or extensions) waiting for the caller's decision: the caller is listed, directly
        or through a group, did not ask for it, has not decided it yet, and it has not lapsed."""
        services, principal = self._services, self._principal
        now = services.clock()
        found = []
        for request_id, approvers, _ in services.grants.waiting_requests():
            if not names_principal(approvers, principal):
                continue
            stored = services.grants.get_request(request_id)
            if stored is None or stored.record.approval is None:
                continue
            approval = stored.record.approval
            if not approval.waiting or lapse(approval, now) is not None:
                continue
            if approval.status is ApprovalStatus.PENDING and not any(
                g.status is PortStatus.PENDING for g in stored.grants
            ):
                continue  # withdrawn by the requester (DELETE): nothing left to decide
            if same_principal(principal, stored.record.requester) or not is_listed(approval, principal):
                continue
            decisions = (
                approval.decisions
                if approval.status is ApprovalStatus.PENDING
                else (approval.extension.decisions if approval.extension else ())
            )
            if any(d.object_id.lower() == principal.object_id.lower() for d in decisions):
                continue
            found.append(stored)
        found.sort(key=lambda s: (s.record.start_time, s.record.request_id))
        return found

    def awaiting_review(self) -> list[StoredRequest]:
        """Break-glass requests the caller may review (listed, directly or through a group, and not
        the requester) that nobody has reviewed yet, oldest first. A row whose request is reviewed
        already is dropped here (its writer died between the two writes)."""
        services, principal = self._services, self._principal
        found = []
        for request_id, approvers in services.grants.reviews_awaited():
            if not names_principal(approvers, principal):
                continue
            stored = services.grants.get_request(request_id)
            if stored is None:
                continue  # the index row goes first: its request may be on its way
            approval = stored.record.approval
            if approval is None or not approval.needs_review:
                services.grants.forget_review(request_id)
                continue
            if same_principal(principal, stored.record.requester) or not is_listed(approval, principal):
                continue
            found.append(stored)
        found.sort(key=lambda s: (s.record.start_time, s.record.request_id))
        return found

    # ---- steps ----

    def _change(
        self,
        request_id: str,
        action: str,
        change: Callable[[StoredRequest, Approval, datetime], Approval],
        *,
        comment: str | None,
    ) -> StoredRequest:
        services, principal = self._services, self._principal
        before: list[Approval] = []

        def attempt(number: int) -> StoredRequest:
            stored = _stored(services, request_id)
            approval = stored.record.approval
            now = services.clock()
            try:
                if approval is None:
                    raise ApprovalRefusedError(409, "NoApprovalRequired", "this request needed no approval")
                lapsed = lapse(approval, now)
                if lapsed is not None:
                    # Decided too late: the request lapses now (the timer would have), and says so.
                    lapse_request(services, stored, lapsed)
                    raise ApprovalRefusedError(
                        409, "ApprovalTimedOut", "the request waited too long for a decision and has lapsed"
                    )
                if approval.status is ApprovalStatus.PENDING and not any(
                    g.status is PortStatus.PENDING for g in stored.grants
                ):
                    raise ApprovalRefusedError(
                        409, "NothingToDecide", "the requester withdrew this request (its ports are revoked)"
                    )
                updated = change(stored, approval, now)
            except ApprovalRefusedError as error:
                self._refused(request_id, action, error.status, error.code, error.message)
                raise Refusal(error.status, error.code, error.message) from None
            except Refusal as refusal:
                if refusal.status != 503:
                    self._refused(request_id, action, refusal.status, refusal.code, refusal.message)
                raise
            written = services.grants.update_request(replace(stored.record, approval=updated))
            before[:] = [approval]
            return StoredRequest(written, stored.grants)

        stored = retry_on_conflict(
            attempt, attempts=_ATTEMPTS, gave_up=f"request {request_id} kept changing; decide again"
        )
        record = stored.record
        assert record.approval is not None
        _audit_decision(services, record, before[0], record.approval, principal, action, comment)
        return settle(services, stored)

    def _check_rbac(self, stored: StoredRequest, *, requester_too: bool, action: str) -> None:
        """Azure RBAC now, not when the request was made: the approver may read the request's policy;
        for an approval, the requester may still initiate on every VM of it."""
        policy_id = stored.record.policy.id
        self._services.authorizer.require(
            self._principal,
            READ_POLICY_ACTION,
            policy_id,
            why=f"; an approver must be able to read the policy to {action}",
        )
        if requester_too:
            self._check_requester_rbac(stored)

    def _check_requester_rbac(self, stored: StoredRequest) -> None:
        requester = stored.record.requester
        for vm_id in dict.fromkeys(g.vm.id for g in stored.grants):
            if not self._services.authorizer.check(requester, INITIATE_ACTION, vm_id):
                raise ApprovalRefusedError(
                    403,
                    "RequesterNotAuthorized",
                    f"the requester {requester.display_name} ({requester.object_id}) no longer has "
                    f"authorization to perform action '{INITIATE_ACTION}' over scope '{vm_id}'",
                )

    def _maxima(self, grants: Sequence[Grant]) -> dict[str, timedelta]:
        return {g.grant_id: port_maximum(self._services, g) for g in grants}

    def _pending_timeout(self, stored: StoredRequest) -> timedelta | None:
        for grant in stored.grants:
            entry = _vm_policy(self._services, grant)
            if entry is not None and entry.approval is not None:
                return entry.approval.pending_timeout
        return None

    def _refused(self, request_id: str, action: str, status: int, code: str, reason: str) -> None:
        self._services.audit.record(
            EventId.APPROVAL_REFUSED,
            subject=request_id,
            actor=self._principal.object_id,
            actor_name=self._principal.display_name,
            action=action,
            status=status,
            code=code,
            reason=reason,
        )


# ---- bringing grants in line with the request's approval state ----


def settle(services: Services, stored: StoredRequest) -> StoredRequest:
    """Make the grants follow the request's approval state (idempotent): approved -> open with the
    window starting now; denied / lapsed -> closed; an approved extension -> the new end. Then the
    request leaves the waiting index, if nothing waits any more."""
    record = stored.record
    approval = record.approval
    if approval is None:
        return stored
    now = services.clock()
    grants = _grants_of(services, record.request_id) or list(stored.grants)
    if approval.status in (ApprovalStatus.APPROVED, ApprovalStatus.BREAK_GLASS):
        opened = [open_grant(services, g, now) for g in grants if g.status is PortStatus.PENDING]
        opened_now = [g for g in opened if g is not None]
        if opened_now:
            hand_over(services, opened_now)
        extension = approval.extension
        if extension is not None and extension.status is ApprovalStatus.APPROVED:
            extend_grants(
                services,
                _grants_of(services, record.request_id),
                extension.end_time,
                actor=extension.decisions[-1].object_id if extension.decisions else ACTOR,
                approvers=people(d for d in extension.decisions if d.verdict is Verdict.APPROVED),
            )
    elif approval.status in (ApprovalStatus.DENIED, ApprovalStatus.EXPIRED):
        reason = (
            StatusReason.DENIED
            if approval.status is ApprovalStatus.DENIED
            else StatusReason.APPROVAL_TIMED_OUT
        )
        for grant in grants:
            if grant.status is PortStatus.PENDING:
                _close_pending(services, grant, reason)
    if not approval.waiting:
        # Only a row for what was decided: one written for a new extension, ahead of its request
        # row, stays.
        services.grants.forget_waiting(record.request_id, approval.decided)
    return services.grants.get_request(record.request_id) or stored


def open_grant(services: Services, grant: Grant, now: datetime) -> Grant | None:
    """A pending grant, approved: Initiating, its window from now (or its scheduled start)."""
    maximum = port_maximum(services, grant)

    def attempt(number: int) -> Grant | None:
        current = grant if number == 0 else services.grants.get(grant.grant_id)
        if current is None or current.status is not PortStatus.PENDING:
            return None
        start, end = opened_window(current, maximum, now)
        return services.grants.update(
            replace(current, status=PortStatus.INITIATING, status_reason=None, start_time=start, end_time=end)
        )

    return retry_on_conflict(attempt, attempts=_ATTEMPTS, gave_up=f"grant {grant.grant_id} kept changing")


def _close_pending(services: Services, grant: Grant, reason: StatusReason) -> None:
    def attempt(number: int) -> Grant | None:
        current = grant if number == 0 else services.grants.get(grant.grant_id)
        if current is None or current.status is not PortStatus.PENDING:
            return None
        return services.grants.update(replace(current, status=PortStatus.REVOKED, status_reason=reason))

    retry_on_conflict(attempt, attempts=_ATTEMPTS, gave_up=f"grant {grant.grant_id} kept changing")


def extend_grants(
    services: Services,
    grants: Sequence[Grant],
    end_time: datetime,
    *,
    actor: str,
    approvers: list[dict[str, str]],
) -> None:
    """Move the end of every open grant of a request to `end_time`, in place (the rule stays; only
    its expiry marker changes), audit `grant.extended` and tell enforcement (now and at the new end)."""
    now = services.clock()
    for grant in grants:

        def attempt(number: int, grant: Grant = grant) -> Grant | None:
            current = grant if number == 0 else services.grants.get(grant.grant_id)
            if current is None or current.status in (PortStatus.REVOKED, PortStatus.PENDING):
                return None
            if current.end_time >= end_time or now >= current.end_time:
                return None
            return services.grants.update(replace(current, end_time=end_time))

        extended = retry_on_conflict(
            attempt, attempts=_ATTEMPTS, gave_up=f"grant {grant.grant_id} kept changing"
        )
        if extended is None:
            continue
        services.audit.record(
            EventId.GRANT_EXTENDED,
            subject=grant.grant_id,
            actor=actor,
            **grant_context(grant),
            approvers=approvers,
            vm=grant.vm.id,
            port=grant.port,
            previous_end=grant.end_time.isoformat(),
            end=end_time.isoformat(),
        )
        try:
            services.converge.notify(grant.grant_id)
            services.converge.notify(grant.grant_id, visible_at=end_time)
        except AzureError as error:
            # The grant says the new end; the reconcile pass rewrites the marker, the sweep closes it.
            log_event(
                EventId.REQUEST_HANDOVER_FAILED, logging.ERROR, grant=grant.grant_id, error=brief(error)
            )


def lapse_request(services: Services, stored: StoredRequest, lapsed: Approval) -> StoredRequest:
    """Write the lapsed state (ETag-guarded: a decision that won the race stands), audit, settle."""
    record = stored.record
    try:
        written = services.grants.update_request(replace(record, approval=lapsed))
    except ConcurrentUpdateError:
        return services.grants.get_request(record.request_id) or stored
    extension = record.approval is not None and record.approval.status is not ApprovalStatus.PENDING
    services.audit.record(
        EventId.REQUEST_LAPSED,
        subject=record.request_id,
        actor=ACTOR,
        **requester_details(record.requester),
        kind="extension" if extension else "request",
        reason=StatusReason.APPROVAL_TIMED_OUT.value,
        approvers=people(lapsed.approved_by),
        required_approvers=list(lapsed.approvers),
    )
    return settle(services, StoredRequest(written, stored.grants))


def lapse_due(services: Services) -> int:
    """The lapse timer: every waiting request past its time lapses; a request whose decision is
    written but whose grants did not follow (a crash in between) is settled. Answers how many lapsed."""
    now = services.clock()
    count = 0
    for request_id, _, waits_until in services.grants.waiting_requests():
        try:
            stored = services.grants.get_request(request_id)
            if stored is None:
                # The index row is written before the request: a request being written right now has
                # no row yet. Only a row long past its time is an orphan (its writer died).
                if waits_until is None or now > waits_until + ORPHAN_GRACE:
                    services.grants.forget_waiting(request_id)
                continue
            if stored.record.approval is None:
                services.grants.forget_waiting(request_id)
                continue
            lapsed = lapse(stored.record.approval, now)
            if lapsed is not None:
                lapse_request(services, stored, lapsed)
                count += 1
            elif not stored.record.approval.waiting:
                settle(services, stored)
        except Exception as error:  # noqa: BLE001 - one request must not stop the others
            log_event(
                EventId.CONVERGE_GRANT_FAILED, logging.ERROR, request=request_id, error=brief(repr(error))
            )
    return count


# ---- helpers ----


def _grants_of(services: Services, request_id: str) -> list[Grant]:
    stored = services.grants.get_request(request_id)
    return stored.grants if stored is not None else []


def _stored(services: Services, request_id: str) -> StoredRequest:
    stored = services.grants.get_request(request_id)
    if stored is None:
        raise Refusal.not_found("RequestNotFound", f"request {request_id} does not exist")
    return stored


def _vm_policy(services: Services, grant: Grant) -> VmPolicy | None:
    stored = services.policies.get(grant.policy)
    return stored.policy.vm_policy(grant.vm) if stored is not None else None


def port_maximum(services: Services, grant: Grant) -> timedelta:
    """The policy's maxRequestAccessDuration for the grant's port now; if the policy or the port is
    gone, what the grant asked for (never longer)."""
    entry = _vm_policy(services, grant)
    port = entry.port(grant.port) if entry is not None else None
    if port is None:
        return grant.end_time - grant.start_time
    return port.max_request_access_duration


def _audit_decision(
    services: Services,
    record: RequestRecord,
    before: Approval,
    after: Approval,
    principal: Principal,
    action: str,
    comment: str | None,
) -> None:
    common: dict[str, Any] = {
        **requester_details(record.requester),
        "approver_id": principal.object_id,
        "approver_name": principal.display_name,
        "comment": comment,
    }
    if action == "review":
        services.audit.record(
            EventId.REQUEST_REVIEWED,
            subject=record.request_id,
            actor=principal.object_id,
            **common,
            approvers=people([after.review] if after.review else []),
        )
        return
    extension = before.status is not ApprovalStatus.PENDING and after.extension is not None
    decisions = after.extension.decisions if extension and after.extension else after.decisions
    status = after.extension.status if extension and after.extension else after.status
    kind = "extension" if extension else "request"
    approvers = people(d for d in decisions if d.verdict is Verdict.APPROVED)
    if action == "deny":
        services.audit.record(
            EventId.REQUEST_DENIED,
            subject=record.request_id,
            actor=principal.object_id,
            **common,
            kind=kind,
            approvers=approvers,
            denied_by=people([decisions[-1]]),
        )
        return
    services.audit.record(
        EventId.REQUEST_APPROVED,
        subject=record.request_id,
        actor=principal.object_id,
        **common,
        kind=kind,
        approvers=approvers,
        approvals=len(approvers),
        required=after.required,
        opened=status is ApprovalStatus.APPROVED,
    )
