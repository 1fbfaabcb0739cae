"""The sample estate: what `make up` seeds for a newcomer, what `make demo` tells its story on and what
the integration tests run against. Three shapes Portcullis must handle, each in its own VNet inside one
resource group:

- `direct`: vm-web behind a subnet NSG *and* a NIC NSG, reached on its own public IP; vm-db in the
  same subnet, subnet NSG only.
- `classic`: vm-app behind a classic Azure Firewall (NAT rule collections on the firewall itself),
  NSG on the NIC only.
- `policy`: vm-ops behind an Azure Firewall that takes its rules from a Firewall Policy.

Foreign rules are seeded too (people's rules, Defender's), so tests can check they never change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from localrig.devusers import SAMPLE_RESOURCE_GROUP, SAMPLE_SUBSCRIPTION_ID
from localrig.estates import bodies
from localrig.estates.ids import DEFAULT_LOCATION, ResourceGroupIds

# The NSGs of the sample estate, in the order the demo shows them.
ESTATE_NSGS = ("nsg-web-subnet", "nsg-web-nic", "nsg-app-nic", "nsg-ops-nic")


@dataclass(frozen=True)
class Estate(ResourceGroupIds):
    subscription_id: str
    resource_group: str
    location: str = DEFAULT_LOCATION

    # the names tests and the demo refer to
    vm_web = "vm-web"
    vm_db = "vm-db"
    vm_app = "vm-app"
    vm_ops = "vm-ops"

    @property
    def vm_names(self) -> tuple[str, ...]:
        return (self.vm_web, self.vm_db, self.vm_app, self.vm_ops)

    @property
    def _ip_prefix(self) -> str:
        # Public IPs are unique in Azure; estates seeded side by side in one emulator must not share.
        digest = hashlib.sha256(self.resource_group.lower().encode()).digest()
        return f"{20 + digest[0] % 80}.{digest[1]}"

    @property
    def web_public_ip(self) -> str:
        return f"{self._ip_prefix}.0.10"

    @property
    def classic_fw_public_ip(self) -> str:
        return f"{self._ip_prefix}.1.10"

    @property
    def policy_fw_public_ip(self) -> str:
        return f"{self._ip_prefix}.2.10"

    @property
    def classic_firewall_id(self) -> str:
        return self.azure_firewall_id("fw-classic")

    @property
    def policy_firewall_id(self) -> str:
        return self.azure_firewall_id("fw-policy")

    @property
    def firewall_policy_id(self) -> str:
        return self.firewall_policy_resource_id("fwpol")

    def resources(self) -> list[dict[str, Any]]:
        """Seed items in dependency order."""
        b = bodies
        items: list[dict[str, Any]] = []

        def add(resource_id: str, body: dict[str, Any], located: bool = True) -> None:
            items.append(b.seed_item(resource_id, body, self.location if located else None))

        rule = b.security_rule
        foreign_rules = {
            "nsg-web-subnet": [
                rule("allow-https", 200, "Allow", "443", "Internet", "IaC: public web"),
                rule("MicrosoftDefenderForCloud-JITRule_-1_deny22", 4000, "Deny", "22", "*", "Defender's"),
            ],
            "nsg-web-nic": [
                rule("allow-monitoring", 300, "Allow", "9100", "10.0.0.0/8", "ops"),
                # Someone's old shortcut: SSH open to the Internet, ahead of any JIT Deny (a finding).
                rule("legacy-ssh", 150, "Allow", "22", "Internet", "temporary, remove after migration"),
            ],
            "nsg-app-nic": [rule("SecurityCenter-JITRule-123-deny3389", 4001, "Deny", "3389", "*")],
            "nsg-ops-nic": [],
        }
        for name in ESTATE_NSGS:
            add(self.nsg_id(name), b.nsg(foreign_rules[name]))

        add(
            self.vnet_id("vnet-direct"),
            b.vnet("10.0.0.0/16", [b.subnet("workload", "10.0.0.0/24", self.nsg_id("nsg-web-subnet"))]),
        )
        for name, net in (("vnet-classic", 1), ("vnet-policy", 2)):
            add(
                self.vnet_id(name),
                b.vnet(
                    f"10.{net}.0.0/16",
                    [
                        b.subnet("workload", f"10.{net}.0.0/24"),
                        b.subnet("AzureFirewallSubnet", f"10.{net}.1.0/26"),
                    ],
                ),
            )

        add(self.public_ip_id("pip-web"), b.public_ip(self.web_public_ip))
        add(self.public_ip_id("pip-fw-classic"), b.public_ip(self.classic_fw_public_ip))
        add(self.public_ip_id("pip-fw-policy"), b.public_ip(self.policy_fw_public_ip))

        nics = (
            # nic, its VNet, private IP, NIC NSG, public IP, the VM on it
            ("nic-web", "vnet-direct", "10.0.0.4", "nsg-web-nic", "pip-web", self.vm_web),
            ("nic-db", "vnet-direct", "10.0.0.5", None, None, self.vm_db),
            ("nic-app", "vnet-classic", "10.1.0.4", "nsg-app-nic", None, self.vm_app),
            ("nic-ops", "vnet-policy", "10.2.0.4", "nsg-ops-nic", None, self.vm_ops),
        )
        for nic, vnet_name, ip, nsg, pip, _ in nics:
            add(
                self.nic_id(nic),
                b.nic(
                    self.subnet_id(vnet_name, "workload"),
                    ip,
                    nsg_id=self.nsg_id(nsg) if nsg else None,
                    public_ip_id=self.public_ip_id(pip) if pip else None,
                ),
            )
        for nic, *_, vm in nics:
            add(self.vm_id(vm), b.vm(self.nic_id(nic)))

        add(
            self.classic_firewall_id,
            b.classic_firewall(
                self.subnet_id("vnet-classic", "AzureFirewallSubnet"),
                self.public_ip_id("pip-fw-classic"),
                [
                    {
                        "name": "existing-dnat",
                        "properties": {
                            "priority": 200,
                            "action": {"type": "Dnat"},
                            "rules": [
                                {
                                    "name": "web-8443",
                                    "sourceAddresses": ["*"],
                                    "destinationAddresses": [self.classic_fw_public_ip],
                                    "destinationPorts": ["50000"],
                                    "protocols": ["TCP"],
                                    "translatedAddress": "10.1.0.9",
                                    "translatedPort": "443",
                                }
                            ],
                        },
                    },
                    {
                        "name": "MDC-JIT",
                        "properties": {"priority": 300, "action": {"type": "Dnat"}, "rules": []},
                    },
                ],
            ),
        )
        add(self.firewall_policy_id, b.firewall_policy())
        add(
            f"{self.firewall_policy_id}/ruleCollectionGroups/iac-dnat",
            {
                "properties": {
                    "priority": 300,
                    "ruleCollections": [
                        {
                            "ruleCollectionType": "FirewallPolicyNatRuleCollection",
                            "name": "iac",
                            "priority": 100,
                            "action": {"type": "DNAT"},
                            "rules": [
                                {
                                    "ruleType": "NatRule",
                                    "name": "ops-https",
                                    "ipProtocols": ["TCP"],
                                    "sourceAddresses": ["*"],
                                    "destinationAddresses": [self.policy_fw_public_ip],
                                    "destinationPorts": ["50000"],
                                    "translatedAddress": "10.2.0.9",
                                    "translatedPort": "443",
                                }
                            ],
                        }
                    ],
                }
            },
            located=False,
        )
        add(
            self.policy_firewall_id,
            b.policy_firewall(
                self.subnet_id("vnet-policy", "AzureFirewallSubnet"),
                self.public_ip_id("pip-fw-policy"),
                self.firewall_policy_id,
            ),
        )
        return items

    def policy_body(
        self,
        *,
        max_duration: str = bodies.DEFAULT_MAX_DURATION,
        approval_on: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The sample's Defender JIT policy, the one body `make up`, the demo and the tests PUT: SSH on
        all four VMs and RDP on vm-web; the firewall VMs name their firewall's public IP
        (Defender's `publicIpAddress`). `approval_on` (VM name -> approval rule, README "Approvals")
        puts our `portcullis.approval` extension on those VMs; without it nothing needs approval, which
        is what the demo and most tests start from."""
        b = bodies
        body = b.jit_policy(
            [
                b.jit_vm(self.vm_id(self.vm_web), (22, 3389), max_duration),
                b.jit_vm(self.vm_id(self.vm_db), (22,), max_duration),
                b.jit_vm(self.vm_id(self.vm_app), (22,), max_duration, public_ip=self.classic_fw_public_ip),
                b.jit_vm(self.vm_id(self.vm_ops), (22,), max_duration, public_ip=self.policy_fw_public_ip),
            ]
        )
        rules = {self.vm_id(name).lower(): dict(rule) for name, rule in (approval_on or {}).items()}
        unknown = set(rules) - {self.vm_id(name).lower() for name in self.vm_names}
        if unknown:
            raise ValueError(f"approval_on names VMs the sample does not have: {sorted(unknown)}")
        for entry in body["properties"]["virtualMachines"]:
            rule = rules.get(entry["id"].lower())
            if rule is not None:
                entry.setdefault("portcullis", {})["approval"] = rule
        return body


def sample_estate() -> Estate:
    """The estate `make up` seeds, in the sample subscription of localrig/devusers.py."""
    return Estate(SAMPLE_SUBSCRIPTION_ID, SAMPLE_RESOURCE_GROUP)
