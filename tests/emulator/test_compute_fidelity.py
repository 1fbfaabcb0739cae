"""Fidelity of the Microsoft.Compute VM emulation against Microsoft's VirtualMachine_Get example.

Only the example (no schema) of Compute is in ../shared: the VM it describes is created through the
real SDK (with the fields a caller can write, and a NIC of ours), read back on the wire, and compared:
what we answer must sit where the example has it, with the example's values for what was sent.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient

from tests.conftest import shared_dir_or_skip

EXAMPLE = (
    "azure-rest-specs/specification/compute/resource-manager/Microsoft.Compute/ComputeRP/stable/2025-04-01/"
    "examples/virtualMachineExamples/VirtualMachine_Get.json"
)
# Parts of the example that belong to features the emulator does not model (other resource types,
# extensions, gallery applications, scale sets); they are not sent.
NOT_MODELLED = ("availabilitySet", "proximityPlacementGroup", "applicationProfile", "userData")
READ_ONLY = ("vmId", "provisioningState", "timeCreated")


def paths(value: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON value (list items share their path)."""
    found = set()
    if isinstance(value, dict):
        for key, item in value.items():
            found.add(f"{prefix}.{key}")
            found |= paths(item, f"{prefix}.{key}")
    elif isinstance(value, list):
        for item in value:
            found |= paths(item, f"{prefix}[]")
    return found


def raw(pipeline_response: Any, deserialized: Any, headers: Any) -> Any:
    return json.loads(pipeline_response.http_response.text())


def test_vm_get_example(arm_emulator):
    shared = shared_dir_or_skip()
    example = json.loads((shared / EXAMPLE).read_text())["responses"]["200"]["body"]
    location = example["location"]  # "West US": display names are accepted like region names
    group = arm_emulator.new_resource_group(location="westus")
    network = arm_emulator.client(NetworkManagementClient)
    vnet = network.virtual_networks.begin_create_or_update(
        group,
        "vnet",
        {
            "location": location,
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.2.0.0/16"]},
                "subnets": [{"name": "default", "properties": {"addressPrefix": "10.2.0.0/24"}}],
            },
        },
    ).result()
    nic = network.network_interfaces.begin_create_or_update(
        group,
        "myNIC",
        {
            "location": location,
            "properties": {
                "ipConfigurations": [
                    {"name": "ipconfig1", "properties": {"subnet": {"id": vnet.properties.subnets[0].id}}}
                ]
            },
        },
    ).result()
    sent_properties = {
        k: copy.deepcopy(v) for k, v in example["properties"].items() if k not in NOT_MODELLED + READ_ONLY
    }
    sent_properties["networkProfile"] = {"networkInterfaces": [{"id": nic.id}]}
    sent = {"location": location, "tags": example["tags"], "properties": sent_properties}
    compute = arm_emulator.client(ComputeManagementClient)
    compute.virtual_machines.begin_create_or_update(group, example["name"], sent).result()
    answer = compute.virtual_machines.get(group, example["name"], cls=raw)

    expected_paths = paths(example)
    assert paths(answer) - expected_paths == set(), "answered fields the example does not have"
    wanted = {
        p
        for p in expected_paths
        if not any(p.startswith(f".properties.{skip}") for skip in NOT_MODELLED)
        and not p.startswith((".resources", ".managedBy"))
    }
    assert wanted - paths(answer) == set(), "fields of the example the emulator does not answer"
    assert answer["name"] == example["name"]
    assert answer["type"] == example["type"]
    assert answer["id"].endswith(f"/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines/myVM")
    assert answer["properties"]["provisioningState"] == "Succeeded"
    for key, value in sent_properties.items():
        assert answer["properties"][key] == value, key
    assert answer["tags"] == example["tags"]
