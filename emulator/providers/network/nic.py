"""Network interfaces: ip configurations with a private IP in their subnet, public IP and NSG."""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
from typing import TYPE_CHECKING, Any

from emulator.errors import bad_request
from emulator.providers.network.common import (
    NETWORK,
    NSG_TYPE,
    check_name,
    kept_fields,
    one_of,
    properties,
    reference_id,
    referenced_body,
    refs_of,
    require_item,
    require_list,
    require_string,
    require_subnet,
    resource_guid,
    same,
    sub_resource,
    subnet_networks,
    unique_name,
)
from emulator.providers.network.publicip import attach_public_ip
from emulator.resource import ResourceType

if TYPE_CHECKING:
    from emulator.engine import Call
    from emulator.ids import ResourceId

IPCONFIG_TYPE = "Microsoft.Network/networkInterfaces/ipConfigurations"


class TakenAddresses:
    """Private IPs taken in a subnet by anything but the resource being written (and by its own
    earlier ip configurations in the same request)."""

    def __init__(self, call: Call, subnet_id: str, owner_id: str, also: set[str]) -> None:
        self._used = refs_of(call).used_ips(subnet_id)
        self._owner = owner_id.lower() + "/"
        self._also = also

    def __contains__(self, address: object) -> bool:
        if address in self._also:
            return True
        owner = self._used.get(str(address))
        return owner is not None and not owner.lower().startswith(self._owner)


def allocate_private_ip(
    subnet: dict[str, Any], taken: TakenAddresses, target: str, hints: dict[str, int]
) -> str:
    """The lowest free address, skipping the five Azure reserves (network, .1-.3, broadcast). The
    scan starts after the last address handed out in this subnet (then wraps), so allocating for
    thousands of NICs stays linear."""
    for network in subnet_networks(subnet):
        if network.version != 4:
            continue
        first, last = int(network.network_address) + 4, int(network.broadcast_address) - 1
        hint = hints.get(subnet["id"].lower(), first)
        start = hint if first <= hint <= last else first
        for value in itertools.chain(range(start, last + 1), range(first, start)):
            address = str(ipaddress.IPv4Address(value))
            if address not in taken:
                hints[subnet["id"].lower()] = value + 1
                return address
    raise bad_request(
        "SubnetIsFull",
        f"Subnet {subnet['name']} with address prefix {subnet_networks(subnet)} does not have enough "
        "capacity for 1 IP addresses.",
        target,
    )


