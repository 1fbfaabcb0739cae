"""Approvals, extensions and break-glass as pure decisions (issue 13): who may decide, what a
decision does to a request's approval state, when a pending request lapses, and the access window a
grant gets once approved or extended.

Pure: no storage, no clock of its own, no Azure SDK. `shared/actions/approvals.py` reads the request,
asks these functions, and writes the result with the request row's ETag, so two approvers deciding at
once cannot both count against one stale state.

The approval state lives on the request (`RequestRecord.approval`), serialised by `to_json` /
`from_json`; its grants are `Pending` until the state is Approved (or BreakGlass).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.model import ApprovalPolicy, DomainError, Grant, Principal

# Bounds on a policy's pendingTimeout and its list of approvers.
MIN_PENDING_TIMEOUT = timedelta(minutes=1)
MAX_PENDING_TIMEOUT = timedelta(days=7)
MAX_APPROVERS = 50
MAX_COMMENT = 1024
# A break-glass request must say why, in at least this many characters.
MIN_BREAK_GLASS_REASON = 10


class ApprovalStatus(StrEnum):
    PENDING = "Pending"
    APPROVED = "Approved"
    DENIED = "Denied"
    EXPIRED = "Expired"  # lapsed: nobody decided within pendingTimeout (reason ApprovalTimedOut)
    BREAK_GLASS = "BreakGlass"  # opened at once without approval; flagged for review


class Verdict(StrEnum):
    APPROVED = "Approved"
    DENIED = "Denied"
    REVIEWED = "Reviewed"


class ApprovalRefusedError(Exception):
    """A decision that may not be made: `status` (403/409), a stable `code` and why."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Decision:
    """One person's word on a request or an extension (approve, deny, or mark reviewed)."""

    object_id: str
    display_name: str
    verdict: Verdict
    time: datetime
    comment: str | None = None
    # Set when a trusted queue sender relayed an approval given in its own system (ticketing).
    relayed_by: str | None = None


@dataclass(frozen=True)
class Extension:
    """A requester's ask to move the end of an open request, waiting for approval or decided."""

    end_time: datetime
    requested_at: datetime
    pending_until: datetime
    status: ApprovalStatus
    decisions: tuple[Decision, ...] = ()


@dataclass(frozen=True)
class Approval:
    """A request's approval state, kept on the request row."""

    approvers: tuple[str, ...]  # object ids of users or groups, lower-case
    required: int
    pending_until: datetime
    status: ApprovalStatus
    decisions: tuple[Decision, ...] = ()
    break_glass: bool = False  # opened by break-glass: `review` says whether an approver has looked
    review: Decision | None = None
    extension: Extension | None = None

    @property
    def needs_review(self) -> bool:
        return self.break_glass and self.review is None

    @property
    def approved_by(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.verdict is Verdict.APPROVED)

    @property
    def waiting(self) -> bool:
        """Is there something for an approver to decide (the request, or an extension of it)?"""
        return self.status is ApprovalStatus.PENDING or (
            self.extension is not None and self.extension.status is ApprovalStatus.PENDING
        )

    @property
    def waits_for(self) -> str | None:
        """What waits, as the waiting index names it: `request`, or `extension:<asked at>`."""
        if self.status is ApprovalStatus.PENDING:
            return "request"
        if self.extension is not None and self.extension.status is ApprovalStatus.PENDING:
            return f"extension:{self.extension.requested_at.astimezone(UTC).isoformat()}"
        return None

    @property
    def decided(self) -> frozenset[str]:
        """What has been decided (or lapsed), in the index's names: its rows may go."""
        done = set()
        if self.status is not ApprovalStatus.PENDING:
            done.add("request")
        if self.extension is not None and self.extension.status is not ApprovalStatus.PENDING:
            done.add(f"extension:{self.extension.requested_at.astimezone(UTC).isoformat()}")
        return frozenset(done)

    @property
    def waits_until(self) -> datetime | None:
        if self.status is ApprovalStatus.PENDING:
            return self.pending_until
        if self.extension is not None and self.extension.status is ApprovalStatus.PENDING:
            return self.extension.pending_until
        return None


# ---- the policy's combined rule for one request ----


