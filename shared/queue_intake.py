"""The `jit-requests` queue: a ticketing system's access request, the same initiate body as the HTTP
route plus the requester's identity and a ticket id.

    {"ticketId": "CHG-1042", "requester": {"objectId": "...", "displayName": "...", "groupIds": []},
     "policyId": "/subscriptions/.../jitNetworkAccessPolicies/default",   (optional)
     "virtualMachines": [{"id": "...", "ports": [{"number": 22, "endTimeUtc": "...",
                          "allowedSourceAddressPrefix": "203.0.113.7"}]}],
     "justification": "..."}

Messages are base64 text on the wire (what the Functions queue trigger decodes by default).

Trust boundary: whoever may send to this queue (Storage Queue Data Message Sender on it, granted in
infra/ to the `requestSenders` only) vouches for the requester: the requester's object id is the
sender's word, not a sign-in. The requester's own Azure RBAC on every VM is still checked, so a
sender can obtain only what the named person may request. Group memberships are a claim too: a
message carrying `groupIds` is refused unless PORTCULLIS_QUEUE_TRUSTS_GROUP_CLAIMS says the sender
is trusted to assert them. With no caller address, each port must name its source prefix.

Approvals: a request on a VM that needs approval is Pending like any other. A message may carry
`"priorApproval": {"sender": "<name>", "approvedBy": {"objectId": ..., "displayName": ...},
"reference": "CAB-7"}` only when `sender` is in PORTCULLIS_TRUSTED_APPROVAL_SENDERS; the request is then
approved at once, the relay recorded (`relayedBy`). The queue cannot authenticate one sender apart
from another: the name is the sender's word, so trust it only where the queue's senders are.

A resend or redelivery with the same ticket id gives one request. A malformed or refused message is
audited with the reason and moved to `<queue>-poison` at once (retrying cannot help it); only a
transient failure (RBAC or storage unreachable) raises, so the host retries it up to maxDequeueCount
and then poisons it: never a crash loop.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from shared.actions.initiate import InitiateAccess, InitiateCommand
from shared.actions.refusal import Refusal
from shared.defender import check_json_depth, field_path
from shared.events import EventId
from shared.identity import AuthenticationError, check_principal, is_guid
from shared.model import DomainError, PolicyRef, Principal, PrincipalSource
from shared.observability import log_event
from shared.policy_store import policy_ref
from shared.services import Services
from shared.storage import queue, send

QUEUE_ACTOR = "queue"


_POLICY_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Security"
    r"/locations/(?P<location>[^/]+)/jitNetworkAccessPolicies/(?P<name>[^/]+)$",
    re.IGNORECASE,
)


class QueuedRequester(BaseModel):
    model_config = ConfigDict(extra="forbid")
    objectId: StrictStr = Field(min_length=1, max_length=128)  # noqa: N815 - wire names
    displayName: StrictStr | None = Field(default=None, max_length=256)  # noqa: N815
    tenantId: StrictStr | None = Field(default=None, max_length=128)  # noqa: N815
    groupIds: list[StrictStr] = Field(default_factory=list, max_length=200)  # noqa: N815


class QueuedApprover(BaseModel):
    model_config = ConfigDict(extra="forbid")
    objectId: StrictStr = Field(min_length=1, max_length=128)  # noqa: N815
    displayName: StrictStr | None = Field(default=None, max_length=256)  # noqa: N815


class PriorApproval(BaseModel):
    """An approval the sender's own system already recorded (a change ticket's approver): honoured only
    when `sender` is one of PORTCULLIS_TRUSTED_APPROVAL_SENDERS; otherwise the message is refused."""

    model_config = ConfigDict(extra="forbid")
    sender: StrictStr = Field(min_length=1, max_length=64)
    approvedBy: QueuedApprover  # noqa: N815
    reference: StrictStr | None = Field(default=None, max_length=256)


class QueuedEnvelope(BaseModel):
    model_config = ConfigDict(extra="allow")
    ticketId: StrictStr = Field(min_length=1, max_length=128, pattern=r"^[\x20-\x7e]+$")  # noqa: N815
    requester: QueuedRequester
    policyId: StrictStr | None = None  # noqa: N815
    priorApproval: PriorApproval | None = None  # noqa: N815


@dataclass(frozen=True)
class QueueOutcome:
    accepted: bool
    request_id: str | None = None
    reason: str | None = None


def poison_queue_name(queue_name: str) -> str:
    return f"{queue_name}-poison"


def handle_queued_request(text: str | bytes, services: Services) -> QueueOutcome:
    """Process one decoded queue message; permanent refusals are audited and poisoned, not raised."""
    raw = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
    limit = services.settings.max_body_bytes
    if len(raw.encode()) > limit:
        return _poison(services, raw, None, "body", f"the message is larger than {limit} bytes")
    try:
        document = json.loads(raw)
    except ValueError as error:
        return _poison(services, raw, None, "body", f"not valid JSON: {error}")
    except RecursionError:
        return _poison(services, raw, None, "body", "the JSON is nested too deeply")
    try:
        check_json_depth(document)
    except DomainError as error:
        return _poison(services, raw, None, error.field, error.reason)
    if not isinstance(document, dict):
        return _poison(services, raw, None, "body", "must be a JSON object")
    try:
        envelope = QueuedEnvelope.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        reason = "is required" if first["type"] == "missing" else first["msg"]
        return _poison(services, raw, document.get("ticketId"), field_path(first["loc"]), reason)
    policy = None
    if envelope.policyId is not None:
        try:
            policy = _policy_ref_from_id(envelope.policyId)
        except DomainError as error:
            return _poison(services, raw, envelope.ticketId, error.field, error.reason)
    groups = envelope.requester.groupIds
    if groups and not services.settings.queue_trusts_group_claims:
        return _poison(
            services,
            raw,
            envelope.ticketId,
            "requester.groupIds",
            "the queue's senders are not trusted to assert group memberships "
            "(PORTCULLIS_QUEUE_TRUSTS_GROUP_CLAIMS is false): send the requester without groupIds",
        )
    if not all(is_guid(g) for g in groups):
        return _poison(services, raw, envelope.ticketId, "requester.groupIds", "each group id must be a GUID")
    try:
        requester: Principal = check_principal(
            envelope.requester.objectId,
            envelope.requester.displayName,
            groups,
            PrincipalSource.QUEUE,
            tenant_id=envelope.requester.tenantId,
        )
    except AuthenticationError as error:
        return _poison(services, raw, envelope.ticketId, "requester", str(error))
    prior = None
    if envelope.priorApproval is not None:
        given = envelope.priorApproval
        if given.sender not in services.settings.trusted_approval_senders:
            return _poison(
                services,
                raw,
                envelope.ticketId,
                "priorApproval.sender",
                f"{given.sender!r} is not trusted to relay approvals (PORTCULLIS_TRUSTED_APPROVAL_SENDERS): "
                "send the request without priorApproval and it waits for an approver",
            )
        try:
            approver = check_principal(
                given.approvedBy.objectId, given.approvedBy.displayName, (), PrincipalSource.QUEUE
            )
        except AuthenticationError as error:
            return _poison(services, raw, envelope.ticketId, "priorApproval.approvedBy", str(error))
        if approver.object_id.lower() == requester.object_id.lower():
            return _poison(
                services, raw, envelope.ticketId, "priorApproval.approvedBy", "the requester cannot approve"
            )
        prior = (approver, given.sender, given.reference)
    known = ("ticketId", "requester", "policyId", "priorApproval")
    body = {key: value for key, value in document.items() if key not in known}
    command = InitiateCommand(
        body=body,
        requester=requester,
        channel="queue",
        policy=policy,
        ticket_id=envelope.ticketId,
        prior_approval=prior,
    )
    try:
        result = InitiateAccess(services)(command)
    except Refusal as refusal:
        # InitiateAccess has audited the refusal; keep the message for whoever sent it.
        _send_poison(services, raw)
        log_event(EventId.QUEUE_REQUEST_REFUSED, logging.WARNING, ticket=envelope.ticketId, code=refusal.code)
        return QueueOutcome(False, reason=refusal.message)
    return QueueOutcome(True, request_id=result.request.record.request_id)


def _policy_ref_from_id(policy_id: str) -> PolicyRef:
    """`/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Security/locations/{loc}/
    jitNetworkAccessPolicies/{name}`, each name checked as the HTTP route checks it."""
    match = _POLICY_ID.match(policy_id)
    if not match:
        raise DomainError(
            "policyId",
            f"{policy_id[:300]!r} is not a JIT network access policy id (/subscriptions/{{sub}}/"
            "resourceGroups/{rg}/providers/Microsoft.Security/locations/{location}/"
            "jitNetworkAccessPolicies/{name})",
        )
    try:
        return policy_ref(match["sub"], match["rg"], match["location"], match["name"])
    except DomainError as error:
        raise DomainError("policyId", f"{error.field}: {error.reason}") from None


def _poison(services: Services, raw: str, ticket: Any, field: str, reason: str) -> QueueOutcome:
    services.audit.record(
        EventId.REQUEST_REFUSED,
        subject=str(ticket) if isinstance(ticket, str) and ticket else "queue-message",
        actor=QUEUE_ACTOR,
        channel="queue",
        status=400,
        code="InvalidQueueMessage",
        field=field,
        reason=reason,
    )
    _send_poison(services, raw)
    log_event(EventId.QUEUE_MESSAGE_POISONED, logging.WARNING, field=field, reason=reason)
    return QueueOutcome(False, reason=f"{field}: {reason}")


def _send_poison(services: Services, raw: str) -> None:
    send(queue(poison_queue_name(services.settings.requests_queue), services.settings), raw)
