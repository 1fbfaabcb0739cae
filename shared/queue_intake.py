"""The `jit-requests` queue: a ticketing system's access request, the same initiate body as the HTTP
route plus the requester's identity and a ticket id.

    {"ticketId": "CHG-1042", "requester": {"objectId": "...", "displayName": "...", "groupIds": []},
     "policyId": "/subscriptions/.../jitNetworkAccessPolicies/default",   (optional)
     "virtualMachines": [{"id": "...", "ports": [{"number": 22, "endTimeUtc": "...",
                          "allowedSourceAddressPrefix": "203.0.113.7"}]}],
     "justification": "..."}

Messages are base64 text on the wire (what the Functions queue trigger decodes by default). Whoever may
write to the queue vouches for the requester (storage RBAC guards it); the requester's own Azure RBAC
is still checked. With no caller address, each port must name its source prefix.

A resend or redelivery with the same ticket id gives one request. A malformed or refused message is
audited with the reason and moved to `<queue>-poison` at once (retrying cannot help it); only a
transient failure (RBAC or storage unreachable) raises, so the host retries it up to maxDequeueCount
and then poisons it: never a crash loop.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from shared.actions.initiate import InitiateAccess, InitiateCommand
from shared.actions.refusal import Refusal
from shared.defender import field_path
from shared.model import DomainError, Principal, PrincipalSource
from shared.observability import log_event
from shared.policy_store import policy_ref
from shared.services import Services
from shared.storage import queue, send

QUEUE_ACTOR = "queue"


class QueuedRequester(BaseModel):
    model_config = ConfigDict(extra="forbid")
    objectId: StrictStr = Field(min_length=1, max_length=128)  # noqa: N815 - wire names
    displayName: StrictStr | None = Field(default=None, max_length=256)  # noqa: N815
    tenantId: StrictStr | None = Field(default=None, max_length=128)  # noqa: N815
    groupIds: list[StrictStr] = Field(default_factory=list, max_length=200)  # noqa: N815


class QueuedEnvelope(BaseModel):
    model_config = ConfigDict(extra="allow")
    ticketId: StrictStr = Field(min_length=1, max_length=128, pattern=r"^[\x20-\x7e]+$")  # noqa: N815
    requester: QueuedRequester
    policyId: StrictStr | None = None  # noqa: N815


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
    requester = Principal(
        object_id=envelope.requester.objectId,
        display_name=envelope.requester.displayName or envelope.requester.objectId,
        source=PrincipalSource.QUEUE,
        tenant_id=envelope.requester.tenantId,
        group_ids=frozenset(envelope.requester.groupIds),
    )
    body = {key: value for key, value in document.items() if key not in ("ticketId", "requester", "policyId")}
    command = InitiateCommand(
        body=body, requester=requester, channel="queue", policy=policy, ticket_id=envelope.ticketId
    )
    try:
        result = InitiateAccess(services)(command)
    except Refusal as refusal:
        # InitiateAccess has audited the refusal; keep the message for whoever sent it.
        _send_poison(services, raw)
        log_event("queue.request_refused", logging.WARNING, ticket=envelope.ticketId, code=refusal.code)
        return QueueOutcome(False, reason=refusal.message)
    return QueueOutcome(True, request_id=result.request.record.request_id)


def _policy_ref_from_id(policy_id: str) -> Any:
    parts = [p for p in policy_id.split("/") if p]
    names = [p.lower() for p in parts[0::2]]
    expected = ["subscriptions", "resourcegroups", "providers", "locations", "jitnetworkaccesspolicies"]
    if len(parts) != 11 or names[:3] != expected[:3] or parts[5].lower() != "microsoft.security":
        raise DomainError("policyId", f"{policy_id!r} is not a JIT network access policy id")
    if [parts[6].lower(), parts[8].lower()] != expected[3:]:
        raise DomainError("policyId", f"{policy_id!r} is not a JIT network access policy id")
    return policy_ref(parts[1], parts[3], parts[7], parts[9])


def _poison(services: Services, raw: str, ticket: Any, field: str, reason: str) -> QueueOutcome:
    services.audit.record(
        "request.refused",
        subject=str(ticket) if isinstance(ticket, str) and ticket else "queue-message",
        actor=QUEUE_ACTOR,
        channel="queue",
        status=400,
        code="InvalidQueueMessage",
        field=field,
        reason=reason,
    )
    _send_poison(services, raw)
    log_event("queue.message_poisoned", logging.WARNING, field=field, reason=reason)
    return QueueOutcome(False, reason=f"{field}: {reason}")


def _send_poison(services: Services, raw: str) -> None:
    send(queue(poison_queue_name(services.settings.requests_queue), services.settings), raw)
