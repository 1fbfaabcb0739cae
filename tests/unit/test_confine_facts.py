"""What the policy API's firewall check reads from a firewall's wire JSON (shared.actions.confine)."""

from __future__ import annotations

from shared.actions.confine import FirewallFacts
from shared.authz import FIREWALL_WRITE_ACTION, RULE_COLLECTION_GROUP_WRITE_ACTION
from shared.model import ResourceId

RG = "/subscriptions/s/resourceGroups/rg-a/providers/Microsoft.Network"


def firewall(policy: str | None = None) -> dict[str, object]:
    props: dict[str, object] = {
        "ipConfigurations": [
            {
                "name": "c",
                "properties": {
                    "subnet": {"id": f"{RG}/virtualNetworks/hub/subnets/AzureFirewallSubnet"},
                    "publicIPAddress": {"id": f"{RG}/publicIPAddresses/pip1"},
                },
            }
        ]
    }
    if policy:
        props["firewallPolicy"] = {"id": policy}
    return {"id": f"{RG}/azureFirewalls/fw", "properties": props}


def test_a_classic_firewall_needs_firewall_write_on_itself() -> None:
    facts = FirewallFacts.from_wire(firewall())
    assert facts.vnet == ResourceId(f"{RG}/virtualNetworks/HUB")
    assert facts.public_ip_ids == (f"{RG}/publicIPAddresses/pip1",)
    assert facts.write_action == (FIREWALL_WRITE_ACTION, f"{RG}/azureFirewalls/fw")


def test_a_firewall_policy_firewall_needs_rule_collection_group_write_on_its_policy() -> None:
    facts = FirewallFacts.from_wire(firewall(f"{RG}/firewallPolicies/pol"))
    assert facts.write_action == (RULE_COLLECTION_GROUP_WRITE_ACTION, f"{RG}/firewallPolicies/pol")


def test_a_firewall_without_a_subnet_has_no_vnet_and_so_fronts_nothing() -> None:
    assert FirewallFacts.from_wire({"id": "x", "properties": {}}).vnet is None
