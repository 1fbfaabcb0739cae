"""May this policy put this VM behind that firewall? (DESIGN.md invariant 6; issue 15 item 1.)

A VM entry of a policy names a firewall explicitly (`portcullis.firewallId`) or Defender's way (its
`publicIpAddress`). Either way the firewall is accepted only when

1. it can reach the VM: its VNet is the VM's VNet or one the VM's VNet is connected-peered with
   (read from ARM now: VM -> primary NIC -> subnet -> VNet with its `virtualNetworkPeerings`, and
   firewall -> AzureFirewallSubnet -> VNet; the rule itself is shared.reachability's), and
2. the policy's author could write it themselves: `Microsoft.Network/azureFirewalls/write` on a
   classic firewall, `.../firewallPolicies/ruleCollectionGroups/write` on a Firewall Policy (the
   app's own identity can write far more, and must never lend that to a narrower caller).

Without (1) a DNAT rule translates to an address of the *firewall's* VNet: someone else's VM when
private ranges overlap. Without (2) the owner of one resource group opens another's firewall.

Defender's `publicIpAddress` is resolved only among firewalls on the VM's path, never "any firewall
in the subscription". A VM whose own NIC has that public IP needs no firewall.

Bounded work: only entries that name a firewall or a public IP cause reads; a resolver made for one
request reads each VM, VNet, firewall and firewall list at most once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError

from shared.actions.refusal import Refusal
from shared.authz import (
    FIREWALL_WRITE_ACTION,
    RULE_COLLECTION_GROUP_WRITE_ACTION,
    Authorizer,
)
from shared.model import DomainError, JitPolicy, Principal, ResourceId, VmPolicy, arm_key
from shared.reachability import connected_peers, firewall_may_front, vnet_of_subnet
from shared.topology import TopologyError, TopologyResolver

CODE_NOT_ON_PATH = "FirewallNotOnVmPath"


@dataclass(frozen=True)
class FirewallFacts:
    """What the check needs of one firewall, from its wire JSON."""

    firewall_id: ResourceId
    vnet: ResourceId | None
    policy_id: ResourceId | None
    public_ip_ids: tuple[str, ...]

    @classmethod
    def from_wire(cls, body: Mapping[str, Any], fallback_id: str = "") -> FirewallFacts:
        props = body.get("properties") or {}
        vnet: ResourceId | None = None
        public_ip_ids: list[str] = []
        for config in props.get("ipConfigurations") or []:
            config_props = config.get("properties") or {}
            subnet_id = (config_props.get("subnet") or {}).get("id")
            if vnet is None and subnet_id:
                try:
                    vnet = vnet_of_subnet(str(subnet_id))
                except ValueError:
                    vnet = None
            if pip_id := (config_props.get("publicIPAddress") or {}).get("id"):
                public_ip_ids.append(str(pip_id))
        policy_id = (props.get("firewallPolicy") or {}).get("id")
        return cls(
            firewall_id=ResourceId(str(body.get("id") or fallback_id)),
            vnet=vnet,
            policy_id=ResourceId(str(policy_id)) if policy_id else None,
            public_ip_ids=tuple(public_ip_ids),
        )

    @property
    def write_action(self) -> tuple[str, str]:
        """(action, scope) the policy's author must hold to have us write this firewall."""
        if self.policy_id is not None:
            return RULE_COLLECTION_GROUP_WRITE_ACTION, self.policy_id.value
        return FIREWALL_WRITE_ACTION, self.firewall_id.value


