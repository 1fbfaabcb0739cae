"""Defender for Cloud's just-in-time policies without HTTP: validation, initiate, request history.

Rules come from the 2020-01-01 spec and Microsoft's documentation: ports 0-65535, protocol
TCP|UDP|*, one of allowedSourceAddressPrefix / allowedSourceAddressPrefixes, maxRequestAccessDuration
between 5 minutes and 1 day, VM ids of the policy's subscription and resource group. Initiate answers
port status "Initiating" (as the live service does) and records the request as "Initiated" in the
policy's `properties.requests[]`; a newer request for the same VM and port revokes the older one
(`NewerRequestInitiated`), and a request past its end time reads as `Revoked`/`Expired`.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from emulator.errors import ArmError
from emulator.ids import fold, same

POLICY_TYPE = "Microsoft.Security/locations/jitNetworkAccessPolicies"
PROTOCOLS = ("TCP", "UDP", "*")
MIN_DURATION = timedelta(minutes=5)
MAX_DURATION = timedelta(days=1)
# Clocks differ between caller and service; Defender tolerates a request that ends a little after
# now + the policy maximum when the caller computed it a moment earlier.
END_TIME_SLACK = timedelta(minutes=1)

_DURATION = re.compile(
    r"^P(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_VM_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Compute/"
    r"virtualMachines/(?P<name>[^/]+)$",
    re.IGNORECASE,
)


def bad_request(message: str, target: str) -> ArmError:
    return ArmError(400, "BadRequest", message, target=target)


def parse_duration(text: Any, target: str) -> timedelta:
    """An ISO 8601 duration of days, hours, minutes and seconds (`PT3H`, `P1D`, `PT90M`)."""
    if not isinstance(text, str):
        raise bad_request(f"'{target}' must be an ISO 8601 duration such as 'PT3H'.", target)
    match = _DURATION.match(text.strip().upper())
    if not match or text.strip().upper() in ("P", "PT") or text.strip().upper().endswith("T"):
        raise bad_request(
            f"'{target}' is '{text}', which is not an ISO 8601 duration such as 'PT3H'.", target
        )
    parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
    return timedelta(
        days=parts.get("days", 0),
        hours=parts.get("hours", 0),
        minutes=parts.get("minutes", 0),
        seconds=parts.get("seconds", 0),
    )


def format_time(moment: datetime) -> str:
    """`2018-05-17T09:06:45.5691611Z`: seven fractional digits, as the service writes them."""
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}0Z"


def parse_time(text: Any, target: str) -> datetime:
    if not isinstance(text, str) or not text.strip():
        raise bad_request(f"'{target}' must be a UTC date-time such as '2026-01-01T10:00:00Z'.", target)
    value = text.strip()
    # Python's parser takes at most six fractional digits; the service writes seven.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    value = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise bad_request(f"'{target}' is '{text}', which is not an ISO 8601 date-time.", target) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _is_prefix(value: Any) -> bool:
    if not isinstance(value, str) or not value.strip():
        return False
    if value == "*":
        return True
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def _vm_id_parts(vm_id: Any, target: str) -> re.Match[str]:
    match = _VM_ID.match(vm_id) if isinstance(vm_id, str) else None
    if match is None:
        raise bad_request(
            f"'{target}' is '{vm_id}', which is not a virtual machine id "
            "('/subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/"
            "Microsoft.Compute/virtualMachines/{vmName}').",
            target,
        )
    return match


def _validate_port_rule(port: Any, target: str) -> dict[str, Any]:
    if not isinstance(port, dict):
        raise bad_request(f"'{target}' must be an object.", target)
    number = port.get("number")
    if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= 65535:
        raise bad_request(
            f"'{target}.number' is {number!r}; a port number is an integer 0-65535.", f"{target}.number"
        )
    protocol = port.get("protocol")
    normalized_protocol = protocol.upper() if isinstance(protocol, str) else protocol
    if normalized_protocol not in PROTOCOLS:
        raise bad_request(
            f"'{target}.protocol' is {protocol!r}; it must be one of 'TCP', 'UDP' or '*'.",
            f"{target}.protocol",
        )
    single = port.get("allowedSourceAddressPrefix")
    several = port.get("allowedSourceAddressPrefixes")
    rule: dict[str, Any] = {"number": number, "protocol": normalized_protocol}
    if single is not None and several is not None:
        raise bad_request(
            f"'{target}': 'allowedSourceAddressPrefix' and 'allowedSourceAddressPrefixes' are mutually "
            "exclusive; set only one.",
            f"{target}.allowedSourceAddressPrefixes",
        )
    if single is None and several is None:
        raise bad_request(
            f"'{target}' needs 'allowedSourceAddressPrefix' (an IP address, CIDR or '*') or "
            "'allowedSourceAddressPrefixes'.",
            f"{target}.allowedSourceAddressPrefix",
        )
    if single is not None:
        if not _is_prefix(single):
            raise bad_request(
                f"'{target}.allowedSourceAddressPrefix' is {single!r}; expected an IP address, a CIDR "
                "or '*'.",
                f"{target}.allowedSourceAddressPrefix",
            )
        rule["allowedSourceAddressPrefix"] = single
    else:
        if not isinstance(several, list) or not several or not all(_is_prefix(p) for p in several):
            raise bad_request(
                f"'{target}.allowedSourceAddressPrefixes' must be a non-empty array of IP addresses "
                "or CIDRs.",
                f"{target}.allowedSourceAddressPrefixes",
            )
        rule["allowedSourceAddressPrefixes"] = list(several)
    duration_text = port.get("maxRequestAccessDuration")
    duration = parse_duration(duration_text, f"{target}.maxRequestAccessDuration")
    if not MIN_DURATION <= duration <= MAX_DURATION:
        raise bad_request(
            f"'{target}.maxRequestAccessDuration' is '{duration_text}'; it must be between 5 minutes (PT5M) "
            "and 1 day (P1D).",
            f"{target}.maxRequestAccessDuration",
        )
    rule["maxRequestAccessDuration"] = duration_text
    return rule


def validate_policy(body: Any, *, subscription: str, resource_group: str) -> dict[str, Any]:
    """The `properties` to store for a policy PUT (without `requests`); ArmError names the bad field."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", "body")
    kind = body.get("kind", "Basic")
    if not isinstance(kind, str):
        raise bad_request("'kind' must be a string such as 'Basic'.", "kind")
    props = body.get("properties")
    if not isinstance(props, dict):
        raise bad_request("'properties' is required.", "properties")
    vms = props.get("virtualMachines")
    if not isinstance(vms, list):
        raise bad_request(
            "'properties.virtualMachines' is required and must be an array.", "properties.virtualMachines"
        )
    seen_vms: set[str] = set()
    clean_vms: list[dict[str, Any]] = []
    for vm_index, vm in enumerate(vms):
        where = f"properties.virtualMachines[{vm_index}]"
        if not isinstance(vm, dict):
            raise bad_request(f"'{where}' must be an object.", where)
        parts = _vm_id_parts(vm.get("id"), f"{where}.id")
        if not same(parts["sub"], subscription) or not same(parts["rg"], resource_group):
            raise bad_request(
                f"'{where}.id' names a virtual machine in resource group '{parts['rg']}' of subscription "
                f"'{parts['sub']}'; a policy covers only virtual machines of its own resource group "
                f"'{resource_group}'.",
                f"{where}.id",
            )
        if fold(vm["id"]) in seen_vms:
            raise bad_request(f"'{where}.id': virtual machine '{vm['id']}' is listed twice.", f"{where}.id")
        seen_vms.add(fold(vm["id"]))
        ports = vm.get("ports")
        if not isinstance(ports, list) or not ports:
            raise bad_request(f"'{where}.ports' must be a non-empty array.", f"{where}.ports")
        clean_ports = []
        seen_ports: set[int] = set()
        for port_index, port in enumerate(ports):
            rule = _validate_port_rule(port, f"{where}.ports[{port_index}]")
            if rule["number"] in seen_ports:
                raise bad_request(
                    f"'{where}.ports[{port_index}].number': port {rule['number']} is configured twice.",
                    f"{where}.ports[{port_index}].number",
                )
            seen_ports.add(rule["number"])
            clean_ports.append(rule)
        clean_vm: dict[str, Any] = {"id": vm["id"], "ports": clean_ports}
        public_ip = vm.get("publicIpAddress")
        if public_ip is not None:
            try:
                ipaddress.ip_address(public_ip)
            except ValueError:
                raise bad_request(
                    f"'{where}.publicIpAddress' is {public_ip!r}; expected the IP address of the "
                    "Azure Firewall.",
                    f"{where}.publicIpAddress",
                ) from None
            clean_vm["publicIpAddress"] = public_ip
        clean_vms.append(clean_vm)
    return {"virtualMachines": clean_vms}


