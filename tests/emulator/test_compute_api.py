"""Microsoft.Compute VMs through the real azure-mgmt-compute 39.0.0 client, against the emulator."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient


@pytest.fixture(scope="module")
def compute(arm_emulator):
    return arm_emulator.client(ComputeManagementClient)


@pytest.fixture(scope="module")
def network(arm_emulator):
    return arm_emulator.client(NetworkManagementClient)


@pytest.fixture
def group(arm_emulator):
    return arm_emulator.new_resource_group(location="westeurope")


def make_nic(network, group, name="nic1", location="westeurope"):
    # Raw bodies go on the wire as written (REST shape), as the typespec-generated SDKs send them.
    vnet = network.virtual_networks.begin_create_or_update(
        group,
        f"vnet-{name}",
        {
            "location": location,
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.1.0.0/16"]},
                "subnets": [{"name": "default", "properties": {"addressPrefix": "10.1.0.0/24"}}],
            },
        },
    ).result()
    return network.network_interfaces.begin_create_or_update(
        group,
        name,
        {
            "location": location,
            "properties": {
                "ipConfigurations": [
                    {"name": "ipconfig1", "properties": {"subnet": {"id": vnet.properties.subnets[0].id}}}
                ]
            },
        },
    ).result()


def vm_body(nic_ids, location="westeurope", **extra):
    return {
        "location": location,
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_B2s"},
            "storageProfile": {
                "imageReference": {
                    "publisher": "Canonical",
                    "offer": "ubuntu-24_04-lts",
                    "sku": "server",
                    "version": "latest",
                },
                "osDisk": {
                    "createOption": "FromImage",
                    "managedDisk": {"storageAccountType": "Standard_LRS"},
                },
            },
            "osProfile": {
                "computerName": "vm1",
                "adminUsername": "azureuser",
                "adminPassword": "S3cret!pass",
            },
            "networkProfile": {"networkInterfaces": [{"id": nic_id} for nic_id in nic_ids]},
            **extra,
        },
    }


def test_vm_create_get_list_delete_round_trip(compute, network, group, arm_emulator):
    nic = make_nic(network, group)
    vm = compute.virtual_machines.begin_create_or_update(group, "vm1", vm_body([nic.id])).result()
    assert vm.name == "vm1"
    assert vm.type == "Microsoft.Compute/virtualMachines"
    assert vm.properties.provisioning_state == "Succeeded"
    assert vm.properties.hardware_profile.vm_size == "Standard_B2s"
    assert vm.properties.network_profile.network_interfaces[0].id == nic.id
    assert vm.properties.vm_id
    assert "adminPassword" not in vm.properties.os_profile  # never answered, as in Azure
    got = compute.virtual_machines.get(group, "vm1")
    assert got.id == vm.id
    assert got.properties.vm_id == vm.properties.vm_id
    assert [v.id for v in compute.virtual_machines.list(group)] == [vm.id]
    assert vm.id in {v.id for v in compute.virtual_machines.list_all()}
    attached = network.network_interfaces.get(group, "nic1")
    assert attached.virtual_machine.id.lower() == vm.id.lower()
    updated = compute.virtual_machines.begin_create_or_update(
        group, "vm1", vm_body([nic.id]) | {"tags": {"env": "test"}}
    ).result()
    assert updated.tags == {"env": "test"}
    assert updated.properties.vm_id == vm.properties.vm_id
    compute.virtual_machines.begin_delete(group, "vm1").result()
    with pytest.raises(ResourceNotFoundError):
        compute.virtual_machines.get(group, "vm1")
    assert network.network_interfaces.get(group, "nic1").virtual_machine is None


def test_vm_needs_existing_nic_in_its_region(compute, network, group, arm_emulator):
    missing = (
        f"/subscriptions/{arm_emulator.subscription_id}/resourceGroups/{group}/providers/"
        "Microsoft.Network/networkInterfaces/ghost"
    )
    with pytest.raises(HttpResponseError) as caught:
        compute.virtual_machines.begin_create_or_update(group, "vm1", vm_body([missing])).result()
    assert (caught.value.status_code, caught.value.error.code) == (400, "InvalidResourceReference")
    nic = make_nic(network, group, "nic-north", location="northeurope")
    with pytest.raises(HttpResponseError) as caught:
        compute.virtual_machines.begin_create_or_update(group, "vm1", vm_body([nic.id])).result()
    assert caught.value.error.code == "InvalidResourceReference"
    assert list(compute.virtual_machines.list(group)) == []


def test_nic_cannot_serve_two_vms(compute, network, group):
    nic = make_nic(network, group)
    compute.virtual_machines.begin_create_or_update(group, "vm1", vm_body([nic.id])).result()
    with pytest.raises(HttpResponseError) as caught:
        compute.virtual_machines.begin_create_or_update(group, "vm2", vm_body([nic.id])).result()
    assert (caught.value.status_code, caught.value.error.code) == (400, "NicInUse")


@pytest.mark.parametrize(
    ("mutate", "target"),
    [
        (lambda b: b["properties"].pop("hardwareProfile"), "hardwareProfile.vmSize"),
        (lambda b: b["properties"].pop("networkProfile"), "networkProfile.networkInterfaces"),
        (
            lambda b: b["properties"]["networkProfile"].update(networkInterfaces=[{"id": "nic1"}]),
            "networkProfile.networkInterfaces[0].id",
        ),
    ],
)
def test_invalid_vm_bodies_are_400(compute, network, group, mutate, target):
    nic = make_nic(network, group)
    body = vm_body([nic.id])
    mutate(body)
    with pytest.raises(HttpResponseError) as caught:
        compute.virtual_machines.begin_create_or_update(group, "vm1", body).result()
    assert (caught.value.status_code, caught.value.error.code, caught.value.error.target) == (
        400,
        "InvalidParameter",
        target,
    )
