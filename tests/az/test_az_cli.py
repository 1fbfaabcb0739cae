"""The real Azure CLI (2.91.0, `make az` installs it into .venv-az) against the local stack's ARM
emulator and OpenID Connect issuer (issue 12): cloud registration by metadata discovery, a
service-principal login through MSAL, and the commands an engineer looks around with.

Skipped when .venv-az is absent. Each command runs with a throwaway AZURE_CONFIG_DIR, the emulator's
CA as REQUESTS_CA_BUNDLE (az verifies TLS, for ARM and for the issuer) and MSAL's instance discovery
off (`core.instance_discovery=false`: the authority is not a Microsoft host)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localrig.emulator_client import DEFAULT_SUBSCRIPTION, EmulatorClient
from localrig.oidc import DEV_SERVICE_PRINCIPAL, TENANT_ID, OidcIssuer, az_login_lines
from localrig.processes import PROJECT_ROOT
from localrig.stack import start_arm

AZ = PROJECT_ROOT / ".venv-az" / "bin" / "az"
pytestmark = pytest.mark.skipif(
    not AZ.exists(), reason=f"the Azure CLI is not installed at {AZ}: run `make az` (about 1.5 minutes)"
)
RG = "rg-az-cli"
LOC = "westeurope"


def estate(sub: str = DEFAULT_SUBSCRIPTION) -> list[dict[str, Any]]:
    """A VM with a NIC (subnet NSG + NIC NSG, public IP) and a Defender JIT policy for it."""
    base = f"/subscriptions/{sub}/resourceGroups/{RG}"
    net = f"{base}/providers/Microsoft.Network"
    vm_id = f"{base}/providers/Microsoft.Compute/virtualMachines/vm1"
    rule = {
        "protocol": "Tcp",
        "sourceAddressPrefix": "*",
        "sourcePortRange": "*",
        "destinationAddressPrefix": "*",
        "destinationPortRange": "443",
        "access": "Allow",
        "priority": 300,
        "direction": "Inbound",
    }
    return [
        {"id": base, "body": {"location": LOC, "tags": {"owner": "az-test"}}},
        {
            "id": f"{net}/networkSecurityGroups/nsg-subnet",
            "body": {
                "location": LOC,
                "properties": {"securityRules": [{"name": "allow-https", "properties": rule}]},
            },
        },
        {
            "id": f"{net}/networkSecurityGroups/nsg-nic",
            "body": {
                "location": LOC,
                "properties": {
                    "securityRules": [
                        {
                            "name": "deny-rdp",
                            "properties": {**rule, "destinationPortRange": "3389", "access": "Deny"},
                        }
                    ]
                },
            },
        },
        {
            "id": f"{net}/virtualNetworks/vnet1",
            "body": {
                "location": LOC,
                "properties": {
                    "addressSpace": {"addressPrefixes": ["10.20.0.0/16"]},
                    "subnets": [
                        {
                            "name": "default",
                            "properties": {
                                "addressPrefix": "10.20.1.0/24",
                                "networkSecurityGroup": {"id": f"{net}/networkSecurityGroups/nsg-subnet"},
                            },
                        }
                    ],
                },
            },
        },
        {
            "id": f"{net}/publicIPAddresses/pip1",
            "body": {
                "location": LOC,
                "sku": {"name": "Standard"},
                "properties": {"publicIPAllocationMethod": "Static"},
            },
        },
        {
            "id": f"{net}/networkInterfaces/nic1",
            "body": {
                "location": LOC,
                "properties": {
                    "networkSecurityGroup": {"id": f"{net}/networkSecurityGroups/nsg-nic"},
                    "ipConfigurations": [
                        {
                            "name": "ipconfig1",
                            "properties": {
                                "subnet": {"id": f"{net}/virtualNetworks/vnet1/subnets/default"},
                                "publicIPAddress": {"id": f"{net}/publicIPAddresses/pip1"},
                            },
                        }
                    ],
                },
            },
        },
        {
            "id": vm_id,
            "body": {
                "location": LOC,
                "properties": {
                    "hardwareProfile": {"vmSize": "Standard_B2s"},
                    "storageProfile": {
                        "imageReference": {
                            "publisher": "Canonical",
                            "offer": "ubuntu-24_04-lts",
                            "sku": "server",
                            "version": "latest",
                        },
                        "osDisk": {"name": "vm1-os", "createOption": "FromImage", "osType": "Linux"},
                    },
                    "osProfile": {"computerName": "vm1", "adminUsername": "azureuser"},
                    "networkProfile": {"networkInterfaces": [{"id": f"{net}/networkInterfaces/nic1"}]},
                },
            },
        },
        {
            "id": f"{base}/providers/Microsoft.Security/locations/{LOC}/jitNetworkAccessPolicies/default",
            "body": {
                "kind": "Basic",
                "properties": {
                    "virtualMachines": [
                        {
                            "id": vm_id,
                            "ports": [
                                {
                                    "number": 22,
                                    "protocol": "TCP",
                                    "allowedSourceAddressPrefix": "*",
                                    "maxRequestAccessDuration": "PT3H",
                                }
                            ],
                        }
                    ]
                },
            },
        },
    ]


class Az:
    def __init__(self, config_dir: Path, ca_file: Path) -> None:
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(config_dir.parent),
            "AZURE_CONFIG_DIR": str(config_dir),
            "REQUESTS_CA_BUNDLE": str(ca_file),
            "AZURE_CORE_INSTANCE_DISCOVERY": "false",
            "AZURE_CORE_COLLECT_TELEMETRY": "false",
            "AZURE_CORE_NO_COLOR": "true",
            "AZURE_CORE_SURVEY_MESSAGE": "false",
            "AZURE_CORE_ONLY_SHOW_ERRORS": "true",
        }
        self.timings: dict[str, float] = {}

    def run(self, *args: str) -> Any:
        started = time.monotonic()
        done = subprocess.run(
            [str(AZ), *args, "--output", "json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        self.timings[" ".join(args[:3])] = time.monotonic() - started
        assert done.returncode == 0, (
            f"az {' '.join(args)} exited {done.returncode}:\n{done.stderr}\n{done.stdout}"
        )
        return json.loads(done.stdout) if done.stdout.strip() else None


@pytest.fixture(scope="module")
def local_arm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmulatorClient, OidcIssuer]]:
    emulator, issuer = start_arm(tmp_path_factory.mktemp("az-stack"), emulator_args=["--throttle", "off"])
    try:
        client = EmulatorClient(emulator.base_url, emulator.ca_file)
        client.seed(estate())
        yield client, issuer
    finally:
        issuer.stop()
        emulator.stop()


@pytest.fixture(scope="module")
def az(local_arm, tmp_path_factory: pytest.TempPathFactory) -> Az:
    client, issuer = local_arm
    cli = Az(tmp_path_factory.mktemp("az-home") / "azure-config", client.ca_file)
    # The lines `make up` prints (without the exports, which Az's environment carries).
    register, cloud_set, login = az_login_lines(client.base_url, issuer)[2:]
    assert register.startswith("az cloud register") and login.startswith("az login --service-principal")
    cli.run(*register.split()[1:])
    cloud = cli.run("cloud", "show", "--name", "Portcullis")
    # discovered from the emulator's unauthenticated /metadata/endpoints
    assert cloud["endpoints"]["resourceManager"] == client.base_url + "/"
    assert cloud["endpoints"]["activeDirectory"].rstrip("/") == issuer.base_url
    cli.run(*cloud_set.split()[1:])
    accounts = cli.run(*login.split()[1:])
    assert [a["id"] for a in accounts] == [DEFAULT_SUBSCRIPTION]
    assert accounts[0]["tenantId"] == TENANT_ID
    assert accounts[0]["user"] == {"name": DEV_SERVICE_PRINCIPAL.client_id, "type": "servicePrincipal"}
    return cli


def test_az_looks_around_the_local_stack(az, local_arm):
    client, _ = local_arm
    groups = az.run("group", "list")
    assert [(g["name"], g["location"], g["tags"]) for g in groups] == [(RG, LOC, {"owner": "az-test"})]

    rules = az.run("network", "nsg", "rule", "list", "-g", RG, "--nsg-name", "nsg-subnet")
    assert [(r["name"], r["destinationPortRange"], r["access"]) for r in rules] == [
        ("allow-https", "443", "Allow")
    ]

    vm = az.run("vm", "show", "-d", "-g", RG, "-n", "vm1")
    assert vm["powerState"] == "VM running"
    assert vm["privateIps"] == "10.20.1.4"
    assert vm["publicIps"].startswith("20.50.")
    assert vm["provisioningState"] == "Succeeded"

    resources = az.run("resource", "list", "-g", RG)
    assert sorted((r["type"], r["name"]) for r in resources) == [
        ("Microsoft.Compute/virtualMachines", "vm1"),
        ("Microsoft.Network/networkInterfaces", "nic1"),
        ("Microsoft.Network/networkSecurityGroups", "nsg-nic"),
        ("Microsoft.Network/networkSecurityGroups", "nsg-subnet"),
        ("Microsoft.Network/publicIPAddresses", "pip1"),
        ("Microsoft.Network/virtualNetworks", "vnet1"),
    ]
    only_nsgs = az.run("resource", "list", "--resource-type", "Microsoft.Network/networkSecurityGroups")
    assert sorted(r["name"] for r in only_nsgs) == ["nsg-nic", "nsg-subnet"]

    effective = az.run("network", "nic", "list-effective-nsg", "-g", RG, "-n", "nic1")
    by_nsg = {g["networkSecurityGroup"]["id"].rsplit("/", 1)[1]: g for g in effective["value"]}
    assert list(by_nsg) == ["nsg-subnet", "nsg-nic"]
    assert "subnet" in by_nsg["nsg-subnet"]["association"]
    nic_rules = {r["name"]: r for r in by_nsg["nsg-nic"]["effectiveSecurityRules"]}
    assert nic_rules["securityRules/deny-rdp"]["destinationPortRange"] == "3389-3389"
    assert nic_rules["securityRules/deny-rdp"]["access"] == "Deny"

    policies = az.run("security", "jit-policy", "list")
    assert [(p["name"], p["virtualMachines"][0]["ports"][0]["number"]) for p in policies] == [("default", 22)]

    # the calls went to the emulator as the service principal that logged in
    callers = {
        entry["caller"] for entry in client.requests()["log"] if entry["path"].startswith("/subscriptions")
    }
    assert callers == {DEV_SERVICE_PRINCIPAL.object_id}


def test_az_account_and_provider_views(az):
    locations = az.run("account", "list-locations")
    assert "westeurope" in {loc["name"] for loc in locations}
    provider = az.run("provider", "show", "--namespace", "Microsoft.Network")
    assert provider["registrationState"] == "Registered"
    vms = az.run("vm", "list", "-d")
    assert [(v["name"], v["powerState"]) for v in vms] == [("vm1", "VM running")]


def test_az_tags_and_group_delete(az, local_arm):
    client, _ = local_arm
    group = client.new_resource_group(prefix="rg-az-del")
    az.run("tag", "update", "--resource-id", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{group}",
           "--operation", "Merge", "--tags", "purpose=delete-me")  # fmt: skip
    tags = {t["tagName"]: t for t in az.run("tag", "list")}
    assert {"owner", "purpose"} <= set(tags)
    assert [v["tagValue"] for v in tags["purpose"]["values"]] == ["delete-me"]
    # a long-running delete (202 + Location) that az's poller follows to the end
    az.run("group", "delete", "--name", group, "--yes")
    assert az.run("group", "exists", "--name", group) is False
