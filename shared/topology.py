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
from dataclasses import dataclass, replace
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.arm_ids import ArmId
from shared.model import ResourceId, TargetKind, TargetRef, VmPolicy, VmRef
from shared.plan import NicOnTarget
from shared.reachability import connected_peers, firewall_may_front, vnet_of_subnet

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
        try:
            parsed = ArmId.parse(resource_id)
        except ValueError:
            parsed = None
        if parsed is None or not parsed.resource_group or not parsed.names:
            raise TopologyError(resource_id, "not an ARM resource id")
        return cls(parsed.subscription_id, parsed.resource_group, parsed.names)


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
    vnet_id: ResourceId | None = None  # the VNet of its AzureFirewallSubnet (confinement)

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
    # Set when the firewall may not front this VM (not in its VNet nor a connected peer): our rules
    # there are removed and the grant's firewall target is Failed with this reason (invariant 6).
    firewall_blocked: str | None = None

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
SubnetLookup = Callable[[str], dict[str, Any]]
AddressLookup = Callable[[str], str | None]


# ---- pure: a path from resource JSON (used by the per-VM resolver and by the estate snapshot) ----


def vm_nic_ids(vm_body: dict[str, Any]) -> list[str]:
    """The VM's NIC ids, the primary NIC first: it carries the address users connect to."""
    references = _props(vm_body).get("networkProfile", {}).get("networkInterfaces", []) or []
    references = sorted(references, key=lambda r: not _props(r).get("primary", len(references) == 1))
    return [nic_id for ref in references if (nic_id := _id(ref))]


def nic_path_from(nic: dict[str, Any], nic_id: str, subnet: SubnetLookup, address: AddressLookup) -> NicPath:
    """One NIC's place on the path: its primary IP configuration, subnet NSG first, then its own."""
    configs = _props(nic).get("ipConfigurations", []) or []
    config = next((c for c in configs if _props(c).get("primary")), configs[0] if configs else {})
    config_props = _props(config)
    private_ip = str(config_props.get("privateIPAddress") or "")
    public_ip = None
    if (public_ip_id := _id(config_props.get("publicIPAddress"))) is not None:
        public_ip = address(public_ip_id)
    subnet_id = _id(config_props.get("subnet"))
    nsgs: list[ResourceId] = []
    if subnet_id is not None and (subnet_nsg := _id(_props(subnet(subnet_id)).get("networkSecurityGroup"))):
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


def subnet_prefix_of(subnet_id: str, subnet_body: dict[str, Any]) -> str:
    props = _props(subnet_body)
    prefix = props.get("addressPrefix") or next(iter(props.get("addressPrefixes") or []), None)
    if not prefix:
        raise TopologyError(subnet_id, "the subnet has no address prefix")
    return str(prefix)


def firewall_info_from(
    body: dict[str, Any], firewall_id: str, subnet: SubnetLookup, address: AddressLookup
) -> FirewallInfo:
    props = _props(body)
    public_ips: list[str] = []
    subnet_prefix: str | None = None
    vnet_id: ResourceId | None = None
    for config in props.get("ipConfigurations", []) or []:
        config_props = _props(config)
        if (pip_id := _id(config_props.get("publicIPAddress"))) and (ip := address(pip_id)):
            public_ips.append(ip)
        if subnet_prefix is None and (subnet_id := _id(config_props.get("subnet"))):
            subnet_prefix = subnet_prefix_of(subnet_id, subnet(subnet_id))
            try:
                vnet_id = vnet_of_subnet(subnet_id)
            except ValueError:
                vnet_id = None
    if not public_ips:
        raise TopologyError(firewall_id, "the Azure Firewall has no public IP address to DNAT from")
    if subnet_prefix is None:
        raise TopologyError(firewall_id, "the Azure Firewall has no AzureFirewallSubnet")
    policy_id = _id(props.get("firewallPolicy"))
    return FirewallInfo(
        firewall_id=ResourceId(str(body.get("id") or firewall_id)),
        policy_id=ResourceId(policy_id) if policy_id else None,
        public_ips=tuple(public_ips),
        subnet_prefix=subnet_prefix,
        vnet_id=vnet_id,
    )


def choose_path(
    vm: VmRef,
    nics: tuple[NicPath, ...],
    vm_policy: VmPolicy | None,
    firewall: Callable[[str], FirewallInfo],
    firewall_owning: Callable[[str], FirewallInfo],
) -> VmPath:
    """The policy names a firewall, or a public IP that is not the VM's own (Defender's way of saying
    "behind the firewall that has this IP"); otherwise the VM is reached on its own address."""
    info: FirewallInfo | None = None
    fronting_ip: str | None = None
    if vm_policy is not None and vm_policy.firewall is not None:
        info = firewall(vm_policy.firewall.firewall_id.value)
        fronting_ip = vm_policy.public_ip_address or info.public_ips[0]
        if fronting_ip not in info.public_ips:
            raise TopologyError(
                vm.id, f"publicIpAddress {fronting_ip} is not one of the firewall's public IPs"
            )
    elif (
        vm_policy is not None
        and vm_policy.public_ip_address
        and not any(nic.public_ip == vm_policy.public_ip_address for nic in nics)
    ):
        info = firewall_owning(vm_policy.public_ip_address)
        fronting_ip = vm_policy.public_ip_address
    return VmPath(vm=vm, nics=nics, firewall=info, firewall_public_ip=fronting_ip)


