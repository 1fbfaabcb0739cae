"""Virtual networks and their subnets (child resources stored inside the VNet)."""

from __future__ import annotations

import copy
import ipaddress
from typing import TYPE_CHECKING, Any

from emulator.errors import bad_request
from emulator.providers.network.common import (
    NETWORK,
    NSG_TYPE,
    VNET_TYPE,
    check_name,
    id_list,
    kept_fields,
    missing_property,
    properties,
    referenced_body,
    refs_of,
    require_item,
    require_list,
    require_object,
    require_string,
    resource_guid,
    sub_resource,
    subnet_networks,
)
from emulator.providers.network.peering import (
    normalise_peering,
    peerings_of,
    render_peering,
    sync_remote_sides,
)
from emulator.resource import ResourceType

if TYPE_CHECKING:
    from emulator.engine import Call
    from emulator.ids import ResourceId
    from emulator.store import Store

SUBNET_TYPE = VNET_TYPE + "/subnets"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _network(value: Any, target: str) -> Network:
    if not isinstance(value, str):
        raise bad_request("InvalidAddressPrefixFormat", f"Address prefix {value!r} is not a CIDR.", target)
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise bad_request(
            "InvalidAddressPrefixFormat",
            f"Address prefix {value} of resource {target} is not formatted correctly. It should follow CIDR "
            "notation, for example 10.0.0.0/24.",
            target,
        ) from None
    return network


def normalise_subnet(
    store: Store, vnet_id: str, subnet: Any, target: str, space: list[Network]
) -> tuple[dict[str, Any], list[Network]]:
    subnet = require_item(subnet, target)
    name = require_string(subnet.get("name"), f"{target}.name")
    assert name is not None
    check_name(name, f"{target}.name")
    props = properties(subnet)
    if props.get("addressPrefixes"):
        prefixes = [
            _network(p, f"{target}.properties.addressPrefixes[{i}]")
            for i, p in enumerate(
                require_list(props["addressPrefixes"], f"{target}.properties.addressPrefixes")
            )
        ]
    else:
        prefix = require_string(props.get("addressPrefix"), f"{target}.properties.addressPrefix")
        prefixes = [_network(prefix, f"{target}.properties.addressPrefix")]
    for network in prefixes:
        if not any(network.version == s.version and network.subnet_of(s) for s in space):  # type: ignore[arg-type]
            raise bad_request(
                "NetcfgSubnetRangeOutsideVnet",
                f"Subnet '{name}' is not valid because its IP address range is outside the IP "
                f"address range of "
                "virtual network.",
                f"{target}.properties.addressPrefix",
            )
    answer_props: dict[str, Any] = {}
    if len(prefixes) == 1 and not props.get("addressPrefixes"):
        answer_props["addressPrefix"] = str(prefixes[0])
    else:
        answer_props["addressPrefixes"] = [str(p) for p in prefixes]
    nsg = referenced_body(
        store, props.get("networkSecurityGroup"), NSG_TYPE, f"{target}.properties.networkSecurityGroup"
    )
    if nsg:
        answer_props["networkSecurityGroup"] = {"id": nsg["id"]}
    for passthrough in (
        "serviceEndpoints",
        "delegations",
        "privateEndpointNetworkPolicies",
        "privateLinkServiceNetworkPolicies",
        "routeTable",
        "natGateway",
        "defaultOutboundAccess",
    ):
        if passthrough in props:
            answer_props[passthrough] = props[passthrough]
    answer_props.setdefault("delegations", [])
    answer_props.setdefault("privateEndpointNetworkPolicies", "Disabled")
    answer_props.setdefault("privateLinkServiceNetworkPolicies", "Enabled")
    return (
        {
            "name": name,
            "id": sub_resource(vnet_id, "subnets", name),
            "type": SUBNET_TYPE,
            "properties": answer_props,
        },
        prefixes,
    )


