"""Estates of any size for the ARM emulator's bulk seed endpoint, and the JIT policies covering them.

Shape: `direct_vms` VMs in one VNet (no firewall), each with its own NIC NSG; and one VNet per
firewall group, holding `vms` VMs behind an Azure Firewall with classic rules or a Firewall Policy
(workload subnet guarded by one subnet NSG, plus each VM's NIC NSG when `nic_nsgs`). Every VM's
policy entry lists `ports` ports; firewall VMs name their firewall (`portcullis.firewallId`) and its
public IP (Defender's `publicIpAddress`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

NETWORK = "Microsoft.Network"
POLICY_PORTS = (22, 3389, 5985, 5986, 2222, 8022, 8443, 9022)
# Defender's portal writes one policy per resource group and region holding every VM; the app's
# bodies are capped (PORTCULLIS_MAX_BODY_BYTES, 64 KB), so big estates use several policies.
VMS_PER_POLICY = 40
SUBNET_SIZE = 1000  # VMs per /22 workload subnet


@dataclass(frozen=True)
class FirewallGroup:
    name: str
    kind: Literal["classic", "policy"]
    vms: int
    subnet_nsg: bool = True


@dataclass(frozen=True)
class VmInfo:
    name: str
    vm_id: str
    private_ip: str
    nic_nsg_id: str | None
    subnet_nsg_id: str | None
    firewall: FirewallGroup | None
    firewall_id: str | None
    firewall_public_ip: str | None


@dataclass
class BenchEstate:
    subscription_id: str
    resource_group: str
    direct_vms: int = 0
    firewalls: list[FirewallGroup] = field(default_factory=list)
    nic_nsgs: bool = True
    ports: int = 1
    ip_octet: int = 40  # first octet of public IPs: estates side by side in one emulator must differ
    location: str = "westeurope"

    # ---- ids ----

    def rid(self, kind: str, name: str, namespace: str = NETWORK) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/{namespace}/{kind}/{name}"
        )

    @property
    def scope(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"

    def firewall_id(self, group: FirewallGroup) -> str:
        return self.rid("azureFirewalls", f"fw-{group.name}")

    def firewall_policy_id(self, group: FirewallGroup) -> str:
        return self.rid("firewallPolicies", f"fwpol-{group.name}")

    def firewall_public_ip(self, index: int) -> str:
        return f"{self.ip_octet}.{index // 250}.{index % 250}.10"

    def firewall_subnet_prefix(self, group_index: int) -> str:
        """The AzureFirewallSubnet of the index-th firewall group's VNet (NSG rules behind a firewall
        allow this source)."""
        return f"10.{group_index + 1}.200.0/26"

    def subnet_id(self, vnet: str, subnet: str) -> str:
        return f"{self.rid('virtualNetworks', vnet)}/subnets/{subnet}"

    def nic_nsg_id(self, vm_name: str) -> str:
        return self.rid("networkSecurityGroups", f"nsg-{vm_name}")

    # ---- the VMs ----

    def vms(self) -> Iterator[VmInfo]:
        for index in range(self.direct_vms):
            name = f"vm-d{index:05d}"
            yield VmInfo(
                name,
                self.rid("virtualMachines", name, "Microsoft.Compute"),
                _host_ip(0, index),
                self.nic_nsg_id(name) if self.nic_nsgs else None,
                None,
                None,
                None,
                None,
            )
        for group_index, group in enumerate(self.firewalls):
            subnet_nsg = (
                self.rid("networkSecurityGroups", f"nsg-{group.name}-subnet") if group.subnet_nsg else None
            )
            for index in range(group.vms):
                name = f"vm-{group.name}-{index:04d}"
                yield VmInfo(
                    name,
                    self.rid("virtualMachines", name, "Microsoft.Compute"),
                    _host_ip(group_index + 1, index),
                    self.nic_nsg_id(name) if self.nic_nsgs else None,
                    subnet_nsg,
                    group,
                    self.firewall_id(group),
                    self.firewall_public_ip(group_index),
                )

    def nsg_ids(self) -> list[str]:
        found: dict[str, None] = {}
        for vm in self.vms():
            for nsg in (vm.subnet_nsg_id, vm.nic_nsg_id):
                if nsg:
                    found.setdefault(nsg, None)
        return list(found)

    # ---- seed items, in dependency order ----

    def resources(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        loc = self.location

        def add(resource_id: str, body: dict[str, Any]) -> None:
            items.append({"id": resource_id, "body": {"location": loc, **body}})

        empty_nsg: dict[str, Any] = {"properties": {"securityRules": []}}
        for nsg_id in self.nsg_ids():
            add(nsg_id, empty_nsg)

        def vnet(
            name: str, network_index: int, vm_count: int, subnet_nsg: str | None, firewall: bool
        ) -> None:  # network_index 0 = the direct VMs' VNet, g + 1 = firewall group g
            subnets = []
            for s in range(max(1, -(-vm_count // SUBNET_SIZE))):
                subnet: dict[str, Any] = {"addressPrefix": f"10.{network_index}.{4 * s}.0/22"}
                if subnet_nsg:
                    subnet["networkSecurityGroup"] = {"id": subnet_nsg}
                subnets.append({"name": f"workload{s}", "properties": subnet})
            if firewall:
                subnets.append(
                    {
                        "name": "AzureFirewallSubnet",
                        "properties": {"addressPrefix": self.firewall_subnet_prefix(network_index - 1)},
                    }
                )
            add(
                self.rid("virtualNetworks", name),
                {
                    "properties": {
                        "addressSpace": {"addressPrefixes": [f"10.{network_index}.0.0/16"]},
                        "subnets": subnets,
                    }
                },
            )

        if self.direct_vms:
            vnet("vnet-direct", 0, self.direct_vms, None, firewall=False)
        for group_index, group in enumerate(self.firewalls):
            subnet_nsg = (
                self.rid("networkSecurityGroups", f"nsg-{group.name}-subnet") if group.subnet_nsg else None
            )
            vnet(f"vnet-{group.name}", group_index + 1, group.vms, subnet_nsg, firewall=True)
            add(
                self.rid("publicIPAddresses", f"pip-fw-{group.name}"),
                {
                    "sku": {"name": "Standard", "tier": "Regional"},
                    "properties": {
                        "publicIPAllocationMethod": "Static",
                        "ipAddress": self.firewall_public_ip(group_index),
                    },
                },
            )

        for vm in self.vms():
            vnet_name = "vnet-direct" if vm.firewall is None else f"vnet-{vm.firewall.name}"
            ordinal = _ordinal(vm.name)
            config: dict[str, Any] = {
                "subnet": {"id": self.subnet_id(vnet_name, f"workload{ordinal // SUBNET_SIZE}")},
                "privateIPAllocationMethod": "Static",
                "privateIPAddress": vm.private_ip,
                "primary": True,
            }
            nic_props: dict[str, Any] = {"ipConfigurations": [{"name": "ipconfig1", "properties": config}]}
            if vm.nic_nsg_id:
                nic_props["networkSecurityGroup"] = {"id": vm.nic_nsg_id}
            nic_id = self.rid("networkInterfaces", f"nic-{vm.name}")
            add(nic_id, {"properties": nic_props})
            add(
                vm.vm_id,
                {
                    "properties": {
                        "hardwareProfile": {"vmSize": "Standard_B1s"},
                        "networkProfile": {
                            "networkInterfaces": [{"id": nic_id, "properties": {"primary": True}}]
                        },
                    }
                },
            )

        for group in self.firewalls:
            fw_config = [
                {
                    "name": "fwconfig",
                    "properties": {
                        "subnet": {"id": self.subnet_id(f"vnet-{group.name}", "AzureFirewallSubnet")},
                        "publicIPAddress": {"id": self.rid("publicIPAddresses", f"pip-fw-{group.name}")},
                    },
                }
            ]
            properties: dict[str, Any] = {
                "sku": {"name": "AZFW_VNet", "tier": "Standard"},
                "ipConfigurations": fw_config,
            }
            if group.kind == "policy":
                add(self.firewall_policy_id(group), {"properties": {"sku": {"tier": "Standard"}}})
                properties["firewallPolicy"] = {"id": self.firewall_policy_id(group)}
            else:
                properties.update(
                    {"natRuleCollections": [], "networkRuleCollections": [], "applicationRuleCollections": []}
                )
            add(self.firewall_id(group), {"properties": properties})
        return items

    # ---- JIT policies (Defender's JSON) ----

    def policy_bodies(
        self, *, max_duration: str = "PT3H", include: Callable[[VmInfo], bool] | None = None
    ) -> dict[str, dict[str, Any]]:
        """{policy name: Defender policy body}; VMS_PER_POLICY VMs per policy (those `include` accepts)."""
        entries = [self.policy_entry(vm, max_duration) for vm in self.vms() if include is None or include(vm)]
        bodies = {}
        for start in range(0, len(entries), VMS_PER_POLICY):
            name = f"bench-{start // VMS_PER_POLICY:03d}"
            bodies[name] = {
                "kind": "Basic",
                "properties": {"virtualMachines": entries[start : start + VMS_PER_POLICY]},
            }
        return bodies

    def policy_entry(self, vm: VmInfo, max_duration: str) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": vm.vm_id,
            "ports": [
                {
                    "number": number,
                    "protocol": "TCP",
                    "allowedSourceAddressPrefix": "*",
                    "maxRequestAccessDuration": max_duration,
                }
                for number in POLICY_PORTS[: self.ports]
            ],
        }
        if vm.firewall is not None:
            entry["publicIpAddress"] = vm.firewall_public_ip
            entry["portcullis"] = {"firewallId": vm.firewall_id}
        return entry

    def policy_path(self, name: str) -> str:
        security = f"{self.scope}/providers/Microsoft.Security/locations/{self.location}"
        return f"{security}/jitNetworkAccessPolicies/{name}"


def _host_ip(network_index: int, index: int) -> str:
    """The index-th host address of network 10.{network_index}.0.0/16 (subnets of SUBNET_SIZE in /22s)."""
    subnet, offset = divmod(index, SUBNET_SIZE)
    offset += 4  # Azure reserves the first four addresses of a subnet
    return f"10.{network_index}.{4 * subnet + offset // 256}.{offset % 256}"


def _ordinal(vm_name: str) -> int:
    return int(vm_name.rsplit("-", 1)[1].lstrip("d"))


def seed(arm: Any, items: list[dict[str, Any]], chunk: int = 1000) -> None:
    """Bulk-seed through `POST /_emulator/seed` in chunks (one admin call per chunk)."""
    for start in range(0, len(items), chunk):
        arm.seed(items[start : start + chunk])
