"""What both firewall adapters hand converge: our DNAT rules as read, and every port in use per IP."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.plan import FirewallPlan, NatRule
from shared.plan import is_our_collection as plan_is_our_collection


@dataclass(frozen=True)
class FirewallSnapshot:
    etag: str | None  # of the firewall (classic) or of our rule collection group (policy)
    our_rules: tuple[NatRule, ...] | None  # None: our collection / group does not exist
    our_priority: int | None
    # Ports on each public IP that DNAT rules not of ours use: never hand them out.
    foreign_ports: dict[str, set[int]] = field(default_factory=dict)
    used_priorities: frozenset[int] = frozenset()  # by collections / groups not of ours
    body: dict[str, Any] = field(default_factory=dict)


class FirewallTarget(Protocol):
    def read(self) -> FirewallSnapshot: ...

    def write(self, snapshot: FirewallSnapshot, plan: FirewallPlan) -> None: ...


def choose_priority(configured: int, used: Iterable[int], current: int | None = None) -> int:
    """Ours keeps its priority if still free; else the configured one, else the next free above it."""
    taken = set(used)
    if current is not None and current not in taken:
        return current
    candidate = configured
    while candidate in taken and candidate < 65000:
        candidate += 1
    return candidate


def _ints(values: Iterable[Any]) -> set[int]:
    ports: set[int] = set()
    for value in values:
        text = str(value).strip()
        low, _, high = text.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            continue
        ports.update(range(first, min(last, 65535) + 1))
    return ports


def collect_ports(rules: Iterable[dict[str, Any]], into: dict[str, set[int]]) -> None:
    """Ports that DNAT rules use per destination address (wire JSON of classic or policy NAT rules)."""
    for rule in rules:
        props = rule.get("properties", rule)
        for address in props.get("destinationAddresses") or []:
            into.setdefault(str(address), set()).update(_ints(props.get("destinationPorts") or []))


def our_nat_rules(rules: Iterable[dict[str, Any]], protocols_key: str) -> tuple[NatRule, ...]:
    result = []
    for rule in rules:
        name = str(rule.get("name", ""))
        destinations = [str(a) for a in rule.get("destinationAddresses") or []]
        ports = sorted(_ints(rule.get("destinationPorts") or []))
        try:
            translated_port = int(str(rule.get("translatedPort", "0")))
        except ValueError:
            translated_port = 0
        result.append(
            NatRule(
                name=name,
                description=str(rule.get("description") or ""),
                protocols=tuple(sorted(str(p).upper() for p in rule.get(protocols_key) or [])),
                source_addresses=tuple(sorted({str(s) for s in rule.get("sourceAddresses") or []})),
                destination_address=destinations[0] if len(destinations) == 1 else ",".join(destinations),
                destination_port=ports[0] if len(ports) == 1 else -1,
                translated_address=str(rule.get("translatedAddress") or ""),
                translated_port=translated_port,
            )
        )
    return tuple(sorted(result, key=lambda r: r.name))


def nat_rule_wire(rule: NatRule, protocols_key: str) -> dict[str, Any]:
    return {
        "name": rule.name,
        "description": rule.description,
        "sourceAddresses": list(rule.source_addresses),
        "destinationAddresses": [rule.destination_address],
        "destinationPorts": [str(rule.destination_port)],
        protocols_key: sorted(rule.protocols),
        "translatedAddress": rule.translated_address,
        "translatedPort": str(rule.translated_port),
    }


def is_our_collection(name: str) -> bool:
    """Ours by exact name, never by prefix (shared.plan.is_our_collection)."""
    return plan_is_our_collection(name)