def request_policy(entries: Sequence[tuple[str, ApprovalPolicy | None]]) -> ApprovalPolicy | None:
    """The approval rule of a request spanning these VMs (field path, the VM's rule): None when no VM
    needs approval. VMs needing different approvals go in separate requests (a DomainError naming
    the first one that differs), so every approver of a request is an approver of each of its VMs."""
    found: ApprovalPolicy | None = None
    for path, entry in entries:
        if entry is None:
            continue
        if found is None:
            found = entry
        elif _normal(entry) != _normal(found):
            raise DomainError(
                path,
                "this virtual machine needs a different approval than the request's first one that needs "
                "approval; send them in separate requests",
                code="MixedApprovalPolicies",
            )
    return found


def _normal(policy: ApprovalPolicy) -> tuple[Any, ...]:
    return (frozenset(policy.approvers), policy.required, policy.pending_timeout, policy.break_glass)


def new_pending(policy: ApprovalPolicy, now: datetime) -> Approval:
    return Approval(
        approvers=tuple(policy.approvers),
        required=policy.required,
        pending_until=now + policy.pending_timeout,
        status=ApprovalStatus.PENDING,
    )


def new_break_glass(policy: ApprovalPolicy, now: datetime) -> Approval:
    return Approval(
        approvers=tuple(policy.approvers),
        required=policy.required,
        pending_until=now,
        status=ApprovalStatus.BREAK_GLASS,
        break_glass=True,
    )


def check_break_glass(policy: ApprovalPolicy | None, justification: str | None) -> None:
    """May this request use break-glass? Refusals name the body field at fault."""
    if policy is None:
        raise DomainError("breakGlass", "no virtual machine of this request needs approval: leave it out")
    if not policy.break_glass:
        raise DomainError(
            "breakGlass",
            "the policy does not allow break-glass on these virtual machines",
            "BreakGlassNotAllowed",
        )
    if justification is None or len(justification.strip()) < MIN_BREAK_GLASS_REASON:
        raise DomainError(
            "justification",
            f"break-glass needs the reason, at least {MIN_BREAK_GLASS_REASON} characters",
            "ReasonRequired",
        )


# ---- who may decide ----


def names_principal(approvers: Iterable[str], principal: Principal) -> bool:
    """Do the approver ids name the principal, directly or through one of the groups its sign-in
    carries? (An index row's copy of the list is checked the same way as the request's own.)"""
    ids = {principal.object_id.lower(), *(g.lower() for g in principal.group_ids)}
    return any(a.lower() in ids for a in approvers)


def is_listed(approval: Approval, principal: Principal) -> bool:
    """Is the principal an approver of the request?"""
    return names_principal(approval.approvers, principal)


def check_decider(approval: Approval, principal: Principal, requester: Principal) -> None:
    """An approver, and not the requester: nobody approves their own access."""
    if principal.object_id.lower() == requester.object_id.lower():
        raise ApprovalRefusedError(
            403,
            "SelfApprovalNotAllowed",
            f"{principal.display_name} requested this access and may not decide it",
        )
    if not is_listed(approval, principal):
        raise ApprovalRefusedError(
            403,
            "NotAnApprover",
            f"{principal.display_name} ({principal.object_id}) is not an approver of this request, "
            "directly or through a group",
        )


# ---- decisions ----


def lapse(approval: Approval, now: datetime) -> Approval | None:
    """The state once its waiting time is over, or None if nothing lapses at `now`."""
    if approval.status is ApprovalStatus.PENDING and now >= approval.pending_until:
        return replace(approval, status=ApprovalStatus.EXPIRED)
    extension = approval.extension
    if (
        extension is not None
        and extension.status is ApprovalStatus.PENDING
        and now >= extension.pending_until
    ):
        return replace(approval, extension=replace(extension, status=ApprovalStatus.EXPIRED))
    return None