def confine(path: VmPath, vm_vnet_body: Callable[[str], dict[str, Any] | None]) -> VmPath:
    """Mark the path's firewall blocked unless `reachability.firewall_may_front` allows it."""
    if path.firewall is None or path.firewall.vnet_id is None or not path.nics:
        return path
    subnet_id = path.nics[0].subnet_id
    if subnet_id is None:
        return path
    try:
        vm_vnet = vnet_of_subnet(subnet_id.value)
    except ValueError:
        return path
    body = vm_vnet_body(vm_vnet.value) or {}
    if firewall_may_front(vm_vnet, path.firewall.vnet_id, connected_peers(body)):
        return path
    reason = (
        f"firewall {path.firewall.firewall_id.value} is not in the VM's VNet {vm_vnet.value} "
        "nor in a VNet peered with it"
    )
    return replace(path, firewall_blocked=reason)


class TopologyResolver:
    """Reads one VM's path through `network_client(sub)` and `compute_client(sub)` (GETs); caches
    answers for `ttl` seconds, and failures (a VM or firewall that is gone) for `negative_ttl`
    seconds, so a broken VM costs one lookup per period rather than one per trigger. The reconcile
    timer does not use it: it derives every path from its per-subscription listing (enforcement/snapshot)."""

    def __init__(
        self,
        network_client: NetworkFactory,
        compute_client: NetworkFactory,
        *,
        ttl_seconds: float = 300.0,
        negative_ttl_seconds: float = 120.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._network = network_client
        self._compute = compute_client
        self._ttl = ttl_seconds
        self._negative_ttl = negative_ttl_seconds
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, Any]] = {}
        self._failures: dict[str, tuple[float, TopologyError]] = {}
        self._lock = threading.Lock()
        self._generation = 0

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()
            self._failures.clear()
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
            failed = self._failures.get(key)
            if failed is not None and now - failed[0] < self._negative_ttl:
                raise failed[1]
        try:
            value = load()
        except TopologyError as error:
            with self._lock:
                self._failures[key] = (now, error)
            raise
        with self._lock:
            self._cache[key] = (now, value)
            self._failures.pop(key, None)
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
        nics = [self._load_nic(nic_id) for nic_id in vm_nic_ids(body)]
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
        return nic_path_from(nic, nic_id, self._subnet, self.public_ip_address)

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

    def _vnet(self, vnet_id: str) -> dict[str, Any] | None:
        def load() -> dict[str, Any] | None:
            path = ArmPath.parse(vnet_id)
            try:
                body = self._network(path.subscription_id).virtual_networks.get(
                    path.resource_group, path.names[0]
                )
            except ResourceNotFoundError:
                return None
            result: dict[str, Any] = body.as_dict()
            return result

        vnet: dict[str, Any] | None = self._cached(f"vnet|{vnet_id.lower()}", load)
        return vnet

    def subnet_nsg(self, subnet_id: str) -> str | None:
        return _id(_props(self._subnet(subnet_id)).get("networkSecurityGroup"))

    def subnet_prefix(self, subnet_id: str) -> str:
        return subnet_prefix_of(subnet_id, self._subnet(subnet_id))

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
        return firewall_info_from(body.as_dict(), firewall_id, self._subnet, self.public_ip_address)

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
        found = choose_path(
            vm,
            self.vm_nics(vm),
            vm_policy,
            self.firewall,
            lambda ip: self.firewall_owning(vm.subscription_id, ip),
        )
        return confine(found, self._vnet)

    # ---- confinement reads (the policy API's firewall check, DESIGN.md invariant 6) ----

    def virtual_network(self, vnet_id: str) -> dict[str, Any]:
        """A VNet's wire JSON, with its `virtualNetworkPeerings` (see shared.reachability)."""
        return self._network_body("virtual_networks", "virtual network", vnet_id)

    def firewall_body(self, firewall_id: str) -> dict[str, Any]:
        """An Azure Firewall's wire JSON (its subnet, Firewall Policy and public IP references)."""
        return self._network_body("azure_firewalls", "Azure Firewall", firewall_id)

    def _network_body(self, operations: str, what: str, resource_id: str) -> dict[str, Any]:
        """One top-level Network resource by id (cached); missing -> TopologyError naming it."""

        def load() -> dict[str, Any]:
            path = ArmPath.parse(resource_id)
            try:
                body: dict[str, Any] = (
                    getattr(self._network(path.subscription_id), operations)
                    .get(path.resource_group, path.names[0])
                    .as_dict()
                )
            except ResourceNotFoundError:
                raise TopologyError(resource_id, f"the {what} does not exist") from None
            return body

        found: dict[str, Any] = self._cached(f"{operations}|{ResourceId(resource_id).key}", load)
        return found

    def firewalls_in(self, subscription_id: str) -> tuple[dict[str, Any], ...]:
        """Every Azure Firewall of a subscription (wire JSON), one list call."""

        def load() -> tuple[dict[str, Any], ...]:
            return tuple(f.as_dict() for f in self._network(subscription_id).azure_firewalls.list_all())

        firewalls: tuple[dict[str, Any], ...] = self._cached(f"fwlist|{subscription_id.lower()}", load)
        return firewalls
