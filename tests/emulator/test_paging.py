"""Every list the reconcile snapshot reads (issue 16 item 1) pages with `nextLink`, and the real SDKs
follow it to the last item."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient

from emulator.admin import seed_resources
from emulator.engine import Call, Engine
from emulator.providers import load_providers
from emulator.store import Store
from localrig.emulator_client import EmulatorClient
from tests.emulator.test_arm_behaviour import raw

LOCATION = "westeurope"
COUNT = 3  # with a page size of 2: two pages per list


def _estate(subscription: str) -> list[dict[str, Any]]:
    rg = f"/subscriptions/{subscription}/resourceGroups/paging"
    net = f"{rg}/providers/Microsoft.Network"
    items: list[dict[str, Any]] = []
    for i in range(COUNT):
        vnet = f"{net}/virtualNetworks/vnet{i}"
        items += [
            {"id": f"{net}/networkSecurityGroups/nsg{i}", "body": {"location": LOCATION}},
            {
                "id": vnet,
                "body": {
                    "location": LOCATION,
                    "properties": {
                        "addressSpace": {"addressPrefixes": [f"10.{i}.0.0/16"]},
                        "subnets": [
                            {"name": "vms", "properties": {"addressPrefix": f"10.{i}.1.0/24"}},
                            {
                                "name": "AzureFirewallSubnet",
                                "properties": {"addressPrefix": f"10.{i}.100.0/26"},
                            },
                        ],
                    },
                },
            },
            {
                "id": f"{net}/publicIPAddresses/pip{i}",
                "body": {
                    "location": LOCATION,
                    "sku": {"name": "Standard"},
                    "properties": {"publicIPAllocationMethod": "Static"},
                },
            },
            {
                "id": f"{net}/networkInterfaces/nic{i}",
                "body": {
                    "location": LOCATION,
                    "properties": {
                        "ipConfigurations": [
                            {"name": "ipc", "properties": {"subnet": {"id": f"{vnet}/subnets/vms"}}}
                        ]
                    },
                },
            },
            {
                "id": f"{rg}/providers/Microsoft.Compute/virtualMachines/vm{i}",
                "body": {
                    "location": LOCATION,
                    "properties": {
                        "hardwareProfile": {"vmSize": "Standard_B1s"},
                        "networkProfile": {"networkInterfaces": [{"id": f"{net}/networkInterfaces/nic{i}"}]},
                    },
                },
            },
            {
                "id": f"{net}/azureFirewalls/fw{i}",
                "body": {
                    "location": LOCATION,
                    "properties": {
                        "ipConfigurations": [
                            {
                                "name": "ipc",
                                "properties": {
                                    "subnet": {"id": f"{vnet}/subnets/AzureFirewallSubnet"},
                                    "publicIPAddress": {"id": f"{net}/publicIPAddresses/pip{i}"},
                                },
                            }
                        ]
                    },
                },
            },
            {"id": f"{net}/firewallPolicies/policy{i}", "body": {"location": LOCATION}},
            {
                "id": f"{net}/firewallPolicies/policy0/ruleCollectionGroups/group{i}",
                "body": {"properties": {"priority": 100 + i, "ruleCollections": []}},
            },
        ]
    return items


@pytest.fixture
def small_pages(arm_emulator: EmulatorClient) -> Iterator[str]:
    subscription = str(uuid.uuid4())
    arm_emulator.seed(_estate(subscription))
    before = arm_emulator.admin_ok("GET", "/_emulator/config")["page_size"]
    arm_emulator.admin_ok("POST", "/_emulator/config", {"page_size": 2})
    try:
        yield subscription
    finally:
        arm_emulator.admin_ok("POST", "/_emulator/config", {"page_size": before})


def _lists(
    net: NetworkManagementClient, compute: ComputeManagementClient
) -> dict[str, Callable[[], Iterable[Any]]]:
    return {
        "Microsoft.Compute/virtualMachines": compute.virtual_machines.list_all,
        "Microsoft.Network/networkInterfaces": net.network_interfaces.list_all,
        "Microsoft.Network/virtualNetworks": net.virtual_networks.list_all,
        "Microsoft.Network/networkSecurityGroups": net.network_security_groups.list_all,
        "Microsoft.Network/publicIPAddresses": net.public_ip_addresses.list_all,
        "Microsoft.Network/azureFirewalls": net.azure_firewalls.list_all,
        "Microsoft.Network/firewallPolicies": net.firewall_policies.list_all,
        "Microsoft.Network/firewallPolicies/ruleCollectionGroups": lambda: (
            net.firewall_policy_rule_collection_groups.list("paging", "policy0")
        ),
    }


def test_every_snapshot_list_pages_and_the_sdk_follows_next_link(
    arm_emulator: EmulatorClient, small_pages: str
) -> None:
    net = arm_emulator.client(NetworkManagementClient, subscription_id=small_pages)
    compute = arm_emulator.client(ComputeManagementClient, subscription_id=small_pages)
    arm_emulator.admin_ok("DELETE", "/_emulator/requests")
    for type_key, list_call in _lists(net, compute).items():
        names = sorted(str(item.name) for item in list_call())
        assert len(names) == COUNT, type_key
        assert len(set(names)) == COUNT, type_key  # no item twice across pages

    pages = Counter(
        entry["type"]
        for entry in arm_emulator.requests()["log"]
        if entry["method"] == "GET" and small_pages in entry["path"]
    )
    assert pages == dict.fromkeys(_lists(net, compute), 2)


def test_a_skiptoken_the_server_did_not_hand_out_is_refused(
    arm_emulator: EmulatorClient, small_pages: str
) -> None:
    net = arm_emulator.client(NetworkManagementClient, subscription_id=small_pages)
    first = next(net.network_security_groups.list_all().by_page())
    assert len(list(first)) == 2
    status, _, body = raw(
        arm_emulator,
        "GET",
        f"/subscriptions/{small_pages}/providers/Microsoft.Network/networkSecurityGroups"
        "?api-version=2024-07-01&%24skiptoken=abc",
        headers={"Authorization": "Bearer x"},
    )
    assert status == 400
    assert body["error"]["code"] == "InvalidSkipToken"


def test_a_page_renders_only_its_own_items() -> None:
    """Rendering (back-references, default rules) is the costly part of a list: a page of a large
    list must not render the whole list."""
    engine = Engine(Store(None))
    load_providers(engine)
    engine.page_size = 10
    nsgs = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups"
    seed_resources(engine, [{"id": f"{nsgs}/nsg{i}", "body": {"location": LOCATION}} for i in range(25)])
    nsg_type = engine.types["microsoft.network/networksecuritygroups"]
    rendered: list[str] = []
    original = nsg_type.render

    def counting(call: Any, body: dict[str, Any]) -> dict[str, Any]:
        rendered.append(body["name"])
        return original(call, body)

    nsg_type.render = counting  # type: ignore[method-assign]
    headers = {"authorization": "Bearer x"}
    query = {"api-version": "2024-07-01", "$skiptoken": "20"}
    answer = engine.handle(
        Call(
            engine,
            "GET",
            "/subscriptions/s1/providers/Microsoft.Network/networkSecurityGroups",
            query,
            headers,
            b"",
            "https://e",
        )
    )
    assert answer.status == 200
    assert [item["name"] for item in answer.body["value"]] == [f"nsg{i}" for i in range(20, 25)]
    assert "nextLink" not in answer.body
    assert rendered == [f"nsg{i}" for i in range(20, 25)]