def decide(
    approval: Approval,
    principal: Principal,
    requester: Principal,
    verdict: Verdict,
    now: datetime,
    comment: str | None = None,
) -> Approval:
    """Approve or deny what waits (the request, else its extension). `required` approvals by distinct
    people approve it; one denial ends it. Raises ApprovalRefusedError."""
    if verdict is Verdict.REVIEWED:
        raise ValueError("use review() to mark a break-glass request reviewed")
    check_decider(approval, principal, requester)
    if lapse(approval, now) is not None:
        raise ApprovalRefusedError(409, "ApprovalTimedOut", "the request waited too long and has lapsed")
    decision = Decision(principal.object_id, principal.display_name, verdict, now, comment)
    if approval.status is ApprovalStatus.PENDING:
        decisions = _add(approval.decisions, decision)
        return replace(approval, decisions=decisions, status=_outcome(decisions, approval.required))
    extension = approval.extension
    if extension is not None and extension.status is ApprovalStatus.PENDING:
        decisions = _add(extension.decisions, decision)
        status = _outcome(decisions, approval.required)
        return replace(approval, extension=replace(extension, decisions=decisions, status=status))
    raise ApprovalRefusedError(
        409, "NothingToDecide", f"the request is {approval.status.value}; nothing waits for a decision"
    )


def _add(decisions: tuple[Decision, ...], decision: Decision) -> tuple[Decision, ...]:
    if any(d.object_id.lower() == decision.object_id.lower() for d in decisions):
        raise ApprovalRefusedError(
            409, "AlreadyDecided", f"{decision.display_name} has already decided this; another approver must"
        )
    return (*decisions, decision)


def _outcome(decisions: Iterable[Decision], required: int) -> ApprovalStatus:
    decisions = tuple(decisions)
    if any(d.verdict is Verdict.DENIED for d in decisions):
        return ApprovalStatus.DENIED
    approvals = {d.object_id.lower() for d in decisions if d.verdict is Verdict.APPROVED}
    return ApprovalStatus.APPROVED if len(approvals) >= required else ApprovalStatus.PENDING


def relayed(
    approval: Approval, approver: Principal, sender: str, reference: str | None, now: datetime
) -> Approval:
    """An approval a trusted queue sender says it already obtained: the request is approved."""
    decision = Decision(approver.object_id, approver.display_name, Verdict.APPROVED, now, reference, sender)
    return replace(approval, decisions=(decision,), status=ApprovalStatus.APPROVED)


def review(
    approval: Approval, principal: Principal, requester: Principal, now: datetime, comment: str | None
) -> Approval:
    """An approver marks a break-glass request reviewed (once)."""
    check_decider(approval, principal, requester)
    if not approval.break_glass:
        raise ApprovalRefusedError(409, "NotBreakGlass", "only a break-glass request is reviewed")
    if approval.review is not None:
        raise ApprovalRefusedError(
            409, "AlreadyReviewed", f"already reviewed by {approval.review.display_name}"
        )
    return replace(
        approval, review=Decision(principal.object_id, principal.display_name, Verdict.REVIEWED, now, comment)
    )


def ask_extension(
    approval: Approval | None, end_time: datetime, now: datetime, timeout: timedelta
) -> Approval | None:
    """The approval state once the requester asks to extend: a pending extension when the request
    needed approval (break-glass requests too: their extension is not an emergency), else None."""
    if approval is None:
        return None
    if approval.extension is not None and approval.extension.status is ApprovalStatus.PENDING:
        raise ApprovalRefusedError(
            409, "ExtensionPending", "an extension of this request already waits for approval"
        )
    return replace(
        approval,
        extension=Extension(end_time, now, now + timeout, ApprovalStatus.PENDING),
    )


# ---- windows ----


def opened_window(grant: Grant, max_duration: timedelta, now: datetime) -> tuple[datetime, datetime]:
    """(start, end) of a pending grant once approved at `now`: the window starts at approval (or at the
    scheduled start, if later) and lasts what was asked, never more than the policy's maximum."""
    asked = grant.end_time - grant.start_time
    start = max(now, grant.not_before) if grant.not_before is not None else now
    return start, start + min(asked, max_duration)


