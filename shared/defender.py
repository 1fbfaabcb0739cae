"""Defender for Cloud's JIT wire format (api-version 2020-01-01): pydantic models and translation to
and from the domain values in shared.model / shared.policy.

Bodies are checked as Azure checks them (port 0-65535, protocol TCP|UDP|*, exactly one of
allowedSourceAddressPrefix / allowedSourceAddressPrefixes, maxRequestAccessDuration PT5M-P1D, VM ids
of the policy's subscription and resource group). Unknown fields are ignored, as ARM ignores them.
Our extension rides in an extra field Defender clients ignore: per VM,
`"portcullis": {"firewallId": "<Microsoft.Network/azureFirewalls id>", "approval": {...}}`; on the
initiate body, `startTimeUtc` (scheduled access) and `breakGlass`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
)

from shared.answers import Answer, JitNetworkAccessRequest, RequestPort, RequestVm
from shared.approval import MAX_APPROVERS, MAX_PENDING_TIMEOUT, MIN_PENDING_TIMEOUT
from shared.identity import is_guid
from shared.model import (
    FIREWALL_NAME_PATTERN,
    RESOURCE_GROUP_PATTERN,
    SUBSCRIPTION_PATTERN,
    ApprovalPolicy,
    DomainError,
    FirewallRef,
    Grant,
    JitPolicy,
    PolicyPort,
    PolicyRef,
    PortStatus,
    ResourceId,
    StatusReason,
    TransportProtocol,
    VmPolicy,
    VmRef,
    WirePortStatus,
    same_arm_name,
)
from shared.policy import (
    AccessRequest,
    RequestedPort,
    RequestedVm,
    check_max_duration,
    normalize_policy_prefix,
    parse_duration,
)

ModelT = TypeVar("ModelT", bound=BaseModel)

API_VERSION = "2020-01-01"
POLICY_TYPE = "Microsoft.Security/locations/jitNetworkAccessPolicies"

_FIREWALL_ID = re.compile(
    rf"(?i:/subscriptions/){SUBSCRIPTION_PATTERN}(?i:/resourceGroups/){RESOURCE_GROUP_PATTERN}"
    rf"(?i:/providers/Microsoft\.Network/azureFirewalls/){FIREWALL_NAME_PATTERN}"
)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


# ---- policies ----


class PortRuleWire(_Wire):
    number: StrictInt = Field(ge=0, le=65535)
    protocol: StrictStr
    allowedSourceAddressPrefix: StrictStr | None = None  # noqa: N815 - Defender's field names
    allowedSourceAddressPrefixes: list[StrictStr] | None = None  # noqa: N815
    maxRequestAccessDuration: StrictStr  # noqa: N815


class ApprovalWire(_Wire):
    """Our extension `portcullis.approval`: requests for this VM wait for approval (shared/approval.py)."""

    approvers: list[StrictStr] = Field(
        description="Entra ID object ids (GUIDs) of users or groups who may approve; never the requester"
    )
    required: StrictInt = Field(default=1, description="distinct approvals that open the request")
    pendingTimeout: StrictStr = Field(  # noqa: N815
        default="PT1H", description="ISO 8601 duration (PT1M-P7D) after which an undecided request lapses"
    )
    breakGlass: StrictBool = Field(  # noqa: N815
        default=False,
        description="allow the emergency path: open at once with a stated reason, tell every approver, "
        "flag for review",
    )


class PortcullisVmExtension(_Wire):
    firewallId: StrictStr | None = None  # noqa: N815
    approval: ApprovalWire | None = None


class PolicyVmWire(_Wire):
    id: StrictStr
    ports: list[PortRuleWire]
    publicIpAddress: StrictStr | None = None  # noqa: N815
    portcullis: PortcullisVmExtension | None = None


class PolicyPropertiesWire(_Wire):
    virtualMachines: list[PolicyVmWire]  # noqa: N815


class PolicyWire(_Wire):
    kind: StrictStr | None = None
    location: StrictStr | None = None
    properties: PolicyPropertiesWire


def _inlined(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its `$defs` written in place, to describe a value that is not
    validated by it (a stored body answered as stored)."""
    schema = model.model_json_schema(mode="serialization")
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return dict(resolve(schema))


