"""The confinement rule for firewalls, on plain values."""

from __future__ import annotations

import pytest

from shared.model import ResourceId
from shared.reachability import connected_peers, firewall_may_front, vnet_of_subnet

SUB = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups"
SPOKE = ResourceId(f"{SUB}/rg-spoke/providers/Microsoft.Network/virtualNetworks/spoke")
HUB = ResourceId(f"{SUB}/rg-hub/providers/Microsoft.Network/virtualNetworks/hub")
OTHER = ResourceId(f"{SUB}/rg-a/providers/Microsoft.Network/virtualNetworks/spoke")


def _vnet(*peerings: tuple[ResourceId, str]) -> dict[str, object]:
    return {
        "properties": {
            "virtualNetworkPeerings": [
                {"name": f"p{i}", "properties": {"remoteVirtualNetwork": {"id": r.value}, "peeringState": s}}
                for i, (r, s) in enumerate(peerings)
            ]
        }
    }


def test_subnet_id_names_its_vnet() -> None:
    assert vnet_of_subnet(f"{SPOKE.value}/subnets/default") == SPOKE
    with pytest.raises(ValueError, match="not a subnet id"):
        vnet_of_subnet(SPOKE.value)


def test_same_vnet_may_front() -> None:
    assert firewall_may_front(SPOKE, ResourceId(SPOKE.value.upper()), ())


def test_connected_hub_may_front_but_an_unpeered_vnet_with_the_same_ranges_may_not() -> None:
    peers = connected_peers(_vnet((HUB, "Connected")))
    assert firewall_may_front(SPOKE, HUB, peers)
    assert not firewall_may_front(SPOKE, OTHER, peers)


def test_a_half_made_or_disconnected_peering_does_not_count() -> None:
    peers = connected_peers(_vnet((HUB, "Initiated"), (OTHER, "Disconnected")))
    assert peers == ()
    assert not firewall_may_front(SPOKE, HUB, peers)
