"""Generated estates of any size for the benchmarks, seeded through the emulator's bulk endpoint, and
the JIT policies covering them.

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

from localrig.estates import bodies
from localrig.estates.ids import DEFAULT_LOCATION, ResourceGroupIds

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
class ScaleEstate(ResourceGroupIds):
    subscription_id: str
    resource_group: str
    direct_vms: int = 0
    firewalls: list[FirewallGroup] = field(default_factory=list)
    nic_nsgs: bool = True
    ports: int = 1
    ip_octet: int = 40  # first octet of public IPs: estates side by side in one emulator must differ
    location: str = DEFAULT_LOCATION

    # ---- ids ----

    def firewall_id(self, group: FirewallGroup) -> str:
        return self.azure_firewall_id(f"fw-{group.name}")

    def firewall_policy_id(self, group: FirewallGroup) -> str:
        return self.firewall_policy_resource_id(f"fwpol-{group.name}")

    def firewall_public_ip(self, index: int) -> str:
        return f"{self.ip_octet}.{index // 250}.{index % 250}.10"

    def firewall_subnet_prefix(self, group_index: int) -> str:
        """The AzureFirewallSubnet of the index-th firewall group's VNet (NSG rules behind a firewall
        allow this source)."""
        return f"10.{group_index + 1}.200.0/26"

    def nic_nsg_id(self, vm_name: str) -> str:
        return self.nsg_id(f"nsg-{vm_name}")

    def _subnet_nsg_id(self, group: FirewallGroup) -> str | None:
        return self.nsg_id(f"nsg-{group.name}-subnet") if group.subnet_nsg else None

    # ---- the VMs ----

    def vms(self) -> Iterator[VmInfo]:
        for index in range(self.direct_vms):
            name = f"vm-d{index:05d}"
            nic_nsg = self.nic_nsg_id(name) if self.nic_nsgs else None
            yield VmInfo(name, self.vm_id(name), _host_ip(0, index), nic_nsg, None, None, None, None)
        for group_index, group in enumerate(self.firewalls):
            for index in range(group.vms):
                name = f"vm-{group.name}-{index:04d}"
                yield VmInfo(
                    name,
                    self.vm_id(name),
                    _host_ip(group_index + 1, index),
                    self.nic_nsg_id(name) if self.nic_nsgs else None,
                    self._subnet_nsg_id(group),
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
        b = bodies
        items: list[dict[str, Any]] = []

        def add(resource_id: str, body: dict[str, Any]) -> None:
            items.append(b.seed_item(resource_id, body, self.location))

        for nsg_id in self.nsg_ids():
            add(nsg_id, b.nsg())

        def vnet(
            name: str, network_index: int, vm_count: int, subnet_nsg: str | None, firewall: bool
        ) -> None:  # network_index 0 = the direct VMs' VNet, g + 1 = firewall group g
            subnets = [
                b.subnet(f"workload{s}", f"10.{network_index}.{4 * s}.0/22", subnet_nsg)
                for s in range(max(1, -(-vm_count // SUBNET_SIZE)))
            ]
            if firewall:
                subnets.append(
                    b.subnet("AzureFirewallSubnet", self.firewall_subnet_prefix(network_index - 1))
                )
            add(self.vnet_id(name), b.vnet(f"10.{network_index}.0.0/16", subnets))

        if self.direct_vms:
            vnet("vnet-direct", 0, self.direct_vms, None, firewall=False)
        for group_index, group in enumerate(self.firewalls):
            vnet(f"vnet-{group.name}", group_index + 1, group.vms, self._subnet_nsg_id(group), firewall=True)
            add(self.public_ip_id(f"pip-fw-{group.name}"), b.public_ip(self.firewall_public_ip(group_index)))

        for vm in self.vms():
            vnet_name = "vnet-direct" if vm.firewall is None else f"vnet-{vm.firewall.name}"
            subnet_id = self.subnet_id(vnet_name, f"workload{_ordinal(vm.name) // SUBNET_SIZE}")
            nic_id = self.nic_id(f"nic-{vm.name}")
            add(nic_id, b.nic(subnet_id, vm.private_ip, nsg_id=vm.nic_nsg_id))
            add(vm.vm_id, b.vm(nic_id))

        for group in self.firewalls:
            subnet_id = self.subnet_id(f"vnet-{group.name}", "AzureFirewallSubnet")
            pip_id = self.public_ip_id(f"pip-fw-{group.name}")
            if group.kind == "policy":
                add(self.firewall_policy_id(group), b.firewall_policy())
                add(
                    self.firewall_id(group),
                    b.policy_firewall(subnet_id, pip_id, self.firewall_policy_id(group)),
                )
            else:
                add(self.firewall_id(group), b.classic_firewall(subnet_id, pip_id))
        return items

    # ---- JIT policies (Defender's JSON) ----

    def policy_bodies(
        self,
        *,
        max_duration: str = bodies.DEFAULT_MAX_DURATION,
        include: Callable[[VmInfo], bool] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """{policy name: Defender policy body}; VMS_PER_POLICY VMs per policy (those `include` accepts)."""
        entries = [self.policy_entry(vm, max_duration) for vm in self.vms() if include is None or include(vm)]
        return {
            f"bench-{start // VMS_PER_POLICY:03d}": bodies.jit_policy(entries[start : start + VMS_PER_POLICY])
            for start in range(0, len(entries), VMS_PER_POLICY)
        }

    def policy_entry(self, vm: VmInfo, max_duration: str) -> dict[str, Any]:
        return bodies.jit_vm(
            vm.vm_id,
            POLICY_PORTS[: self.ports],
            max_duration,
            public_ip=vm.firewall_public_ip,
            firewall_id=vm.firewall_id,
        )


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
