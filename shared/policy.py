"""Does a request fit a JIT policy? `evaluate(request, policy, now, limits)` answers with a Decision.

Pure: no Azure SDK, no storage, no clock of its own. The rules are Defender's, with its known
shortcoming fixed: a requested source may be any sub-range of an allowed prefix, not only the
prefix verbatim. Every refusal is a DomainError naming the field of the initiate body at fault.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.model import DomainError, JitPolicy, PolicyPort, TransportProtocol, VmPolicy, VmRef

# How far ahead a scheduled request (`startTimeUtc`) may start.
MAX_SCHEDULE_AHEAD = timedelta(days=30)
# Defender's bounds on a port's maxRequestAccessDuration.
MIN_ACCESS_DURATION = timedelta(minutes=5)
MAX_ACCESS_DURATION = timedelta(days=1)
# The caller computed its end time a moment before we read the clock: tolerate that much.
END_TIME_SLACK = timedelta(minutes=1)
# Spellings of "any source" that Azure accepts in rules; only a policy that allows `*` allows them.
ANY_SOURCE = "*"
_ANY_SOURCE_ALIASES = {"*", "any", "internet", "0.0.0.0/0", "::/0"}

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_DURATION = re.compile(
    r"^P(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


# ---- durations (ISO 8601, as Defender writes them: PT3H, P1D, PT90M) ----


def parse_duration(text: str, field_path: str) -> timedelta:
    normalized = text.strip().upper()
    match = _DURATION.match(normalized)
    if not match or normalized in ("P", "PT") or normalized.endswith("T"):
        raise DomainError(field_path, f"{text!r} is not an ISO 8601 duration such as 'PT3H'")
    parts = {name: float(value) for name, value in match.groupdict().items() if value is not None}
    return timedelta(
        days=parts.get("days", 0),
        hours=parts.get("hours", 0),
        minutes=parts.get("minutes", 0),
        seconds=parts.get("seconds", 0),
    )


def format_duration(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    time_part = "".join(
        f"{value}{unit}" for value, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if value
    )
    text = "P" + (f"{days}D" if days else "") + (f"T{time_part}" if time_part else "")
    return text if text != "P" else "PT0S"


def check_max_duration(duration: timedelta, field_path: str) -> timedelta:
    if not MIN_ACCESS_DURATION <= duration <= MAX_ACCESS_DURATION:
        raise DomainError(
            field_path,
            f"{format_duration(duration)} is outside the allowed range: at least PT5M and at most P1D",
        )
    return duration


# ---- source prefixes ----


def is_any_source(text: str) -> bool:
    return text.strip().lower() in _ANY_SOURCE_ALIASES


def parse_prefix(text: str, field_path: str) -> IpNetwork:
    """An IP address or CIDR; a host address becomes a /32 (/128). `*` and friends are not prefixes."""
    if "%" in text:
        # Python accepts IPv6 zone ids (fe80::1%eth0); NSG and firewall rules do not, so a grant with
        # one could never be opened.
        raise DomainError(field_path, f"{text!r} carries a zone id ('%...'); give the address without it")
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise DomainError(
            field_path, f"{text!r} is not an IP address or CIDR such as '203.0.113.7' or '10.0.0.0/16'"
        ) from None


def normalize_policy_prefix(text: str, field_path: str) -> str:
    """A policy's allowed prefix as stored: `*` for any source, otherwise the text as given, checked."""
    if is_any_source(text):
        return ANY_SOURCE
    parse_prefix(text, field_path)
    return text.strip()


def prefix_is_allowed(requested: str, allowed: Iterable[str]) -> bool:
    """Is `requested` (a prefix or `*`) inside one of the policy's `allowed` prefixes?"""
    allowed = list(allowed)
    if ANY_SOURCE in allowed:
        return True
    if is_any_source(requested):
        return False
    network = ipaddress.ip_network(requested, strict=False)
    for entry in allowed:
        candidate = ipaddress.ip_network(entry, strict=False)
        if candidate.version == network.version and network.subnet_of(candidate):  # type: ignore[arg-type]
            return True
    return False


def caller_prefix(address: str) -> str:
    """The caller's own address as a host prefix (what Defender opens when no prefix is given)."""
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"


# ---- requests ----


