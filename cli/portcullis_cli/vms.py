"""The VMs a caller may request, read from the JIT policies they can read (GET /api/policies), and
the one a command names: by name (resource group only when the name is ambiguous) or by id. Pure."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class VmNotFoundError(LookupError):
    """The name matches no VM of a readable policy, or several: the message says which to pick."""


@dataclass(frozen=True)
class VmPolicy:
    vm_id: str
    policy_id: str
    ports: tuple[dict[str, Any], ...]  # the policy's port entries, as answered
    firewall: str | None  # Defender's `publicIpAddress`, or our `portcullis.firewallId`

    @property
    def name(self) -> str:
        return self.vm_id.rstrip("/").rsplit("/", 1)[-1]

    @property
    def resource_group(self) -> str:
        parts = self.vm_id.split("/")
        lowered = [part.lower() for part in parts]
        return parts[lowered.index("resourcegroups") + 1] if "resourcegroups" in lowered else ""

    def port(self, number: int) -> dict[str, Any] | None:
        return next((port for port in self.ports if port.get("number") == number), None)


def vm_policies(policies: Iterable[dict[str, Any]]) -> list[VmPolicy]:
    found = []
    for policy in policies:
        for vm in policy.get("properties", {}).get("virtualMachines", []):
            firewall = (vm.get("portcullis") or {}).get("firewallId") or vm.get("publicIpAddress")
            found.append(VmPolicy(vm["id"], policy["id"], tuple(vm.get("ports", [])), firewall))
    return sorted(found, key=lambda vm: (vm.name.lower(), vm.vm_id.lower()))


def resolve(vms: Sequence[VmPolicy], wanted: str, resource_group: str | None = None) -> VmPolicy:
    """The VM called `wanted` (a name or a full id, case-insensitive as Azure's)."""
    key = wanted.strip().rstrip("/").lower()
    if key.startswith("/subscriptions/"):
        matches = [vm for vm in vms if vm.vm_id.lower() == key]
    else:
        matches = [vm for vm in vms if vm.name.lower() == key]
        if resource_group:
            matches = [vm for vm in matches if vm.resource_group.lower() == resource_group.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise VmNotFoundError(
            f"no VM {wanted!r} in the JIT policies you may read (`portcullis vm list` shows them)"
        )
    groups = ", ".join(sorted({vm.resource_group for vm in matches}))
    raise VmNotFoundError(
        f"{len(matches)} VMs are called {wanted!r} (resource groups {groups}): add --resource-group"
    )


def sources(port: dict[str, Any]) -> list[str]:
    if port.get("allowedSourceAddressPrefixes"):
        return list(port["allowedSourceAddressPrefixes"])
    return [port["allowedSourceAddressPrefix"]] if port.get("allowedSourceAddressPrefix") else []


def covers(granted: Sequence[str], wanted: str) -> bool:
    """True if one of the granted source prefixes contains the wanted address or prefix."""
    if any(prefix in ("*", "Internet", "0.0.0.0/0", "Any") for prefix in granted):
        return True
    try:
        want = ipaddress.ip_network(wanted, strict=False)
    except ValueError:
        return wanted in granted
    for prefix in granted:
        try:
            have = ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            continue
        if want.version == have.version and want.subnet_of(have):  # type: ignore[arg-type]
            return True
    return False


def reusable(
    grants: Iterable[dict[str, Any]], me: str, port: int, source: str, until: datetime | None, now: datetime
) -> dict[str, Any] | None:
    """An open grant of mine (`me`: my object id) on this port that covers `source` and lasts until
    `until` (None: any time left), the latest-ending first; None if there is none."""
    from portcullis_cli.timeparse import parse_wire_time

    fitting = [
        grant
        for grant in grants
        if grant.get("requestor", {}).get("objectId", "").lower() == me.lower()
        and grant.get("port") == port
        and grant.get("status") in ("Initiated", "Initiating")
        and parse_wire_time(grant["endTimeUtc"]) > now
        and (until is None or parse_wire_time(grant["endTimeUtc"]) >= until)
        and covers(grant.get("sourceAddressPrefixes", []), source)
    ]
    return max(fitting, key=lambda grant: grant["endTimeUtc"], default=None)
