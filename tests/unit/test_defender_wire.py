"""Defender's policy JSON is validated as Azure validates it, each error naming the field."""

from __future__ import annotations

import copy
import json
from datetime import timedelta

import pytest

from shared.defender import parse_policy_body, request_to_wire
from shared.model import DomainError, PolicyRef, TransportProtocol

SUB = "00000000-0000-0000-0000-0000000000a1"
REF = PolicyRef(SUB, "rg1", "westeurope", "default")
VM_ID = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1"
BODY = {
    "kind": "Basic",
    "properties": {
        "virtualMachines": [
            {
                "id": VM_ID,
                "ports": [
                    {
                        "number": 22,
                        "protocol": "TCP",
                        "allowedSourceAddressPrefix": "*",
                        "maxRequestAccessDuration": "PT3H",
                    },
                    {
                        "number": 3389,
                        "protocol": "*",
                        "allowedSourceAddressPrefixes": ["10.0.0.0/8", "192.168.1.1"],
                        "maxRequestAccessDuration": "P1D",
                    },
                ],
                "publicIpAddress": "20.1.2.3",
                "portcullis": {
                    "firewallId": f"/subscriptions/{SUB}/resourceGroups/hub/providers/Microsoft.Network"
                    "/azureFirewalls/fw"
                },
            }
        ]
    },
}


def mutate(path: list, value) -> dict:
    body = copy.deepcopy(BODY)
    node = body
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return body


PORT0 = ["properties", "virtualMachines", 0, "ports", 0]


def test_valid_policy_parses_to_domain_and_canonical_body() -> None:
    policy, canonical = parse_policy_body(BODY, REF)
    [vm] = policy.virtual_machines
    assert vm.vm.name == "vm1"
    assert vm.ports[0].allowed_source_prefixes == ("*",)
    assert vm.ports[1].protocol is TransportProtocol.ANY
    assert vm.ports[1].max_request_access_duration == timedelta(days=1)
    assert vm.firewall is not None and vm.public_ip_address == "20.1.2.3"
    assert canonical["virtualMachines"][0]["ports"][1]["allowedSourceAddressPrefixes"] == [
        "10.0.0.0/8",
        "192.168.1.1",
    ]
    json.dumps(canonical)


def test_azure_spec_example_parses() -> None:
    from tests.conftest import shared_dir_or_skip

    example = shared_dir_or_skip() / (
        "azure-rest-specs/specification/security/resource-manager/Microsoft.Security/stable/2020-01-01/"
        "examples/JitNetworkAccessPolicies/CreateJitNetworkAccessPolicy_example.json"
    )
    document = json.loads(example.read_text())
    params = document["parameters"]
    ref = PolicyRef(params["subscriptionId"], params["resourceGroupName"], params["ascLocation"], "default")
    policy, _ = parse_policy_body(params["body"], ref)
    assert [p.number for p in policy.virtual_machines[0].ports] == [22, 3389]


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ([*PORT0, "number"], 65536, "properties.virtualMachines[0].ports[0].number"),
        ([*PORT0, "number"], -1, "properties.virtualMachines[0].ports[0].number"),
        ([*PORT0, "number"], "22", "properties.virtualMachines[0].ports[0].number"),
        ([*PORT0, "protocol"], "ICMP", "properties.virtualMachines[0].ports[0].protocol"),
        (
            [*PORT0, "maxRequestAccessDuration"],
            "PT4M",
            "properties.virtualMachines[0].ports[0].maxRequestAccessDuration",
        ),
        (
            [*PORT0, "maxRequestAccessDuration"],
            "P2D",
            "properties.virtualMachines[0].ports[0].maxRequestAccessDuration",
        ),
        (
            [*PORT0, "maxRequestAccessDuration"],
            "soon",
            "properties.virtualMachines[0].ports[0].maxRequestAccessDuration",
        ),
        (
            [*PORT0, "maxRequestAccessDuration"],
            KeyError,
            "properties.virtualMachines[0].ports[0].maxRequestAccessDuration",
        ),
        (
            [*PORT0, "allowedSourceAddressPrefixes"],
            ["10.0.0.0/8"],
            "properties.virtualMachines[0].ports[0].allowedSourceAddressPrefixes",
        ),
        (
            [*PORT0, "allowedSourceAddressPrefix"],
            "10.0.0.300",
            "properties.virtualMachines[0].ports[0].allowedSourceAddressPrefix",
        ),
        (
            [*PORT0, "allowedSourceAddressPrefix"],
            KeyError,
            "properties.virtualMachines[0].ports[0].allowedSourceAddressPrefix",
        ),
        (
            ["properties", "virtualMachines", 0, "id"],
            "/subscriptions/00000000-0000-0000-0000-0000000000a1/resourceGroups/rg1/vm1",
            "properties.virtualMachines[0].id",
        ),
        (
            ["properties", "virtualMachines", 0, "id"],
            VM_ID.replace("rg1", "other"),
            "properties.virtualMachines[0].id",
        ),
        (
            ["properties", "virtualMachines", 0, "publicIpAddress"],
            "fw.example",
            "properties.virtualMachines[0].publicIpAddress",
        ),
        (
            ["properties", "virtualMachines", 0, "portcullis", "firewallId"],
            "fw",
            "properties.virtualMachines[0].portcullis.firewallId",
        ),
        (["properties", "virtualMachines"], KeyError, "properties.virtualMachines"),
        (["properties"], KeyError, "properties"),
    ],
)
def test_invalid_policy_names_the_field(path: list, value, field: str) -> None:
    with pytest.raises(DomainError) as raised:
        parse_policy_body(mutate(path, value), REF)
    assert raised.value.field == field


def test_duplicate_port_is_refused() -> None:
    body = copy.deepcopy(BODY)
    body["properties"]["virtualMachines"][0]["ports"][1]["number"] = 22
    with pytest.raises(DomainError, match="listed twice"):
        parse_policy_body(body, REF)


def test_request_wire_shape_has_defender_fields() -> None:
    body = request_to_wire(
        [],
        start_time=__import__("datetime").datetime(2030, 1, 1, tzinfo=__import__("datetime").UTC),
        requestor="a@b",
        justification=None,
    ).wire()
    assert body == {"virtualMachines": [], "startTimeUtc": "2030-01-01T00:00:00.000000Z", "requestor": "a@b"}
