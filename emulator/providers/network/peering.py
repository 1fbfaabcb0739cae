"""Virtual network peerings: child resources stored inside their VNet, whose `peeringState` follows
the other side as the Network RP reports it.

A peering is one direction of a link. It reads `Initiated` while only its side exists, both sides
read `Connected` once the remote VNet has a peering back, and when one side is deleted (or its VNet
is) the remaining side reads `Disconnected` until it is deleted and made again (Microsoft's "Create,
change, or delete a virtual network peering": a Disconnected peering must be re-created). Shapes
follow the spec's VirtualNetworkPeering and its examples (VirtualNetworkPeeringCreate.json of
Microsoft.Network 2024-07-01: PUT 200/201, long-running; DELETE 200/202/204).

Seeds (admin writes) may pin `peeringState`, as they may pin a public IP's address, so an estate can
be described one VNet at a time.
"""

from __future__ import annotations

import copy
import ipaddress
from typing import TYPE_CHECKING, Any

from emulator import ids
from emulator.errors import bad_request, invalid_resource_reference
from emulator.providers.network.common import (
    NETWORK,
    VNET_TYPE,
    check_name,
    properties,
    reference_id,
    refs_of,
    require_item,
    require_string,
    resource_guid,
    same,
    sub_resource,
)
from emulator.resource import ResourceType

if TYPE_CHECKING:
    from emulator.engine import Call
    from emulator.ids import ResourceId
    from emulator.store import Store

PEERING_TYPE = VNET_TYPE + "/virtualNetworkPeerings"
INITIATED, CONNECTED, DISCONNECTED = "Initiated", "Connected", "Disconnected"
_FLAGS = (
    ("allowVirtualNetworkAccess", True),
    ("allowForwardedTraffic", False),
    ("allowGatewayTransit", False),
    ("useRemoteGateways", False),
    ("doNotVerifyRemoteGateways", False),
    ("peerCompleteVnets", True),
)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def peerings_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    found = (body.get("properties") or {}).get("virtualNetworkPeerings") or []
    return found if isinstance(found, list) else []


def _remote_id(peering: dict[str, Any]) -> str | None:
    remote = ((peering.get("properties") or {}).get("remoteVirtualNetwork") or {}).get("id")
    return remote if isinstance(remote, str) else None


def _state(peering: dict[str, Any]) -> str | None:
    state = (peering.get("properties") or {}).get("peeringState")
    return state if isinstance(state, str) else None


def _space(vnet: dict[str, Any]) -> list[Network]:
    prefixes = ((vnet.get("properties") or {}).get("addressSpace") or {}).get("addressPrefixes") or []
    return [ipaddress.ip_network(p, strict=False) for p in prefixes]


def peering_back(store: Store, remote_id: str, vnet_id: str) -> dict[str, Any] | None:
    """The remote VNet's peering that points back at `vnet_id`, if there is one."""
    remote = store.get(remote_id)
    if remote is None:
        return None
    return next((p for p in peerings_of(remote.body) if same(_remote_id(p), vnet_id)), None)


def normalise_peering(
    call: Call,
    vnet_id: str,
    space: list[Network],
    peering: Any,
    target: str,
    existing: dict[str, Any] | None,
) -> dict[str, Any]:
    """Validate one peering (a child PUT's body or an item of a VNet's `virtualNetworkPeerings`)
    and give it the fields the Network RP answers, with its state from the remote side."""
    peering = require_item(peering, target)
    name = require_string(peering.get("name"), f"{target}.name")
    assert name is not None
    check_name(name, f"{target}.name")
    peering_id = sub_resource(vnet_id, "virtualNetworkPeerings", name)
    props = properties(peering)
    remote_target = f"{target}.properties.remoteVirtualNetwork"
    remote_id = reference_id(props.get("remoteVirtualNetwork"), remote_target, required=True)
    assert remote_id is not None
    remote = call.store.get(remote_id)
    if remote is None or not same(remote.type_key, VNET_TYPE):
        if not call.admin:  # a seed may describe the hub before its spokes
            raise invalid_resource_reference(remote_id, peering_id, remote_target)
    else:
        remote_id = remote.id
        overlapping = sorted(
            {str(a) for a in space for b in _space(remote.body) if a.version == b.version and a.overlaps(b)}
        )
        if overlapping:
            raise bad_request(
                "VnetAddressSpacesOverlap",
                f"Cannot create or update peering {peering_id}. Virtual networks {vnet_id} and {remote_id} "
                "cannot be peered because their address spaces overlap. Overlapping address prefixes: "
                f"{', '.join(overlapping)}.",
                remote_target,
            )
    answer: dict[str, Any] = {}
    for flag, default in _FLAGS:
        value = props.get(flag, default)
        if not isinstance(value, bool):
            raise bad_request(
                "InvalidRequestFormat", f"Property '{target}.properties.{flag}' must be a boolean.", target
            )
        answer[flag] = value
    answer["remoteVirtualNetwork"] = {"id": remote_id}
    pinned = props.get("peeringState") if call.admin else None
    if pinned in (INITIATED, CONNECTED, DISCONNECTED):
        state = pinned
    else:
        back = peering_back(call.store, remote_id, vnet_id) if remote is not None else None
        if back is not None and _state(back) in (INITIATED, CONNECTED):
            state = CONNECTED
        elif back is None and existing is not None and _state(existing) == DISCONNECTED:
            state = DISCONNECTED  # stays so until deleted and made again
        else:
            state = INITIATED
    answer["peeringState"] = state
    answer["peeringSyncLevel"] = "FullyInSync"
    answer["resourceGuid"] = resource_guid(existing)
    return {"name": name, "id": peering_id, "type": PEERING_TYPE, "properties": answer}


