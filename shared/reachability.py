"""Which Azure Firewall may front a VM (DESIGN.md invariant 6, confinement).

Internet traffic reaches a VM through an Azure Firewall only when the firewall sits in the VM's own
virtual network or in one peered with it (hub and spoke). A firewall in an unpeered VNet cannot reach
the VM at all, yet a DNAT rule there translates to an address of *its own* VNet: someone else's VM
when private ranges overlap. So a firewall is used for a VM only when this module says it may be.

Pure: it takes ARM ids and a VNet's wire JSON, so the policy API (which reads them per VM) and the
reconcile snapshot (which lists them per subscription) apply the same rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shared.arm_ids import parent_of
from shared.model import ResourceId

# A peering carries traffic only once both sides exist; ARM then reports "Connected" on each side.
CONNECTED = "connected"


def vnet_of_subnet(subnet_id: str) -> ResourceId:
    """`.../virtualNetworks/{vnet}/subnets/{subnet}` -> `.../virtualNetworks/{vnet}`."""
    return ResourceId(parent_of(subnet_id, "subnets"))


def connected_peers(vnet: Mapping[str, Any]) -> tuple[ResourceId, ...]:
    """The VNets a VNet (wire JSON) is peered with and can reach now."""
    properties = vnet.get("properties") or {}
    peers: list[ResourceId] = []
    for peering in properties.get("virtualNetworkPeerings") or []:
        peering_props = peering.get("properties") or {}
        remote = (peering_props.get("remoteVirtualNetwork") or {}).get("id")
        if remote and str(peering_props.get("peeringState", "")).lower() == CONNECTED:
            peers.append(ResourceId(str(remote)))
    return tuple(peers)


def firewall_may_front(
    vm_vnet: ResourceId, firewall_vnet: ResourceId, vm_vnet_peers: Iterable[ResourceId]
) -> bool:
    """True when the firewall's VNet is the VM's VNet or a VNet the VM's VNet is connected to."""
    return firewall_vnet == vm_vnet or any(peer == firewall_vnet for peer in vm_vnet_peers)