@dataclass(frozen=True)
class RequestedPort:
    number: int
    end_time: datetime
    # None: open to the caller's own address, as the platform reports it.
    source_prefixes: tuple[str, ...] | None = None
    # Our extension; Defender's initiate body carries no protocol (the policy's applies).
    protocol: TransportProtocol | None = None


@dataclass(frozen=True)
class RequestedVm:
    vm: VmRef
    ports: tuple[RequestedPort, ...]


@dataclass(frozen=True)
class AccessRequest:
    virtual_machines: tuple[RequestedVm, ...]
    justification: str | None = None
    # The caller's address as the platform reports it (never a header the client controls).
    caller_address: str | None = None
    # Our extension, scheduled access: nothing opens before it; durations count from it.
    start_time: datetime | None = None


@dataclass(frozen=True)
class Limits:
    max_vms: int
    max_ports_per_vm: int


@dataclass(frozen=True)
class ApprovedPort:
    vm_policy: VmPolicy
    policy_port: PolicyPort
    source_prefixes: tuple[str, ...]
    end_time: datetime

    @property
    def vm(self) -> VmRef:
        return self.vm_policy.vm


@dataclass(frozen=True)
class Decision:
    approved: tuple[ApprovedPort, ...]
    refusals: tuple[DomainError, ...]

    @property
    def allowed(self) -> bool:
        return not self.refusals and bool(self.approved)


def evaluate(request: AccessRequest, policy: JitPolicy, now: datetime, limits: Limits) -> Decision:
    """Check every VM and port of `request` against `policy`; any refusal refuses the whole request."""
    refusals: list[DomainError] = []
    approved: list[ApprovedPort] = []
    if not request.virtual_machines:
        refusals.append(DomainError("virtualMachines", "list at least one virtual machine"))
    elif len(request.virtual_machines) > limits.max_vms:
        refusals.append(
            DomainError(
                "virtualMachines",
                f"{len(request.virtual_machines)} virtual machines requested; at most {limits.max_vms} "
                "per request",
            )
        )
    opens = now
    if request.start_time is not None:
        if request.start_time <= now:
            refusals.append(
                DomainError(
                    "startTimeUtc", f"{request.start_time.isoformat()} is not in the future", "StartInPast"
                )
            )
        elif request.start_time - now > MAX_SCHEDULE_AHEAD:
            refusals.append(DomainError("startTimeUtc", "at most 30 days ahead", "StartTooFar"))
        else:
            opens = request.start_time
    seen_vms: set[VmRef] = set()
    for vm_index, requested_vm in enumerate(request.virtual_machines):
        vm_path = f"virtualMachines[{vm_index}]"
        if requested_vm.vm in seen_vms:
            refusals.append(DomainError(f"{vm_path}.id", f"{requested_vm.vm.id} is listed twice"))
            continue
        seen_vms.add(requested_vm.vm)
        vm_policy = policy.vm_policy(requested_vm.vm)
        if vm_policy is None:
            refusals.append(
                DomainError(
                    f"{vm_path}.id",
                    f"virtual machine {requested_vm.vm.id} is not in JIT policy {policy.ref.id}",
                    code="VmNotInPolicy",
                )
            )
            continue
        refusals.extend(_check_port_count(requested_vm, vm_path, limits))
        seen_ports: set[int] = set()
        for port_index, requested_port in enumerate(requested_vm.ports):
            port_path = f"{vm_path}.ports[{port_index}]"
            if requested_port.number in seen_ports:
                refusals.append(
                    DomainError(f"{port_path}.number", f"port {requested_port.number} is listed twice")
                )
                continue
            seen_ports.add(requested_port.number)
            outcome = _evaluate_port(requested_port, vm_policy, port_path, request.caller_address, opens)
            if isinstance(outcome, ApprovedPort):
                approved.append(outcome)
            else:
                refusals.extend(outcome)
    return Decision(tuple(approved) if not refusals else (), tuple(refusals))


def _check_port_count(requested_vm: RequestedVm, vm_path: str, limits: Limits) -> list[DomainError]:
    if not requested_vm.ports:
        return [DomainError(f"{vm_path}.ports", "list at least one port")]
    if len(requested_vm.ports) > limits.max_ports_per_vm:
        return [
            DomainError(
                f"{vm_path}.ports",
                f"{len(requested_vm.ports)} ports requested; at most {limits.max_ports_per_vm} per "
                "virtual machine",
            )
        ]
    return []


