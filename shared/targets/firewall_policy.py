"""Firewall Policy adapter: our DNAT rules live in one rule collection group of ours.

PUT of a group replaces the group, so the whole difference is one write; other groups are only read
(for the ports their DNAT rules use, and their priorities). Created with If-None-Match: *, replaced
or deleted with If-Match. Our group is read and written as ARM's wire JSON (shared/targets/wire.py):
a replace sends back the group as read with only its priority and rule collections changed, so
properties the pinned SDK does not model survive. Nothing granted: the group is deleted, so the
policy returns to its state before the first grant.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.model import TargetRef
from shared.plan import POLICY_NAT_COLLECTION_NAME, RULE_COLLECTION_GROUP_NAME, FirewallPlan
from shared.targets.firewall_common import (
    POLICY_NAT_COLLECTION,
    POLICY_PROTOCOLS,
    FirewallSnapshot,
    nat_rule_wire,
)
from shared.targets.wire import get_raw, list_raw, put_raw
from shared.topology import ArmPath

NetworkFactory = Callable[[str], Any]
PROTOCOLS = POLICY_PROTOCOLS
NAT_COLLECTION = POLICY_NAT_COLLECTION
# Read-only group properties the service computes.
READ_ONLY_PROPERTIES = ("provisioningState", "size")


class FirewallPolicyTarget:
    def __init__(self, ref: TargetRef, network_client: NetworkFactory) -> None:
        self.ref = ref
        self._path = ArmPath.parse(ref.id.value)
        self._network = network_client

    def _ops(self) -> Any:
        return self._network(self._path.subscription_id).firewall_policy_rule_collection_groups

    def read(self) -> FirewallSnapshot:
        """List the policy's groups as wire JSON; our group by a direct GET when the list lacks it."""
        rg, policy = self._path.resource_group, self._path.names[0]
        network = self._network(self._path.subscription_id)
        groups = list_raw(network, f"{self.ref.id.value}/ruleCollectionGroups")
        snapshot = FirewallSnapshot.from_policy_wire(groups)
        if snapshot.our_rules is None:
            # The list may lag; a direct GET is the truth for our own group.
            try:
                group = get_raw(self._ops().get, rg, policy, RULE_COLLECTION_GROUP_NAME)
            except ResourceNotFoundError:
                return snapshot
            snapshot = snapshot.with_our_group(group)
        return snapshot

    def write(self, snapshot: FirewallSnapshot, plan: FirewallPlan) -> None:
        rg, policy = self._path.resource_group, self._path.names[0]
        if not plan.desired:
            if snapshot.our_rules is not None:
                self._ops().begin_delete(
                    rg, policy, RULE_COLLECTION_GROUP_NAME, headers={"If-Match": snapshot.etag or "*"}
                ).result()
            return
        group = copy.deepcopy(snapshot.body)
        props = group.setdefault("properties", {})
        for key in READ_ONLY_PROPERTIES:
            props.pop(key, None)
        props["priority"] = plan.priority
        props["ruleCollections"] = [
            {
                "ruleCollectionType": NAT_COLLECTION,
                "name": POLICY_NAT_COLLECTION_NAME,
                "priority": 100,
                "action": {"type": "DNAT"},
                "rules": [{"ruleType": "NatRule", **nat_rule_wire(r, PROTOCOLS)} for r in plan.desired],
            }
        ]
        headers = {"If-Match": snapshot.etag} if snapshot.etag else {"If-None-Match": "*"}
        put_raw(
            self._ops().begin_create_or_update,
            rg,
            policy,
            RULE_COLLECTION_GROUP_NAME,
            body=group,
            headers=headers,
        )