def validate_history(requests: Any) -> list[dict[str, Any]]:
    """A `properties.requests` array sent in a PUT (policy imports carry their history)."""
    if not isinstance(requests, list):
        raise bad_request("'properties.requests' must be an array.", "properties.requests")
    for index, request in enumerate(requests):
        where = f"properties.requests[{index}]"
        if not isinstance(request, dict) or not isinstance(request.get("virtualMachines"), list):
            raise bad_request(f"'{where}' must be an object with 'virtualMachines'.", where)
        parse_time(request.get("startTimeUtc"), f"{where}.startTimeUtc")
        for vm_index, vm in enumerate(request["virtualMachines"]):
            vm_where = f"{where}.virtualMachines[{vm_index}]"
            if not isinstance(vm, dict) or not isinstance(vm.get("ports"), list):
                raise bad_request(f"'{vm_where}' must be an object with 'ports'.", vm_where)
            _vm_id_parts(vm.get("id"), f"{vm_where}.id")
            for port_index, port in enumerate(vm["ports"]):
                port_where = f"{vm_where}.ports[{port_index}]"
                if not isinstance(port, dict):
                    raise bad_request(f"'{port_where}' must be an object.", port_where)
                parse_time(port.get("endTimeUtc"), f"{port_where}.endTimeUtc")
    return [dict(r) for r in requests]