# A policy's VMs are answered as stored (the canonical body a PUT validated, `canonical_policy_body`),
# not validated again on every read; the schema is the one that validated them.
StoredVms = Annotated[
    list[dict[str, Any]], WithJsonSchema({"type": "array", "items": _inlined(PolicyVmWire)})
]


class PolicyProperties(Answer):
    virtualMachines: StoredVms  # noqa: N815
    requests: list[JitNetworkAccessRequest]
    provisioningState: str  # noqa: N815


class JitNetworkAccessPolicy(Answer):
    """Defender's policy resource, as GET, PUT and the lists answer it."""

    id: str
    name: str
    type: str
    location: str
    kind: str
    properties: PolicyProperties


class PolicyList(Answer):
    value: list[JitNetworkAccessPolicy]


# ---- initiate ----


class InitiatePortWire(_Wire):
    number: StrictInt = Field(ge=0, le=65535)
    endTimeUtc: datetime  # noqa: N815
    allowedSourceAddressPrefix: StrictStr | None = None  # noqa: N815
    # Our extensions: several sources at once, and an explicit protocol to check against the policy.
    allowedSourceAddressPrefixes: list[StrictStr] | None = None  # noqa: N815
    protocol: StrictStr | None = None


class InitiateVmWire(_Wire):
    id: StrictStr
    ports: list[InitiatePortWire]


class InitiateWire(_Wire):
    virtualMachines: list[InitiateVmWire]  # noqa: N815
    justification: StrictStr | None = Field(default=None, max_length=1024)
    # Our extensions (Defender clients never send them): scheduled access and break-glass.
    startTimeUtc: datetime | None = Field(  # noqa: N815
        default=None,
        description="ours: scheduled access; nothing opens before this time (at most 30 days ahead); each "
        "port's endTimeUtc is then counted from it",
    )
    breakGlass: StrictBool = Field(  # noqa: N815
        default=False,
        description="ours: on a VM whose policy allows it, open at once without approval; needs a "
        "justification; every approver is told and the request is flagged for review",
    )


# Defender's bodies nest at most about 7 levels (policy -> virtualMachines -> ports -> prefixes). A body
# nested far deeper is hostile: json.loads accepts ~1000 levels, but json.dumps, pydantic and the
# audit would then recurse to a crash. Refused up front, on every channel.
MAX_JSON_DEPTH = 32


def check_json_depth(value: Any, limit: int = MAX_JSON_DEPTH, field: str = "body") -> None:
    """Raise DomainError naming `field` when `value` nests deeper than `limit` (iterative: the check
    itself cannot overflow the stack)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, Mapping):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            reason = f"the JSON is nested more than {limit} levels deep"
            raise DomainError(field, reason, "InvalidRequestContent")
        stack.extend((child, depth + 1) for child in children)


def field_path(location: Sequence[int | str]) -> str:
    """pydantic's error location as the dotted path a client reads: `properties.virtualMachines[0].id`."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def _validation_error(error: ValidationError, prefix: str = "") -> DomainError:
    first = error.errors()[0]
    path = field_path(first["loc"])
    if prefix:
        path = f"{prefix}.{path}" if path != "body" else prefix
    message = first["msg"]
    if first["type"] == "missing":
        message = "is required"
    return DomainError(path, message)