def check_overlaps(subnets: list[tuple[dict[str, Any], list[Network]]], target: str) -> None:
    seen: list[tuple[str, Network]] = []
    names: set[str] = set()
    for subnet, prefixes in subnets:
        if subnet["name"].lower() in names:
            raise bad_request(
                "DuplicateResourceName", f"Subnet name {subnet['name']} is used more than once.", target
            )
        names.add(subnet["name"].lower())
        for network in prefixes:
            for other_name, other in seen:
                if network.version == other.version and network.overlaps(other):
                    raise bad_request(
                        "NetcfgSubnetRangesOverlap",
                        f"Subnet '{subnet['name']}' is not valid because its IP address range overlaps "
                        f"with that "
                        f"of an existing subnet '{other_name}' in virtual network.",
                        target,
                    )
            seen.append((subnet["name"], network))


def _address_space(props: dict[str, Any], existing: dict[str, Any] | None) -> list[Network]:
    space = require_object(props.get("addressSpace"), "properties.addressSpace")
    prefixes = require_list((space or {}).get("addressPrefixes"), "properties.addressSpace.addressPrefixes")
    if not prefixes and existing:
        prefixes = existing["properties"]["addressSpace"]["addressPrefixes"]
    if not prefixes:
        raise missing_property("properties.addressSpace.addressPrefixes")
    return [_network(p, f"properties.addressSpace.addressPrefixes[{i}]") for i, p in enumerate(prefixes)]


def _prefixes(subnet: dict[str, Any]) -> list[str | None]:
    props = subnet["properties"]
    return props.get("addressPrefixes") or [props.get("addressPrefix")]


def _in_use(call: Call, subnet_id: str) -> list[str]:
    return refs_of(call).sources("ipconfigs_by_subnet", subnet_id)


class VirtualNetworks(ResourceType):
    namespace = NETWORK
    types = ("virtualNetworks",)
    long_running = True

    def prepare(
        self,
        call: Call,
        rid: ResourceId,
        body: dict[str, Any],
        existing: dict[str, Any] | None,
        parent: dict[str, Any] | None,
    ) -> dict[str, Any]:
        check_name(rid.name, "virtualNetworkName")
        props = properties(body)
        space = _address_space(props, existing)
        subnets = [
            normalise_subnet(call.store, str(rid), s, f"properties.subnets[{i}]", space)
            for i, s in enumerate(require_list(props.get("subnets"), "properties.subnets"))
        ]
        check_overlaps(subnets, "properties.subnets")
        kept_names = {s["name"].lower() for s, _ in subnets}
        for old in (existing or {}).get("properties", {}).get("subnets", []):
            if old["name"].lower() not in kept_names and _in_use(call, old["id"]):
                raise bad_request(
                    "InUseSubnetCannotBeDeleted",
                    f"Subnet {old['name']} is in use by {', '.join(_in_use(call, old['id']))} and "
                    f"cannot be deleted. "
                    "In order to delete the subnet, delete all the resources within the subnet.",
                    "properties.subnets",
                )
        for subnet, _ in subnets:
            subnet["properties"]["provisioningState"] = "Succeeded"
        answer_props: dict[str, Any] = {
            "addressSpace": {"addressPrefixes": [str(n) for n in space]},
            "subnets": [s for s, _ in subnets],
            "virtualNetworkPeerings": self._peerings(call, rid, props, space, existing),
            "enableDdosProtection": bool(props.get("enableDdosProtection", False)),
            "resourceGuid": resource_guid(existing),
        }
        if props.get("dhcpOptions") is not None:
            answer_props["dhcpOptions"] = props["dhcpOptions"]
        return {**kept_fields(body, "location", "tags"), "properties": answer_props}

    @staticmethod
    def _peerings(
        call: Call,
        rid: ResourceId,
        props: dict[str, Any],
        space: list[Network],
        existing: dict[str, Any] | None,
    ) -> list[dict[str, Any]]:
        """Peerings sent inside the VNet are created or updated like child PUTs, and the list replaces
        the VNet's peerings; a body without the key keeps them (they are resources of their own)."""
        if props.get("virtualNetworkPeerings") is None:
            return copy.deepcopy(peerings_of(existing or {}))
        before = {p["name"].lower(): p for p in peerings_of(existing or {})}
        peerings: list[dict[str, Any]] = []
        for index, item in enumerate(
            require_list(props["virtualNetworkPeerings"], "properties.virtualNetworkPeerings")
        ):
            target = f"properties.virtualNetworkPeerings[{index}]"
            name = item.get("name") if isinstance(item, dict) else None
            old = before.get(name.lower()) if isinstance(name, str) else None
            peering = normalise_peering(call, str(rid), space, item, target, old)
            if any(p["name"].lower() == peering["name"].lower() for p in peerings):
                raise bad_request(
                    "DuplicateResourceName", f"Peering name {peering['name']} is used more than once.", target
                )
            peerings.append(peering)
        return peerings

    def render(self, call: Call, body: dict[str, Any]) -> dict[str, Any]:
        props = dict(body.get("properties", {}))
        props["subnets"] = [render_subnet(call, s) for s in props.get("subnets", [])]
        if props.get("virtualNetworkPeerings"):
            props["virtualNetworkPeerings"] = [
                render_peering(call, p) for p in props["virtualNetworkPeerings"]
            ]
        return {**body, "properties": props}

    def after_write(self, call: Call, rid: ResourceId, body: dict[str, Any]) -> None:
        sync_remote_sides(call, str(rid), may_disconnect=not call.admin)

    def after_delete(self, call: Call, rid: ResourceId, body: dict[str, Any]) -> None:
        sync_remote_sides(call, str(rid), may_disconnect=True)

    def check_delete(self, call: Call, rid: ResourceId, existing: dict[str, Any]) -> None:
        for subnet in existing.get("properties", {}).get("subnets", []):
            users = _in_use(call, subnet["id"])
            if users:
                raise bad_request(
                    "InUseSubnetCannotBeDeleted",
                    f"Subnet {subnet['name']} is in use by {', '.join(users)} and cannot be deleted.",
                )


