"""Microsoft.Network: NSGs and rules, VNets with subnets and peerings, public IPs, NICs, Azure Firewalls,
firewall policies and rule collection groups."""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator.providers.network.common import install_back_references
from emulator.providers.network.firewall import AzureFirewalls, FirewallPolicies, RuleCollectionGroups
from emulator.providers.network.nic import NetworkInterfaces
from emulator.providers.network.nsg import DefaultSecurityRules, NetworkSecurityGroups, SecurityRules
from emulator.providers.network.peering import VirtualNetworkPeerings
from emulator.providers.network.publicip import PublicIPAddresses
from emulator.providers.network.vnet import Subnets, VirtualNetworks

if TYPE_CHECKING:
    from emulator.engine import Engine


def register(engine: Engine) -> None:
    install_back_references(engine.store)
    for resource_type in (
        NetworkSecurityGroups(),
        SecurityRules(),
        DefaultSecurityRules(),
        VirtualNetworks(),
        Subnets(),
        VirtualNetworkPeerings(),
        PublicIPAddresses(),
        NetworkInterfaces(),
        AzureFirewalls(),
        FirewallPolicies(),
        RuleCollectionGroups(),
    ):
        engine.add_type(resource_type)
