"""What the HTTP API answers, as pydantic models: each answer is built once as a model, serialised by
`Answer.wire()` and described in /api/openapi.json by the same model's JSON schema, so a field is
spelled in one place.

`null` versus absent is part of the contract (Defender leaves `mappedPort` and `justification` out
when there is none; our records send `null`): a field with a default is left out unless the builder
sets it (`exclude_unset`); a field without one is always sent, as `null` when its type allows.
Field names are the wire's (Defender's camelCase), hence the `noqa: N815`. The policy answer lives
in shared/defender.py, beside the models that validate a policy.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from shared.approval import ApprovalStatus, Verdict
from shared.model import StatusReason, TargetState, TransportProtocol, WirePortStatus


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def wire(self) -> dict[str, Any]:
        """The JSON body: unset optional fields left out, enums as their values."""
        return self.model_dump(mode="json", exclude_unset=True)


# ---- ARM's error body, answered by every route ----


class ErrorDetail(Answer):
    code: str
    message: str
    target: str


class ErrorInfo(Answer):
    code: str
    message: str
    target: str | None = None  # the field at fault, when one is
    details: list[ErrorDetail] | None = None  # only when several fields are at fault


class Error(Answer):
    """`{"error": {"code", "message", "target"?, "details"?}}`, as ARM answers."""

    error: ErrorInfo


# ---- Defender's JitNetworkAccessRequest, and what our records add to it ----


class ConnectionDetails(Answer):
    """How to connect, once enforcement knows the address."""

    address: str  # the VM's public IP, or the public IP of the firewall in front of it
    port: int  # the port to connect to (behind a firewall: the mapped port)
    ssh: str  # e.g. "ssh -p 50022 <user>@203.0.113.10"
    rdp: str  # e.g. "mstsc /v:203.0.113.10:50022"


class RequestPort(Answer):
    number: int
    allowedSourceAddressPrefix: str | None = None  # noqa: N815 - one source (Defender's)
    allowedSourceAddressPrefixes: list[str] | None = None  # noqa: N815 - several
    endTimeUtc: str  # noqa: N815
    status: WirePortStatus
    statusReason: StatusReason  # noqa: N815
    mappedPort: int | None = None  # noqa: N815 - behind a firewall only
    # Ours, in GET/DELETE /api/requests/{id} (not in Defender's initiate answer or policy history):
    grantId: str | None = None  # noqa: N815
    protocol: TransportProtocol | None = None
    connectAddress: str | None = None  # noqa: N815
    connectPort: int | None = None  # noqa: N815
    connection: ConnectionDetails | None = None
    targets: dict[str, TargetState] | None = None  # per NSG / firewall, how far this port's rule has got


class RequestVm(Answer):
    id: str
    ports: list[RequestPort]


class ApprovalDecision(Answer):
    """One approver's word: approved, denied, or (break-glass) reviewed."""

    objectId: str  # noqa: N815
    displayName: str  # noqa: N815
    verdict: Verdict
    timeUtc: str  # noqa: N815
    comment: str | None
    relayedBy: str | None = None  # noqa: N815 - the trusted queue sender that relayed a prior approval


class ExtensionInfo(Answer):
    """A requester's ask to move the end time, on a VM that needs approval."""

    endTimeUtc: str  # noqa: N815
    requestedAtUtc: str  # noqa: N815
    status: ApprovalStatus
    pendingUntilUtc: str  # noqa: N815 - when an undecided extension lapses
    decisions: list[ApprovalDecision]


class ApprovalInfo(Answer):
    """Ours: who must approve, who did, and until when a pending request waits."""

    status: ApprovalStatus
    approvers: list[str]  # object ids of the users or groups who may approve
    required: int  # distinct approvals that open the request
    pendingUntilUtc: str | None  # noqa: N815 - when a pending request lapses (null once decided)
    decisions: list[ApprovalDecision]
    breakGlass: bool  # noqa: N815 - opened at once without approval
    reviewRequired: bool  # noqa: N815 - break-glass and no approver has marked it reviewed yet
    review: ApprovalDecision | None
    extension: ExtensionInfo | None


class JitNetworkAccessRequest(Answer):
    requestId: str | None = None  # noqa: N815 - ours: in the initiate answer and our records
    policyId: str | None = None  # noqa: N815
    virtualMachines: list[RequestVm]  # noqa: N815
    startTimeUtc: str  # noqa: N815
    requestor: str
    requestorObjectId: str | None = None  # noqa: N815
    justification: str | None = None
    ticketId: str | None = None  # noqa: N815
    approval: ApprovalInfo | None = None  # ours: only for a request on a VM that needs approval


class RequestList(Answer):
    """`GET /api/requests`: the caller's own requests (`requester=me`, newest first, paged), what waits
    for their decision (`status=Pending&approver=me`) or their review (`status=ReviewRequired`)."""

    value: list[JitNetworkAccessRequest]
    # Only on `requester=me` when more follow: the next page's path (relative, like `Location`).
    nextLink: str | None = None  # noqa: N815


# ---- our records ----


class GrantRequestor(Answer):
    objectId: str  # noqa: N815
    name: str


class GrantAnswer(Answer):
    """One port on one VM for one request (documented as `Grant`)."""

    grantId: str  # noqa: N815
    requestId: str  # noqa: N815
    policyId: str  # noqa: N815
    vmId: str  # noqa: N815
    port: int
    protocol: TransportProtocol
    sourceAddressPrefixes: list[str]  # noqa: N815
    startTimeUtc: str  # noqa: N815
    endTimeUtc: str  # noqa: N815
    requestor: GrantRequestor
    justification: str | None
    ticketId: str | None  # noqa: N815
    status: WirePortStatus
    statusReason: StatusReason  # noqa: N815
    active: bool
    targets: dict[str, TargetState]
    mappedPort: int | None  # noqa: N815
    connectAddress: str | None  # noqa: N815
    connectPort: int  # noqa: N815


class GrantList(Answer):
    """`GET /api/grants`: the grants asked for; with `?active=true` alone, one page of the grants open
    now on every VM the caller may see, and `nextLink` while more follow (a page may be short)."""

    value: list[GrantAnswer]
    nextLink: str | None = None  # noqa: N815


class ComplianceFinding(Answer):
    kind: str
    targetKind: str  # noqa: N815
    targetId: str  # noqa: N815
    ruleName: str  # noqa: N815
    virtualMachineId: str  # noqa: N815 - "" for a finding about the target as a whole
    port: int
    detail: str
    firstSeen: str  # noqa: N815
    lastSeen: str  # noqa: N815


class ComplianceList(Answer):
    value: list[ComplianceFinding]
    count: int


class SkippedPolicy(Answer):
    id: str
    reason: str


class ImportReport(Answer):
    """What an import of Defender's policies did; policies the caller may not read are not named."""

    adopted: list[str]
    unchanged: list[str]
    skipped: list[SkippedPolicy]


class Me(Answer):
    """Who the app takes the caller to be, and from which address: what `--source my-ip` uses."""

    objectId: str  # noqa: N815 - the Entra ID object id that role assignments are matched against
    displayName: str  # noqa: N815 - the UPN (preferred_username) when the token has one, else the name
    tenantId: str | None  # noqa: N815
    groupIds: list[str]  # noqa: N815 - the group ids the token or principal carried (sorted)
    # The caller's address as the platform reports it (last X-Forwarded-For entry, minus
    # PORTCULLIS_TRUSTED_PROXY_HOPS); null only when it reports fewer entries than that.
    sourceAddress: str | None  # noqa: N815
    authentication: Literal["easyauth", "jwt"]


class Health(Answer):
    status: str
