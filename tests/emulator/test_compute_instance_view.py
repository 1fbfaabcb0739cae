"""VM instance view, `Creating`, power actions and the NIC's `primary` (issue 12), through
azure-mgmt-compute 39.0.0 and azure-mgmt-network 33.1.0."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient

from tests.emulator.test_compute_api import make_nic, vm_body


@pytest.fixture(scope="module")
def compute(arm_emulator):
    return arm_emulator.client(ComputeManagementClient)


@pytest.fixture(scope="module")
def network(arm_emulator):
    return arm_emulator.client(NetworkManagementClient)


def _codes(view):
    return [s.code for s in view.statuses]


def test_instance_view_by_expand_and_by_path(arm_emulator, compute, network):
    group = arm_emulator.new_resource_group()
    nic = make_nic(network, group)
    compute.virtual_machines.begin_create_or_update(group, "vm1", vm_body([nic.id])).result()
    plain = compute.virtual_machines.get(group, "vm1")
    assert plain.instance_view is None  # only on request, as Compute answers
    vm = compute.virtual_machines.get(group, "vm1", expand="instanceView")
    assert _codes(vm.instance_view) == ["ProvisioningState/succeeded", "PowerState/running"]
    assert vm.instance_view.statuses[1].display_status == "VM running"
    assert vm.instance_view.computer_name == "vm1"
    view = compute.virtual_machines.instance_view(group, "vm1")
    assert _codes(view) == ["ProvisioningState/succeeded", "PowerState/running"]
    listed = [v for v in compute.virtual_machines.list_all(status_only="true") if v.name == "vm1"]
    assert listed and _codes(listed[0].instance_view)[1] == "PowerState/running"
    with pytest.raises(ResourceNotFoundError):
        compute.virtual_machines.instance_view(group, "nope")


def test_power_actions_change_the_power_state(arm_emulator, compute, network):
    group = arm_emulator.new_resource_group()
    nic = make_nic(network, group)
    compute.virtual_machines.begin_create_or_update(group, "vm1", vm_body([nic.id])).result()
    compute.virtual_machines.begin_deallocate(group, "vm1").result()
    assert _codes(compute.virtual_machines.instance_view(group, "vm1"))[1] == "PowerState/deallocated"
    compute.virtual_machines.begin_power_off(group, "vm1").result()
    assert _codes(compute.virtual_machines.instance_view(group, "vm1"))[1] == "PowerState/stopped"
    compute.virtual_machines.begin_start(group, "vm1").result()
    assert _codes(compute.virtual_machines.instance_view(group, "vm1"))[1] == "PowerState/running"


def test_a_new_vm_is_creating_and_an_update_is_updating(arm_emulator, compute, network):
    group = arm_emulator.new_resource_group()
    nic = make_nic(network, group)
    base = arm_emulator.base_url
    path = (
        f"{base}/subscriptions/{arm_emulator.subscription_id}/resourceGroups/{group}"
        "/providers/Microsoft.Compute/virtualMachines/vm1?api-version=2026-04-01"
    )
    with arm_emulator.lro_seconds({"Microsoft.Compute/virtualMachines": 1.5}):
        created = compute._client.send_request(HttpRequest("PUT", path, json=vm_body([nic.id])))
        assert created.status_code == 201
        assert created.json()["properties"]["provisioningState"] == "Creating"
        view = compute.virtual_machines.get(group, "vm1", expand="instanceView").instance_view
        assert _codes(view) == ["ProvisioningState/creating", "PowerState/starting"]
        done = compute.virtual_machines.begin_create_or_update(group, "vm1", vm_body([nic.id]))
        # the second PUT supersedes the first and is an update
        assert compute.virtual_machines.get(group, "vm1").provisioning_state == "Updating"
        assert done.result().provisioning_state == "Succeeded"


def test_only_the_primary_nic_says_primary(arm_emulator, compute, network):
    group = arm_emulator.new_resource_group()
    first = make_nic(network, group, "nic-a")
    vnet = network.virtual_networks.get(group, "vnet-nic-a")
    second = network.network_interfaces.begin_create_or_update(
        group,
        "nic-b",
        {
            "location": "westeurope",
            "properties": {
                "ipConfigurations": [
                    {"name": "ipconfig1", "properties": {"subnet": {"id": vnet.subnets[0].id}}}
                ]
            },
        },
    ).result()
    body = vm_body([first.id, second.id])
    body["properties"]["networkProfile"]["networkInterfaces"] = [
        {"id": first.id, "properties": {"primary": False}},
        {"id": second.id, "properties": {"primary": True}},
    ]
    compute.virtual_machines.begin_create_or_update(group, "vm2", body).result()
    assert network.network_interfaces.get(group, "nic-a").primary is False
    assert network.network_interfaces.get(group, "nic-b").primary is True
    single = make_nic(network, group, "nic-c")
    compute.virtual_machines.begin_create_or_update(group, "vm3", vm_body([single.id])).result()
    assert network.network_interfaces.get(group, "nic-c").primary is True
