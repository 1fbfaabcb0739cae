"""A small estate created through the real azure-mgmt-network SDK (not the seed endpoint), and the
SDK models the emulator's Network tests write into it: the emulator must answer the SDK as Azure does."""

from __future__ import annotations

from dataclasses import dataclass

from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import (
    AddressSpace,
    AzureFirewall,
    AzureFirewallIPConfiguration,
    AzureFirewallNatRCAction,
    AzureFirewallNatRule,
    AzureFirewallNatRuleCollection,
    NetworkInterface,
    NetworkInterfaceIPConfiguration,
    NetworkSecurityGroup,
    PublicIPAddress,
    PublicIPAddressSku,
    SecurityRule,
    Subnet,
    SubResource,
    VirtualNetwork,
)

from localrig.emulator_client import EmulatorClient
from localrig.estates.ids import DEFAULT_LOCATION

LOCATION = DEFAULT_LOCATION


def rule(name: str = "allow-ssh", priority: int = 100, **overrides: object) -> SecurityRule:
    fields: dict[str, object] = {
        "name": name,
        "protocol": "Tcp",
        "access": "Allow",
        "direction": "Inbound",
        "priority": priority,
        "source_address_prefix": "203.0.113.7/32",
        "destination_address_prefix": "10.0.1.4",
        "source_port_range": "*",
        "destination_port_range": "22",
    }
    fields.update(overrides)
    return SecurityRule(**fields)  # type: ignore[arg-type]


@dataclass
class Estate:
    net: NetworkManagementClient
    rg: str
    nsg: NetworkSecurityGroup
    vnet: VirtualNetwork
    vm_subnet: Subnet
    firewall_subnet: Subnet
    vm_pip: PublicIPAddress
    firewall_pip: PublicIPAddress


def build_estate(arm: EmulatorClient) -> Estate:
    net = arm.client(NetworkManagementClient)
    rg = arm.new_resource_group()
    nsg = net.network_security_groups.begin_create_or_update(
        rg, "vm-nsg", NetworkSecurityGroup(location=LOCATION)
    ).result()
    vnet = net.virtual_networks.begin_create_or_update(
        rg,
        "vnet",
        VirtualNetwork(
            location=LOCATION,
            address_space=AddressSpace(address_prefixes=["10.0.0.0/16"]),
            subnets=[
                Subnet(
                    name="vms",
                    address_prefix="10.0.1.0/24",
                    network_security_group=NetworkSecurityGroup(id=nsg.id),
                ),
                Subnet(name="AzureFirewallSubnet", address_prefix="10.0.100.0/26"),
            ],
        ),
    ).result()
    pips = [
        net.public_ip_addresses.begin_create_or_update(
            rg,
            name,
            PublicIPAddress(
                location=LOCATION,
                sku=PublicIPAddressSku(name="Standard"),
                public_ip_allocation_method="Static",
            ),
        ).result()
        for name in ("vm-pip", "fw-pip")
    ]
    subnets = {s.name: s for s in vnet.subnets or []}
    return Estate(net, rg, nsg, vnet, subnets["vms"], subnets["AzureFirewallSubnet"], pips[0], pips[1])


def nic_body(estate: Estate, *, static_ip: str | None = None, with_pip: bool = False) -> NetworkInterface:
    config = NetworkInterfaceIPConfiguration(
        name="ipconfig1",
        subnet=Subnet(id=estate.vm_subnet.id),
        private_ip_allocation_method="Static" if static_ip else "Dynamic",
        private_ip_address=static_ip,
        public_ip_address=PublicIPAddress(id=estate.vm_pip.id) if with_pip else None,
    )
    return NetworkInterface(
        location=LOCATION,
        ip_configurations=[config],
        network_security_group=NetworkSecurityGroup(id=estate.nsg.id),
    )


def firewall_body(estate: Estate, *, nat_rules: list[AzureFirewallNatRule] | None = None) -> AzureFirewall:
    collections = []
    if nat_rules is not None:
        collections.append(
            AzureFirewallNatRuleCollection(
                name="portcullis-dnat",
                priority=100,
                action=AzureFirewallNatRCAction(type="Dnat"),
                rules=nat_rules,
            )
        )
    return AzureFirewall(
        location=LOCATION,
        ip_configurations=[
            AzureFirewallIPConfiguration(
                name="fw-ipconfig",
                subnet=SubResource(id=estate.firewall_subnet.id),
                public_ip_address=SubResource(id=estate.firewall_pip.id),
            )
        ],
        nat_rule_collections=collections,
    )


def nat_rule(estate: Estate, *, port: str = "50022", name: str = "ssh-vm1") -> AzureFirewallNatRule:
    return AzureFirewallNatRule(
        name=name,
        source_addresses=["203.0.113.7"],
        destination_addresses=[estate.firewall_pip.ip_address or ""],
        destination_ports=[port],
        protocols=["TCP"],
        translated_address="10.0.1.4",
        translated_port="22",
    )
