"""Firewall Policy adapter: our DNAT rules live in one rule collection group of ours.

PUT of a group replaces the group, so the whole difference is one write; other groups are only read
(for the ports their DNAT rules use, and their priorities). Created with If-None-Match: *, replaced
or deleted with If-Match. Nothing granted: the group is deleted, so the policy returns to its state
before the first grant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.model import TargetRef
from shared.plan import POLICY_NAT_COLLECTION_NAME, RULE_COLLECTION_GROUP_NAME, FirewallPlan
from shared.targets.firewall_common import (
    FirewallSnapshot,
    collect_ports,
    is_our_collection,
    nat_rule_wire,
    our_nat_rules,
)
from shared.topology import ArmPath

NetworkFactory = Callable[[str], Any]
PROTOCOLS = "ipProtocols"
NAT_COLLECTION = "FirewallPolicyNatRuleCollection"


class FirewallPolicyTarget:
    def __init__(self, ref: TargetRef, network_client: NetworkFactory) -> None:
        self.ref = ref
        self._path = ArmPath.parse(ref.id.value)
        self._network = network_client

    def _ops(self) -> Any:
        return self._network(self._path.subscription_id).firewall_policy_rule_collection_groups

    def read(self) -> FirewallSnapshot:
        groups = [g.as_dict() for g in self._ops().list(self._path.resource_group, self._path.names[0])]
        foreign_ports: dict[str, set[int]] = {}
        used: set[int] = set()
        ours: dict[str, Any] | None = None
        for group in groups:
            props = group.get("properties") or {}
            if is_our_collection(str(group.get("name", ""))):
                ours = group
                continue
            if isinstance(props.get("priority"), int):
                used.add(props["priority"])
            for collection in props.get("ruleCollections") or []:
                if collection.get("ruleCollectionType") == NAT_COLLECTION:
                    collect_ports(collection.get("rules") or [], foreign_ports)
        if ours is None:
            # The list may lag; a direct GET is the truth for our own group.
            try:
                ours = (
                    self._ops()
                    .get(self._path.resource_group, self._path.names[0], RULE_COLLECTION_GROUP_NAME)
                    .as_dict()
                )
            except ResourceNotFoundError:
                ours = None
        rules: list[dict[str, Any]] = []
        if ours is not None:
            for collection in (ours.get("properties") or {}).get("ruleCollections") or []:
                if is_our_collection(str(collection.get("name", ""))):
                    rules.extend(collection.get("rules") or [])
                else:
                    rules.append({"name": f"foreign:{collection.get('name')}"})  # forces a rewrite
        return FirewallSnapshot(
            etag=ours.get("etag") if ours else None,
            our_rules=our_nat_rules(rules, PROTOCOLS) if ours is not None else None,
            our_priority=(ours.get("properties") or {}).get("priority") if ours else None,
            foreign_ports=foreign_ports,
            used_priorities=frozenset(used),
            body=ours or {},
        )

    def write(self, snapshot: FirewallSnapshot, plan: FirewallPlan) -> None:
        rg, policy = self._path.resource_group, self._path.names[0]
        if not plan.desired:
            if snapshot.our_rules is not None:
                self._ops().begin_delete(
                    rg, policy, RULE_COLLECTION_GROUP_NAME, headers={"If-Match": snapshot.etag or "*"}
                ).result()
            return
        group = {
            "properties": {
                "priority": plan.priority,
                "ruleCollections": [
                    {
                        "ruleCollectionType": NAT_COLLECTION,
                        "name": POLICY_NAT_COLLECTION_NAME,
                        "priority": 100,
                        "action": {"type": "DNAT"},
                        "rules": [
                            {"ruleType": "NatRule", **nat_rule_wire(r, PROTOCOLS)} for r in plan.desired
                        ],
                    }
                ],
            }
        }
        headers = {"If-Match": snapshot.etag} if snapshot.etag else {"If-None-Match": "*"}
        self._ops().begin_create_or_update(
            rg, policy, RULE_COLLECTION_GROUP_NAME, group, headers=headers
        ).result()
