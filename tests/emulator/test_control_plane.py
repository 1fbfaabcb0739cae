"""The ARM control plane around the resource types (issue 12), through the real SDKs:
azure-mgmt-resource 26.0.0 (resources, groups, providers, tags) and azure-mgmt-resource-subscriptions
1.0.0 (subscriptions, tenants, locations), both pinned in requirements-dev.txt."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
from azure.core import PipelineClient
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.subscriptions import SubscriptionClient

from localrig.credentials import StaticTokenCredential
from localrig.emulator_client import DEFAULT_SUBSCRIPTION


def _jwt(claims):
    def part(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.x"


@pytest.fixture(scope="module")
def subscriptions(arm_emulator):
    return SubscriptionClient(
        StaticTokenCredential(),
        base_url=arm_emulator.base_url,
        connection_verify=str(arm_emulator.ca_file),
        polling_interval=0,
    )


@pytest.fixture(scope="module")
def resources(arm_emulator):
    return arm_emulator.client(ResourceManagementClient)


@pytest.fixture(scope="module")
def network(arm_emulator):
    return arm_emulator.client(NetworkManagementClient)


# --- item 1: subscriptions and tenants -------------------------------------------------------------


def test_subscription_list_holds_the_default_and_those_with_groups(arm_emulator, subscriptions):
    other = str(uuid.uuid4())
    arm_emulator.admin_ok(
        "PUT", f"/_emulator/resources/subscriptions/{other}/resourceGroups/rg-sub", {"location": "westeurope"}
    )
    listed = {s.subscription_id: s for s in subscriptions.subscriptions.list()}
    assert DEFAULT_SUBSCRIPTION in listed and other in listed
    default = listed[DEFAULT_SUBSCRIPTION]
    assert default.id == f"/subscriptions/{DEFAULT_SUBSCRIPTION}"
    assert default.state == "Enabled" and default.tenant_id
    assert default.subscription_policies.spending_limit == "Off"


def test_any_subscription_id_exists(subscriptions):
    sub = str(uuid.uuid4())
    got = subscriptions.subscriptions.get(sub)
    assert got.subscription_id == sub and got.state == "Enabled"


def test_tenants_answer_the_tokens_tenant(arm_emulator):
    tenant = str(uuid.uuid4())
    client = SubscriptionClient(
        StaticTokenCredential(_jwt({"oid": str(uuid.uuid4()), "tid": tenant})),
        base_url=arm_emulator.base_url,
        connection_verify=str(arm_emulator.ca_file),
    )
    tenants = list(client.tenants.list())
    assert [t.tenant_id for t in tenants] == [tenant]
    assert tenants[0].id == f"/tenants/{tenant}"
    assert client.subscriptions.get(DEFAULT_SUBSCRIPTION).tenant_id == tenant


# --- item 5: /metadata/endpoints without authentication --------------------------------------------


def test_metadata_endpoints_answer_without_a_token(arm_emulator):
    client = PipelineClient(arm_emulator.base_url, connection_verify=str(arm_emulator.ca_file))
    response = client.send_request(
        HttpRequest("GET", arm_emulator.base_url + "/metadata/endpoints?api-version=2022-09-01")
    )
    assert response.status_code == 200
    cloud = response.json()
    # what azure-cli's _arm_to_cli_mapper (azure/cli/core/cloud.py) reads
    assert cloud["resourceManager"] == arm_emulator.base_url + "/"
    assert cloud["authentication"]["loginEndpoint"].startswith("https://")
    assert cloud["authentication"]["audiences"][0] == "https://management.core.windows.net/"
    assert cloud["name"] and "suffixes" in cloud
    # ... while ARM proper still wants a token
    refused = client.send_request(
        HttpRequest("GET", arm_emulator.base_url + "/subscriptions?api-version=2022-12-01")
    )
    assert refused.status_code == 401


# --- item 4: resources, providers, locations, tags -------------------------------------------------


def _nsg(network, group, name, tags=None, location="westeurope"):
    return network.network_security_groups.begin_create_or_update(
        group, name, {"location": location, "tags": tags or {}}
    ).result()


def test_resource_list_filters(arm_emulator, resources, network):
    group = arm_emulator.new_resource_group()
    nsg_a = _nsg(network, group, "nsg-alpha", {"env": "dev"})
    _nsg(network, group, "nsg-beta", {"env": "prod"}, location="northeurope")
    network.public_ip_addresses.begin_create_or_update(
        group, "pip-alpha", {"location": "westeurope", "sku": {"name": "Standard"},
                             "properties": {"publicIPAllocationMethod": "Static"}}
    ).result()  # fmt: skip
    in_group = {r.name: r for r in resources.resources.list_by_resource_group(group)}
    assert set(in_group) == {"nsg-alpha", "nsg-beta", "pip-alpha"}
    assert in_group["nsg-alpha"].id == nsg_a.id
    assert in_group["nsg-alpha"].type == "Microsoft.Network/networkSecurityGroups"
    assert in_group["nsg-alpha"].tags == {"env": "dev"}
    assert in_group["pip-alpha"].sku.name == "Standard"

    def names(flt):
        return sorted(r.name for r in resources.resources.list(filter=flt) if r.id.split("/")[4] == group)

    assert names(
        f"resourceGroup eq '{group}' and resourceType eq 'Microsoft.Network/networkSecurityGroups'"
    ) == [
        "nsg-alpha",
        "nsg-beta",
    ]
    assert names("resourceType eq 'microsoft.network/publicipaddresses'") == ["pip-alpha"]
    assert names(f"resourceGroup eq '{group}' and location eq 'northeurope'") == ["nsg-beta"]
    assert names("substringof('alpha', name)") == ["nsg-alpha", "pip-alpha"]
    assert names("tagName eq 'env' and tagValue eq 'prod'") == ["nsg-beta"]
    assert names("tagName eq 'env'") == ["nsg-alpha", "nsg-beta"]
    with pytest.raises(HttpResponseError) as refused:
        list(resources.resources.list(filter="tagName eq 'env' and location eq 'westeurope'"))
    assert refused.value.status_code == 400
    with pytest.raises(HttpResponseError):
        list(resources.resources.list(filter="nonsense gt 3"))


def test_resources_list_pages(arm_emulator, resources, network):
    group = arm_emulator.new_resource_group()
    for index in range(5):
        _nsg(network, group, f"nsg-{index}")
    status, _ = arm_emulator.admin("POST", "/_emulator/config", {"page_size": 2})
    try:
        pages = list(resources.resources.list_by_resource_group(group).by_page())
        assert len(pages) == 3 and sum(len(list(p)) for p in pages) == 5
    finally:
        arm_emulator.admin("POST", "/_emulator/config", {"page_size": 1000})
    assert status < 400


def test_providers_list_types_and_api_versions(resources):
    network = resources.providers.get("microsoft.network")
    assert network.namespace == "Microsoft.Network" and network.registration_state == "Registered"
    types = {t.resource_type: t for t in network.resource_types}
    assert "2026-03-01" in types["networkSecurityGroups"].api_versions  # azure-mgmt-network 33.x
    assert "2024-07-01" in types["networkInterfaces"].api_versions
    assert "West Europe" in types["networkSecurityGroups"].locations
    namespaces = {p.namespace for p in resources.providers.list()}
    assert {
        "Microsoft.Network",
        "Microsoft.Compute",
        "Microsoft.Security",
        "Microsoft.Authorization",
    } <= namespaces
    compute = resources.providers.register("Microsoft.Compute")
    assert compute.registration_state == "Registered"
    with pytest.raises(HttpResponseError) as missing:
        resources.providers.get("Microsoft.Nope")
    assert missing.value.status_code == 404


def test_locations(subscriptions):
    locations = {loc.name: loc for loc in subscriptions.subscriptions.list_locations(DEFAULT_SUBSCRIPTION)}
    assert {"westeurope", "northeurope", "eastus"} <= set(locations)
    assert locations["westeurope"].display_name == "West Europe"
    assert locations["westeurope"].metadata.paired_region[0].name == "northeurope"


def test_tags_at_resource_group_resource_and_subscription_scope(arm_emulator, resources, network):
    group = arm_emulator.new_resource_group()
    nsg = _nsg(network, group, "nsg-tags", {"a": "1"})
    assert resources.tags.get_at_scope(nsg.id).properties.tags == {"a": "1"}
    resources.tags.begin_update_at_scope(
        nsg.id, {"operation": "Merge", "properties": {"tags": {"b": "2"}}}
    ).result()
    assert network.network_security_groups.get(group, "nsg-tags").tags == {"a": "1", "b": "2"}
    resources.tags.begin_update_at_scope(
        nsg.id, {"operation": "Delete", "properties": {"tags": {"a": "1"}}}
    ).result()
    assert network.network_security_groups.get(group, "nsg-tags").tags == {"b": "2"}
    rg_id = f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{group}"
    written = resources.tags.begin_create_or_update_at_scope(
        rg_id, {"properties": {"tags": {"team": "x"}}}
    ).result()
    assert written.id == rg_id + "/providers/Microsoft.Resources/tags/default"
    assert resources.resource_groups.get(group).tags == {"team": "x"}
    sub_scope = f"/subscriptions/{DEFAULT_SUBSCRIPTION}"
    resources.tags.begin_create_or_update_at_scope(
        sub_scope, {"properties": {"tags": {"cost": "1"}}}
    ).result()
    assert resources.tags.get_at_scope(sub_scope).properties.tags == {"cost": "1"}
    resources.tags.begin_delete_at_scope(sub_scope).result()
    assert resources.tags.get_at_scope(sub_scope).properties.tags == {}
    with pytest.raises(ResourceNotFoundError):
        resources.tags.get_at_scope(rg_id + "/providers/Microsoft.Network/networkSecurityGroups/missing")
    listed = {t.tag_name: t for t in resources.tags.list()}
    assert listed["team"].count.value >= 1 and "x" in {v.tag_value for v in listed["team"].values_property}
    assert listed["b"].values_property[0].id.endswith("/tagNames/b/tagValues/2")


# --- item 7: resource group DELETE is long-running --------------------------------------------------


def test_resource_group_delete_is_long_running(arm_emulator, resources, network):
    group = arm_emulator.new_resource_group()
    _nsg(network, group, "nsg-in-group")
    with arm_emulator.lro_seconds({"Microsoft.Resources/resourceGroups": 1.5}):
        response = resources.resource_groups._client.send_request(
            HttpRequest(
                "DELETE",
                f"{arm_emulator.base_url}/subscriptions/{DEFAULT_SUBSCRIPTION}/resourcegroups/{group}"
                "?api-version=2025-04-01",
            )
        )
        assert response.status_code == 202
        location = response.headers["Location"]
        assert f"/subscriptions/{DEFAULT_SUBSCRIPTION}/operationresults/" in location
        assert int(response.headers["Retry-After"]) >= 1
        assert resources.resource_groups.get(group).properties.provisioning_state == "Deleting"
        with pytest.raises(HttpResponseError) as conflict:
            _nsg(network, group, "nsg-late")
        assert conflict.value.status_code == 409 and conflict.value.error.code == "ResourceGroupBeingDeleted"
        poll = resources.resource_groups._client.send_request(HttpRequest("GET", location))
        assert poll.status_code == 202
        # and the SDK's poller waits it out
        started = time.monotonic()
        resources.resource_groups.begin_delete(group).result()
        assert time.monotonic() - started < 10
    assert not resources.resource_groups.check_existence(group)
    assert resources.resource_groups._client.send_request(HttpRequest("GET", location)).status_code == 200
    with pytest.raises(ResourceNotFoundError):
        network.network_security_groups.get(group, "nsg-in-group")


# --- item 8: api-versions per type --------------------------------------------------------------------


def _get(client, url):
    response = client._client.send_request(HttpRequest("GET", url))
    return response.status_code, (response.json() if response.content else None)


def test_unknown_api_versions_are_refused_per_type(arm_emulator, resources, network):
    group = arm_emulator.new_resource_group()
    _nsg(network, group, "nsg-v")
    base = f"{arm_emulator.base_url}/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{group}"
    nsg = f"{base}/providers/Microsoft.Network/networkSecurityGroups/nsg-v"
    # what the pinned SDKs, azure-cli 2.91 and the recordings send is accepted
    for version in ("2026-03-01", "2025-07-01", "2024-07-01", "2022-01-01", "2020-11-01"):
        assert _get(network, f"{nsg}?api-version={version}")[0] == 200, version
    status, body = _get(network, f"{nsg}?api-version=2099-01-01")
    assert status == 400 and body["error"]["code"] == "NoRegisteredProviderFound"
    assert "for type 'networkSecurityGroups'" in body["error"]["message"]
    assert "2026-03-01" in body["error"]["message"]
    # a child type, an action and operation URLs are checked against their own type
    status, body = _get(network, f"{nsg}/securityRules?api-version=2099-01-01")
    assert status == 400 and "networkSecurityGroups/securityRules" in body["error"]["message"]
    vm = f"{base}/providers/Microsoft.Compute/virtualMachines/none?api-version=2030-01-01"
    status, body = _get(network, vm)
    assert status == 400 and "2026-04-01" in body["error"]["message"]
    jit = (
        f"{arm_emulator.base_url}/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.Security/"
        "jitNetworkAccessPolicies?api-version=2024-01-01"
    )
    status, body = _get(network, jit)
    assert status == 400 and "'2020-01-01, 2015-06-01-preview'" in body["error"]["message"]
    # ARM's own endpoints say InvalidApiVersionParameter, as do malformed versions anywhere
    status, body = _get(resources, f"{base}?api-version=2099-01-01")
    assert status == 400 and body["error"]["code"] == "InvalidApiVersionParameter"
    assert "The supported versions are '2025-04-01," in body["error"]["message"]
    status, body = _get(network, f"{nsg}?api-version=latest")
    assert status == 400 and body["error"]["code"] == "InvalidApiVersionParameter"
    # a type the emulator does not model is not checked (nor served)
    status, body = _get(network, f"{base}/providers/Microsoft.Network/dnsZones/z?api-version=2099-01-01")
    assert body["error"]["code"] != "NoRegisteredProviderFound"


def test_provider_listing_agrees_with_the_check(arm_emulator, resources):
    network = resources.providers.get("Microsoft.Network")
    versions = {t.resource_type: t.api_versions for t in network.resource_types}
    assert versions["networkSecurityGroups"][0] == "2026-03-01"
    oldest = versions["azureFirewalls"][-1]
    assert oldest == "2018-04-01"  # the type did not exist before