def _policy_vm(policy_properties: dict[str, Any], vm_id: str) -> dict[str, Any] | None:
    vms: list[dict[str, Any]] = policy_properties.get("virtualMachines", [])
    return next((vm for vm in vms if same(str(vm.get("id", "")), vm_id)), None)


def _allowed(rule: dict[str, Any]) -> list[str]:
    if "allowedSourceAddressPrefixes" in rule:
        return list(rule["allowedSourceAddressPrefixes"])
    return [rule.get("allowedSourceAddressPrefix", "*")]


def initiate(
    policy_properties: dict[str, Any],
    body: Any,
    *,
    requestor: str,
    caller_ip: str,
    now: datetime,
) -> dict[str, Any]:
    """The JitNetworkAccessRequest an initiate answers, with port statuses "Initiating".

    Defender checks each requested port against the policy: the VM and port must be in it, the end
    time in the future and within the port's maxRequestAccessDuration, and the source either '*'-
    allowed or one of the policy's prefixes verbatim (Defender does not accept sub-ranges). An
    omitted source means the caller's own address.
    """
    if not isinstance(body, dict):
        raise ArmError(400, "InvalidInitiateInput", "The request body must be a JSON object.", target="body")
    vms = body.get("virtualMachines")
    if not isinstance(vms, list) or not vms:
        raise ArmError(
            400,
            "InvalidInitiateInput",
            "'virtualMachines' must be a non-empty array.",
            target="virtualMachines",
        )
    justification = body.get("justification")
    if justification is not None and not isinstance(justification, str):
        raise ArmError(
            400, "InvalidInitiateInput", "'justification' must be a string.", target="justification"
        )
    answered: list[dict[str, Any]] = []
    for vm_index, vm in enumerate(vms):
        where = f"virtualMachines[{vm_index}]"
        if not isinstance(vm, dict):
            raise ArmError(400, "InvalidInitiateInput", f"'{where}' must be an object.", target=where)
        _vm_id_parts(vm.get("id"), f"{where}.id")
        policy_vm = _policy_vm(policy_properties, vm["id"])
        if policy_vm is None:
            raise ArmError(
                400,
                "VirtualMachineNotInPolicy",
                f"Virtual machine '{vm['id']}' is not protected by this just-in-time policy.",
                target=f"{where}.id",
            )
        ports = vm.get("ports")
        if not isinstance(ports, list) or not ports:
            raise ArmError(
                400, "InvalidInitiateInput", f"'{where}.ports' must be a non-empty array.", target=where
            )
        answered_ports = []
        for port_index, port in enumerate(ports):
            answered_ports.append(
                _initiate_port(policy_vm, port, f"{where}.ports[{port_index}]", caller_ip=caller_ip, now=now)
            )
        answered.append({"id": policy_vm["id"], "ports": answered_ports})
    request: dict[str, Any] = {
        "virtualMachines": answered,
        "startTimeUtc": format_time(now),
        "requestor": requestor,
    }
    if justification is not None:
        request["justification"] = justification
    return request