def check_extension(
    grants: Sequence[Grant],
    max_for: Mapping[str, timedelta],
    end_time: datetime,
    now: datetime,
    slack: timedelta,
) -> None:
    """May the open grants be extended to `end_time`? Within each port's maximum counted from the
    grant's start, later than its current end. Refusals name `endTimeUtc`."""
    if end_time.tzinfo is None:
        raise DomainError("endTimeUtc", "must carry a time zone (UTC, e.g. '2030-01-01T10:00:00Z')")
    live = [g for g in grants if g.is_open_at(now) or (g.not_before is not None and now < g.end_time)]
    if not live:
        raise DomainError(
            "endTimeUtc", "no port of this request is open: request access anew", "NothingToExtend"
        )
    for grant in live:
        if end_time <= grant.end_time:
            raise DomainError(
                "endTimeUtc",
                f"{end_time.isoformat()} is not after the current end {grant.end_time.isoformat()} of port "
                f"{grant.port}",
                "NotAnExtension",
            )
        maximum = max_for[grant.grant_id]
        if end_time - grant.start_time > maximum + slack:
            raise DomainError(
                "endTimeUtc",
                f"{end_time.isoformat()} is more than the policy's maximum "
                f"({int(maximum.total_seconds() // 60)} minutes) after port {grant.port}'s start "
                f"{grant.start_time.isoformat()}",
                "DurationTooLong",
            )


# ---- audit and event details ----


def people(decisions: Iterable[Decision]) -> list[dict[str, str]]:
    """The `approvers` detail of an audit row (and so `data.approvers` of its CloudEvent)."""
    return [{"objectId": d.object_id, "displayName": d.display_name} for d in decisions]


def listed(approval: Approval) -> list[dict[str, str]]:
    """Every listed approver (ids only: the policy names object ids), for break-glass notices."""
    return [{"objectId": a, "displayName": ""} for a in approval.approvers]


def approvers_so_far(approval: Approval | None) -> list[dict[str, str]]:
    """`data.approvers` of a grant event, from its request's approval state: who approved the
    request so far; none when it needed no approval. A break-glass request says what its own events
    say: every listed approver (as `request.break_glass` does) until one reviews it, then the
    reviewer (as `request.reviewed` does). An approved extension is named by `grant.extended` only:
    the grant was opened by the request's approval."""
    if approval is None:
        return []
    if approval.break_glass:
        return people([approval.review]) if approval.review is not None else listed(approval)
    return people(approval.approved_by)


# ---- storage form ----


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _decision_json(d: Decision) -> dict[str, Any]:
    return {
        "objectId": d.object_id,
        "displayName": d.display_name,
        "verdict": d.verdict.value,
        "time": _time(d.time),
        "comment": d.comment,
        "relayedBy": d.relayed_by,
    }


def _decision(data: Mapping[str, Any]) -> Decision:
    return Decision(
        data["objectId"],
        data.get("displayName", ""),
        Verdict(data["verdict"]),
        _parse_time(data["time"]),
        data.get("comment"),
        data.get("relayedBy"),
    )


def to_json(approval: Approval) -> str:
    extension = approval.extension
    return json.dumps(
        {
            "approvers": list(approval.approvers),
            "required": approval.required,
            "pendingUntil": _time(approval.pending_until),
            "status": approval.status.value,
            "decisions": [_decision_json(d) for d in approval.decisions],
            "breakGlass": approval.break_glass,
            "review": _decision_json(approval.review) if approval.review else None,
            "extension": None
            if extension is None
            else {
                "endTime": _time(extension.end_time),
                "requestedAt": _time(extension.requested_at),
                "pendingUntil": _time(extension.pending_until),
                "status": extension.status.value,
                "decisions": [_decision_json(d) for d in extension.decisions],
            },
        },
        sort_keys=True,
    )


def from_json(text: str) -> Approval:
    data = json.loads(text)
    ext = data.get("extension")
    return Approval(
        approvers=tuple(data["approvers"]),
        required=int(data["required"]),
        pending_until=_parse_time(data["pendingUntil"]),
        status=ApprovalStatus(data["status"]),
        decisions=tuple(_decision(d) for d in data.get("decisions", [])),
        break_glass=bool(data.get("breakGlass")),
        review=_decision(data["review"]) if data.get("review") else None,
        extension=None
        if not ext
        else Extension(
            _parse_time(ext["endTime"]),
            _parse_time(ext["requestedAt"]),
            _parse_time(ext["pendingUntil"]),
            ApprovalStatus(ext["status"]),
            tuple(_decision(d) for d in ext.get("decisions", [])),
        ),
    )
