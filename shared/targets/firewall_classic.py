"""Classic Azure Firewall adapter: our DNAT rules live in one NAT rule collection of ours.

There is no child endpoint for collections: read the firewall, replace our collection, PUT the whole
firewall back with If-Match. Foreign collections (people, IaC, Defender's `ASC-JIT` / `MDC-JIT`) are
sent back exactly as read. Nothing granted: our collection is removed, so the firewall returns to its
state before the first grant.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from shared.model import TargetRef
from shared.plan import COLLECTION_NAME, FirewallPlan
from shared.targets.firewall_common import (
    FirewallSnapshot,
    collect_ports,
    is_our_collection,
    nat_rule_wire,
    our_nat_rules,
)
from shared.topology import ArmPath

NetworkFactory = Callable[[str], Any]
PROTOCOLS = "protocols"


class ClassicFirewallTarget:
    def __init__(self, ref: TargetRef, network_client: NetworkFactory) -> None:
        self.ref = ref
        self._path = ArmPath.parse(ref.id.value)
        self._network = network_client

    def _ops(self) -> Any:
        return self._network(self._path.subscription_id).azure_firewalls

    def read(self) -> FirewallSnapshot:
        body: dict[str, Any] = self._ops().get(self._path.resource_group, self._path.names[0]).as_dict()
        collections = (body.get("properties") or {}).get("natRuleCollections") or []
        foreign_ports: dict[str, set[int]] = {}
        used: set[int] = set()
        ours: list[dict[str, Any]] = []
        our_priority: int | None = None
        for collection in collections:
            props = collection.get("properties") or {}
            if is_our_collection(str(collection.get("name", ""))):
                ours.extend(props.get("rules") or [])
                our_priority = our_priority or props.get("priority")
            else:
                collect_ports(props.get("rules") or [], foreign_ports)
                if isinstance(props.get("priority"), int):
                    used.add(props["priority"])
        present = any(is_our_collection(str(c.get("name", ""))) for c in collections)
        return FirewallSnapshot(
            etag=body.get("etag"),
            our_rules=our_nat_rules(ours, PROTOCOLS) if present else None,
            our_priority=our_priority,
            foreign_ports=foreign_ports,
            used_priorities=frozenset(used),
            body=body,
        )

    def write(self, snapshot: FirewallSnapshot, plan: FirewallPlan) -> None:
        body = copy.deepcopy(snapshot.body)
        props = body.setdefault("properties", {})
        collections = [
            c for c in props.get("natRuleCollections") or [] if not is_our_collection(str(c.get("name", "")))
        ]
        if plan.desired:
            collections.insert(
                0,
                {
                    "name": COLLECTION_NAME,
                    "properties": {
                        "priority": plan.priority,
                        "action": {"type": "Dnat"},
                        "rules": [nat_rule_wire(r, PROTOCOLS) for r in plan.desired],
                    },
                },
            )
        props["natRuleCollections"] = collections
        props.pop("provisioningState", None)
        self._ops().begin_create_or_update(
            self._path.resource_group, self._path.names[0], body, headers={"If-Match": snapshot.etag or "*"}
        ).result()
