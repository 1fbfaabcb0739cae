"""NSG adapter: read the whole NSG with its ETag, write it back whole with If-Match.

The NSG is read and written as ARM's wire JSON (shared/targets/wire.py), never through SDK models:
everything but our rules is sent back as read (foreign rules as the same JSON objects, and
properties the pinned SDK does not model), so our write cannot drop what a newer api-version or
another tool put there. Only rules whose names are ours are replaced. A rule's singular and plural
address/port fields are merged when reading, so a rule written either way compares equal.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.model import TargetRef
from shared.plan import Access, NsgPlan, NsgRule, owns_rule
from shared.targets.wire import WireBody, get_raw, put_raw
from shared.topology import ArmPath

NetworkFactory = Callable[[str], Any]


# Read-only properties the service computes; they are not ours to send (ARM ignores them anyway).
READ_ONLY_PROPERTIES = (
    "defaultSecurityRules",
    "provisioningState",
    "resourceGuid",
    "networkInterfaces",
    "subnets",
)


@dataclass(frozen=True)
class NsgSnapshot:
    etag: str | None
    body: WireBody  # the NSG as ARM answered it (GET or one item of a list page); never mutated
    rules: tuple[NsgRule, ...]

    @classmethod
    def from_wire(cls, body: WireBody) -> NsgSnapshot:
        """The snapshot of an NSG from its wire JSON, as a GET or a list page (`list_raw`) answers
        it: a pass can plan from a listing without a GET per NSG. The body is kept by reference;
        `NsgTarget.write` copies it before changing anything."""
        rules = (body.get("properties") or {}).get("securityRules") or []
        return cls(etag=body.get("etag"), body=body, rules=tuple(rule_from_wire(r) for r in rules))


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
        """GET the NSG as wire JSON (fresh ETag)."""
        return NsgSnapshot.from_wire(get_raw(self._ops().get, self._path.resource_group, self._path.names[0]))

    def write(self, snapshot: NsgSnapshot, plan: NsgPlan) -> None:
        """One PUT of the whole NSG, with If-Match on the snapshot's ETag: the JSON as read, with
        foreign rules untouched and ours as planned; only read-only properties are left out."""
        body = copy.deepcopy(snapshot.body)
        props = body.setdefault("properties", {})
        foreign = [
            r
            for r in props.get("securityRules") or []
            if not owns_rule(str(r.get("name", "")), (r.get("properties") or {}).get("description"))
        ]
        props["securityRules"] = foreign + [rule_to_wire(r) for r in plan.desired]
        for key in READ_ONLY_PROPERTIES:
            props.pop(key, None)
        headers = {"If-Match": snapshot.etag} if snapshot.etag else {"If-None-Match": "*"}
        put_raw(
            self._ops().begin_create_or_update,
            self._path.resource_group,
            self._path.names[0],
            body=body,
            headers=headers,
        )
