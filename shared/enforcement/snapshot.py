"""The estate as one reconcile pass sees it: ARM list calls per subscription, every page.

VMs, NICs, VNets (their subnets, NSG references and peerings), NSGs with their rules, public IPs,
Azure Firewalls, and the rule collection groups of the Firewall Policies those firewalls use. Every
VM's path is derived from these bodies by the same pure functions the per-VM resolver uses
(shared/topology.py), and every target is planned against them in memory: only a target whose plan
differs is then leased, read fresh and written (reconciler.converge). At 2,000 VMs that is a few
dozen list pages per subscription instead of several GETs per VM.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError

from shared.enforcement.views import BaselineMap, baseline_map, entries_on, vm_policy_of
from shared.events import EventId
from shared.model import Grant, JitPolicy, PolicyPort, ResourceId, TargetRef, VmPolicy, VmRef
from shared.observability import brief, log_event
from shared.plan import BaselineEntry
from shared.targets.wire import NETWORK_API_VERSION, list_raw
from shared.topology import (
    ArmPath,
    FirewallInfo,
    NicPath,
    TopologyError,
    VmPath,
    choose_path,
    confine,
    firewall_info_from,
    nic_path_from,
    vm_nic_ids,
)

if TYPE_CHECKING:
    from shared.enforcement.deps import ConvergeDeps

_FIREWALL_IP_CONFIG = "/azurefirewallipconfigurations/"


def _key(resource_id: str) -> str:
    return ResourceId(resource_id).key


def _props(body: dict[str, Any]) -> dict[str, Any]:
    props = body.get("properties")
    return props if isinstance(props, dict) else {}


# What a pass keeps of each listed body (the rest is dropped page by page, so a pass over thousands
# of VMs holds only what paths and plans read): top-level keys, and keys under `properties`.
_KEEP: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]] = {
    "vm": (("id", "name"), ("networkProfile",)),
    "nic": (("id", "name"), ("ipConfigurations", "networkSecurityGroup")),
    "vnet": (("id", "name"), ("subnets", "virtualNetworkPeerings", "addressSpace")),
    "nsg": (("id", "name", "etag"), ("securityRules",)),
    "pip": (("id", "name"), ("ipAddress", "ipConfiguration")),
    "firewall": (("id", "name", "etag"), None),  # few, and their NAT collections are planned
}


_SUBNET_KEEP = frozenset({"addressPrefix", "addressPrefixes", "networkSecurityGroup"})


def _slim(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    top, props = _KEEP[kind]
    slim = {key: body[key] for key in top if key in body}
    properties = _props(body)
    slim["properties"] = properties if props is None else {k: properties[k] for k in props if k in properties}
    return slim


def _by_id(kind: str, items: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for body in items:
        if body.get("id"):
            found[_key(str(body["id"]))] = _slim(kind, body)
    return found


# The api-version the pinned azure-mgmt-compute uses for this list (tests/unit/test_snapshot_api_versions.py
# checks it against the SDK's own request builder); network lists use the adapters' (targets/wire.py).
COMPUTE_API_VERSION = "2026-04-01"


@dataclass
class SubscriptionListing:
    subscription_id: str
    vms: dict[str, dict[str, Any]] = field(default_factory=dict)
    nics: dict[str, dict[str, Any]] = field(default_factory=dict)
    vnets: dict[str, dict[str, Any]] = field(default_factory=dict)
    subnets: dict[str, dict[str, Any]] = field(default_factory=dict)
    nsgs: dict[str, dict[str, Any]] = field(default_factory=dict)
    public_ips: dict[str, dict[str, Any]] = field(default_factory=dict)
    firewalls: dict[str, dict[str, Any]] = field(default_factory=dict)
    rule_groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def list_subscription(deps: ConvergeDeps, subscription_id: str) -> SubscriptionListing:
    """Every page of every subscription-wide list the pass needs. Paces on ARM's read budget. The rule
    collection groups of a Firewall Policy are listed when a managed target asks for them
    (`EstateSnapshot.rule_groups`): one list per managed policy, not one per policy in the subscription."""
    budget = deps.budget

    def pace() -> None:
        if budget is not None:
            budget.pace(subscription_id, "reads")

    network = deps.network(subscription_id)
    base = f"/subscriptions/{subscription_id}/providers"

    def collection(kind: str, client: Any, resource_type: str, api_version: str) -> dict[str, dict[str, Any]]:
        # Raw wire JSON through the client's pipeline (no SDK models: they cost most of a pass's time
        # and memory); the client's raw_response_hook reports ARM's remaining budget (budget.observe).
        pace()
        return _by_id(kind, list_raw(client, f"{base}/{resource_type}", api_version=api_version))

    listing = SubscriptionListing(subscription_id)
    if deps.compute is not None:
        compute = deps.compute(subscription_id)
        listing.vms = collection("vm", compute, "Microsoft.Compute/virtualMachines", COMPUTE_API_VERSION)
    listing.nics = collection("nic", network, "Microsoft.Network/networkInterfaces", NETWORK_API_VERSION)
    listing.vnets = collection("vnet", network, "Microsoft.Network/virtualNetworks", NETWORK_API_VERSION)
    for vnet in listing.vnets.values():
        subnets = []
        for subnet in _props(vnet).get("subnets") or []:
            # A subnet lists every IP configuration in it: thousands of references nobody reads here.
            props = {k: v for k, v in _props(subnet).items() if k in _SUBNET_KEEP}
            slim = {"id": subnet.get("id"), "name": subnet.get("name"), "properties": props}
            subnets.append(slim)
            if subnet.get("id"):
                listing.subnets[_key(str(subnet["id"]))] = slim
        vnet["properties"]["subnets"] = subnets
    listing.nsgs = collection("nsg", network, "Microsoft.Network/networkSecurityGroups", NETWORK_API_VERSION)
    listing.public_ips = collection(
        "pip", network, "Microsoft.Network/publicIPAddresses", NETWORK_API_VERSION
    )
    listing.firewalls = collection(
        "firewall", network, "Microsoft.Network/azureFirewalls", NETWORK_API_VERSION
    )
    return listing


def list_rule_groups(deps: ConvergeDeps, policy_id: str) -> list[dict[str, Any]] | None:
    path = ArmPath.parse(policy_id)
    budget = deps.budget
    if budget is not None:
        budget.pace(path.subscription_id, "reads")
    groups_path = (
        f"/subscriptions/{path.subscription_id}/resourceGroups/{path.resource_group}"
        f"/providers/Microsoft.Network/firewallPolicies/{path.names[0]}/ruleCollectionGroups"
    )
    try:
        return list(list_raw(deps.network(path.subscription_id), groups_path))
    except AzureError as error:
        log_event(
            EventId.SNAPSHOT_RULE_GROUPS_UNLISTED, logging.WARNING, policy=policy_id, error=brief(error)
        )
        return None


class EstateSnapshot:
    """The listings of a pass, by subscription; lookups by ARM id (case-folded as ARM does)."""

    def __init__(
        self,
        listings: dict[str, SubscriptionListing],
        load_rule_groups: Callable[[str], list[dict[str, Any]] | None] | None = None,
    ) -> None:
        self._listings = {sub.lower(): listing for sub, listing in listings.items()}
        self._load_rule_groups = load_rule_groups
        self._lock = threading.Lock()

    @classmethod
    def take(cls, deps: ConvergeDeps, subscription_ids: Iterable[str]) -> EstateSnapshot:
        listings: dict[str, SubscriptionListing] = {}
        for sub in sorted({s.lower(): s for s in subscription_ids if s}.values()):
            try:
                listings[sub] = list_subscription(deps, sub)
            except AzureError as error:
                # This subscription's targets are converged with fresh GETs instead (no listing).
                log_event(
                    EventId.SNAPSHOT_SUBSCRIPTION_UNLISTED,
                    logging.ERROR,
                    subscription=sub,
                    error=brief(error),
                )
        return cls(listings, lambda policy_id: list_rule_groups(deps, policy_id))

    def release(self) -> None:
        """Drop the listed bodies once the pass has planned every target: the converges that follow
        read their targets fresh, and paths already derived stay cached in the view. Memory the
        listing held is then reused by the converges instead of adding to the pass's peak."""
        self._listings = {}

    @property
    def released(self) -> bool:
        return not self._listings

    def listing(self, resource_id: str) -> SubscriptionListing | None:
        return self._listings.get(ResourceId(resource_id).subscription_id.lower())

    def has_subscription(self, subscription_id: str) -> bool:
        return subscription_id.lower() in self._listings

    def body(self, collection: str, resource_id: str) -> dict[str, Any] | None:
        listing = self.listing(resource_id)
        if listing is None:
            return None
        table: dict[str, dict[str, Any]] = {
            "vm": listing.vms,
            "nic": listing.nics,
            "vnet": listing.vnets,
            "subnet": listing.subnets,
            "nsg": listing.nsgs,
            "pip": listing.public_ips,
            "firewall": listing.firewalls,
        }[collection]
        return table.get(_key(resource_id))

    def rule_groups(self, policy_id: str) -> list[dict[str, Any]] | None:
        """The policy's rule collection groups, listed on first use in this pass; None if its
        subscription was not listed or the list failed (the converge then reads it itself)."""
        listing = self.listing(policy_id)
        if listing is None:
            return None
        key = _key(policy_id)
        with self._lock:
            if key not in listing.rule_groups and self._load_rule_groups is not None:
                groups = self._load_rule_groups(policy_id)
                if groups is None:
                    return None
                listing.rule_groups[key] = groups
            return listing.rule_groups.get(key)

    # ---- paths, with the same pure derivation as TopologyResolver ----

    def _subnet(self, subnet_id: str) -> dict[str, Any]:
        body = self.body("subnet", subnet_id)
        if body is None:
            raise TopologyError(subnet_id, "the subnet does not exist")
        return body

    def _address(self, public_ip_id: str) -> str | None:
        body = self.body("pip", public_ip_id)
        address = _props(body).get("ipAddress") if body else None
        return str(address) if address else None

    def firewall(self, firewall_id: str) -> FirewallInfo:
        body = self.body("firewall", firewall_id)
        if body is None:
            raise TopologyError(firewall_id, "the Azure Firewall does not exist")
        return firewall_info_from(body, firewall_id, self._subnet, self._address)

    def firewall_owning(self, subscription_id: str, public_ip: str) -> FirewallInfo:
        listing = self._listings.get(subscription_id.lower())
        if listing is not None:
            for address in listing.public_ips.values():
                props = _props(address)
                user = str((props.get("ipConfiguration") or {}).get("id") or "")
                if props.get("ipAddress") == public_ip and _FIREWALL_IP_CONFIG in user.lower():
                    return self.firewall(user[: user.lower().index(_FIREWALL_IP_CONFIG)])
            for body in listing.firewalls.values():
                for config in _props(body).get("ipConfigurations") or []:
                    pip_id = (_props(config).get("publicIPAddress") or {}).get("id")
                    if pip_id and self._address(str(pip_id)) == public_ip:
                        return self.firewall(str(body["id"]))
        raise TopologyError(
            f"publicIpAddress {public_ip}",
            f"no Azure Firewall in subscription {subscription_id} has this public IP",
        )

    def path(self, vm: VmRef, vm_policy: VmPolicy | None) -> VmPath:
        body = self.body("vm", vm.id)
        if body is None:
            raise TopologyError(vm.id, "the virtual machine does not exist")
        nics: list[NicPath] = []
        for nic_id in vm_nic_ids(body):
            nic = self.body("nic", nic_id)
            if nic is None:
                raise TopologyError(nic_id, "the network interface does not exist")
            nics.append(nic_path_from(nic, nic_id, self._subnet, self._address))
        if not nics:
            raise TopologyError(vm.id, "the virtual machine has no network interface")
        found = choose_path(
            vm,
            tuple(nics),
            vm_policy,
            self.firewall,
            lambda ip: self.firewall_owning(vm.subscription_id, ip),
        )
        return confine(found, lambda vnet_id: self.body("vnet", vnet_id))


