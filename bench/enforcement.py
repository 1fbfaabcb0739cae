"""The one place bench/ imports the app's enforcement code.

`shared/converge.py` is becoming the package `shared/enforcement/` (issue 16.8) with the same entry
points; when it lands, change the import lines below and nothing else in bench/.

- `build_deps(settings, *, now, sleep, ...)`: the enforcement collaborators (ARM clients, Tables).
- `reconcile_all(deps)`: one reconcile timer pass over every managed target.
- `converge(deps, target)`: one target.
- `rule_to_wire` / `nat_rule_wire`: how the adapters write one rule of ours on the wire, so that the
  benchmark seeds our rules into the estate exactly as enforcement leaves them.
"""

from __future__ import annotations

from shared.enforcement import build_deps, converge, reconcile_all
from shared.targets.firewall_classic import PROTOCOLS as CLASSIC_PROTOCOLS
from shared.targets.firewall_common import nat_rule_wire
from shared.targets.firewall_policy import NAT_COLLECTION as POLICY_NAT_COLLECTION_TYPE
from shared.targets.firewall_policy import PROTOCOLS as POLICY_PROTOCOLS
from shared.targets.nsg import rule_to_wire

__all__ = [
    "CLASSIC_PROTOCOLS",
    "POLICY_NAT_COLLECTION_TYPE",
    "POLICY_PROTOCOLS",
    "build_deps",
    "converge",
    "nat_rule_wire",
    "reconcile_all",
    "rule_to_wire",
]
