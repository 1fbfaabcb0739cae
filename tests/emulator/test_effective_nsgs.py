"""`networkInterfaces/{nic}/effectiveNetworkSecurityGroups` (issue 12) through azure-mgmt-network
33.1.0's `begin_list_effective_network_security_groups` (a long-running POST, final state via
Location)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.mgmt.network import NetworkManagementClient


@pytest.fixture(scope="module")
def network(arm_emulator):
    return arm_emulator.client(NetworkManagementClient)


def _rule(name, priority, port, source="*", access="Allow"):
    return {
        "name": name,
        "properties": {
            "protocol": "Tcp",
            "sourceAddressPrefix": source,
            "sourcePortRange": "*",
            "destinationAddressPrefix": "*",
            "destinationPortRange": port,
            "access": access,
            "priority": priority,
            "direction": "Inbound",
        },
    }


def _estate(network, group, *, subnet_nsg=True, nic_nsg=True):
    loc = "westeurope"
    subnet_group = network.network_security_groups.begin_create_or_update(
        group,
        "nsg-subnet",
        {"location": loc, "properties": {"securityRules": [_rule("deny-rdp", 200, "3389", access="Deny")]}},
    ).result()
    nic_group = network.network_security_groups.begin_create_or_update(
        group,
        "nsg-nic",
        {"location": loc, "properties": {"securityRules": [_rule("ssh", 100, "22", "10.9.0.0/24")]}},
    ).result()
    subnet_props = {"addressPrefix": "10.5.1.0/24"}
    if subnet_nsg:
        subnet_props["networkSecurityGroup"] = {"id": subnet_group.id}
    vnet = network.virtual_networks.begin_create_or_update(
        group,
        "vnet",
        {"location": loc, "properties": {"addressSpace": {"addressPrefixes": ["10.5.0.0/16"]},
                                         "subnets": [{"name": "s1", "properties": subnet_props}]}},
    ).result()  # fmt: skip
    nic_props = {"ipConfigurations": [{"name": "ip1", "properties": {"subnet": {"id": vnet.subnets[0].id}}}]}
    if nic_nsg:
        nic_props["networkSecurityGroup"] = {"id": nic_group.id}
    nic = network.network_interfaces.begin_create_or_update(
        group, "nic", {"location": loc, "properties": nic_props}
    ).result()
    return subnet_group, nic_group, vnet, nic


def test_effective_nsgs_of_subnet_and_nic(arm_emulator, network):
    group = arm_emulator.new_resource_group()
    subnet_group, nic_group, vnet, nic = _estate(network, group)
    result = network.network_interfaces.begin_list_effective_network_security_groups(group, "nic").result()
    groups = result.value
    assert [g.network_security_group.id for g in groups] == [subnet_group.id, nic_group.id]
    assert (
        groups[0].association.subnet.id == vnet.subnets[0].id
        and groups[0].association.network_interface is None
    )
    assert groups[1].association.network_interface.id == nic.id
    nic_rules = {r.name: r for r in groups[1].effective_security_rules}
    ssh = nic_rules["securityRules/ssh"]
    assert (ssh.protocol, ssh.destination_port_range, ssh.source_port_range) == ("Tcp", "22-22", "0-65535")
    assert ssh.source_address_prefix == "10.9.0.0/24" and ssh.destination_address_prefix == "0.0.0.0/0"
    assert (ssh.access, ssh.priority, ssh.direction) == ("Allow", 100, "Inbound")
    vnet_in = nic_rules["defaultSecurityRules/AllowVnetInBound"]
    assert vnet_in.protocol == "All" and vnet_in.source_address_prefix == "VirtualNetwork"
    assert vnet_in.expanded_source_address_prefix == ["10.5.0.0/16", "168.63.129.16/32"]
    assert len(nic_rules) == 7  # one rule of ours + six defaults
    subnet_rules = {r.name: r for r in groups[0].effective_security_rules}
    assert subnet_rules["securityRules/deny-rdp"].access == "Deny"
    # a rule added later shows up
    network.security_rules.begin_create_or_update(
        group, "nsg-nic", "https", _rule("https", 110, "443")
    ).result()
    again = network.network_interfaces.begin_list_effective_network_security_groups(group, "nic").result()
    assert "securityRules/https" in {r.name for r in again.value[1].effective_security_rules}


def test_effective_nsgs_is_a_long_running_post(arm_emulator, network):
    group = arm_emulator.new_resource_group()
    _estate(network, group, subnet_nsg=False)
    url = (
        f"{arm_emulator.base_url}/subscriptions/{arm_emulator.subscription_id}/resourceGroups/{group}"
        "/providers/Microsoft.Network/networkInterfaces/nic/effectiveNetworkSecurityGroups?api-version=2026-03-01"
    )
    with arm_emulator.lro_seconds({"Microsoft.Network/networkInterfaces": 1}):
        answer = network._client.send_request(HttpRequest("POST", url))
        assert answer.status_code == 202 and "Location" in answer.headers
        assert network._client.send_request(HttpRequest("GET", answer.headers["Location"])).status_code == 202
        result = network.network_interfaces.begin_list_effective_network_security_groups(
            group, "nic"
        ).result()
    assert [g.network_security_group.id.rsplit("/", 1)[1] for g in result.value] == ["nsg-nic"]


def test_no_nsg_no_entries_and_missing_nic(arm_emulator, network):
    group = arm_emulator.new_resource_group()
    _estate(network, group, subnet_nsg=False, nic_nsg=False)
    assert (
        network.network_interfaces.begin_list_effective_network_security_groups(group, "nic").result().value
        == []
    )
    with pytest.raises(ResourceNotFoundError):
        network.network_interfaces.begin_list_effective_network_security_groups(group, "missing").result()


def test_effective_nsgs_fit_the_spec_schema(arm_emulator, network):
    """The raw answer against the 2024-07-01 spec's EffectiveNetworkSecurityGroupListResult."""
    from tests.conftest import shared_dir_or_skip
    from tests.emulator.specs import SpecSet

    spec_dir = (
        shared_dir_or_skip()
        / "azure-rest-specs/specification/network/resource-manager/Microsoft.Network/stable/2024-07-01"
    )
    specs = SpecSet(spec_dir)
    group = arm_emulator.new_resource_group()
    _estate(network, group)
    url = (
        f"{arm_emulator.base_url}/subscriptions/{arm_emulator.subscription_id}/resourceGroups/{group}"
        "/providers/Microsoft.Network/networkInterfaces/nic/effectiveNetworkSecurityGroups?api-version=2024-07-01"
    )
    answer = network._client.send_request(HttpRequest("POST", url))
    result = network._client.send_request(HttpRequest("GET", answer.headers["Location"]))
    assert result.status_code == 200
    body = result.json()
    assert len(body["value"]) == 2
    spec_file = (spec_dir / "networkInterface.json").resolve().as_uri()
    schema = {"$ref": f"{spec_file}#/definitions/EffectiveNetworkSecurityGroupListResult"}
    assert specs.validate(schema, body) == []
    broken = {"value": [{**body["value"][0], "effectiveSecurityRules": [{"priority": "high"}]}]}
    assert specs.validate(schema, broken)  # the check can fail
