"""VNet peerings as resources (issue 16: the snapshot reads hub-and-spoke links from the VNets), through
the real azure-mgmt-network SDK: long-running PUT/DELETE, `peeringState` following the other side,
and the peerings inline in the VNet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import AddressSpace, SubResource, VirtualNetwork, VirtualNetworkPeering

from localrig.emulator_client import EmulatorClient

LOCATION = "westeurope"


@dataclass
class Pair:
    net: NetworkManagementClient
    rg: str
    hub: VirtualNetwork
    spoke: VirtualNetwork
    seen: list[tuple[str, int, dict[str, str]]]

    def peer(
        self, source: VirtualNetwork, target: VirtualNetwork, name: str | None = None
    ) -> VirtualNetworkPeering:
        return self.net.virtual_network_peerings.begin_create_or_update(
            self.rg,
            str(source.name),
            name or f"{source.name}-to-{target.name}",
            VirtualNetworkPeering(
                remote_virtual_network=SubResource(id=target.id), allow_forwarded_traffic=True
            ),
        ).result()

    def state(self, source: VirtualNetwork, target: VirtualNetwork) -> str | None:
        peering = self.net.virtual_network_peerings.get(
            self.rg, str(source.name), f"{source.name}-to-{target.name}"
        )
        return peering.peering_state

    def vnet(self, name: str, prefix: str, **extra: Any) -> VirtualNetwork:
        return self.net.virtual_networks.begin_create_or_update(
            self.rg,
            name,
            VirtualNetwork(location=LOCATION, address_space=AddressSpace(address_prefixes=[prefix]), **extra),
        ).result()


@pytest.fixture
def pair(arm_emulator: EmulatorClient) -> Pair:
    seen: list[tuple[str, int, dict[str, str]]] = []

    def hook(response: Any) -> None:
        http = response.http_response
        seen.append((http.request.method, http.status_code, dict(http.headers)))

    net = arm_emulator.client(NetworkManagementClient, raw_response_hook=hook)
    rg = arm_emulator.new_resource_group()
    made = Pair(net, rg, None, None, seen)  # type: ignore[arg-type]
    made.hub = made.vnet("hub", "10.0.0.0/16")
    made.spoke = made.vnet("spoke", "10.1.0.0/16")
    return made


def test_a_peering_is_initiated_then_connected_when_the_other_side_exists(pair: Pair) -> None:
    del pair.seen[:]
    first = pair.peer(pair.hub, pair.spoke)
    put = next(s for s in pair.seen if s[0] == "PUT")
    assert put[1] == 201 and "Azure-AsyncOperation" in put[2]  # long-running, as other Network children
    assert first.peering_state == "Initiated"
    assert first.provisioning_state == "Succeeded"
    assert first.peering_sync_level == "FullyInSync"
    assert first.type == "Microsoft.Network/virtualNetworks/virtualNetworkPeerings"
    assert first.remote_virtual_network is not None and first.remote_virtual_network.id == pair.spoke.id
    assert first.remote_address_space is not None and first.remote_address_space.address_prefixes == [
        "10.1.0.0/16"
    ]
    assert first.allow_virtual_network_access is True and first.allow_forwarded_traffic is True
    hub = pair.net.virtual_networks.get(pair.rg, "hub")
    assert [(p.name, p.peering_state) for p in hub.virtual_network_peerings or []] == [
        ("hub-to-spoke", "Initiated")
    ]
    assert first.etag == hub.etag  # a child carries its VNet's etag

    second = pair.peer(pair.spoke, pair.hub)
    assert second.peering_state == "Connected"
    assert pair.state(pair.hub, pair.spoke) == "Connected"
    assert pair.net.virtual_networks.get(pair.rg, "hub").etag != hub.etag  # the hub side changed too
    listed = {v.name: v for v in pair.net.virtual_networks.list(pair.rg)}
    for name in ("hub", "spoke"):
        assert [p.peering_state for p in listed[name].virtual_network_peerings or []] == ["Connected"]
    assert [p.name for p in pair.net.virtual_network_peerings.list(pair.rg, "spoke")] == ["spoke-to-hub"]


def test_deleting_one_side_disconnects_the_other_until_it_is_made_again(pair: Pair) -> None:
    pair.peer(pair.hub, pair.spoke)
    pair.peer(pair.spoke, pair.hub)
    del pair.seen[:]
    pair.net.virtual_network_peerings.begin_delete(pair.rg, "spoke", "spoke-to-hub").result()
    assert pair.seen[0][0] == "DELETE" and pair.seen[0][1] == 202 and "Location" in pair.seen[0][2]
    with pytest.raises(ResourceNotFoundError):
        pair.state(pair.spoke, pair.hub)
    assert pair.state(pair.hub, pair.spoke) == "Disconnected"

    # Making the deleted side again does not revive a Disconnected peering: it must be re-created.
    assert pair.peer(pair.spoke, pair.hub).peering_state == "Initiated"
    assert pair.state(pair.hub, pair.spoke) == "Disconnected"
    pair.net.virtual_network_peerings.begin_delete(pair.rg, "hub", "hub-to-spoke").result()
    assert pair.peer(pair.hub, pair.spoke).peering_state == "Connected"
    assert pair.state(pair.spoke, pair.hub) == "Connected"


def test_deleting_a_vnet_disconnects_its_peers(pair: Pair) -> None:
    pair.peer(pair.hub, pair.spoke)
    pair.peer(pair.spoke, pair.hub)
    pair.net.virtual_networks.begin_delete(pair.rg, "spoke").result()
    hub = pair.net.virtual_networks.get(pair.rg, "hub")
    peering = (hub.virtual_network_peerings or [])[0]
    assert peering.peering_state == "Disconnected"
    assert peering.remote_address_space is None  # nothing left to report


def test_peerings_are_refused_for_overlapping_or_missing_networks(pair: Pair) -> None:
    overlapping = pair.vnet("overlap", "10.0.128.0/17")
    with pytest.raises(HttpResponseError) as refused:
        pair.peer(pair.hub, overlapping)
    assert refused.value.status_code == 400
    assert refused.value.error is not None and refused.value.error.code == "VnetAddressSpacesOverlap"
    missing = VirtualNetwork(id=str(pair.hub.id).replace("/hub", "/nowhere"), name="nowhere")
    with pytest.raises(HttpResponseError) as refused:
        pair.peer(pair.hub, missing)
    assert refused.value.error is not None and refused.value.error.code == "InvalidResourceReference"
    assert pair.net.virtual_networks.get(pair.rg, "hub").virtual_network_peerings == []


def test_peerings_sent_inside_a_vnet_are_peerings_and_a_vnet_put_without_them_keeps_them(pair: Pair) -> None:
    def inline(name: str, remote: VirtualNetwork) -> VirtualNetworkPeering:
        return VirtualNetworkPeering(name=name, remote_virtual_network=SubResource(id=remote.id))

    pair.vnet("hub", "10.0.0.0/16", virtual_network_peerings=[inline("to-spoke", pair.spoke)])
    pair.vnet("spoke", "10.1.0.0/16", virtual_network_peerings=[inline("to-hub", pair.hub)])
    hub = pair.net.virtual_networks.get(pair.rg, "hub")
    peering = (hub.virtual_network_peerings or [])[0]
    assert (peering.name, peering.peering_state) == ("to-spoke", "Connected")
    assert peering.id == f"{hub.id}/virtualNetworkPeerings/to-spoke"
    assert pair.net.virtual_network_peerings.get(pair.rg, "hub", "to-spoke").peering_state == "Connected"

    pair.vnet("hub", "10.0.0.0/16")  # no peerings in the body: they stay
    assert pair.net.virtual_network_peerings.get(pair.rg, "hub", "to-spoke").peering_state == "Connected"
    pair.vnet("hub", "10.0.0.0/16", virtual_network_peerings=[])  # an empty list removes them
    assert pair.net.virtual_network_peerings.get(pair.rg, "spoke", "to-hub").peering_state == "Disconnected"


def test_a_seed_may_pin_the_peering_state(arm_emulator: EmulatorClient) -> None:
    rg = arm_emulator.new_resource_group()
    base = f"/subscriptions/{arm_emulator.subscription_id}/resourceGroups/{rg}/providers/Microsoft.Network"

    def vnet(name: str, prefix: str, peerings: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": f"{base}/virtualNetworks/{name}",
            "body": {
                "location": LOCATION,
                "properties": {
                    "addressSpace": {"addressPrefixes": [prefix]},
                    "virtualNetworkPeerings": peerings,
                },
            },
        }

    def to(name: str, **props: Any) -> dict[str, Any]:
        return {
            "name": f"to-{name}",
            "properties": {"remoteVirtualNetwork": {"id": f"{base}/virtualNetworks/{name}"}, **props},
        }

    arm_emulator.seed(
        [
            vnet("hub", "10.0.0.0/16", [to("a"), to("b", peeringState="Connected")]),  # spokes come later
            vnet("a", "10.1.0.0/16", [to("hub")]),
            vnet("b", "10.2.0.0/16", []),
        ]
    )
    net = arm_emulator.client(NetworkManagementClient)
    states = {p.name: p.peering_state for p in net.virtual_network_peerings.list(rg, "hub")}
    assert states == {"to-a": "Connected", "to-b": "Connected"}
    assert net.virtual_network_peerings.get(rg, "a", "to-hub").peering_state == "Connected"
