"""NSG adapter: read the whole NSG with its ETag, write it back whole with If-Match.

Foreign rules are sent back exactly as read (same JSON objects); only rules whose names are ours are
replaced. A rule's singular and plural address/port fields are merged when reading, so a rule written
either way compares equal.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.model import TargetRef
from shared.plan import Access, NsgPlan, NsgRule, owns_rule
from shared.topology import ArmPath

NetworkFactory = Callable[[str], Any]


@dataclass(frozen=True)
class NsgSnapshot:
    etag: str | None
    body: dict[str, Any]
    rules: tuple[NsgRule, ...]


def _merged(props: dict[str, Any], singular: str, plural: str) -> tuple[str, ...]:
    values = [str(v) for v in props.get(plural) or []]
    one = props.get(singular)
    if one not in (None, ""):
        values.append(str(one))
    return tuple(sorted(set(values)))


def rule_from_wire(rule: dict[str, Any]) -> NsgRule:
    props = rule.get("properties") or {}
    access_text = str(props.get("access", "Deny"))
    return NsgRule(
        name=str(rule.get("name", "")),
        priority=int(props.get("priority", 0)),
        access=Access.ALLOW if access_text.lower() == "allow" else Access.DENY,
        protocol=str(props.get("protocol", "*")),
        source_prefixes=_merged(props, "sourceAddressPrefix", "sourceAddressPrefixes"),
        destination_prefixes=_merged(props, "destinationAddressPrefix", "destinationAddressPrefixes"),
        destination_ports=_merged(props, "destinationPortRange", "destinationPortRanges"),
        description=str(props.get("description") or ""),
        direction=str(props.get("direction", "Inbound")),
        source_ports=_merged(props, "sourcePortRange", "sourcePortRanges") or ("*",),
    )


def _field(props: dict[str, Any], singular: str, plural: str, values: tuple[str, ...]) -> None:
    # A single value goes in the singular field: service tags and "*" are only valid there.
    if len(values) == 1:
        props[singular] = values[0]
    else:
        props[plural] = list(values)


def rule_to_wire(rule: NsgRule) -> dict[str, Any]:
    props: dict[str, Any] = {
        "description": rule.description,
        "protocol": rule.protocol,
        "access": rule.access.value,
        "priority": rule.priority,
        "direction": rule.direction,
    }
    _field(props, "sourcePortRange", "sourcePortRanges", rule.source_ports)
    _field(props, "sourceAddressPrefix", "sourceAddressPrefixes", rule.source_prefixes)
    _field(props, "destinationAddressPrefix", "destinationAddressPrefixes", rule.destination_prefixes)
    _field(props, "destinationPortRange", "destinationPortRanges", rule.destination_ports)
    return {"name": rule.name, "properties": props}


class NsgTarget:
    def __init__(self, ref: TargetRef, network_client: NetworkFactory) -> None:
        self.ref = ref
        self._path = ArmPath.parse(ref.id.value)
        self._network = network_client

    def _ops(self) -> Any:
        return self._network(self._path.subscription_id).network_security_groups

    def read(self) -> NsgSnapshot:
        body: dict[str, Any] = self._ops().get(self._path.resource_group, self._path.names[0]).as_dict()
        rules = (body.get("properties") or {}).get("securityRules") or []
        return NsgSnapshot(
            etag=body.get("etag"),
            body=body,
            rules=tuple(rule_from_wire(r) for r in rules),
        )

    def write(self, snapshot: NsgSnapshot, plan: NsgPlan) -> None:
        """One PUT of the whole NSG: foreign rules as read, ours as planned."""
        body = copy.deepcopy(snapshot.body)
        props = body.setdefault("properties", {})
        foreign = [
            r
            for r in props.get("securityRules") or []
            if not owns_rule(str(r.get("name", "")), (r.get("properties") or {}).get("description"))
        ]
        props["securityRules"] = foreign + [rule_to_wire(r) for r in plan.desired]
        # Read-only fields the service computes; sending them back is harmless but noisy.
        for key in (
            "defaultSecurityRules",
            "provisioningState",
            "resourceGuid",
            "networkInterfaces",
            "subnets",
        ):
            props.pop(key, None)
        headers = {"If-Match": snapshot.etag} if snapshot.etag else {"If-None-Match": "*"}
        poller = self._ops().begin_create_or_update(
            self._path.resource_group, self._path.names[0], body, headers=headers
        )
        poller.result()
