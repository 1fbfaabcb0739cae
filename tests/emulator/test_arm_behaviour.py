"""ARM behaviour through the real SDK: long-running operations, ETags and preconditions, 409/429 for
writes during an operation, request validation, fault injection and the admin endpoints."""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request

import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import (
    FirewallPolicy,
    FirewallPolicyRuleCollectionGroup,
    NetworkSecurityGroup,
)

from localrig.emulator import start_emulator
from localrig.emulator_client import EmulatorClient
from localrig.estates.sdk import LOCATION, build_estate, firewall_body, nat_rule, rule

NSG_TYPE = "Microsoft.Network/networkSecurityGroups"
FIREWALL_TYPE = "Microsoft.Network/azureFirewalls"


@pytest.fixture
def estate(arm_emulator):
    return build_estate(arm_emulator)


def raw(arm: EmulatorClient, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """A plain HTTPS request, for what the SDK cannot send (malformed JSON, no token)."""
    context = ssl.create_default_context(cafile=str(arm.ca_file))
    request = urllib.request.Request(f"{arm.base_url}{path}", data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            data = response.read()
            return response.status, dict(response.headers), json.loads(data) if data else None
    except urllib.error.HTTPError as error:
        data = error.read()
        return error.code, dict(error.headers), json.loads(data) if data else None


def capture_headers():
    seen: list[dict[str, str]] = []

    def hook(pipeline_response):
        seen.append(dict(pipeline_response.http_response.headers))

    return seen, hook


# --- long-running operations -----------------------------------------------------------------------


def test_put_is_long_running_updating_then_succeeded(arm_emulator, estate):
    net, rg = estate.net, estate.rg
    seen, hook = capture_headers()
    with arm_emulator.lro_seconds({NSG_TYPE: 1}):
        started = time.monotonic()
        poller = net.network_security_groups.begin_create_or_update(
            rg, "slow", NetworkSecurityGroup(location=LOCATION), raw_response_hook=hook
        )
        assert not poller.done()
        during = net.network_security_groups.get(rg, "slow")
        assert during.provisioning_state == "Updating"
        result = poller.result()
    assert time.monotonic() - started >= 0.9
    assert result.provisioning_state == "Succeeded"
    initial = seen[0]
    operation = initial["Azure-AsyncOperation"]
    assert "/providers/Microsoft.Network/locations/westeurope/operations/" in operation
    assert "&s=" in operation and "Location" not in initial
    assert initial["Retry-After"] == "1"
    assert initial["ETag"] == during.etag
    assert result.etag != during.etag  # the etag changes again when the operation completes


def test_delete_answers_202_with_location_and_the_operation_result_is_204(arm_emulator, estate):
    seen, hook = capture_headers()
    net, rg = estate.net, estate.rg
    net.network_security_groups.begin_create_or_update(
        rg, "gone", NetworkSecurityGroup(location=LOCATION)
    ).result()
    net.network_security_groups.begin_delete(rg, "gone", raw_response_hook=hook).result()
    assert "Location" in seen[0] and "Azure-AsyncOperation" in seen[0]
    status, _, body = raw(
        arm_emulator,
        "GET",
        seen[0]["Location"].removeprefix(arm_emulator.base_url),
        headers={"Authorization": "Bearer x"},
    )
    assert status == 204 and body is None
    tampered = seen[0]["Azure-AsyncOperation"].replace("&s=", "&s=x")
    status, _, body = raw(
        arm_emulator,
        "GET",
        tampered.removeprefix(arm_emulator.base_url),
        headers={"Authorization": "Bearer x"},
    )
    assert status == 404 and body["error"]["code"] == "OperationNotFound"


def test_operation_can_be_made_to_end_failed(arm_emulator, estate):
    net, rg = estate.net, estate.rg
    arm_emulator.add_fault(
        method="PUT",
        path="/azureFirewalls/fw$",
        lro_fail=True,
        code="InternalServerError",
        message="The firewall update failed.",
    )
    with pytest.raises(HttpResponseError) as excinfo:
        net.azure_firewalls.begin_create_or_update(rg, "fw", firewall_body(estate)).result()
    assert "InternalServerError" in str(excinfo.value)
    assert net.azure_firewalls.get(rg, "fw").provisioning_state == "Failed"


# --- ETags and preconditions -----------------------------------------------------------------------


def test_every_write_gets_a_new_etag_and_the_header_matches_the_body(arm_emulator, estate):
    net, rg = estate.net, estate.rg
    seen, hook = capture_headers()
    first = net.security_rules.begin_create_or_update(rg, "vm-nsg", "a", rule("a")).result()
    second = net.security_rules.begin_create_or_update(rg, "vm-nsg", "b", rule("b", 101)).result()
    assert first.etag != second.etag
    nsg = net.network_security_groups.get(rg, "vm-nsg", raw_response_hook=hook)
    assert seen[-1]["ETag"] == nsg.etag == second.etag


def test_stale_if_match_is_412_and_changes_nothing(estate):
    net, rg = estate.net, estate.rg
    nsg = net.network_security_groups.get(rg, "vm-nsg")
    net.security_rules.begin_create_or_update(rg, "vm-nsg", "a", rule("a")).result()
    nsg.security_rules = [rule("mine", 300)]
    with pytest.raises(HttpResponseError) as excinfo:
        net.network_security_groups.begin_create_or_update(
            rg, "vm-nsg", nsg, headers={"If-Match": nsg.etag}
        ).result()
    assert excinfo.value.status_code == 412 and excinfo.value.error.code == "PreconditionFailed"
    assert [r.name for r in net.security_rules.list(rg, "vm-nsg")] == ["a"]
    fresh = net.network_security_groups.get(rg, "vm-nsg")
    fresh.security_rules = [rule("mine", 300)]
    done = net.network_security_groups.begin_create_or_update(
        rg, "vm-nsg", fresh, headers={"If-Match": fresh.etag}
    ).result()
    assert [r.name for r in done.security_rules] == ["mine"]


def test_if_none_match_star_and_if_match_star(estate):
    net, rg = estate.net, estate.rg
    with pytest.raises(HttpResponseError) as excinfo:
        net.network_security_groups.begin_create_or_update(
            rg, "vm-nsg", NetworkSecurityGroup(location=LOCATION), headers={"If-None-Match": "*"}
        ).result()
    assert excinfo.value.status_code == 412
    with pytest.raises(HttpResponseError) as excinfo:
        net.network_security_groups.begin_create_or_update(
            rg, "new", NetworkSecurityGroup(location=LOCATION), headers={"If-Match": "*"}
        ).result()
    assert excinfo.value.status_code == 412
    created = net.network_security_groups.begin_create_or_update(
        rg, "new", NetworkSecurityGroup(location=LOCATION), headers={"If-None-Match": "*"}
    ).result()
    assert created.name == "new"


# --- writes during an operation --------------------------------------------------------------------


def test_second_firewall_write_during_an_update_is_409(arm_emulator, estate):
    net, rg = estate.net, estate.rg
    fw = net.azure_firewalls.begin_create_or_update(
        rg, "fw", firewall_body(estate, nat_rules=[nat_rule(estate)])
    ).result()
    with arm_emulator.lro_seconds({FIREWALL_TYPE: 2}):
        first = net.azure_firewalls.begin_create_or_update(rg, "fw", fw)
        with pytest.raises(HttpResponseError) as excinfo:
            net.azure_firewalls.begin_create_or_update(rg, "fw", fw).result()
        assert excinfo.value.status_code == 409
        assert excinfo.value.error.code == "AnotherOperationInProgress"
        assert "Another operation on this or dependent resource is in progress" in excinfo.value.error.message
        assert first.result().provisioning_state == "Succeeded"
    net.azure_firewalls.begin_create_or_update(rg, "fw", fw).result()  # free again


def test_second_nsg_write_during_an_update_is_409(arm_emulator, estate):
    net, rg = estate.net, estate.rg
    nsg = net.network_security_groups.get(rg, "vm-nsg")
    with arm_emulator.lro_seconds({NSG_TYPE: 2}):
        first = net.network_security_groups.begin_create_or_update(rg, "vm-nsg", nsg)
        with pytest.raises(HttpResponseError) as excinfo:
            net.network_security_groups.begin_create_or_update(rg, "vm-nsg", nsg).result()
        assert (excinfo.value.status_code, excinfo.value.error.code) == (409, "AnotherOperationInProgress")
        first.result()


def test_only_one_rule_collection_group_of_a_policy_updates_at_a_time(arm_emulator, estate):
    net, rg = estate.net, estate.rg
    net.firewall_policies.begin_create_or_update(rg, "policy", FirewallPolicy(location=LOCATION)).result()
    with arm_emulator.lro_seconds({"Microsoft.Network/firewallPolicies/ruleCollectionGroups": 2}):
        first = net.firewall_policy_rule_collection_groups.begin_create_or_update(
            rg, "policy", "one", FirewallPolicyRuleCollectionGroup(priority=100)
        )
        with pytest.raises(HttpResponseError) as excinfo:
            net.firewall_policy_rule_collection_groups.begin_create_or_update(
                rg, "policy", "two", FirewallPolicyRuleCollectionGroup(priority=200)
            ).result()
        assert (excinfo.value.status_code, excinfo.value.error.code) == (409, "AnotherOperationInProgress")
        first.result()


def test_rule_write_during_an_nsg_update_is_429_with_retry_after(arm_emulator, estate):
    net, rg = estate.net, estate.rg
    no_retry = arm_emulator.client(NetworkManagementClient, retry_total=0)
    with arm_emulator.lro_seconds({NSG_TYPE: 2}):
        update = net.network_security_groups.begin_create_or_update(
            rg, "vm-nsg", NetworkSecurityGroup(location=LOCATION)
        )
        with pytest.raises(HttpResponseError) as excinfo:
            no_retry.security_rules.begin_create_or_update(rg, "vm-nsg", "a", rule("a")).result()
        assert excinfo.value.status_code == 429
        assert excinfo.value.error.code == "RetryableErrorDueToAnotherOperation"
        assert int(excinfo.value.response.headers["Retry-After"]) >= 1
        # the SDK retries a 429 by itself, honouring Retry-After, and then succeeds
        created = net.security_rules.begin_create_or_update(rg, "vm-nsg", "a", rule("a")).result()
        assert created.provisioning_state == "Succeeded"
        update.result()
    statuses = [
        entry["status"]
        for entry in arm_emulator.requests()["log"]
        if entry["method"] == "PUT"
        and entry["path"].endswith(
            f"{rg}/providers/Microsoft.Network/networkSecurityGroups/vm-nsg/securityRules/a"
        )
    ]
    assert statuses.count(429) >= 2 and statuses[-1] == 201


def test_concurrent_clients_are_serialised_safely(arm_emulator, estate):
    errors: list[Exception] = []

    def writer(worker: int) -> None:
        try:
            for i in range(5):
                name = f"w{worker}-{i}"
                estate.net.security_rules.begin_create_or_update(
                    estate.rg, "vm-nsg", name, rule(name, 100 + worker * 10 + i)
                ).result()
        except Exception as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(list(estate.net.security_rules.list(estate.rg, "vm-nsg"))) == 20


# --- request validation ----------------------------------------------------------------------------


def test_malformed_json_oversized_body_missing_token_and_api_version(arm_emulator, estate):
    group = f"/subscriptions/{arm_emulator.subscription_id}/resourceGroups/{estate.rg}"
    path = f"{group}/providers/Microsoft.Network/networkSecurityGroups/x"
    auth = {"Authorization": "Bearer anything", "Content-Type": "application/json"}
    status, _, body = raw(arm_emulator, "PUT", path + "?api-version=2024-07-01", b"{not json", auth)
    assert (status, body["error"]["code"]) == (400, "InvalidRequestContent")
    big = json.dumps({"location": LOCATION, "tags": {"x": "y" * (5 * 1024 * 1024)}}).encode()
    status, _, body = raw(arm_emulator, "PUT", path + "?api-version=2024-07-01", big, auth)
    assert (status, body["error"]["code"]) == (413, "RequestEntityTooLarge")
    status, _, body = raw(arm_emulator, "GET", path + "?api-version=2024-07-01")
    assert (status, body["error"]["code"]) == (401, "AuthenticationFailed")
    status, _, body = raw(arm_emulator, "GET", path, headers=auth)
    assert (status, body["error"]["code"]) == (400, "MissingApiVersionParameter")
    status, _, body = raw(arm_emulator, "PUT", path + "?api-version=2024-07-01", b"[]", auth)
    assert (status, body["error"]["code"]) == (400, "InvalidRequestContent")
    status, _, body = raw(arm_emulator, "PUT", path + "?api-version=2024-07-01", b"{}", auth)
    assert (status, body["error"]["code"]) == (400, "LocationRequired")


# --- fault injection -------------------------------------------------------------------------------


def test_fault_fails_the_next_n_matching_requests(arm_emulator, estate):
    arm_emulator.add_fault(
        method="GET",
        path=f"{estate.rg}/.*/networkSecurityGroups/vm-nsg$",
        status=400,
        code="InjectedFailure",
        message="boom",
        count=2,
    )
    for _ in range(2):
        with pytest.raises(HttpResponseError) as excinfo:
            estate.net.network_security_groups.get(estate.rg, "vm-nsg")
        assert (excinfo.value.status_code, excinfo.value.error.code) == (400, "InjectedFailure")
    assert estate.net.network_security_groups.get(estate.rg, "vm-nsg").name == "vm-nsg"


def test_fault_429_with_retry_after_is_retried_by_the_sdk(arm_emulator, estate):
    arm_emulator.add_fault(
        method="GET",
        path=f"{estate.rg}/.*/publicIPAddresses/vm-pip$",
        status=429,
        code="TooManyRequests",
        retry_after=1,
    )
    started = time.monotonic()
    assert estate.net.public_ip_addresses.get(estate.rg, "vm-pip").name == "vm-pip"
    assert time.monotonic() - started >= 0.9


def test_fault_drops_the_connection_and_adds_latency(arm_emulator, estate):
    no_retry = arm_emulator.client(NetworkManagementClient, retry_total=0)
    arm_emulator.add_fault(method="GET", path=f"{estate.rg}/.*/virtualNetworks/vnet$", drop_connection=True)
    with pytest.raises((ServiceResponseError, ServiceRequestError)):
        no_retry.virtual_networks.get(estate.rg, "vnet")
    arm_emulator.add_fault(method="GET", path=f"{estate.rg}/.*/virtualNetworks/vnet$", latency_ms=300)
    started = time.monotonic()
    assert no_retry.virtual_networks.get(estate.rg, "vnet").name == "vnet"
    assert time.monotonic() - started >= 0.3


def test_invalid_faults_are_400_naming_the_field(arm_emulator):
    for fault, word in [
        ({"status": 200}, "status"),
        ({"path": "("}, "path"),
        ({"method": "GET"}, "at least"),
        ({"status": 500, "colour": "red"}, "colour"),
    ]:
        status, body = arm_emulator.admin("POST", "/_emulator/faults", fault)
        assert status == 400 and word in body["error"]["message"]


# --- admin endpoints -------------------------------------------------------------------------------


def test_requests_are_counted_by_method_and_type_with_the_caller(arm_emulator, estate):
    arm_emulator.admin_ok("DELETE", "/_emulator/requests")
    fw = estate.net.azure_firewalls.begin_create_or_update(estate.rg, "fw", firewall_body(estate)).result()
    estate.net.azure_firewalls.begin_create_or_update(
        estate.rg, "fw", fw, headers={"If-Match": fw.etag}
    ).result()
    seen = arm_emulator.requests()
    assert seen["counts"][f"PUT {FIREWALL_TYPE}"] == 2
    puts = [e for e in seen["log"] if e["method"] == "PUT"]
    assert puts[1]["if_match"] == fw.etag
    assert puts[0]["caller"] == "00000000-0000-0000-0000-00000000e001"  # the token's oid
    assert puts[0]["api_version"]


def test_a_log_mark_reads_what_came_after_it_even_after_a_clear(arm_emulator, estate):
    estate.net.network_security_groups.begin_create_or_update(
        estate.rg, "nsg-mark", {"location": LOCATION}
    ).result()
    mark = arm_emulator.log_mark()
    arm_emulator.admin_ok("DELETE", "/_emulator/requests")  # numbers are never reused
    estate.net.network_security_groups.get(estate.rg, "nsg-mark")
    after = arm_emulator.requests_since(mark)
    assert [(e["method"], e["path"].rsplit("/", 1)[-1]) for e in after] == [("GET", "nsg-mark")]
    assert after[0]["seq"] >= mark and arm_emulator.log_mark() == after[0]["seq"] + 1
    status, _, body = raw(arm_emulator, "GET", "/_emulator/requests?since=soon")
    assert status == 400 and body["error"]["code"] == "InvalidSince"


def test_seed_applies_validation_and_drift_bypasses_locks(arm_emulator):
    sub = arm_emulator.subscription_id
    rg = f"seeded-{time.monotonic_ns()}"
    base = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network"
    answer = arm_emulator.seed(
        [
            {"id": f"{base}/networkSecurityGroups/nsg", "body": {"location": LOCATION}},
            {
                "id": f"{base}/virtualNetworks/vnet",
                "body": {
                    "location": LOCATION,
                    "properties": {
                        "addressSpace": {"addressPrefixes": ["10.1.0.0/16"]},
                        "subnets": [{"name": "s", "properties": {"addressPrefix": "10.1.0.0/24"}}],
                    },
                },
            },
            {
                "id": f"{base}/networkInterfaces/nic",
                "body": {
                    "location": LOCATION,
                    "properties": {
                        "ipConfigurations": [
                            {
                                "name": "c",
                                "properties": {"subnet": {"id": f"{base}/virtualNetworks/vnet/subnets/s"}},
                            }
                        ],
                        "networkSecurityGroup": {"id": f"{base}/networkSecurityGroups/nsg"},
                    },
                },
            },
        ]
    )
    assert answer["applied"] == 3
    nic = arm_emulator.resource(f"{base}/networkInterfaces/nic")
    assert nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"] == "10.1.0.4"
    status, body = arm_emulator.admin(
        "POST",
        "/_emulator/seed",
        {
            "resources": [
                {
                    "id": f"{base}/networkInterfaces/bad",
                    "body": {
                        "location": LOCATION,
                        "properties": {
                            "ipConfigurations": [
                                {
                                    "name": "c",
                                    "properties": {
                                        "subnet": {"id": f"{base}/virtualNetworks/vnet/subnets/nope"}
                                    },
                                }
                            ]
                        },
                    },
                }
            ]
        },
    )
    assert (
        status == 400
        and "seed item 0" in body["error"]["message"]
        and "InvalidResourceReference" in body["error"]["message"]
    )

    net = arm_emulator.client(NetworkManagementClient)
    with arm_emulator.lro_seconds({NSG_TYPE: 2}):
        poller = net.security_rules.begin_create_or_update(rg, "nsg", "ours", rule("ours"))
        before = net.network_security_groups.get(rg, "nsg")
        drifted = dict(arm_emulator.resource(f"{base}/networkSecurityGroups/nsg/securityRules/ours"))
        drifted["properties"]["sourceAddressPrefix"] = "*"
        arm_emulator.put_resource(f"{base}/networkSecurityGroups/nsg/securityRules/ours", drifted)
        after = net.network_security_groups.get(rg, "nsg")
        assert after.security_rules[0].source_address_prefix == "*" and after.etag != before.etag
        poller.result()
    state = arm_emulator.admin_ok("GET", f"/_emulator/state?type={NSG_TYPE}")
    assert any(r["id"] == f"{base}/networkSecurityGroups/nsg" for r in state["resources"])
    arm_emulator.admin_ok(
        "DELETE", f"/_emulator/resources{base}/networkSecurityGroups/nsg/securityRules/ours"
    )
    assert list(net.security_rules.list(rg, "nsg")) == []


def test_config_validates_durations(arm_emulator):
    status, body = arm_emulator.admin("POST", "/_emulator/config", {"lro_seconds": {NSG_TYPE: -1}})
    assert status == 400 and NSG_TYPE in body["error"]["message"]
    status, body = arm_emulator.admin("POST", "/_emulator/config", {"nonsense": 1})
    assert status == 400


def test_state_survives_a_restart_and_the_ca_is_kept(tmp_path):
    first = start_emulator(tmp_path, extra_args=["--lro-seconds", "default=0"])
    try:
        arm = EmulatorClient(first.base_url, first.ca_file)
        rg = arm.new_resource_group()
        net = arm.client(NetworkManagementClient)
        nsg = net.network_security_groups.begin_create_or_update(
            rg, "kept", NetworkSecurityGroup(location=LOCATION)
        ).result()
        ca = first.ca_file.read_bytes()
    finally:
        first.stop()
    second = start_emulator(tmp_path, extra_args=["--lro-seconds", "default=0"])
    try:
        arm = EmulatorClient(second.base_url, second.ca_file)
        net = arm.client(NetworkManagementClient)
        assert net.network_security_groups.get(rg, "kept").etag == nsg.etag
        assert second.ca_file.read_bytes() == ca
    finally:
        second.stop()
