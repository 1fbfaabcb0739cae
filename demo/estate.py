"""A sample estate for the ARM emulator, seeded through its admin endpoint (`POST /_emulator/seed`).

Three shapes of what Portcullis must handle, each in its own VNet inside one resource group:

- `direct`: vm-web behind a subnet NSG *and* a NIC NSG, reached on its own public IP; vm-db in the
  same subnet, subnet NSG only.
- `classic`: vm-app behind a classic Azure Firewall (NAT rule collections on the firewall itself),
  NSG on the NIC only.
- `policy`: vm-ops behind an Azure Firewall that takes its rules from a Firewall Policy.

Foreign rules are seeded too (people's rules, Defender's), so tests can check they never change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

NETWORK = "Microsoft.Network"


@dataclass(frozen=True)
class Estate:
    subscription_id: str
    resource_group: str
    location: str = "westeurope"

    def rid(self, kind: str, name: str, namespace: str = NETWORK) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/{namespace}/{kind}/{name}"
        )

    def vm_id(self, name: str) -> str:
        return self.rid("virtualMachines", name, "Microsoft.Compute")

    def nsg_id(self, name: str) -> str:
        return self.rid("networkSecurityGroups", name)

    def subnet_id(self, vnet: str, subnet: str) -> str:
        return f"{self.rid('virtualNetworks', vnet)}/subnets/{subnet}"

    # the names tests and the demo refer to
    vm_web = "vm-web"
    vm_db = "vm-db"
    vm_app = "vm-app"
    vm_ops = "vm-ops"

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
        return self.rid("azureFirewalls", "fw-classic")

    @property
    def policy_firewall_id(self) -> str:
        return self.rid("azureFirewalls", "fw-policy")

    @property
    def firewall_policy_id(self) -> str:
        return self.rid("firewallPolicies", "fwpol")

    def resources(self) -> list[dict[str, Any]]:
        """Seed items in dependency order."""
        loc = self.location
        items: list[dict[str, Any]] = []

        def add(resource_id: str, body: dict[str, Any]) -> None:
            items.append({"id": resource_id, "body": {"location": loc, **body}})

        def rule(
            name: str, priority: int, access: str, port: str, source: str, description: str = ""
        ) -> dict[str, Any]:
            return {
                "name": name,
                "properties": {
                    "priority": priority,
                    "access": access,
                    "direction": "Inbound",
                    "protocol": "Tcp",
                    "sourcePortRange": "*",
                    "sourceAddressPrefix": source,
                    "destinationAddressPrefix": "*",
                    "destinationPortRange": port,
                    "description": description,
                },
            }

        add(
            self.nsg_id("nsg-web-subnet"),
            {
                "properties": {
                    "securityRules": [
                        rule("allow-https", 200, "Allow", "443", "Internet", "IaC: public web"),
                        rule(
                            "MicrosoftDefenderForCloud-JITRule_-1_deny22",
                            4000,
                            "Deny",
                            "22",
                            "*",
                            "Defender's",
                        ),
                    ]
                }
            },
        )
        add(
            self.nsg_id("nsg-web-nic"),
            {
                "properties": {
                    "securityRules": [
                        rule("allow-monitoring", 300, "Allow", "9100", "10.0.0.0/8", "ops"),
                        # Someone's old shortcut: SSH open to the Internet, ahead of any JIT Deny (a finding).
                        rule(
                            "legacy-ssh", 150, "Allow", "22", "Internet", "temporary, remove after migration"
                        ),
                    ]
                }
            },
        )
        add(
            self.nsg_id("nsg-app-nic"),
            {
                "properties": {
                    "securityRules": [
                        rule("SecurityCenter-JITRule-123-deny3389", 4001, "Deny", "3389", "*"),
                    ]
                }
            },
        )
        add(self.nsg_id("nsg-ops-nic"), {"properties": {"securityRules": []}})

        def vnet(name: str, space: str, subnets: list[tuple[str, str, str | None]]) -> None:
            add(
                self.rid("virtualNetworks", name),
                {
                    "properties": {
                        "addressSpace": {"addressPrefixes": [space]},
                        "subnets": [
                            {
                                "name": s,
                                "properties": {
                                    "addressPrefix": p,
                                    **({"networkSecurityGroup": {"id": self.nsg_id(n)}} if n else {}),
                                },
                            }
                            for s, p, n in subnets
                        ],
                    }
                },
            )

        vnet("vnet-direct", "10.0.0.0/16", [("workload", "10.0.0.0/24", "nsg-web-subnet")])
        vnet(
            "vnet-classic",
            "10.1.0.0/16",
            [("workload", "10.1.0.0/24", None), ("AzureFirewallSubnet", "10.1.1.0/26", None)],
        )
        vnet(
            "vnet-policy",
            "10.2.0.0/16",
            [("workload", "10.2.0.0/24", None), ("AzureFirewallSubnet", "10.2.1.0/26", None)],
        )

        def pip(name: str, address: str) -> None:
            add(
                self.rid("publicIPAddresses", name),
                {
                    "sku": {"name": "Standard", "tier": "Regional"},
                    "properties": {"publicIPAllocationMethod": "Static", "ipAddress": address},
                },
            )

        pip("pip-web", self.web_public_ip)
        pip("pip-fw-classic", self.classic_fw_public_ip)
        pip("pip-fw-policy", self.policy_fw_public_ip)

        def nic(name: str, vnet_name: str, ip: str, nsg: str | None, public_ip: str | None) -> None:
            config: dict[str, Any] = {
                "subnet": {"id": self.subnet_id(vnet_name, "workload")},
                "privateIPAllocationMethod": "Static",
                "privateIPAddress": ip,
                "primary": True,
            }
            if public_ip:
                config["publicIPAddress"] = {"id": self.rid("publicIPAddresses", public_ip)}
            props: dict[str, Any] = {"ipConfigurations": [{"name": "ipconfig1", "properties": config}]}
            if nsg:
                props["networkSecurityGroup"] = {"id": self.nsg_id(nsg)}
            add(self.rid("networkInterfaces", name), {"properties": props})

        nic("nic-web", "vnet-direct", "10.0.0.4", "nsg-web-nic", "pip-web")
        nic("nic-db", "vnet-direct", "10.0.0.5", None, None)
        nic("nic-app", "vnet-classic", "10.1.0.4", "nsg-app-nic", None)
        nic("nic-ops", "vnet-policy", "10.2.0.4", "nsg-ops-nic", None)

        for vm, nic_name in (
            (self.vm_web, "nic-web"),
            (self.vm_db, "nic-db"),
            (self.vm_app, "nic-app"),
            (self.vm_ops, "nic-ops"),
        ):
            add(
                self.vm_id(vm),
                {
                    "properties": {
                        "hardwareProfile": {"vmSize": "Standard_B1s"},
                        "networkProfile": {
                            "networkInterfaces": [
                                {
                                    "id": self.rid("networkInterfaces", nic_name),
                                    "properties": {"primary": True},
                                }
                            ]
                        },
                    }
                },
            )

        def fw_config(vnet_name: str, pip_name: str) -> list[dict[str, Any]]:
            return [
                {
                    "name": "fwconfig",
                    "properties": {
                        "subnet": {"id": self.subnet_id(vnet_name, "AzureFirewallSubnet")},
                        "publicIPAddress": {"id": self.rid("publicIPAddresses", pip_name)},
                    },
                }
            ]

        add(
            self.classic_firewall_id,
            {
                "properties": {
                    "sku": {"name": "AZFW_VNet", "tier": "Standard"},
                    "ipConfigurations": fw_config("vnet-classic", "pip-fw-classic"),
                    "natRuleCollections": [
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
                    "networkRuleCollections": [],
                    "applicationRuleCollections": [],
                }
            },
        )
        add(self.firewall_policy_id, {"properties": {"sku": {"tier": "Standard"}}})
        items.append(
            {
                "id": f"{self.firewall_policy_id}/ruleCollectionGroups/iac-dnat",
                "body": {
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
            }
        )
        add(
            self.policy_firewall_id,
            {
                "properties": {
                    "sku": {"name": "AZFW_VNet", "tier": "Standard"},
                    "ipConfigurations": fw_config("vnet-policy", "pip-fw-policy"),
                    "firewallPolicy": {"id": self.firewall_policy_id},
                }
            },
        )
        return items

    def policy_body(self, *, max_duration: str = "PT3H") -> dict[str, Any]:
        """A Defender JIT policy covering all four VMs (firewall ones via publicIpAddress / our field)."""

        def port(number: int) -> dict[str, Any]:
            return {
                "number": number,
                "protocol": "TCP",
                "allowedSourceAddressPrefix": "*",
                "maxRequestAccessDuration": max_duration,
            }

        return {
            "kind": "Basic",
            "properties": {
                "virtualMachines": [
                    {"id": self.vm_id(self.vm_web), "ports": [port(22), port(3389)]},
                    {"id": self.vm_id(self.vm_db), "ports": [port(22)]},
                    {
                        "id": self.vm_id(self.vm_app),
                        "ports": [port(22)],
                        "publicIpAddress": self.classic_fw_public_ip,
                    },
                    {
                        "id": self.vm_id(self.vm_ops),
                        "ports": [port(22)],
                        "publicIpAddress": self.policy_fw_public_ip,
                    },
                ]
            },
        }
