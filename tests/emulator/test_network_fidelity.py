"""Fidelity: every Microsoft.Network example of the REST specs goes through the real SDK to the
emulator, is accepted, and is answered in the spec's shape (validated against the spec's schema)."""

from __future__ import annotations

import inspect
import json
import re
import uuid
from typing import Any

import pytest
from azure.mgmt.network import NetworkManagementClient

from emulator import ids
from tests.conftest import SHARED_DIR, shared_dir_or_skip
from tests.emulator.specs import Example, SpecSet

SPEC_DIR = (
    SHARED_DIR / "azure-rest-specs/specification/network/resource-manager/Microsoft.Network/stable/2024-07-01"
)

# Example fields the emulator does not produce, per example: features outside this project's scope.
NOT_EMULATED: dict[str, set[str]] = {
    # IP prefixes on NIC ip configurations, load balancers, accelerated networking details
    "NetworkInterfaceGet.json": {
        "dscpConfiguration",
        "macAddress",
        "primary",
        "virtualMachine",  # no VM seeded
        "disableTcpStateTracking",
        "auxiliaryMode",
        "auxiliarySku",
        "vnetEncryptionSupported",
        "enableIPForwarding",
        "defaultOutboundConnectivityEnabled",
    },
    # DDoS settings of public IPs and the address of a dynamic IP attached to a NIC we do not have
    "PublicIpAddressGet.json": {"ddosSettings", "ipConfiguration"},
    # Live Azure (see the recordings) answers neither unless they were set: we follow live Azure.
    "AzureFirewallGet.json": {"hubIPAddresses", "ipGroups", "autoscaleConfiguration"},
    "AzureFirewallPut.json": {"autoscaleConfiguration"},
}

_PARAM = re.compile(r"\{([^}]+)\}")


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).replace("IP", "Ip").lower()


def _operation(net: NetworkManagementClient, operation_id: str):
    group, _, verb = operation_id.partition("_")
    attribute = {"PublicIPAddresses": "public_ip_addresses"}.get(group) or re.sub(
        r"(?<!^)(?=[A-Z])", "_", group
    ).lower()
    operations = getattr(net, attribute)
    method = re.sub(r"(?<!^)(?=[A-Z])", "_", verb).lower()
    return getattr(operations, f"begin_{method}", None) or getattr(operations, method)


