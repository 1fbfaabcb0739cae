"""The ARM JSON of what an estate holds, as the emulator's seed endpoint and Azure take it, and of a
Defender JIT policy. Plain functions of plain values: the sample and the scale estates compose them,
so a NIC or a firewall is spelled once."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

VM_SIZE = "Standard_B1s"
FIREWALL_SKU = {"name": "AZFW_VNet", "tier": "Standard"}
DEFAULT_MAX_DURATION = "PT3H"


def seed_item(resource_id: str, body: dict[str, Any], location: str | None) -> dict[str, Any]:
    """One item of `POST /_emulator/seed`; child resources (rule collection groups) have no location."""
    return {"id": resource_id, "body": {"location": location, **body} if location else body}


def security_rule(
    name: str,
    priority: int,
    access: str,
    port: str,
    source: str,
    description: str = "",
) -> dict[str, Any]:
    """An inbound TCP rule to any destination (the shape people and Defender leave on NSGs)."""
    return {
        "name": name,
        "properties": {
            "priority": priority,
            "access": access,
            "direction": "Inbound",
            "protocol": "Tcp",
            "sourcePortRange": "*",
            "sourceAddressPrefix": source,
            "destinationAddressPrefix": "*",
            "destinationPortRange": port,
            "description": description,
        },
    }


def nsg(rules: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    return {"properties": {"securityRules": list(rules)}}


def subnet(name: str, prefix: str, nsg_id: str | None = None) -> dict[str, Any]:
    properties: dict[str, Any] = {"addressPrefix": prefix}
    if nsg_id:
        properties["networkSecurityGroup"] = {"id": nsg_id}
    return {"name": name, "properties": properties}


def vnet(address_space: str, subnets: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"properties": {"addressSpace": {"addressPrefixes": [address_space]}, "subnets": list(subnets)}}


def public_ip(address: str) -> dict[str, Any]:
    """A Standard static public IP pinned to `address` (public IPs are unique: estates side by side in
    one emulator must pin different ones)."""
    return {
        "sku": {"name": "Standard", "tier": "Regional"},
        "properties": {"publicIPAllocationMethod": "Static", "ipAddress": address},
    }


def nic(
    subnet_id: str, private_ip: str, *, nsg_id: str | None = None, public_ip_id: str | None = None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "subnet": {"id": subnet_id},
        "privateIPAllocationMethod": "Static",
        "privateIPAddress": private_ip,
        "primary": True,
    }
    if public_ip_id:
        config["publicIPAddress"] = {"id": public_ip_id}
    properties: dict[str, Any] = {"ipConfigurations": [{"name": "ipconfig1", "properties": config}]}
    if nsg_id:
        properties["networkSecurityGroup"] = {"id": nsg_id}
    return {"properties": properties}


def vm(nic_id: str) -> dict[str, Any]:
    return {
        "properties": {
            "hardwareProfile": {"vmSize": VM_SIZE},
            "networkProfile": {"networkInterfaces": [{"id": nic_id, "properties": {"primary": True}}]},
        }
    }


def _firewall_ip_configurations(subnet_id: str, public_ip_id: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "fwconfig",
            "properties": {"subnet": {"id": subnet_id}, "publicIPAddress": {"id": public_ip_id}},
        }
    ]


def classic_firewall(
    subnet_id: str, public_ip_id: str, nat_collections: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """An Azure Firewall with its rules on itself (NAT collections; no network/application rules)."""
    return {
        "properties": {
            "sku": FIREWALL_SKU,
            "ipConfigurations": _firewall_ip_configurations(subnet_id, public_ip_id),
            "natRuleCollections": list(nat_collections),
            "networkRuleCollections": [],
            "applicationRuleCollections": [],
        }
    }


def policy_firewall(subnet_id: str, public_ip_id: str, firewall_policy_id: str) -> dict[str, Any]:
    """An Azure Firewall that takes its rules from a Firewall Policy."""
    return {
        "properties": {
            "sku": FIREWALL_SKU,
            "ipConfigurations": _firewall_ip_configurations(subnet_id, public_ip_id),
            "firewallPolicy": {"id": firewall_policy_id},
        }
    }


def firewall_policy() -> dict[str, Any]:
    return {"properties": {"sku": {"tier": "Standard"}}}


def jit_port(number: int, max_duration: str = DEFAULT_MAX_DURATION, source: str = "*") -> dict[str, Any]:
    """A port of a Defender JIT policy's VM entry (TCP)."""
    return {
        "number": number,
        "protocol": "TCP",
        "allowedSourceAddressPrefix": source,
        "maxRequestAccessDuration": max_duration,
    }


def jit_vm(
    vm_id: str,
    ports: Iterable[int],
    max_duration: str = DEFAULT_MAX_DURATION,
    *,
    public_ip: str | None = None,
    firewall_id: str | None = None,
) -> dict[str, Any]:
    """A VM entry of a JIT policy. Behind a firewall, Defender's `publicIpAddress` is the firewall's
    address; `firewall_id` adds our extension (`portcullis.firewallId`) naming the firewall."""
    entry: dict[str, Any] = {"id": vm_id, "ports": [jit_port(number, max_duration) for number in ports]}
    if public_ip:
        entry["publicIpAddress"] = public_ip
    if firewall_id:
        entry["portcullis"] = {"firewallId": firewall_id}
    return entry


def jit_policy(virtual_machines: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A Defender JIT policy body (`kind: Basic`) as `PUT .../jitNetworkAccessPolicies/{name}` takes it."""
    return {"kind": "Basic", "properties": {"virtualMachines": list(virtual_machines)}}