def parse_model(model: type[ModelT], body: Any, prefix: str = "") -> ModelT:
    """Validate `body` against a wire model; raises DomainError naming the first bad field."""
    if not isinstance(body, Mapping):
        raise DomainError(prefix or "body", "must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise _validation_error(error, prefix) from None


def _protocol(text: str, path: str) -> TransportProtocol:
    try:
        return TransportProtocol(text.strip().upper())
    except ValueError:
        raise DomainError(path, f"{text!r} is not a protocol: use TCP, UDP or *") from None


def policy_from_wire(wire: PolicyWire, ref: PolicyRef) -> JitPolicy:
    """The domain policy for a validated wire body; raises DomainError naming the field at fault."""
    vms: list[VmPolicy] = []
    seen: set[VmRef] = set()
    for vm_index, vm_wire in enumerate(wire.properties.virtualMachines):
        path = f"properties.virtualMachines[{vm_index}]"
        vm = VmRef.parse(vm_wire.id, f"{path}.id")
        if not (
            same_arm_name(vm.subscription_id, ref.subscription_id)
            and same_arm_name(vm.resource_group, ref.resource_group)
        ):
            raise DomainError(
                f"{path}.id",
                f"virtual machine {vm.id} is not in the policy's subscription and resource group "
                f"({ref.subscription_id}/{ref.resource_group})",
            )
        if vm in seen:
            raise DomainError(f"{path}.id", f"virtual machine {vm.id} is listed twice")
        seen.add(vm)
        ports: list[PolicyPort] = []
        seen_numbers: set[int] = set()
        for port_index, port_wire in enumerate(vm_wire.ports):
            port_path = f"{path}.ports[{port_index}]"
            if port_wire.number in seen_numbers:
                raise DomainError(f"{port_path}.number", f"port {port_wire.number} is listed twice")
            seen_numbers.add(port_wire.number)
            ports.append(_policy_port(port_wire, port_path))
        if vm_wire.publicIpAddress is not None:
            try:
                ipaddress.ip_address(vm_wire.publicIpAddress.strip())
            except ValueError:
                raise DomainError(
                    f"{path}.publicIpAddress", f"{vm_wire.publicIpAddress!r} is not an IP address"
                ) from None
        firewall = None
        if vm_wire.portcullis is not None and vm_wire.portcullis.firewallId is not None:
            firewall_id = vm_wire.portcullis.firewallId.strip()
            if not _FIREWALL_ID.fullmatch(firewall_id):
                raise DomainError(
                    f"{path}.portcullis.firewallId",
                    f"{firewall_id!r} is not an Azure Firewall id "
                    "(/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/azureFirewalls/{name})",
                )
            firewall = FirewallRef(ResourceId(firewall_id))
        approval = None
        if vm_wire.portcullis is not None and vm_wire.portcullis.approval is not None:
            approval = _approval_policy(vm_wire.portcullis.approval, f"{path}.portcullis.approval")
        vms.append(
            VmPolicy(
                vm=vm,
                ports=tuple(ports),
                public_ip_address=vm_wire.publicIpAddress.strip() if vm_wire.publicIpAddress else None,
                firewall=firewall,
                approval=approval,
            )
        )
    return JitPolicy(ref=ref, virtual_machines=tuple(vms), kind=wire.kind or "Basic")


def _approval_policy(wire: ApprovalWire, path: str) -> ApprovalPolicy:
    if not wire.approvers:
        raise DomainError(f"{path}.approvers", "list at least one approver (a user or group object id)")
    if len(wire.approvers) > MAX_APPROVERS:
        raise DomainError(f"{path}.approvers", f"at most {MAX_APPROVERS} approvers (use a group)")
    approvers: list[str] = []
    for index, text in enumerate(wire.approvers):
        value = text.strip().lower()
        if not is_guid(value):
            raise DomainError(f"{path}.approvers[{index}]", f"{text[:100]!r} is not an object id (a GUID)")
        if value in approvers:
            raise DomainError(f"{path}.approvers[{index}]", f"{value} is listed twice")
        approvers.append(value)
    if not 1 <= wire.required <= len(approvers):
        raise DomainError(
            f"{path}.required",
            f"{wire.required} approvals required, but it must be between 1 and the number of approvers "
            f"({len(approvers)})",
        )
    timeout_path = f"{path}.pendingTimeout"
    timeout = parse_duration(wire.pendingTimeout, timeout_path)
    if not MIN_PENDING_TIMEOUT <= timeout <= MAX_PENDING_TIMEOUT:
        raise DomainError(timeout_path, f"{wire.pendingTimeout!r} is outside the allowed range PT1M-P7D")
    return ApprovalPolicy(tuple(approvers), wire.required, timeout, wire.breakGlass)


def _policy_port(port: PortRuleWire, path: str) -> PolicyPort:
    if port.allowedSourceAddressPrefix is not None and port.allowedSourceAddressPrefixes is not None:
        raise DomainError(
            f"{path}.allowedSourceAddressPrefixes",
            "allowedSourceAddressPrefix and allowedSourceAddressPrefixes are mutually exclusive",
        )
    prefixes: tuple[str, ...]
    if port.allowedSourceAddressPrefix is not None:
        prefixes = (
            normalize_policy_prefix(port.allowedSourceAddressPrefix, f"{path}.allowedSourceAddressPrefix"),
        )
    elif port.allowedSourceAddressPrefixes:
        prefixes = tuple(
            normalize_policy_prefix(text, f"{path}.allowedSourceAddressPrefixes[{index}]")
            for index, text in enumerate(port.allowedSourceAddressPrefixes)
        )
    else:
        raise DomainError(
            f"{path}.allowedSourceAddressPrefix",
            "one of allowedSourceAddressPrefix or allowedSourceAddressPrefixes is required",
        )
    duration_path = f"{path}.maxRequestAccessDuration"
    duration = check_max_duration(parse_duration(port.maxRequestAccessDuration, duration_path), duration_path)
    return PolicyPort(
        number=port.number,
        protocol=_protocol(port.protocol, f"{path}.protocol"),
        allowed_source_prefixes=prefixes,
        max_request_access_duration=duration,
    )


def canonical_policy_body(wire: PolicyWire) -> dict[str, Any]:
    """What we store and answer for a policy's `properties.virtualMachines`: the body as given,
    minus unknown fields, with protocols upper-cased and durations as written."""
    vms: list[dict[str, Any]] = []
    for vm in wire.properties.virtualMachines:
        entry: dict[str, Any] = {"id": vm.id, "ports": []}
        for port in vm.ports:
            port_body: dict[str, Any] = {"number": port.number, "protocol": port.protocol.strip().upper()}
            if port.allowedSourceAddressPrefix is not None:
                port_body["allowedSourceAddressPrefix"] = port.allowedSourceAddressPrefix
            if port.allowedSourceAddressPrefixes is not None:
                port_body["allowedSourceAddressPrefixes"] = list(port.allowedSourceAddressPrefixes)
            port_body["maxRequestAccessDuration"] = port.maxRequestAccessDuration
            entry["ports"].append(port_body)
        if vm.publicIpAddress is not None:
            entry["publicIpAddress"] = vm.publicIpAddress
        if vm.portcullis is not None:
            extension: dict[str, Any] = {}
            if vm.portcullis.firewallId is not None:
                extension["firewallId"] = vm.portcullis.firewallId
            if vm.portcullis.approval is not None:
                extension["approval"] = vm.portcullis.approval.model_dump()
            if extension:
                entry["portcullis"] = extension
        vms.append(entry)
    return {"kind": wire.kind or "Basic", "virtualMachines": vms}


def parse_policy_body(body: Any, ref: PolicyRef) -> tuple[JitPolicy, dict[str, Any]]:
    """A PUT body: the domain policy and the canonical body to store. Raises DomainError."""
    wire = parse_model(PolicyWire, body)
    return policy_from_wire(wire, ref), canonical_policy_body(wire)


def policy_to_wire(
    ref: PolicyRef, stored: Mapping[str, Any], requests: Iterable[JitNetworkAccessRequest]
) -> JitNetworkAccessPolicy:
    return JitNetworkAccessPolicy(
        id=ref.id,
        name=ref.name,
        type=POLICY_TYPE,
        location=ref.location,
        kind=stored.get("kind", "Basic"),
        properties=PolicyProperties(
            virtualMachines=stored["virtualMachines"],
            requests=list(requests),
            provisioningState="Succeeded",
        ),
    )


# ---- initiate bodies and request answers ----


def access_request_from_wire(wire: InitiateWire, caller_address: str | None) -> AccessRequest:
    vms: list[RequestedVm] = []
    for vm_index, vm_wire in enumerate(wire.virtualMachines):
        path = f"virtualMachines[{vm_index}]"
        vm = VmRef.parse(vm_wire.id, f"{path}.id")
        ports: list[RequestedPort] = []
        for port_index, port in enumerate(vm_wire.ports):
            port_path = f"{path}.ports[{port_index}]"
            if port.allowedSourceAddressPrefix is not None and port.allowedSourceAddressPrefixes is not None:
                raise DomainError(
                    f"{port_path}.allowedSourceAddressPrefixes",
                    "allowedSourceAddressPrefix and allowedSourceAddressPrefixes are mutually exclusive",
                )
            sources: tuple[str, ...] | None = None
            if port.allowedSourceAddressPrefix is not None:
                sources = (port.allowedSourceAddressPrefix,)
            elif port.allowedSourceAddressPrefixes is not None:
                sources = tuple(port.allowedSourceAddressPrefixes)
            ports.append(
                RequestedPort(
                    number=port.number,
                    end_time=port.endTimeUtc,
                    source_prefixes=sources,
                    protocol=_protocol(port.protocol, f"{port_path}.protocol") if port.protocol else None,
                )
            )
        vms.append(RequestedVm(vm, tuple(ports)))
    start = wire.startTimeUtc
    if start is not None and start.tzinfo is None:
        raise DomainError("startTimeUtc", "must carry a time zone (UTC, e.g. '2030-01-01T10:00:00Z')")
    return AccessRequest(tuple(vms), wire.justification, caller_address, start_time=start)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def status_reason(grant: Grant) -> StatusReason:
    """Defender reports `UserRequested` for a port still open, and the closing reason after; a port
    waiting for approval reads `Approval required`."""
    if grant.status is PortStatus.PENDING:
        return StatusReason.APPROVAL_REQUIRED
    if grant.status is PortStatus.REVOKED and grant.status_reason is not None:
        return grant.status_reason
    return StatusReason.USER_REQUESTED


def wire_status(grant: Grant) -> WirePortStatus:
    """The port's status as answered: a denial reads `Denied`, a lapsed approval `Expired`."""
    if grant.status is PortStatus.REVOKED and grant.status_reason is StatusReason.DENIED:
        return WirePortStatus.DENIED
    if grant.status is PortStatus.REVOKED and grant.status_reason is StatusReason.APPROVAL_TIMED_OUT:
        return WirePortStatus.EXPIRED
    return WirePortStatus(grant.status.value)


def request_port_to_wire(grant: Grant, **ours: Any) -> RequestPort:
    """Defender's port of a request; `ours` adds our fields (RequestPort's second half)."""
    port = RequestPort(
        number=grant.port,
        endTimeUtc=format_time(grant.end_time),
        status=wire_status(grant),
        statusReason=status_reason(grant),
        **ours,
    )
    # Defender names one source in the singular, several in the plural; no mappedPort without a firewall.
    if len(grant.source_prefixes) == 1:
        port.allowedSourceAddressPrefix = grant.source_prefixes[0]
    else:
        port.allowedSourceAddressPrefixes = list(grant.source_prefixes)
    if grant.mapped_port is not None:
        port.mappedPort = grant.mapped_port
    return port


def request_vms(grants: Sequence[Grant], port: Callable[[Grant], RequestPort]) -> list[RequestVm]:
    """The grants of one request by VM, VMs and ports in request order."""
    by_vm: dict[str, RequestVm] = {}
    for grant in grants:
        by_vm.setdefault(grant.vm.key, RequestVm(id=grant.vm.id, ports=[])).ports.append(port(grant))
    return list(by_vm.values())


def request_to_wire(
    grants: Sequence[Grant], *, start_time: datetime, requestor: str, justification: str | None
) -> JitNetworkAccessRequest:
    """Defender's JitNetworkAccessRequest for the grants of one request (no justification: absent)."""
    body = JitNetworkAccessRequest(
        virtualMachines=request_vms(grants, request_port_to_wire),
        startTimeUtc=format_time(start_time),
        requestor=requestor,
    )
    if justification is not None:
        body.justification = justification
    return body