class EstateView:
    """PathView over a snapshot: paths of every policy VM and every grant's VM, derived in memory.
    A VM whose subscription was not listed falls back to `fallback` (the per-VM resolver)."""

    def __init__(
        self,
        estate: EstateSnapshot,
        policies: Sequence[JitPolicy],
        fallback: Callable[[VmRef, VmPolicy | None], VmPath] | None = None,
    ) -> None:
        self.estate = estate
        self._policies = list(policies)
        self._fallback = fallback
        self.policies = self._policies
        self._paths: dict[tuple[str, str], VmPath | None] = {}
        self.unresolved: dict[str, str] = {}
        policy_paths: list[tuple[VmPath, tuple[PolicyPort, ...]]] = []
        for policy in self._policies:
            for entry in policy.virtual_machines:
                path = self.path(entry.vm, entry)
                if path is not None:
                    policy_paths.append((path, tuple(entry.ports)))
        self.baseline_by_nsg: BaselineMap = baseline_map(policy_paths)
        self.policy_targets: dict[str, TargetRef] = {}
        for path, _ in policy_paths:
            for target in path.targets:
                self.policy_targets.setdefault(target.key, target)

    def path(self, vm: VmRef, entry: VmPolicy | None) -> VmPath | None:
        key = (
            vm.key,
            repr(entry.firewall if entry else None) + (entry.public_ip_address or "" if entry else ""),
        )
        if key not in self._paths:
            try:
                # A VM first asked for after the listing was released (a grant written since the
                # pass read the grants) is read through the resolver, never taken as missing.
                if self.estate.has_subscription(vm.subscription_id) or self._fallback is None:
                    self._paths[key] = self.estate.path(vm, entry)
                else:
                    self._paths[key] = self._fallback(vm, entry)
            except TopologyError as error:
                # Logged once per pass (not per target that asks); the resolver caches per-VM failures.
                if vm.key not in self.unresolved:
                    log_event(EventId.TOPOLOGY_UNRESOLVED, logging.WARNING, vm=vm.id, error=brief(error))
                self.unresolved[vm.key] = str(error)
                self._paths[key] = None
            except AzureError as error:
                log_event(EventId.TOPOLOGY_UNRESOLVED, logging.WARNING, vm=vm.id, error=brief(error))
                self._paths[key] = None
        return self._paths[key]

    def path_for(self, grant: Grant) -> VmPath | None:
        return self.path(grant.vm, vm_policy_of(self._policies, grant))

    def baseline(self, nsg: TargetRef) -> list[BaselineEntry]:
        return entries_on(self.baseline_by_nsg, nsg)


def target_subscriptions(keys: Iterable[str]) -> set[str]:
    return {TargetRef.from_key(key).id.subscription_id for key in keys}
