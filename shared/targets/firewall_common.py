"""What both firewall adapters hand converge: our DNAT rules as read, and every port in use per IP.

A snapshot is built from wire JSON only (`FirewallSnapshot.from_classic_wire` / `from_policy_wire`),
whether the adapter just read it with GET or a pass listed it (`shared.targets.wire.list_raw`), so
both paths plan from the same object and the adapter writes back the JSON it holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.model import same_arm_name
from shared.plan import RULE_COLLECTION_GROUP_NAME, NatRule
from shared.plan import is_our_collection as plan_is_our_collection

CLASSIC_PROTOCOLS = "protocols"  # a classic NAT rule's protocol field
POLICY_PROTOCOLS = "ipProtocols"  # a Firewall Policy NAT rule's protocol field
POLICY_NAT_COLLECTION = "FirewallPolicyNatRuleCollection"


@dataclass(frozen=True)
class FirewallSnapshot:
    etag: str | None  # of the firewall (classic) or of our rule collection group (policy)
    our_rules: tuple[NatRule, ...] | None  # None: our collection / group does not exist
    our_priority: int | None
    # Ports on each public IP that DNAT rules not of ours use: never hand them out.
    foreign_ports: dict[str, set[int]] = field(default_factory=dict)
    used_priorities: frozenset[int] = frozenset()  # by collections / groups not of ours
    # Wire JSON as ARM answered it, never mutated: the classic firewall, or our rule collection
    # group ({} when it does not exist). The adapter's write starts from a copy of it.
    body: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_classic_wire(cls, firewall: dict[str, Any]) -> FirewallSnapshot:
        """The snapshot of a classic Azure Firewall from its wire JSON (a GET, or one item of
        `list_raw(client.azure_firewalls.list_all)`)."""
        collections = (firewall.get("properties") or {}).get("natRuleCollections") or []
        foreign_ports: dict[str, set[int]] = {}
        used: set[int] = set()
        ours: list[dict[str, Any]] = []
        our_priority: int | None = None
        present = False
        for collection in collections:
            props = collection.get("properties") or {}
            if is_our_collection(str(collection.get("name", ""))):
                present = True
                ours.extend(props.get("rules") or [])
                our_priority = our_priority or props.get("priority")
            else:
                collect_ports(props.get("rules") or [], foreign_ports)
                if isinstance(props.get("priority"), int):
                    used.add(props["priority"])
        return cls(
            etag=firewall.get("etag"),
            our_rules=our_nat_rules(ours, CLASSIC_PROTOCOLS) if present else None,
            our_priority=our_priority,
            foreign_ports=foreign_ports,
            used_priorities=frozenset(used),
            body=firewall,
        )

    @classmethod
    def from_policy_wire(cls, groups: Iterable[dict[str, Any]]) -> FirewallSnapshot:
        """The snapshot of a Firewall Policy from the wire JSON of its rule collection groups (all
        of them, as `list_raw(client.firewall_policy_rule_collection_groups.list, rg, policy)`
        yields them): ours is found by name, the others give used priorities and DNAT ports.
        Our group missing from `groups` means it does not exist (`our_rules` None)."""
        foreign_ports: dict[str, set[int]] = {}
        used: set[int] = set()
        ours: dict[str, Any] | None = None
        for group in groups:
            props = group.get("properties") or {}
            if is_our_group(str(group.get("name", ""))):
                ours = group
                continue
            if isinstance(props.get("priority"), int):
                used.add(props["priority"])
            for collection in props.get("ruleCollections") or []:
                if collection.get("ruleCollectionType") == POLICY_NAT_COLLECTION:
                    collect_ports(collection.get("rules") or [], foreign_ports)
        if ours is None:
            return cls(None, None, None, foreign_ports, frozenset(used), {})
        rules: list[dict[str, Any]] = []
        for collection in (ours.get("properties") or {}).get("ruleCollections") or []:
            if is_our_collection(str(collection.get("name", ""))):
                rules.extend(collection.get("rules") or [])
            else:
                rules.append({"name": f"foreign:{collection.get('name')}"})  # forces a rewrite
        return cls(
            etag=ours.get("etag"),
            our_rules=our_nat_rules(rules, POLICY_PROTOCOLS),
            our_priority=(ours.get("properties") or {}).get("priority"),
            foreign_ports=foreign_ports,
            used_priorities=frozenset(used),
            body=ours,
        )

    def with_our_group(self, group: dict[str, Any]) -> FirewallSnapshot:
        """This policy snapshot with our group taken from a direct GET (`group`), keeping what the
        other groups said: the list may lag behind a group just written."""
        mine = FirewallSnapshot.from_policy_wire([group])
        return FirewallSnapshot(
            mine.etag, mine.our_rules, mine.our_priority, self.foreign_ports, self.used_priorities, group
        )


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
    """Whether a NAT rule collection is ours: by exact name, never by prefix (the one ownership test
    of the firewall adapters; shared.plan.is_our_collection)."""
    return plan_is_our_collection(name)


def is_our_group(name: str) -> bool:
    """Whether a Firewall Policy rule collection group is ours (names compare as ARM compares them)."""
    return same_arm_name(name, RULE_COLLECTION_GROUP_NAME)