def render_peering(call: Call, peering: dict[str, Any]) -> dict[str, Any]:
    """The remote's address space is answered as it is now (the RP keeps it in sync)."""
    remote_id = _remote_id(peering)
    remote = call.store.get(remote_id) if remote_id else None
    if remote is None:
        return peering
    space = {"addressPrefixes": list(remote.body["properties"]["addressSpace"]["addressPrefixes"])}
    props = {
        **peering.get("properties", {}),
        "remoteAddressSpace": space,
        "remoteVirtualNetworkAddressSpace": space,
    }
    return {**peering, "properties": props}


def sync_remote_sides(call: Call, vnet_id: str, *, may_disconnect: bool) -> None:
    """After a VNet's peerings changed (or the VNet went): the other VNets' peerings that point at it
    turn `Connected` when a peering now points back, `Disconnected` when none does any more."""
    store = call.store
    vnet_type = call.engine.types.get(VNET_TYPE.lower())
    for peering_id in refs_of(call).sources("peerings_by_remote", vnet_id):
        rid = ids.parse(peering_id)
        if rid is None or rid.parent is None or same(str(rid.parent), vnet_id):
            continue
        owner = store.get(str(rid.parent))
        if owner is None:
            continue
        index = next((i for i, p in enumerate(peerings_of(owner.body)) if same(p.get("id"), peering_id)), -1)
        if index < 0:
            continue
        state = _state(peerings_of(owner.body)[index])
        back = peering_back(store, vnet_id, owner.id)
        new_state = state
        if back is not None and _state(back) in (INITIATED, CONNECTED) and state == INITIATED:
            new_state = CONNECTED
        elif back is None and state == CONNECTED and may_disconnect:
            new_state = DISCONNECTED
        if new_state == state:
            continue
        body = copy.deepcopy(owner.body)
        peerings_of(body)[index]["properties"]["peeringState"] = new_state
        if vnet_type is not None:
            call.engine._renew_etag(vnet_type, body)
        store.put(owner.id, owner.type_key, body)


class VirtualNetworkPeerings(ResourceType):
    namespace = NETWORK
    types = ("virtualNetworks", "virtualNetworkPeerings")
    long_running = True
    embedded_in = ("properties", "virtualNetworkPeerings")
    tracked = False
    patch_supported = False

    def prepare(
        self,
        call: Call,
        rid: ResourceId,
        body: dict[str, Any],
        existing: dict[str, Any] | None,
        parent: dict[str, Any] | None,
    ) -> dict[str, Any]:
        assert parent is not None and rid.parent is not None
        body["name"] = rid.name
        return normalise_peering(
            call, str(rid.parent), _space(parent), body, "virtualNetworkPeeringParameters", existing
        )

    def render(self, call: Call, body: dict[str, Any]) -> dict[str, Any]:
        return render_peering(call, body)

    def after_write(self, call: Call, rid: ResourceId, body: dict[str, Any]) -> None:
        if rid.parent is not None:
            sync_remote_sides(call, str(rid.parent), may_disconnect=not call.admin)

    def after_delete(self, call: Call, rid: ResourceId, body: dict[str, Any]) -> None:
        if rid.parent is not None:
            sync_remote_sides(call, str(rid.parent), may_disconnect=True)