def _evaluate_port(
    requested: RequestedPort, vm_policy: VmPolicy, port_path: str, caller_address: str | None, now: datetime
) -> ApprovedPort | list[DomainError]:
    policy_port = vm_policy.port(requested.number)
    if policy_port is None:
        allowed = ", ".join(str(p.number) for p in vm_policy.ports) or "none"
        return [
            DomainError(
                f"{port_path}.number",
                f"port {requested.number} is not in the policy of {vm_policy.vm.name} (allowed: {allowed})",
                code="PortNotInPolicy",
            )
        ]
    refusals: list[DomainError] = []
    if (
        requested.protocol is not None
        and policy_port.protocol is not TransportProtocol.ANY
        and requested.protocol is not policy_port.protocol
    ):
        refusals.append(
            DomainError(
                f"{port_path}.protocol",
                f"protocol {requested.protocol.value} is not allowed on port {requested.number} "
                f"(the policy allows {policy_port.protocol.value})",
                code="ProtocolNotInPolicy",
            )
        )
    sources = _sources(requested, policy_port, port_path, caller_address)
    if isinstance(sources, DomainError):
        refusals.append(sources)
    refusals.extend(_check_end_time(requested, policy_port, port_path, now))
    if refusals or isinstance(sources, DomainError):
        return refusals
    return ApprovedPort(vm_policy, policy_port, sources, requested.end_time)


def _sources(
    requested: RequestedPort, policy_port: PolicyPort, port_path: str, caller_address: str | None
) -> tuple[str, ...] | DomainError:
    if requested.source_prefixes is None:
        field_path = f"{port_path}.allowedSourceAddressPrefix"
        if caller_address is None:
            return DomainError(
                field_path,
                "is required here: it was omitted and the caller's own address is not known",
                code="SourceRequired",
            )
        try:
            prefixes: tuple[str, ...] = (caller_prefix(caller_address),)
        except ValueError:
            return DomainError(field_path, f"the caller's address {caller_address!r} is not an IP address")
    else:
        field_path = f"{port_path}.allowedSourceAddressPrefixes"
        if not requested.source_prefixes:
            return DomainError(field_path, "list at least one source prefix, or omit it")
        if len(requested.source_prefixes) == 1:
            field_path = f"{port_path}.allowedSourceAddressPrefix"
        prefixes = ()
        for index, text in enumerate(requested.source_prefixes):
            path = field_path if len(requested.source_prefixes) == 1 else f"{field_path}[{index}]"
            if is_any_source(text):
                prefixes += (ANY_SOURCE,)
                continue
            try:
                network = parse_prefix(text, path)
            except DomainError as error:
                return error
            prefixes += (str(network) if network.prefixlen != network.max_prefixlen else text.strip(),)
    allowed = policy_port.allowed_source_prefixes
    for prefix in prefixes:
        if not prefix_is_allowed(prefix, allowed):
            shown = "any source ('*')" if prefix == ANY_SOURCE else prefix
            return DomainError(
                field_path,
                f"source {shown} is outside the prefixes the policy allows on port "
                f"{policy_port.number}: {', '.join(allowed)}",
                code="SourceNotAllowed",
            )
    return prefixes


def _check_end_time(
    requested: RequestedPort, policy_port: PolicyPort, port_path: str, now: datetime
) -> list[DomainError]:
    field_path = f"{port_path}.endTimeUtc"
    end_time = requested.end_time
    if end_time.tzinfo is None:
        return [DomainError(field_path, "must carry a time zone (UTC, e.g. '2030-01-01T10:00:00Z')")]
    if end_time <= now:
        return [DomainError(field_path, f"{end_time.isoformat()} is not in the future", code="EndTimeInPast")]
    maximum = policy_port.max_request_access_duration
    if end_time - now > maximum + END_TIME_SLACK:
        return [
            DomainError(
                field_path,
                f"{end_time.isoformat()} is more than {format_duration(maximum)} (the policy's "
                f"maxRequestAccessDuration for port {policy_port.number}) from now",
                code="DurationTooLong",
            )
        ]
    return []