def _ids_in(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "id" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_ids_in(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_ids_in(value))
    return found


def _nat_destinations(body: Any) -> list[str]:
    addresses: list[str] = []
    for collection in (body or {}).get("properties", {}).get("natRuleCollections", []) or []:
        for rule in collection.get("properties", {}).get("rules", []):
            for address in rule.get("destinationAddresses", []):
                if address not in addresses:
                    addresses.append(address)
    return addresses


def _references(owner_id: str, bodies: list[Any]) -> list[dict[str, Any]]:
    """Seed items for everything the bodies point at (outside the resource itself)."""
    subnets: dict[str, list[str]] = {}
    plain: dict[str, str] = {}
    pips: list[str] = []
    for body in bodies:
        for ref in _ids_in(body):
            rid = ids.parse(ref)
            if rid is None or ref.lower().startswith(owner_id.lower()):
                continue
            kind = rid.type_key.lower()
            if kind == "microsoft.network/virtualnetworks/subnets":
                names = subnets.setdefault(str(rid.parent), [])
                if rid.name not in names:
                    names.append(rid.name)
            elif kind in ("microsoft.network/networksecuritygroups", "microsoft.network/firewallpolicies"):
                plain[str(rid)] = kind
            elif kind == "microsoft.network/publicipaddresses" and str(rid) not in pips:
                pips.append(str(rid))
    destinations = [a for body in bodies for a in _nat_destinations(body)]
    items: list[dict[str, Any]] = [{"id": i, "body": {"location": "westus"}} for i in plain]
    for vnet_id, names in subnets.items():
        items.append(
            {
                "id": vnet_id,
                "body": {
                    "location": "westus",
                    "properties": {
                        "addressSpace": {"addressPrefixes": ["10.0.0.0/8", "172.16.0.0/12"]},
                        "subnets": [
                            {
                                "name": n,
                                "properties": {
                                    "addressPrefix": f"172.{20 + i // 250}.{i % 250}.0/24"
                                    if n == "default"
                                    else f"10.{i}.0.0/24"
                                },
                            }
                            for i, n in enumerate(names, start=2)
                        ],
                    },
                },
            }
        )
    for i, pip_id in enumerate(pips):
        props: dict[str, Any] = {"publicIPAllocationMethod": "Static"}
        if i < len(destinations):
            props["ipAddress"] = destinations[i]
        items.append(
            {"id": pip_id, "body": {"location": "westus", "sku": {"name": "Standard"}, "properties": props}}
        )
    return items


def _fill(template: str, params: dict[str, Any]) -> str:
    return _PARAM.sub(lambda m: str(params[m.group(1)]), template)


def _examples() -> list[Example]:
    if not SPEC_DIR.is_dir():
        return []
    return SpecSet(SPEC_DIR).examples()


@pytest.fixture(scope="module")
def specs() -> SpecSet:
    shared_dir_or_skip()
    return SpecSet(SPEC_DIR)


@pytest.mark.parametrize("example", _examples(), ids=lambda e: e.file.name)
def test_spec_example_round_trips_through_the_sdk(arm_emulator, specs, example):
    rg = f"fidelity-{uuid.uuid4().hex[:8]}"
    original_rg = example.data["parameters"]["resourceGroupName"]
    text = re.sub(
        f"/resourceGroups/{re.escape(original_rg)}/",
        f"/resourceGroups/{rg}/",
        json.dumps(example.data),
        flags=re.IGNORECASE,
    )
    data = json.loads(text)
    params = {**data["parameters"], "resourceGroupName": rg}
    path = _fill(example.path, params)
    resource_id = path if ids.parse(path) else path.rsplit("/", 1)[0]
    request_body = next((v for k, v in params.items() if isinstance(v, dict)), None)
    canned = [
        r.get("body") for status, r in data["responses"].items() if status in ("200", "201") and r.get("body")
    ]
    existing = [item for body in canned for item in (body.get("value") if "value" in body else [body])]

    # prerequisites: the group, what the bodies reference, the parent, and for reads the resource itself
    seed = _references(resource_id, [request_body, *existing])
    rid = ids.parse(resource_id)
    if rid is not None and rid.parent is not None:
        seed.append({"id": str(rid.parent), "body": {"location": "westus"}})
    if example.operation_id.split("_")[1] != "CreateOrUpdate":
        for item in existing:
            if ids.parse(item.get("id", "")):
                seed.append({"id": item["id"], "body": item})
        if not existing and rid is not None:  # e.g. a delete: something to delete
            seed.append({"id": resource_id, "body": _minimal(rid)})
    arm_emulator.admin_ok(
        "PUT",
        f"/_emulator/resources/subscriptions/{params['subscriptionId']}/resourceGroups/{rg}",
        {"location": "westus"},
    )
    arm_emulator.seed(seed)

    net = arm_emulator.client(NetworkManagementClient, subscription_id=params["subscriptionId"])
    seen: list[tuple[str, str, int, Any]] = []

    def hook(pipeline_response):
        response = pipeline_response.http_response
        response.read()  # long-running calls stream; the SDK reads the cached bytes afterwards
        body = response.text()
        seen.append(
            (
                response.request.method,
                response.request.url.split("?")[0],
                response.status_code,
                json.loads(body) if body else None,
            )
        )

    call = _operation(net, example.operation_id)
    args = _arguments(call, params, request_body)
    result = call(*args, raw_response_hook=hook)
    if hasattr(result, "result"):
        result.result()
    elif hasattr(result, "__iter__") and not isinstance(result, dict):
        list(result)

    initial = next(r for r in seen if r[1].endswith(path.split("?")[0]))
    assert str(initial[2]) in data["responses"], (
        f"answered {initial[2]}, spec allows {list(data['responses'])}"
    )
    for method, url, status, body in seen:
        if not url.endswith(path) or body is None:
            continue
        schema = specs.response_schema(example, status)
        assert schema is not None, f"{method} {url} answered {status}, which the spec does not define"
        errors = specs.validate(schema, body)
        assert errors == [], f"{method} {url} {status} does not fit the spec: {errors[:5]}"
    canned_body = next(
        (r.get("body") for s, r in data["responses"].items() if s == str(initial[2]) and r.get("body")), None
    )
    if canned_body and initial[3]:
        _assert_same_shape(canned_body, initial[3], NOT_EMULATED.get(example.file.name, set()))


def _minimal(rid: ids.ResourceId) -> dict[str, Any]:
    if rid.types[-1] == "securityRules":
        return {
            "properties": {
                "protocol": "*",
                "access": "Allow",
                "direction": "Inbound",
                "priority": 130,
                "sourceAddressPrefix": "*",
                "destinationAddressPrefix": "*",
                "sourcePortRange": "*",
                "destinationPortRange": "80",
            }
        }
    return {"location": "westus"}


def _arguments(call, params: dict[str, Any], body: Any) -> list[Any]:
    signature = inspect.signature(call)
    args: list[Any] = []
    by_snake = {_snake(k): v for k, v in params.items()}
    for name, parameter in signature.parameters.items():
        if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.POSITIONAL_ONLY):
            continue
        if name in by_snake and not isinstance(by_snake[name], dict):
            args.append(by_snake[name])
        elif body is not None:
            args.append(body)
    return args


def _assert_same_shape(expected: Any, actual: Any, not_emulated: set[str]) -> None:
    """The keys the spec example answers are in ours too (values are volatile), at the top level and
    in `properties`, for a resource or the first item of a list."""
    if "value" in expected:
        assert isinstance(actual.get("value"), list)
        if not expected["value"]:
            return
        expected, actual = expected["value"][0], actual["value"][0]
    missing = set(expected) - set(actual) - not_emulated
    assert not missing, f"top-level keys missing from the answer: {sorted(missing)}"
    missing = set(expected.get("properties", {})) - set(actual.get("properties", {})) - not_emulated
    assert not missing, f"properties missing from the answer: {sorted(missing)}"


def test_schema_validation_catches_a_wrong_shape(specs):
    """Guard: the validator must reject bodies that break the spec, or the test above proves nothing."""
    example = next(e for e in specs.examples() if e.file.name == "NetworkSecurityGroupGet.json")
    schema = specs.response_schema(example, 200)
    assert specs.validate(schema, example.data["responses"]["200"]["body"]) == []
    broken = {
        "id": 5,
        "properties": {"securityRules": "not-a-list", "defaultSecurityRules": [{"properties": {}}]},
    }
    errors = specs.validate(schema, broken)
    assert any("securityRules" in e for e in errors) and any(e.startswith("id") for e in errors)
