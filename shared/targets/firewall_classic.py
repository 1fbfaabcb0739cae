"""Classic Azure Firewall adapter: our DNAT rules live in one NAT rule collection of ours.

There is no child endpoint for collections: read the firewall, replace our collection, PUT the whole
firewall back with If-Match. The firewall is read and written as ARM's wire JSON
(shared/targets/wire.py): foreign collections (people, IaC, Defender's `ASC-JIT` / `MDC-JIT`) and
every property the pinned SDK does not model are sent back exactly as read. Nothing granted: our
collection is removed, so the firewall returns to its state before the first grant.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from shared.model import TargetRef
from shared.plan import COLLECTION_NAME, FirewallPlan
from shared.targets.firewall_common import (
    CLASSIC_PROTOCOLS,
    FirewallSnapshot,
    is_our_collection,
    nat_rule_wire,
)
from shared.targets.wire import get_raw, put_raw
from shared.topology import ArmPath

NetworkFactory = Callable[[str], Any]
PROTOCOLS = CLASSIC_PROTOCOLS


class ClassicFirewallTarget:
    def __init__(self, ref: TargetRef, network_client: NetworkFactory) -> None:
        self.ref = ref
        self._path = ArmPath.parse(ref.id.value)
        self._network = network_client

    def _ops(self) -> Any:
        return self._network(self._path.subscription_id).azure_firewalls

    def read(self) -> FirewallSnapshot:
        """GET the firewall as wire JSON (fresh ETag)."""
        body = get_raw(self._ops().get, self._path.resource_group, self._path.names[0])
        return FirewallSnapshot.from_classic_wire(body)

    def write(self, snapshot: FirewallSnapshot, plan: FirewallPlan) -> None:
        """One PUT of the whole firewall with If-Match: the JSON as read, our collection replaced
        (or removed when nothing is granted), `provisioningState` left out."""
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
        put_raw(
            self._ops().begin_create_or_update,
            self._path.resource_group,
            self._path.names[0],
            body=body,
            headers={"If-Match": snapshot.etag or "*"},
        )
