"""Audit rows -> CloudEvents 1.0 (pure: no storage, no Azure SDK).

The audit trail is the one record of state changes, so notifications are derived from it: after a
row whose `EventId` is in `CLOUD_EVENT_TYPES` is written, its CloudEvent is published. One table,
one place to add an event. Every event names the people involved (`data.requester`,
`data.approvers`), taken from the audit row's details, which the writers fill with
`requester_details` / `grant_context` (and the approvals side with `approvers`). A grant row does not
name approvers (the approval lives on the request row): `approval_to_look_up` says which request's
approval the publisher reads for it, and `to_cloud_event` takes the approvers it found.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.events import EventId
from shared.model import Grant, Principal

SPEC_VERSION = "1.0"
EVENT_SOURCE = "/portcullis"
DATA_CONTENT_TYPE = "application/json"
TYPE_PREFIX = "com.portcullis."

# The one mapping from audit events to CloudEvent types (contracts: subscribers filter on them).
CLOUD_EVENT_TYPES: Mapping[EventId, str] = {
    EventId.REQUEST_ACCEPTED: "com.portcullis.request.requested",
    EventId.REQUEST_PENDING: "com.portcullis.request.pending",
    EventId.REQUEST_APPROVED: "com.portcullis.request.approved",
    EventId.REQUEST_DENIED: "com.portcullis.request.denied",
    EventId.REQUEST_LAPSED: "com.portcullis.request.expired",  # reason ApprovalTimedOut
    EventId.REQUEST_BREAK_GLASS: "com.portcullis.request.break_glass",
    EventId.REQUEST_REVIEWED: "com.portcullis.request.reviewed",
    EventId.GRANT_INITIATED: "com.portcullis.grant.opened",  # rules exist on every target
    EventId.GRANT_EXPIRING: "com.portcullis.grant.expiring",
    EventId.GRANT_EXTENDED: "com.portcullis.grant.extended",
    EventId.GRANT_REVOKED: "com.portcullis.grant.revoked",
    EventId.GRANT_EXPIRED: "com.portcullis.grant.expired",
    EventId.GRANT_REFUSED: "com.portcullis.grant.failed",  # a target refused the grant's rule
    # No path to the VM (gone, topology broken): the grant cannot open. `data.details.reason` says why.
    EventId.GRANT_PATH_UNRESOLVED: "com.portcullis.grant.failed",
}

# Detail keys that carry people; they become `data.requester` / `data.approvers`.
_REQUESTER_ID = "requester_id"
_REQUESTER_NAME = "requester_name"
_APPROVERS = "approvers"


def requester_details(principal: Principal) -> dict[str, str]:
    """The audit details that name the requester, so the event derived from the row can too."""
    return {_REQUESTER_ID: principal.object_id, _REQUESTER_NAME: principal.display_name}


def grant_context(grant: Grant) -> dict[str, str]:
    """What every audit row about a grant carries besides its own details: request and requester."""
    return {"request": grant.request_id, **requester_details(grant.requester)}


class AuditFact(Protocol):
    """The parts of an audit row an event is made of (shared.audit.AuditEvent has them)."""

    @property
    def id(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def time(self) -> datetime: ...
    @property
    def details(self) -> Mapping[str, Any]: ...


def cloud_event_type(event: str) -> str | None:
    try:
        return CLOUD_EVENT_TYPES.get(EventId(event))
    except ValueError:
        return None


def approval_to_look_up(fact: AuditFact) -> str | None:
    """The request whose approvers a grant event names, or None: not a published grant event, the
    row names no request, or it names its approvers already (`grant.extended`: the extension's)."""
    if not fact.event.startswith("grant.") or cloud_event_type(fact.event) is None:
        return None
    if _APPROVERS in fact.details:
        return None
    request = fact.details.get("request")
    return str(request) if request else None


def to_cloud_event(
    fact: AuditFact, approvers: Sequence[Mapping[str, str]] | None = None
) -> dict[str, Any] | None:
    """The CloudEvent (structured JSON) for an audit row, or None if the row is not a state change.
    `approvers` (looked up for the row, see `approval_to_look_up`) count when the row names none."""
    kind = cloud_event_type(fact.event)
    if kind is None:
        return None
    details = dict(fact.details)
    requester_id = details.pop(_REQUESTER_ID, None)
    requester_name = details.pop(_REQUESTER_NAME, None)
    named = details.pop(_APPROVERS, None)
    people = named if named is not None else approvers
    approvers_out = [dict(person) for person in people or []]
    is_grant = fact.event.startswith("grant.")
    request_id = str(details.pop("request", None) or ("" if is_grant else fact.subject)) or None
    grant_id = fact.subject if is_grant else None
    subject = f"/requests/{request_id}" if request_id else f"/{fact.subject}"
    if grant_id is not None:
        subject += f"/grants/{grant_id}"
    return {
        "specversion": SPEC_VERSION,
        "id": fact.id,
        "source": EVENT_SOURCE,
        "type": kind,
        "subject": subject,
        "time": fact.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": DATA_CONTENT_TYPE,
        "data": {
            "event": fact.event,
            "requestId": request_id,
            "grantId": grant_id,
            "requester": {"objectId": requester_id, "displayName": requester_name} if requester_id else None,
            "approvers": approvers_out,
            "actor": fact.actor,
            "details": details,
        },
    }