def render_subnet(call: Call, subnet: dict[str, Any]) -> dict[str, Any]:
    users = _in_use(call, subnet["id"])
    if not users:
        return subnet
    return {**subnet, "properties": {**subnet.get("properties", {}), "ipConfigurations": id_list(users)}}


class Subnets(ResourceType):
    namespace = NETWORK
    types = ("virtualNetworks", "subnets")
    long_running = True
    embedded_in = ("properties", "subnets")
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
        space = [ipaddress.ip_network(p) for p in parent["properties"]["addressSpace"]["addressPrefixes"]]
        subnet = normalise_subnet(call.store, str(rid.parent), body, "subnetParameters", space)
        siblings = []
        for other in parent["properties"].get("subnets", []):
            if other["name"].lower() != rid.name.lower():
                siblings.append((other, subnet_networks(other)))
        check_overlaps([*siblings, subnet], "subnetParameters")
        if (
            existing is not None
            and _in_use(call, existing["id"])
            and _prefixes(existing) != _prefixes(subnet[0])
        ):
            raise bad_request(
                "InUseSubnetCannotBeUpdated",
                f"Subnet {rid.name} is in use and its address prefix cannot be changed.",
                "subnetParameters.properties.addressPrefix",
            )
        return subnet[0]

    def render(self, call: Call, body: dict[str, Any]) -> dict[str, Any]:
        return render_subnet(call, body)

    def check_delete(self, call: Call, rid: ResourceId, existing: dict[str, Any]) -> None:
        users = _in_use(call, str(rid))
        if users:
            raise bad_request(
                "InUseSubnetCannotBeDeleted",
                f"Subnet {rid.name} is in use by {', '.join(users)} and cannot be deleted. In "
                f"order to delete "
                "the subnet, delete all the resources within the subnet.",
            )
