"""The naive strategy, as Defender for Cloud's JIT behaves: one write per request and target, in
sequence. For each grant: read the firewall (classic) or our rule collection group (Firewall Policy),
append one DNAT rule, PUT it back whole and wait for the long-running operation; then read the VM's
NSG(s), append one Allow rule, PUT it back and wait. Nothing is batched: N grants behind one firewall
cost N firewall updates, one after the other (Azure refuses overlapping firewall updates).

Real code through the same SDK clients as the app (shared.azure_clients.network_client), measured in
the same run against the same emulator; used only by the benchmarks.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from localrig.estates.scale import ScaleEstate, VmInfo

COLLECTION = "MDC-JIT"  # Defender's current firewall collection name
COLLECTION_PRIORITY = 300
FIRST_ALLOW_PRIORITY = 100  # Defender puts its Allow rules "usually 100-110"


class NaiveStoppedError(Exception):
    """The run's time budget ended before the naive strategy finished its grants."""


@dataclass
class NaiveOutcome:
    seconds: float
    firewall_writes: int
    nsg_writes: int
    reads: int


class NaiveJit:
    def __init__(self, network: Any, estate: ScaleEstate) -> None:
        self._network = network
        self._estate = estate
        self._rg = estate.resource_group
        self.firewall_writes = 0
        self.nsg_writes = 0
        self.reads = 0

    def open_all(
        self, grants: list[tuple[VmInfo, int, str, int]], stop: threading.Event | None = None
    ) -> NaiveOutcome:
        """Open (vm, port, source prefix, mapped port) grants one after the other; returns when the
        last write's operation has completed. Once `stop` is set, raises NaiveStoppedError before the
        next grant."""
        started = time.perf_counter()
        for vm, port, source, mapped_port in grants:
            if stop is not None and stop.is_set():
                raise NaiveStoppedError(f"stopped after {self.firewall_writes} of {len(grants)} grants")
            self.open(vm, port, source, mapped_port)
        return NaiveOutcome(time.perf_counter() - started, self.firewall_writes, self.nsg_writes, self.reads)

    def open(self, vm: VmInfo, port: int, source: str, mapped_port: int) -> None:
        rule_name = f"MicrosoftDefenderForCloud-JITRule_{vm.name}_{port}"
        if vm.firewall is not None:
            assert vm.firewall_public_ip is not None
            nat = {
                "name": rule_name,
                "source": source,
                "public_ip": vm.firewall_public_ip,
                "mapped_port": mapped_port,
                "private_ip": vm.private_ip,
                "port": port,
            }
            if vm.firewall.kind == "classic":
                self._add_classic_nat(vm, nat)
            else:
                self._add_policy_nat(vm, nat)
            # Behind a firewall, DNATed traffic arrives from the firewall subnet, not the requester.
            source = "AzureFirewallSubnet"
        for nsg_id in (vm.subnet_nsg_id, vm.nic_nsg_id):
            if nsg_id:
                self._add_nsg_allow(nsg_id, rule_name, source, vm.private_ip, port)

    def _add_nsg_allow(self, nsg_id: str, name: str, source: str, private_ip: str, port: int) -> None:
        nsg_name = nsg_id.rsplit("/", 1)[1]
        ops = self._network.network_security_groups
        body = ops.get(self._rg, nsg_name).as_dict()
        self.reads += 1
        rules = body.setdefault("properties", {}).setdefault("securityRules", [])
        used = {r["properties"]["priority"] for r in rules if r["properties"].get("direction") == "Inbound"}
        priority = next(p for p in range(FIRST_ALLOW_PRIORITY, 4097) if p not in used)
        if source == "AzureFirewallSubnet":
            source = _firewall_subnet_prefix(private_ip)
        rules.append(
            {
                "name": name,
                "properties": {
                    "priority": priority,
                    "access": "Allow",
                    "direction": "Inbound",
                    "protocol": "Tcp",
                    "sourceAddressPrefix": source,
                    "sourcePortRange": "*",
                    "destinationAddressPrefix": private_ip,
                    "destinationPortRange": str(port),
                    "description": "naive JIT (benchmark)",
                },
            }
        )
        body["properties"].pop("provisioningState", None)
        ops.begin_create_or_update(self._rg, nsg_name, body).result()
        self.nsg_writes += 1

    def _add_classic_nat(self, vm: VmInfo, nat: dict[str, Any]) -> None:
        assert vm.firewall_id is not None
        name = vm.firewall_id.rsplit("/", 1)[1]
        ops = self._network.azure_firewalls
        body = ops.get(self._rg, name).as_dict()
        self.reads += 1
        collections = body.setdefault("properties", {}).setdefault("natRuleCollections", [])
        ours = next((c for c in collections if c["name"] == COLLECTION), None)
        if ours is None:
            ours = {
                "name": COLLECTION,
                "properties": {"priority": COLLECTION_PRIORITY, "action": {"type": "Dnat"}, "rules": []},
            }
            collections.append(ours)
        ours["properties"].setdefault("rules", []).append(
            {
                "name": nat["name"],
                "sourceAddresses": [nat["source"]],
                "destinationAddresses": [nat["public_ip"]],
                "destinationPorts": [str(nat["mapped_port"])],
                "protocols": ["TCP"],
                "translatedAddress": nat["private_ip"],
                "translatedPort": str(nat["port"]),
            }
        )
        body["properties"].pop("provisioningState", None)
        ops.begin_create_or_update(self._rg, name, body).result()
        self.firewall_writes += 1

    def _add_policy_nat(self, vm: VmInfo, nat: dict[str, Any]) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        assert vm.firewall is not None
        policy_name = self._estate.firewall_policy_id(vm.firewall).rsplit("/", 1)[1]
        ops = self._network.firewall_policy_rule_collection_groups
        try:
            body = ops.get(self._rg, policy_name, COLLECTION).as_dict()
        except ResourceNotFoundError:
            body = {"properties": {"priority": COLLECTION_PRIORITY, "ruleCollections": []}}
        self.reads += 1
        collections = body.setdefault("properties", {}).setdefault("ruleCollections", [])
        if not collections:
            collections.append(
                {
                    "ruleCollectionType": "FirewallPolicyNatRuleCollection",
                    "name": COLLECTION,
                    "priority": COLLECTION_PRIORITY,
                    "action": {"type": "DNAT"},
                    "rules": [],
                }
            )
        collections[0].setdefault("rules", []).append(
            {
                "ruleType": "NatRule",
                "name": nat["name"],
                "ipProtocols": ["TCP"],
                "sourceAddresses": [nat["source"]],
                "destinationAddresses": [nat["public_ip"]],
                "destinationPorts": [str(nat["mapped_port"])],
                "translatedAddress": nat["private_ip"],
                "translatedPort": str(nat["port"]),
            }
        )
        body["properties"].pop("provisioningState", None)
        body["properties"].pop("size", None)
        ops.begin_create_or_update(self._rg, policy_name, COLLECTION, body).result()
        self.firewall_writes += 1


def _firewall_subnet_prefix(private_ip: str) -> str:
    """The AzureFirewallSubnet of the VM's VNet in bench estates (10.N.200.0/26)."""
    network = private_ip.split(".")[1]
    return f"10.{network}.200.0/26"