def check_static_ip(subnet: dict[str, Any], address: Any, taken: TakenAddresses, target: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise bad_request(
            "InvalidRequestFormat", f"Private IP address {address!r} is not an IP address.", target
        ) from None
    networks = [n for n in subnet_networks(subnet) if n.version == ip.version]
    inside = [n for n in networks if ip in n]
    if not inside:
        raise bad_request(
            "PrivateIPAddressNotInSubnet",
            f"IP configuration {target} is using the private IP address {ip} which is not in the range of "
            f"subnet {subnet['id']}.",
            target,
        )
    network = inside[0]
    offset = int(ip) - int(network.network_address)
    if offset < 4 or ip == network.broadcast_address:
        raise bad_request(
            "PrivateIPAddressInReservedRange",
            f"Private static IP address {ip} falls within reserved IP range of subnet prefix {network}.",
            target,
        )
    if str(ip) in taken:
        raise bad_request(
            "PrivateIPAddressInUse",
            f"IP configuration {target} is using the private IP address {ip} which is already allocated to "
            "another resource.",
            target,
        )
    return str(ip)


class NetworkInterfaces(ResourceType):
    namespace = NETWORK
    types = ("networkInterfaces",)
    long_running = True
    etag_arrays = (("properties", "ipConfigurations"),)

    def __init__(self) -> None:
        super().__init__()
        from emulator.providers.network.effective import list_effective_nsgs

        self.actions["effectiveNetworkSecurityGroups"] = list_effective_nsgs(self)

    def prepare(
        self,
        call: Call,
        rid: ResourceId,
        body: dict[str, Any],
        existing: dict[str, Any] | None,
        parent: dict[str, Any] | None,
    ) -> dict[str, Any]:
        check_name(rid.name, "networkInterfaceName")
        nic_id = str(rid)
        props = properties(body)
        configs = require_list(props.get("ipConfigurations"), "properties.ipConfigurations", required=True)
        if not configs:
            raise bad_request(
                "NetworkInterfaceMustHaveAtLeastOneIpConfiguration",
                "Network interface must have at least one IP configuration.",
                "properties.ipConfigurations",
            )
        old_configs = {
            c["name"].lower(): c for c in (existing or {}).get("properties", {}).get("ipConfigurations", [])
        }
        answer_configs: list[dict[str, Any]] = []
        names: set[str] = set()
        taken_here: set[str] = set()
        primary_seen = False
        for i, config in enumerate(configs):
            target = f"properties.ipConfigurations[{i}]"
            config = require_item(config, target)
            name = unique_name(config, target, names, "DuplicateResourceName", "IP configuration name")
            cprops = properties(config)
            subnet_id = reference_id(cprops.get("subnet"), f"{target}.properties.subnet", required=True)
            assert subnet_id is not None
            subnet = require_subnet(call.store, subnet_id, f"{target}.properties.subnet")
            taken = TakenAddresses(call, subnet["id"], nic_id, taken_here)
            method = one_of(
                cprops.get("privateIPAllocationMethod", "Dynamic"),
                ("Static", "Dynamic"),
                f"{target}.properties.privateIPAllocationMethod",
            )
            if method == "Static":
                address = check_static_ip(
                    subnet,
                    require_string(cprops.get("privateIPAddress"), f"{target}.properties.privateIPAddress"),
                    taken,
                    f"{target}.properties.privateIPAddress",
                )
            else:
                old = old_configs.get(name.lower(), {}).get("properties", {})
                old_subnet = (old.get("subnet") or {}).get("id", "")
                kept = old.get("privateIPAddress")
                if kept and old_subnet.lower() == subnet["id"].lower() and kept not in taken:
                    address = kept
                else:
                    address = allocate_private_ip(
                        subnet, taken, f"{target}.properties.subnet", refs_of(call).allocation_hints
                    )
            taken_here.add(address)
            primary = cprops.get("primary")
            if primary is None:
                primary = i == 0
            primary_seen = primary_seen or bool(primary)
            answer_props: dict[str, Any] = {
                "privateIPAddress": address,
                "privateIPAllocationMethod": method,
                "privateIPAddressVersion": "IPv4",
                "subnet": {"id": subnet["id"]},
                "primary": bool(primary),
            }
            pip = attach_public_ip(
                call, cprops.get("publicIPAddress"), f"{target}.properties.publicIPAddress", nic_id
            )
            if pip:
                answer_props["publicIPAddress"] = {"id": pip["id"]}
            answer_configs.append(
                {
                    "name": name,
                    "id": sub_resource(nic_id, "ipConfigurations", name),
                    "type": IPCONFIG_TYPE,
                    "properties": {**answer_props, "provisioningState": "Succeeded"},
                }
            )
        if not primary_seen:
            answer_configs[0]["properties"]["primary"] = True
        answer = kept_fields(body, "location", "tags")
        nic_props: dict[str, Any] = {
            "ipConfigurations": answer_configs,
            "dnsSettings": {
                "dnsServers": (props.get("dnsSettings") or {}).get("dnsServers", []),
                "appliedDnsServers": [],
            },
            "enableAcceleratedNetworking": bool(props.get("enableAcceleratedNetworking", False)),
            "enableIPForwarding": bool(props.get("enableIPForwarding", False)),
            "resourceGuid": resource_guid(existing),
            "nicType": "Standard",
        }
        nsg = referenced_body(
            call.store, props.get("networkSecurityGroup"), NSG_TYPE, "properties.networkSecurityGroup"
        )
        if nsg:
            nic_props["networkSecurityGroup"] = {"id": nsg["id"]}
        answer["properties"] = nic_props
        return answer

    def render(self, call: Call, body: dict[str, Any]) -> dict[str, Any]:
        vm = refs_of(call).first("vm_by_nic", body["id"])
        if not vm:
            return body
        props = dict(body.get("properties", {}))
        props["virtualMachine"] = {"id": vm}
        props["primary"] = _is_primary(call, vm, body["id"])
        props.setdefault("macAddress", _mac_for(body["id"]))
        return {**body, "properties": props}

    def check_delete(self, call: Call, rid: ResourceId, existing: dict[str, Any]) -> None:
        vm = refs_of(call).first("vm_by_nic", str(rid))
        if vm:
            raise bad_request(
                "NicInUse",
                f"Network Interface {rid} is used by existing resource {vm}. In order to delete the network "
                "interface, it must be dissociated from the resource.",
            )


def _is_primary(call: Call, vm_id: str, nic_id: str) -> bool:
    """The VM's `networkProfile.networkInterfaces[].properties.primary` for this NIC; a VM's only NIC
    is its primary one (Compute requires exactly one `primary` when there are several)."""
    record = call.store.get(vm_id)
    nics = (
        ((record.body.get("properties") or {}).get("networkProfile") or {}).get("networkInterfaces")
        if record
        else None
    )
    if not isinstance(nics, list) or not nics:
        return True
    if len(nics) == 1:
        return True
    for nic in nics:
        if isinstance(nic, dict) and same(str(nic.get("id", "")), nic_id):
            return (nic.get("properties") or {}).get("primary") is True
    return False


def _mac_for(nic_id: str) -> str:
    digest = int(hashlib.sha256(nic_id.lower().encode()).hexdigest()[:6], 16)
    return "00-0D-3A-" + "-".join(f"{(digest >> s) & 0xFF:02X}" for s in (16, 8, 0))
