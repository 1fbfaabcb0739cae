"""Microsoft.Network through the real azure-mgmt-network SDK: create, read, change, list, delete,
addresses as Azure assigns them, references and back-references, and ARM's validation errors."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.network.models import (
    FirewallPolicy,
    FirewallPolicyNatRuleCollection,
    FirewallPolicyNatRuleCollectionAction,
    FirewallPolicyRuleCollectionGroup,
    NatRule,
    NetworkSecurityGroup,
    PublicIPAddress,
    PublicIPAddressSku,
    Subnet,
    SubResource,
    TagsObject,
)

from localrig.estates.sdk import LOCATION, build_estate, firewall_body, nat_rule, nic_body, rule


@pytest.fixture
def estate(arm_emulator):
    return build_estate(arm_emulator)


def error_of(excinfo: pytest.ExceptionInfo[HttpResponseError]) -> tuple[int, str]:
    error = excinfo.value
    return error.status_code or 0, error.error.code if error.error else ""


# --- NSGs and rules --------------------------------------------------------------------------------


def test_nsg_has_default_rules_guid_and_etag(estate):
    nsg = estate.net.network_security_groups.get(estate.rg, "vm-nsg")
    assert [r.priority for r in nsg.default_security_rules] == [65000, 65001, 65500, 65000, 65001, 65500]
    assert nsg.resource_guid and nsg.etag.startswith('W/"')
    assert nsg.security_rules == []
    assert nsg.provisioning_state == "Succeeded"


def test_security_rule_create_update_list_delete(estate):
    net, rg = estate.net, estate.rg
    created = net.security_rules.begin_create_or_update(rg, "vm-nsg", "allow-ssh", rule()).result()
    assert created.provisioning_state == "Succeeded" and created.destination_port_range == "22"
    updated = net.security_rules.begin_create_or_update(
        rg, "vm-nsg", "allow-ssh", rule(destination_port_range="2222")
    ).result()
    assert updated.destination_port_range == "2222" and updated.etag != created.etag
    augmented = net.security_rules.begin_create_or_update(
        rg,
        "vm-nsg",
        "augmented",
        rule(
            "augmented",
            101,
            source_address_prefix=None,
            source_address_prefixes=["198.51.100.0/24", "203.0.113.0/24"],
            destination_port_range=None,
            destination_port_ranges=["22", "3389"],
        ),
    ).result()
    assert augmented.source_address_prefixes == ["198.51.100.0/24", "203.0.113.0/24"]
    assert {r.name for r in net.security_rules.list(rg, "vm-nsg")} == {"allow-ssh", "augmented"}
    nsg = net.network_security_groups.get(rg, "vm-nsg")
    assert all(r.etag == nsg.etag for r in nsg.security_rules)  # children carry the parent's etag
    net.security_rules.begin_delete(rg, "vm-nsg", "allow-ssh").result()
    assert [r.name for r in net.security_rules.list(rg, "vm-nsg")] == ["augmented"]
    with pytest.raises(ResourceNotFoundError):
        net.security_rules.get(rg, "vm-nsg", "allow-ssh")


def test_whole_nsg_put_replaces_the_rules(estate):
    net, rg = estate.net, estate.rg
    net.security_rules.begin_create_or_update(rg, "vm-nsg", "allow-ssh", rule()).result()
    nsg = net.network_security_groups.get(rg, "vm-nsg")
    nsg.security_rules = [rule("other", 200)]
    replaced = net.network_security_groups.begin_create_or_update(rg, "vm-nsg", nsg).result()
    assert [r.name for r in replaced.security_rules] == ["other"]


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"priority": 99}, "SecurityRuleInvalidPriority"),
        ({"priority": 4097}, "SecurityRuleInvalidPriority"),
        ({"protocol": "Gre"}, "InvalidRequestFormat"),
        ({"access": None}, "InvalidRequestFormat"),
        ({"description": "x" * 141}, "SecurityRuleDescriptionTooLong"),
        ({"destination_port_range": "70000"}, "SecurityRuleInvalidPortRange"),
        ({"source_address_prefix": "300.1.1.1/32"}, "SecurityRuleInvalidAddressPrefix"),
        ({"source_address_prefixes": ["10.0.0.0/8"]}, "SecurityRuleParameterContainsUnsupportedValue"),
    ],
)
def test_invalid_rules_are_refused_and_change_nothing(estate, changes, code):
    with pytest.raises(HttpResponseError) as excinfo:
        estate.net.security_rules.begin_create_or_update(
            estate.rg, "vm-nsg", "bad", rule("bad", **changes)
        ).result()
    assert error_of(excinfo) == (400, code)
    assert list(estate.net.security_rules.list(estate.rg, "vm-nsg")) == []


@pytest.mark.parametrize("name", ["-starts-with-dash", "ends.with.dot.", "x" * 81, "has space"])
def test_rule_names_follow_the_network_naming_rules(estate, name):
    with pytest.raises(HttpResponseError) as excinfo:
        estate.net.security_rules.begin_create_or_update(estate.rg, "vm-nsg", name, rule(name)).result()
    assert error_of(excinfo) == (400, "InvalidResourceName")


def test_priority_is_unique_per_direction(estate):
    net, rg = estate.net, estate.rg
    net.security_rules.begin_create_or_update(rg, "vm-nsg", "first", rule("first", 300)).result()
    with pytest.raises(HttpResponseError) as excinfo:
        net.security_rules.begin_create_or_update(rg, "vm-nsg", "second", rule("second", 300)).result()
    assert error_of(excinfo) == (400, "SecurityRuleConflict")
    outbound = net.security_rules.begin_create_or_update(
        rg, "vm-nsg", "second", rule("second", 300, direction="Outbound")
    ).result()
    assert outbound.priority == 300


def test_missing_resources_and_groups_are_404(estate, arm_emulator):
    with pytest.raises(ResourceNotFoundError) as excinfo:
        estate.net.network_security_groups.get(estate.rg, "nope")
    assert error_of(excinfo) == (404, "ResourceNotFound")
    assert excinfo.value.response.headers["x-ms-failure-cause"] == "gateway"
    with pytest.raises(ResourceNotFoundError) as excinfo:
        estate.net.network_security_groups.get("no-such-group", "vm-nsg")
    assert error_of(excinfo) == (404, "ResourceGroupNotFound")
    with pytest.raises(ResourceNotFoundError):
        estate.net.security_rules.begin_create_or_update(estate.rg, "nope", "r", rule("r")).result()


def test_nsg_in_use_cannot_be_deleted(estate):
    with pytest.raises(HttpResponseError) as excinfo:
        estate.net.network_security_groups.begin_delete(estate.rg, "vm-nsg").result()
    assert error_of(excinfo) == (400, "InUseNetworkSecurityGroupCannotBeDeleted")


def test_nsg_update_tags_and_delete(estate):
    net, rg = estate.net, estate.rg
    net.network_security_groups.begin_create_or_update(
        rg, "spare", NetworkSecurityGroup(location=LOCATION)
    ).result()
    tagged = net.network_security_groups.update_tags(rg, "spare", TagsObject(tags={"owner": "ops"}))
    assert tagged.tags == {"owner": "ops"}
    assert "spare" in {n.name for n in net.network_security_groups.list(rg)}
    assert "spare" in {n.name for n in net.network_security_groups.list_all()}
    net.network_security_groups.begin_delete(rg, "spare").result()
    assert "spare" not in {n.name for n in net.network_security_groups.list(rg)}
    net.network_security_groups.begin_delete(rg, "spare").result()  # already gone: 204, no error


# --- VNets, subnets, public IPs, NICs --------------------------------------------------------------


def test_static_public_ip_gets_an_address_when_created(estate):
    assert estate.vm_pip.ip_address and estate.vm_pip.ip_address != estate.firewall_pip.ip_address
    again = estate.net.public_ip_addresses.get(estate.rg, "vm-pip")
    assert again.ip_address == estate.vm_pip.ip_address
    assert {p.name for p in estate.net.public_ip_addresses.list(estate.rg)} == {"vm-pip", "fw-pip"}


def test_standard_public_ip_must_be_static(estate):
    with pytest.raises(HttpResponseError) as excinfo:
        estate.net.public_ip_addresses.begin_create_or_update(
            estate.rg,
            "dyn",
            PublicIPAddress(
                location=LOCATION,
                sku=PublicIPAddressSku(name="Standard"),
                public_ip_allocation_method="Dynamic",
            ),
        ).result()
    assert error_of(excinfo) == (400, "StandardSkuPublicIPAddressesMustBeStatic")


def test_nic_dynamic_ip_is_allocated_from_the_subnet_and_static_is_honoured(estate):
    net, rg = estate.net, estate.rg
    first = net.network_interfaces.begin_create_or_update(
        rg, "nic1", nic_body(estate, with_pip=True)
    ).result()
    second = net.network_interfaces.begin_create_or_update(rg, "nic2", nic_body(estate)).result()
    static = net.network_interfaces.begin_create_or_update(
        rg, "nic3", nic_body(estate, static_ip="10.0.1.200")
    ).result()
    assert first.ip_configurations[0].private_ip_address == "10.0.1.4"
    assert second.ip_configurations[0].private_ip_address == "10.0.1.5"
    assert static.ip_configurations[0].private_ip_address == "10.0.1.200"
    assert first.ip_configurations[0].public_ip_address.id == estate.vm_pip.id
    # an update keeps the dynamic address
    again = net.network_interfaces.begin_create_or_update(
        rg, "nic1", nic_body(estate, with_pip=True)
    ).result()
    assert again.ip_configurations[0].private_ip_address == "10.0.1.4"
    # back-references
    subnet = net.subnets.get(rg, "vnet", "vms")
    assert {c.id.split("/")[8] for c in subnet.ip_configurations} == {"nic1", "nic2", "nic3"}
    nsg = net.network_security_groups.get(rg, "vm-nsg")
    assert {n.id.split("/")[-1] for n in nsg.network_interfaces} == {"nic1", "nic2", "nic3"}
    assert [s.id for s in nsg.subnets] == [estate.vm_subnet.id]
    pip = net.public_ip_addresses.get(rg, "vm-pip")
    assert pip.ip_configuration.id == first.ip_configurations[0].id


@pytest.mark.parametrize(
    ("static_ip", "code"),
    [("10.0.2.10", "PrivateIPAddressNotInSubnet"), ("10.0.1.2", "PrivateIPAddressInReservedRange")],
)
def test_nic_static_ip_must_lie_in_its_subnet(estate, static_ip, code):
    with pytest.raises(HttpResponseError) as excinfo:
        estate.net.network_interfaces.begin_create_or_update(
            estate.rg, "bad", nic_body(estate, static_ip=static_ip)
        ).result()
    assert error_of(excinfo) == (400, code)


def test_nic_static_ip_already_taken_is_refused(estate):
    net, rg = estate.net, estate.rg
    net.network_interfaces.begin_create_or_update(rg, "a", nic_body(estate, static_ip="10.0.1.9")).result()
    with pytest.raises(HttpResponseError) as excinfo:
        net.network_interfaces.begin_create_or_update(
            rg, "b", nic_body(estate, static_ip="10.0.1.9")
        ).result()
    assert error_of(excinfo) == (400, "PrivateIPAddressInUse")


def test_nic_references_are_checked(estate):
    body = nic_body(estate)
    body.ip_configurations[0].subnet = Subnet(id=estate.vm_subnet.id.replace("/vms", "/missing"))
    with pytest.raises(HttpResponseError) as excinfo:
        estate.net.network_interfaces.begin_create_or_update(estate.rg, "bad", body).result()
    assert error_of(excinfo) == (400, "InvalidResourceReference")


def test_subnet_in_use_cannot_be_deleted_and_free_subnet_can(estate):
    net, rg = estate.net, estate.rg
    net.network_interfaces.begin_create_or_update(rg, "nic1", nic_body(estate)).result()
    with pytest.raises(HttpResponseError) as excinfo:
        net.subnets.begin_delete(rg, "vnet", "vms").result()
    assert error_of(excinfo) == (400, "InUseSubnetCannotBeDeleted")
    extra = net.subnets.begin_create_or_update(
        rg, "vnet", "extra", Subnet(address_prefix="10.0.5.0/24")
    ).result()
    assert extra.address_prefix == "10.0.5.0/24"
    with pytest.raises(HttpResponseError) as excinfo:
        net.subnets.begin_create_or_update(
            rg, "vnet", "overlap", Subnet(address_prefix="10.0.5.128/25")
        ).result()
    assert error_of(excinfo) == (400, "NetcfgSubnetRangesOverlap")
    net.subnets.begin_delete(rg, "vnet", "extra").result()
    assert {s.name for s in net.subnets.list(rg, "vnet")} == {"vms", "AzureFirewallSubnet"}


# --- Azure Firewall and Firewall Policy ------------------------------------------------------------


def test_firewall_gets_the_fourth_address_of_its_subnet_and_collection_ids(estate):
    net, rg = estate.net, estate.rg
    fw = net.azure_firewalls.begin_create_or_update(
        rg, "fw", firewall_body(estate, nat_rules=[nat_rule(estate)])
    ).result()
    assert fw.ip_configurations[0].private_ip_address == "10.0.100.4"
    collection = fw.nat_rule_collections[0]
    assert collection.id == f"{fw.id}/natRuleCollections/portcullis-dnat"
    assert collection.provisioning_state == "Succeeded" and collection.action.type == "Dnat"
    assert net.public_ip_addresses.get(rg, "fw-pip").ip_configuration.id == fw.ip_configurations[0].id
    # read, change, write back whole with If-Match
    fw.nat_rule_collections[0].rules.append(nat_rule(estate, port="50023", name="ssh-vm2"))
    updated = net.azure_firewalls.begin_create_or_update(rg, "fw", fw, headers={"If-Match": fw.etag}).result()
    assert [r.name for r in updated.nat_rule_collections[0].rules] == ["ssh-vm1", "ssh-vm2"]
    assert updated.etag != fw.etag
    assert [f.name for f in net.azure_firewalls.list(rg)] == ["fw"]


@pytest.mark.parametrize(
    ("port", "code"), [("64000", "AzureFirewallNatRuleInvalidPort"), ("0", "AzureFirewallNatRuleInvalidPort")]
)
def test_nat_ports_are_1_to_63999(estate, port, code):
    with pytest.raises(HttpResponseError) as excinfo:
        estate.net.azure_firewalls.begin_create_or_update(
            estate.rg, "fw", firewall_body(estate, nat_rules=[nat_rule(estate, port=port)])
        ).result()
    assert error_of(excinfo) == (400, code)


def test_nat_destination_must_be_a_firewall_public_ip(estate):
    bad = nat_rule(estate)
    bad.destination_addresses = ["198.51.100.1"]
    with pytest.raises(HttpResponseError) as excinfo:
        estate.net.azure_firewalls.begin_create_or_update(
            estate.rg, "fw", firewall_body(estate, nat_rules=[bad])
        ).result()
    assert error_of(excinfo) == (400, "AzureFirewallNatRuleDestinationNotFirewallPublicIp")


def test_firewall_policy_and_rule_collection_groups(estate):
    net, rg = estate.net, estate.rg
    policy = net.firewall_policies.begin_create_or_update(
        rg, "policy", FirewallPolicy(location=LOCATION)
    ).result()
    assert policy.type == "Microsoft.Network/FirewallPolicies" and "W/" not in policy.etag
    group = FirewallPolicyRuleCollectionGroup(
        priority=300,
        rule_collections=[
            FirewallPolicyNatRuleCollection(
                name="dnat",
                priority=100,
                action=FirewallPolicyNatRuleCollectionAction(type="DNAT"),
                rules=[
                    NatRule(
                        name="ssh-vm1",
                        ip_protocols=["TCP"],
                        source_addresses=["203.0.113.7"],
                        destination_addresses=[estate.firewall_pip.ip_address],
                        destination_ports=["50022"],
                        translated_address="10.0.1.4",
                        translated_port="22",
                    )
                ],
            )
        ],
    )
    created = net.firewall_policy_rule_collection_groups.begin_create_or_update(
        rg, "policy", "portcullis", group
    ).result()
    assert created.type == "Microsoft.Network/FirewallPolicies/RuleCollectionGroups"
    assert created.rule_collections[0].action.type == "Dnat"  # sent DNAT, answered Dnat
    assert created.size.endswith(" MB")
    group.rule_collections[0].rules[0].destination_ports = ["50023"]
    updated = net.firewall_policy_rule_collection_groups.begin_create_or_update(
        rg, "policy", "portcullis", group, headers={"If-Match": created.etag}
    ).result()
    assert updated.etag != created.etag
    listed = net.firewall_policy_rule_collection_groups.list(rg, "policy")
    assert [g.name for g in listed] == ["portcullis"]
    assert [g.id for g in net.firewall_policies.get(rg, "policy").rule_collection_groups] == [created.id]
    # a firewall pointing at the policy shows up in the policy's back-references
    body = firewall_body(estate)
    body.firewall_policy = SubResource(id=policy.id)
    fw = net.azure_firewalls.begin_create_or_update(rg, "fw", body).result()
    assert [f.id for f in net.firewall_policies.get(rg, "policy").firewalls] == [fw.id]
    net.firewall_policy_rule_collection_groups.begin_delete(rg, "policy", "portcullis").result()
    assert list(net.firewall_policy_rule_collection_groups.list(rg, "policy")) == []


def test_rule_collection_group_priority_range(estate):
    net, rg = estate.net, estate.rg
    net.firewall_policies.begin_create_or_update(rg, "policy", FirewallPolicy(location=LOCATION)).result()
    with pytest.raises(HttpResponseError) as excinfo:
        net.firewall_policy_rule_collection_groups.begin_create_or_update(
            rg, "policy", "g", FirewallPolicyRuleCollectionGroup(priority=99)
        ).result()
    assert error_of(excinfo)[0] == 400
    assert excinfo.value.error.target == "properties.priority"
