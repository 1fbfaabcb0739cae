"""Where a VM's traffic passes: VM -> NICs -> private/public IP, subnet NSG and NIC NSG; and the Azure
Firewall in front of it (classic rules or Firewall Policy), its public IPs and AzureFirewallSubnet prefix.

Read through the real azure-mgmt SDKs as wire JSON (`model.as_dict()`), cached for `ttl` seconds:
topology changes rarely, and converge asks for the same VMs over and over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.model import JitPolicy, ResourceId, TargetKind, TargetRef, VmPolicy, VmRef
from shared.plan import NicOnTarget

log = logging.getLogger("portcullis.topology")


class TopologyError(RuntimeError):
    """The estate does not have what the policy says (VM, NIC, firewall missing or unusable)."""

    def __init__(self, subject: str, message: str) -> None:
        super().__init__(f"{subject}: {message}")
        self.subject = subject
        self.reason = message


@dataclass(frozen=True)
class ArmPath:
    """The parts of an ARM id converge needs to call the SDK."""

    subscription_id: str
    resource_group: str
    names: tuple[str, ...]

    @classmethod
    def parse(cls, resource_id: str) -> ArmPath:
        parts = [p for p in resource_id.split("/") if p]
        lowered = [p.lower() for p in parts]
        try:
            sub = parts[lowered.index("subscriptions") + 1]
            rg = parts[lowered.index("resourcegroups") + 1]
            provider_at = lowered.index("providers")
        except (ValueError, IndexError):
            raise TopologyError(resource_id, "not an ARM resource id") from None
        tail = parts[provider_at + 2 :]  # after the namespace: type, name, childType, childName...
        return cls(sub, rg, tuple(tail[1::2]))


@dataclass(frozen=True)
class NicPath:
    nic_id: ResourceId
    private_ip: str
    public_ip: str | None
    subnet_id: ResourceId | None
    nsg_ids: tuple[ResourceId, ...]  # the subnet's NSG first (evaluated first inbound), then the NIC's


@dataclass(frozen=True)
class FirewallInfo:
    firewall_id: ResourceId
    policy_id: ResourceId | None  # None: classic rules on the firewall itself
    public_ips: tuple[str, ...]
    subnet_prefix: str  # AzureFirewallSubnet: where DNATed traffic comes from (SNAT)

    @property
    def target(self) -> TargetRef:
        if self.policy_id is not None:
            return TargetRef(TargetKind.FIREWALL_POLICY, self.policy_id)
        return TargetRef(TargetKind.FIREWALL_CLASSIC, self.firewall_id)


@dataclass(frozen=True)
class VmPath:
    """Everything between the Internet and one VM that our rules live on."""

    vm: VmRef
    nics: tuple[NicPath, ...]
    firewall: FirewallInfo | None = None
    firewall_public_ip: str | None = None  # the one of the firewall's IPs that fronts this VM

    @property
    def private_ip(self) -> str | None:
        return self.nics[0].private_ip if self.nics else None

    @property
    def nsg_targets(self) -> tuple[TargetRef, ...]:
        seen: dict[str, TargetRef] = {}
        for nic in self.nics:
            for nsg in nic.nsg_ids:
                ref = TargetRef(TargetKind.NSG, nsg)
                seen.setdefault(ref.key, ref)
        return tuple(seen.values())

    @property
    def targets(self) -> tuple[TargetRef, ...]:
        extra = (self.firewall.target,) if self.firewall is not None else ()
        return self.nsg_targets + extra

    @property
    def connect_address(self) -> str | None:
        if self.firewall is not None:
            return self.firewall_public_ip
        return next((nic.public_ip for nic in self.nics if nic.public_ip), None)

    def on_nsg(self, nsg_id: ResourceId) -> NicOnTarget:
        ips = tuple(nic.private_ip for nic in self.nics if nsg_id in nic.nsg_ids and nic.private_ip)
        return NicOnTarget(self.vm, ips)


def _id(reference: Any) -> str | None:
    if isinstance(reference, dict):
        value = reference.get("id")
        return str(value) if value else None
    return None


def _props(resource: dict[str, Any]) -> dict[str, Any]:
    properties = resource.get("properties")
    return properties if isinstance(properties, dict) else {}


NetworkFactory = Callable[[str], Any]


class TopologyResolver:
    """Reads the estate through `network_client(sub)` and `compute_client(sub)`; caches answers."""

    def __init__(
        self,
        network_client: NetworkFactory,
        compute_client: NetworkFactory,
        *,
        ttl_seconds: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._network = network_client
        self._compute = compute_client
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._generation = 0

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()
            self._generation += 1

    def freshness(self) -> tuple[int, float, float]:
        """(generation, now, ttl): what a result derived from cached answers is valid for — the same
        generation (no `forget()` since) and less than `ttl` seconds old."""
        return self._generation, self._monotonic(), self._ttl

    def _cached(self, key: str, load: Callable[[], Any]) -> Any:
        now = self._monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]
        value = load()
        with self._lock:
            self._cache[key] = (now, value)
        return value

    # ---- VM side ----

    def vm_nics(self, vm: VmRef) -> tuple[NicPath, ...]:
        result: tuple[NicPath, ...] = self._cached(f"vm|{vm.key}", lambda: self._load_vm_nics(vm))
        return result

    def _load_vm_nics(self, vm: VmRef) -> tuple[NicPath, ...]:
        try:
            body = (
                self._compute(vm.subscription_id).virtual_machines.get(vm.resource_group, vm.name).as_dict()
            )
        except ResourceNotFoundError:
            raise TopologyError(vm.id, "the virtual machine does not exist") from None
        references = _props(body).get("networkProfile", {}).get("networkInterfaces", []) or []
        # The primary NIC first: it carries the address users connect to.
        references = sorted(references, key=lambda r: not _props(r).get("primary", len(references) == 1))
        nics = [self._load_nic(nic_id) for ref in references if (nic_id := _id(ref))]
        if not nics:
            raise TopologyError(vm.id, "the virtual machine has no network interface")
        return tuple(nics)

    def _load_nic(self, nic_id: str) -> NicPath:
        path = ArmPath.parse(nic_id)
        network = self._network(path.subscription_id)
        try:
            nic = network.network_interfaces.get(path.resource_group, path.names[0]).as_dict()
        except ResourceNotFoundError:
            raise TopologyError(nic_id, "the network interface does not exist") from None
        configs = _props(nic).get("ipConfigurations", []) or []
        config = next((c for c in configs if _props(c).get("primary")), configs[0] if configs else {})
        config_props = _props(config)
        private_ip = str(config_props.get("privateIPAddress") or "")
        public_ip = None
        if (public_ip_id := _id(config_props.get("publicIPAddress"))) is not None:
            public_ip = self.public_ip_address(public_ip_id)
        subnet_id = _id(config_props.get("subnet"))
        nsgs: list[ResourceId] = []
        if subnet_id is not None and (subnet_nsg := self.subnet_nsg(subnet_id)) is not None:
            nsgs.append(ResourceId(subnet_nsg))
        if (nic_nsg := _id(_props(nic).get("networkSecurityGroup"))) is not None:
            nic_ref = ResourceId(nic_nsg)
            if nic_ref not in nsgs:
                nsgs.append(nic_ref)
        return NicPath(
            nic_id=ResourceId(nic_id),
            private_ip=private_ip,
            public_ip=public_ip,
            subnet_id=ResourceId(subnet_id) if subnet_id else None,
            nsg_ids=tuple(nsgs),
        )

    def _subnet(self, subnet_id: str) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            path = ArmPath.parse(subnet_id)
            network = self._network(path.subscription_id)
            result: dict[str, Any] = network.subnets.get(
                path.resource_group, path.names[0], path.names[1]
            ).as_dict()
            return result

        subnet: dict[str, Any] = self._cached(f"subnet|{subnet_id.lower()}", load)
        return subnet

    def subnet_nsg(self, subnet_id: str) -> str | None:
        return _id(_props(self._subnet(subnet_id)).get("networkSecurityGroup"))

    def subnet_prefix(self, subnet_id: str) -> str:
        props = _props(self._subnet(subnet_id))
        prefix = props.get("addressPrefix") or next(iter(props.get("addressPrefixes") or []), None)
        if not prefix:
            raise TopologyError(subnet_id, "the subnet has no address prefix")
        return str(prefix)

    def public_ip_address(self, public_ip_id: str) -> str | None:
        def load() -> str | None:
            path = ArmPath.parse(public_ip_id)
            body = self._network(path.subscription_id).public_ip_addresses.get(
                path.resource_group, path.names[0]
            )
            address = _props(body.as_dict()).get("ipAddress")
            return str(address) if address else None

        address: str | None = self._cached(f"pip|{public_ip_id.lower()}", load)
        return address

    # ---- firewall side ----

    def firewall(self, firewall_id: str) -> FirewallInfo:
        info: FirewallInfo = self._cached(
            f"fw|{firewall_id.lower()}", lambda: self._load_firewall(firewall_id)
        )
        return info

    def _load_firewall(self, firewall_id: str) -> FirewallInfo:
        path = ArmPath.parse(firewall_id)
        try:
            body = self._network(path.subscription_id).azure_firewalls.get(path.resource_group, path.names[0])
        except ResourceNotFoundError:
            raise TopologyError(firewall_id, "the Azure Firewall does not exist") from None
        props = _props(body.as_dict())
        public_ips: list[str] = []
        subnet_prefix: str | None = None
        for config in props.get("ipConfigurations", []) or []:
            config_props = _props(config)
            if (pip_id := _id(config_props.get("publicIPAddress"))) and (
                ip := self.public_ip_address(pip_id)
            ):
                public_ips.append(ip)
            if subnet_prefix is None and (subnet_id := _id(config_props.get("subnet"))):
                subnet_prefix = self.subnet_prefix(subnet_id)
        if not public_ips:
            raise TopologyError(firewall_id, "the Azure Firewall has no public IP address to DNAT from")
        if subnet_prefix is None:
            raise TopologyError(firewall_id, "the Azure Firewall has no AzureFirewallSubnet")
        policy_id = _id(props.get("firewallPolicy"))
        return FirewallInfo(
            firewall_id=ResourceId(str(body.as_dict().get("id") or firewall_id)),
            policy_id=ResourceId(policy_id) if policy_id else None,
            public_ips=tuple(public_ips),
            subnet_prefix=subnet_prefix,
        )

    def firewall_owning(self, subscription_id: str, public_ip: str) -> FirewallInfo:
        """Defender's way: the policy names the firewall's public IP; find the firewall that has it."""

        def load() -> str:
            network = self._network(subscription_id)
            # One list call: the public IP names what uses it (`ipConfiguration`).
            for address in network.public_ip_addresses.list_all():
                props = _props(address.as_dict())
                if props.get("ipAddress") != public_ip:
                    continue
                user = _id(props.get("ipConfiguration")) or ""
                marker = "/azurefirewallipconfigurations/"
                if marker in user.lower():
                    return user[: user.lower().index(marker)]
            # No back-reference: look at every firewall's addresses.
            for firewall in network.azure_firewalls.list_all():
                body = firewall.as_dict()
                for config in _props(body).get("ipConfigurations", []) or []:
                    pip_id = _id(_props(config).get("publicIPAddress"))
                    if pip_id and self.public_ip_address(pip_id) == public_ip:
                        return str(body["id"])
            raise TopologyError(
                f"publicIpAddress {public_ip}",
                f"no Azure Firewall in subscription {subscription_id} has this public IP",
            )

        firewall_id: str = self._cached(f"fwip|{subscription_id.lower()}|{public_ip}", load)
        return self.firewall(firewall_id)

    # ---- the whole path ----

    def path(self, vm: VmRef, vm_policy: VmPolicy | None) -> VmPath:
        nics = self.vm_nics(vm)
        firewall: FirewallInfo | None = None
        fronting_ip: str | None = None
        if vm_policy is not None and vm_policy.firewall is not None:
            firewall = self.firewall(vm_policy.firewall.firewall_id.value)
            fronting_ip = vm_policy.public_ip_address or firewall.public_ips[0]
            if fronting_ip not in firewall.public_ips:
                raise TopologyError(
                    vm.id, f"publicIpAddress {fronting_ip} is not one of the firewall's public IPs"
                )
        elif (
            vm_policy is not None
            and vm_policy.public_ip_address
            and not any(nic.public_ip == vm_policy.public_ip_address for nic in nics)
        ):
            firewall = self.firewall_owning(vm.subscription_id, vm_policy.public_ip_address)
            fronting_ip = vm_policy.public_ip_address
        return VmPath(vm=vm, nics=nics, firewall=firewall, firewall_public_ip=fronting_ip)

    # ---- confinement reads (the policy API's firewall check, DESIGN.md invariant 6) ----

    def virtual_network(self, vnet_id: str) -> dict[str, Any]:
        """A VNet's wire JSON, with its `virtualNetworkPeerings` (see shared.reachability)."""

        def load() -> dict[str, Any]:
            path = ArmPath.parse(vnet_id)
            try:
                body: dict[str, Any] = (
                    self._network(path.subscription_id)
                    .virtual_networks.get(path.resource_group, path.names[0])
                    .as_dict()
                )
            except ResourceNotFoundError:
                raise TopologyError(vnet_id, "the virtual network does not exist") from None
            return body

        vnet: dict[str, Any] = self._cached(f"vnet|{ResourceId(vnet_id).key}", load)
        return vnet

    def firewall_body(self, firewall_id: str) -> dict[str, Any]:
        """An Azure Firewall's wire JSON (its subnet, Firewall Policy and public IP references)."""

        def load() -> dict[str, Any]:
            path = ArmPath.parse(firewall_id)
            try:
                body: dict[str, Any] = (
                    self._network(path.subscription_id)
                    .azure_firewalls.get(path.resource_group, path.names[0])
                    .as_dict()
                )
            except ResourceNotFoundError:
                raise TopologyError(firewall_id, "the Azure Firewall does not exist") from None
            return body

        firewall: dict[str, Any] = self._cached(f"fwbody|{ResourceId(firewall_id).key}", load)
        return firewall

    def firewalls_in(self, subscription_id: str) -> tuple[dict[str, Any], ...]:
        """Every Azure Firewall of a subscription (wire JSON), one list call."""

        def load() -> tuple[dict[str, Any], ...]:
            return tuple(f.as_dict() for f in self._network(subscription_id).azure_firewalls.list_all())

        firewalls: tuple[dict[str, Any], ...] = self._cached(f"fwlist|{subscription_id.lower()}", load)
        return firewalls


def vm_policy_for(policies: list[JitPolicy], vm: VmRef) -> VmPolicy | None:
    for policy in policies:
        if (entry := policy.vm_policy(vm)) is not None:
            return entry
    return None
