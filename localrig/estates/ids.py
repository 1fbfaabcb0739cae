"""Resource ids inside one resource group, as ARM spells them. Every estate of the kit mixes this in,
so an NSG's or a VM's id is built in one place."""

from __future__ import annotations

NETWORK = "Microsoft.Network"
COMPUTE = "Microsoft.Compute"
SECURITY = "Microsoft.Security"
DEFAULT_LOCATION = "westeurope"


class ResourceGroupIds:
    """Ids of resources in `subscription_id`/`resource_group`; the class using it provides those
    two attributes and `location` (the region of the JIT policies)."""

    subscription_id: str
    resource_group: str
    location: str

    @property
    def scope(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"

    def rid(self, kind: str, name: str, namespace: str = NETWORK) -> str:
        return f"{self.scope}/providers/{namespace}/{kind}/{name}"

    def vm_id(self, name: str) -> str:
        return self.rid("virtualMachines", name, COMPUTE)

    def nsg_id(self, name: str) -> str:
        return self.rid("networkSecurityGroups", name)

    def nic_id(self, name: str) -> str:
        return self.rid("networkInterfaces", name)

    def public_ip_id(self, name: str) -> str:
        return self.rid("publicIPAddresses", name)

    def vnet_id(self, name: str) -> str:
        return self.rid("virtualNetworks", name)

    def subnet_id(self, vnet: str, subnet: str) -> str:
        return f"{self.vnet_id(vnet)}/subnets/{subnet}"

    def azure_firewall_id(self, name: str) -> str:
        return self.rid("azureFirewalls", name)

    def firewall_policy_resource_id(self, name: str) -> str:
        return self.rid("firewallPolicies", name)

    def policy_path(self, name: str = "default") -> str:
        """A Defender JIT policy's id (and the app's route for it) in the estate's location."""
        return f"{self.scope}/providers/{SECURITY}/locations/{self.location}/jitNetworkAccessPolicies/{name}"