class FirewallConfinement:
    """Checks every firewall a policy names; raises Refusal (400/403/503) naming the field."""

    def __init__(self, topology: TopologyResolver, authorizer: Authorizer, principal: Principal) -> None:
        self._topology = topology
        self._authorizer = authorizer
        self._principal = principal

    def check(self, policy: JitPolicy) -> None:
        for index, entry in enumerate(policy.virtual_machines):
            if entry.firewall is None and entry.public_ip_address is None:
                continue
            try:
                self._check_entry(entry, f"properties.virtualMachines[{index}]")
            except TopologyError as error:
                field = _field(entry, f"properties.virtualMachines[{index}]")
                raise Refusal.invalid(
                    DomainError(
                        field,
                        f"cannot confirm that the firewall is on the network path of {entry.vm.id}: "
                        f"{error.subject}: {error.reason}",
                        CODE_NOT_ON_PATH,
                    )
                ) from None
            except HttpResponseError as error:
                if error.status_code not in (401, 403):
                    raise Refusal(
                        503,
                        "NetworkPathUnavailable",
                        "the VM's network path could not be read from Azure Resource Manager "
                        f"(HTTP {error.status_code}); nothing was changed, try again shortly",
                    ) from None
                field = _field(entry, f"properties.virtualMachines[{index}]")
                raise Refusal.invalid(
                    DomainError(
                        field,
                        f"Portcullis may not read the network path of {entry.vm.id} (the VM, its network "
                        "interface, virtual network or the firewall): assign its role there first",
                        CODE_NOT_ON_PATH,
                    )
                ) from None
            except AzureError as error:
                # Our own words: ARM's text carries the app identity's ids.
                raise Refusal(
                    503,
                    "NetworkPathUnavailable",
                    "the VM's network path could not be read from Azure Resource Manager "
                    f"({type(error).__name__}); nothing was changed, try again shortly",
                ) from None

    def _check_entry(self, entry: VmPolicy, path: str) -> None:
        field = _field(entry, path)
        nics = self._topology.vm_nics(entry.vm)
        if entry.firewall is None and any(
            nic.public_ip == entry.public_ip_address for nic in nics if nic.public_ip
        ):
            return  # the VM's own public IP: no firewall in front
        subnet_id = nics[0].subnet_id
        if subnet_id is None:
            raise TopologyError(entry.vm.id, "its primary network interface has no subnet")
        vm_vnet = vnet_of_subnet(subnet_id.value)
        peers = connected_peers(self._topology.virtual_network(vm_vnet.value))
        if entry.firewall is not None:
            facts = FirewallFacts.from_wire(
                self._topology.firewall_body(entry.firewall.firewall_id.value),
                entry.firewall.firewall_id.value,
            )
            if facts.vnet is None or not firewall_may_front(vm_vnet, facts.vnet, peers):
                raise Refusal.invalid(
                    DomainError(
                        field,
                        f"Azure Firewall {facts.firewall_id} is in virtual network {facts.vnet}, which is "
                        f"neither the virtual network of {entry.vm.id} ({vm_vnet}) nor connected-peered "
                        "with it: it cannot reach this VM",
                        CODE_NOT_ON_PATH,
                    )
                )
            if entry.public_ip_address is not None and entry.public_ip_address not in self._addresses(facts):
                raise Refusal.invalid(
                    DomainError(
                        f"{path}.publicIpAddress",
                        f"{entry.public_ip_address} is not a public IP address of Azure Firewall "
                        f"{facts.firewall_id}",
                    )
                )
        else:
            assert entry.public_ip_address is not None
            found = self._firewall_with_address(entry.public_ip_address, vm_vnet, peers)
            if found is None:
                raise Refusal.invalid(
                    DomainError(
                        field,
                        f"no Azure Firewall in the virtual network of {entry.vm.id} ({vm_vnet}) or in one "
                        f"connected-peered with it has the public IP address {entry.public_ip_address}, "
                        "and it is not the VM's own",
                        CODE_NOT_ON_PATH,
                    )
                )
            facts = found
        self._require_write(facts, field)

    def _addresses(self, facts: FirewallFacts) -> set[str]:
        return {ip for pip in facts.public_ip_ids if (ip := self._topology.public_ip_address(pip))}

    def _firewall_with_address(
        self, address: str, vm_vnet: ResourceId, peers: tuple[ResourceId, ...]
    ) -> FirewallFacts | None:
        """Defender's way, confined: only firewalls whose VNet may front the VM are considered."""
        reachable = (vm_vnet, *peers)
        for subscription_id in dict.fromkeys(arm_key(v.subscription_id) for v in reachable):
            try:
                firewalls = self._topology.firewalls_in(subscription_id)
            except HttpResponseError as error:
                if error.status_code in (401, 403):
                    continue  # a peered hub the app may not see: no firewall of ours there
                raise
            for body in firewalls:
                facts = FirewallFacts.from_wire(body)
                if facts.vnet is None or not firewall_may_front(vm_vnet, facts.vnet, peers):
                    continue
                if address in self._addresses(facts):
                    return facts
        return None

    def _require_write(self, facts: FirewallFacts, field: str) -> None:
        action, scope = facts.write_action
        self._authorizer.require(
            self._principal,
            action,
            scope,
            field=field,
            why=", so a policy written by them cannot open ports on this firewall",
        )


def _field(entry: VmPolicy, path: str) -> str:
    return f"{path}.portcullis.firewallId" if entry.firewall is not None else f"{path}.publicIpAddress"


def check_firewalls(
    policy: JitPolicy,
    principal: Principal,
    authorizer: Authorizer,
    new_topology: Callable[[], TopologyResolver],
) -> None:
    """Refuse (raise Refusal) unless every firewall `policy` names may front its VM and `principal`
    could write it. A fresh resolver per call: nothing stale, each resource read once."""
    if not any(e.firewall is not None or e.public_ip_address is not None for e in policy.virtual_machines):
        return
    FirewallConfinement(new_topology(), authorizer, principal).check(policy)