def _initiate_port(
    policy_vm: dict[str, Any], port: Any, where: str, *, caller_ip: str, now: datetime
) -> dict[str, Any]:
    if not isinstance(port, dict):
        raise ArmError(400, "InvalidInitiateInput", f"'{where}' must be an object.", target=where)
    number = port.get("number")
    if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= 65535:
        raise ArmError(
            400,
            "InvalidInitiateInput",
            f"'{where}.number' is {number!r}; expected 0-65535.",
            target=f"{where}.number",
        )
    rule = next((r for r in policy_vm["ports"] if r["number"] == number), None)
    if rule is None:
        raise ArmError(
            400,
            "PortNotInPolicy",
            f"Port {number} of virtual machine '{policy_vm['id']}' is not configured in the "
            "just-in-time policy.",
            target=f"{where}.number",
        )
    has_end, has_duration = port.get("endTimeUtc") is not None, port.get("duration") is not None
    if has_end == has_duration:
        raise ArmError(
            400,
            "InvalidInitiateInput",
            "Only one of fields 'EndTimeUtc' and 'Duration' can be set.",
            target=f"{where}.endTimeUtc",
        )
    if has_end:
        end = parse_time(port["endTimeUtc"], f"{where}.endTimeUtc")
    else:
        end = now + parse_duration(port["duration"], f"{where}.duration")
    maximum = parse_duration(rule["maxRequestAccessDuration"], "maxRequestAccessDuration")
    if end <= now:
        raise ArmError(
            400,
            "InvalidInitiateInput",
            f"'{where}.endTimeUtc' ({format_time(end)}) is not in the future.",
            target=f"{where}.endTimeUtc",
        )
    if end > now + maximum + END_TIME_SLACK:
        raise ArmError(
            400,
            "InvalidInitiateInput",
            f"'{where}': the request for port {number} ends {format_time(end)}, later than the policy's "
            f"maximum of {rule['maxRequestAccessDuration']} from now.",
            target=f"{where}.endTimeUtc",
        )
    allowed = _allowed(rule)
    answer: dict[str, Any] = {"number": number}
    if port.get("allowedSourceAddressPrefixes") is not None:
        requested = port["allowedSourceAddressPrefixes"]
        if not isinstance(requested, list) or not requested or not all(_is_prefix(p) for p in requested):
            raise ArmError(
                400,
                "InvalidInitiateInput",
                f"'{where}.allowedSourceAddressPrefixes' must be a non-empty array of IP addresses or CIDRs.",
                target=f"{where}.allowedSourceAddressPrefixes",
            )
        answer["allowedSourceAddressPrefixes"] = list(requested)
    else:
        source = port.get("allowedSourceAddressPrefix", caller_ip)
        if not _is_prefix(source):
            raise ArmError(
                400,
                "InvalidInitiateInput",
                f"'{where}.allowedSourceAddressPrefix' is {source!r}; expected an IP address, a CIDR or '*'.",
                target=f"{where}.allowedSourceAddressPrefix",
            )
        answer["allowedSourceAddressPrefix"] = source
        requested = [source]
    if "*" not in allowed:
        outside = [p for p in requested if p not in allowed]
        if outside:
            raise ArmError(
                400,
                "SourceAddressNotAllowed",
                f"'{where}': source {', '.join(outside)} is not allowed by the policy for port {number} "
                f"(allowed: {', '.join(allowed)}).",
                target=f"{where}.allowedSourceAddressPrefix",
            )
    answer.update({"endTimeUtc": format_time(end), "status": "Initiating", "statusReason": "UserRequested"})
    return answer


def record_request(history: list[dict[str, Any]], request: dict[str, Any]) -> list[dict[str, Any]]:
    """The policy's new `requests[]`: older active requests for the same VM and port are revoked
    as NewerRequestInitiated; the new one is stored with status Initiated."""
    opened = {(fold(vm["id"]), port["number"]) for vm in request["virtualMachines"] for port in vm["ports"]}
    updated: list[dict[str, Any]] = []
    for old in history:
        old = {**old, "virtualMachines": [dict(vm) for vm in old.get("virtualMachines", [])]}
        for vm in old["virtualMachines"]:
            vm["ports"] = [
                {**port, "status": "Revoked", "statusReason": "NewerRequestInitiated"}
                if port.get("status") == "Initiated"
                and (fold(str(vm.get("id", ""))), port.get("number")) in opened
                else dict(port)
                for port in vm.get("ports", [])
            ]
        updated.append(old)
    stored = {
        **request,
        "virtualMachines": [
            {**vm, "ports": [{**port, "status": "Initiated"} for port in vm["ports"]]}
            for vm in request["virtualMachines"]
        ],
    }
    updated.append(stored)
    return updated


def with_expiry(history: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The history as read at `now`: an Initiated port whose end time has passed is Revoked/Expired."""
    rendered = []
    for request in history:
        vms = []
        for vm in request.get("virtualMachines", []):
            ports = []
            for port in vm.get("ports", []):
                if port.get("status") == "Initiated" and _ended(port.get("endTimeUtc"), now):
                    port = {**port, "status": "Revoked", "statusReason": "Expired"}
                ports.append(port)
            vms.append({**vm, "ports": ports})
        rendered.append({**request, "virtualMachines": vms})
    return rendered


def _ended(end_text: Any, now: datetime) -> bool:
    try:
        return parse_time(end_text, "endTimeUtc") <= now
    except ArmError:
        return False
