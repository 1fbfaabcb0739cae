"""How long the reconcile snapshot's lists take at estate scale (not a test: timings on a shared
machine are not assertions). Seeds N NSGs with 5 rules each, N NICs and N VMs, then times, per list,
the emulator's own work, the wire (HTTPS + json.loads) and the real SDK's `list_all`.

    .venv/bin/python -m tests.emulator.measure_lists [N] [--throttle on|off]
"""

from __future__ import annotations

import argparse
import json
import ssl
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient

from localrig.emulator import start_emulator
from localrig.emulator_client import EmulatorClient

LOCATION = "westeurope"


def estate(subscription: str, count: int) -> list[dict[str, Any]]:
    rg = f"/subscriptions/{subscription}/resourceGroups/scale"
    net = f"{rg}/providers/Microsoft.Network"
    subnet = f"{net}/virtualNetworks/vnet/subnets/vms"
    items: list[dict[str, Any]] = [
        {
            "id": f"{net}/virtualNetworks/vnet",
            "body": {
                "location": LOCATION,
                "properties": {
                    "addressSpace": {"addressPrefixes": ["10.0.0.0/8"]},
                    "subnets": [{"name": "vms", "properties": {"addressPrefix": "10.0.0.0/16"}}],
                },
            },
        }
    ]
    for i in range(count):
        rules = [
            {
                "name": f"r{j}",
                "properties": {
                    "protocol": "Tcp",
                    "access": "Allow",
                    "direction": "Inbound",
                    "priority": 100 + j,
                    "sourceAddressPrefix": "203.0.113.7/32",
                    "destinationAddressPrefix": "*",
                    "sourcePortRange": "*",
                    "destinationPortRange": str(22 + j),
                },
            }
            for j in range(5)
        ]
        nsg, nic = f"{net}/networkSecurityGroups/nsg{i}", f"{net}/networkInterfaces/nic{i}"
        items += [
            {"id": nsg, "body": {"location": LOCATION, "properties": {"securityRules": rules}}},
            {
                "id": nic,
                "body": {
                    "location": LOCATION,
                    "properties": {
                        "networkSecurityGroup": {"id": nsg},
                        "ipConfigurations": [{"name": "ipc", "properties": {"subnet": {"id": subnet}}}],
                    },
                },
            },
            {
                "id": f"{rg}/providers/Microsoft.Compute/virtualMachines/vm{i}",
                "body": {
                    "location": LOCATION,
                    "properties": {
                        "hardwareProfile": {"vmSize": "Standard_B1s"},
                        "networkProfile": {"networkInterfaces": [{"id": nic}]},
                    },
                },
            },
        ]
    return items


def wire_seconds(arm: EmulatorClient, path: str) -> tuple[int, int, float]:
    """(items, pages, seconds) reading a list over HTTPS with json.loads only, following nextLink."""
    context = ssl.create_default_context(cafile=str(arm.ca_file))
    url: str | None = f"{arm.base_url}{path}?api-version=2024-07-01"
    items = pages = 0
    started = time.perf_counter()
    while url:
        request = urllib.request.Request(url, headers={"Authorization": "Bearer measure"})
        with urllib.request.urlopen(request, context=context) as response:
            body = json.loads(response.read())
        items, pages, url = items + len(body["value"]), pages + 1, body.get("nextLink")
    return items, pages, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("count", type=int, nargs="?", default=2000)
    parser.add_argument("--throttle", default="on")
    args = parser.parse_args()
    emulator = start_emulator(
        Path(tempfile.mkdtemp()),
        extra_args=["--no-persist", "--lro-seconds", "default=0", "--throttle", args.throttle],
    )
    try:
        arm = EmulatorClient(emulator.base_url, emulator.ca_file)
        items = estate(arm.subscription_id, args.count)
        started = time.perf_counter()
        for start in range(0, len(items), 1500):
            arm.seed(items[start : start + 1500])
        print(f"seeded {len(items)} resources in {time.perf_counter() - started:.1f} s")
        net, compute = arm.client(NetworkManagementClient), arm.client(ComputeManagementClient)
        lists = {
            "networkSecurityGroups": ("Microsoft.Network", net.network_security_groups.list_all),
            "networkInterfaces": ("Microsoft.Network", net.network_interfaces.list_all),
            "virtualMachines": ("Microsoft.Compute", compute.virtual_machines.list_all),
        }
        for name, (namespace, list_all) in lists.items():
            count, pages, wire = wire_seconds(
                arm, f"/subscriptions/{arm.subscription_id}/providers/{namespace}/{name}"
            )
            started = time.perf_counter()
            sdk_count = sum(1 for _ in list_all())
            sdk = time.perf_counter() - started
            print(f"{name}: {count} items in {pages} pages; wire {wire:.2f} s; SDK list_all {sdk:.2f} s")
            assert sdk_count == count
        print("throttled 429s:", arm.requests()["throttled_429s"])
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
