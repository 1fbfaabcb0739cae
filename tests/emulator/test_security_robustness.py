"""Malformed bodies sent to the Security, Authorization and Compute routes get a 4xx, never a 5xx."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-70000, 70000) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
# Bodies close to valid ones, so the fuzzing gets past the first checks.
port = st.fixed_dictionaries(
    {},
    optional={
        "number": st.integers(-5, 70000) | json_values,
        "protocol": st.sampled_from(["TCP", "UDP", "*", "icmp"]) | json_values,
        "allowedSourceAddressPrefix": st.sampled_from(["*", "10.0.0.0/8", "1.2.3.4", "bad"]) | json_values,
        "allowedSourceAddressPrefixes": st.lists(st.sampled_from(["10.0.0.0/8", "x"])) | json_values,
        "maxRequestAccessDuration": st.sampled_from(["PT3H", "P1D", "PT1M", "PT", "P"]) | json_values,
        "endTimeUtc": st.sampled_from(["2099-01-01T00:00:00Z", "2000-01-01T00:00:00Z", "x"]) | json_values,
        "duration": st.sampled_from(["PT1H", "nope"]) | json_values,
    },
)


def vm_entry(vm_id):
    return st.fixed_dictionaries(
        {}, optional={"id": st.just(vm_id) | json_values, "ports": st.lists(port, max_size=2) | json_values}
    )


def arm_body(fields, required=None):
    """A body whose optional `properties` is an object with these optional fields, or any JSON."""
    return st.fixed_dictionaries(
        required or {},
        optional={"properties": st.fixed_dictionaries({}, optional=fields) | json_values},
    )


@pytest.fixture(scope="module")
def wire(arm_emulator):
    context = ssl.create_default_context(cafile=str(arm_emulator.ca_file))

    def send(method, path, body):
        request = urllib.request.Request(
            arm_emulator.base_url + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={"Authorization": "Bearer fuzz", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    return send


@pytest.fixture(scope="module")
def place(arm_emulator):
    group = arm_emulator.new_resource_group()
    sub = arm_emulator.subscription_id
    vm = f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines/vm1"
    policy = f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Security/locations/westeurope"
    policy += "/jitNetworkAccessPolicies/default"
    return {
        "sub": sub,
        "group": group,
        "vm": vm,
        "policy": policy,
        "rg_id": f"/subscriptions/{sub}/resourceGroups/{group}",
    }


FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(data=st.data())
def test_jit_policy_put_and_initiate_never_fail_with_5xx(wire, place, data):
    props = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "virtualMachines": st.lists(vm_entry(place["vm"]), max_size=2) | json_values,
                "requests": json_values,
            },
        )
    )
    body = data.draw(
        st.fixed_dictionaries({}, optional={"kind": json_values, "properties": st.just(props) | json_values})
    )
    status = wire("PUT", place["policy"] + "?api-version=2020-01-01", body)
    assert status in (200, 400), body
    initiate = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "virtualMachines": st.lists(vm_entry(place["vm"]), max_size=2) | json_values,
                "justification": json_values,
            },
        )
    )
    status = wire("POST", place["policy"] + "/initiate?api-version=2020-01-01", initiate)
    assert status in (202, 400, 404), initiate


@FAST
@given(
    body=arm_body(
        {
            "roleDefinitionId": st.sampled_from(
                [
                    "/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7",
                    "x",
                ]
            )
            | json_values,
            "principalId": st.just(str(uuid.uuid4())) | json_values,
            "principalType": st.sampled_from(["User", "Group", "Nope"]) | json_values,
            "condition": json_values,
            "conditionVersion": json_values,
            "scope": json_values,
            "description": json_values,
        },
    )
)
def test_role_assignment_put_never_fails_with_5xx(wire, place, body):
    path = f"{place['rg_id']}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
    path += "?api-version=2022-04-01"
    assert wire("PUT", path, body) in (201, 400, 409), body


@FAST
@given(
    body=arm_body(
        {
            "roleName": st.text(max_size=8) | json_values,
            "type": st.just("CustomRole") | json_values,
            "description": json_values,
            "assignableScopes": st.lists(st.sampled_from(["/subscriptions/x", "/bad"])) | json_values,
            "permissions": st.lists(
                st.fixed_dictionaries({}, optional={"actions": st.lists(st.text(max_size=5)) | json_values})
            )
            | json_values,
        },
    )
)
def test_role_definition_put_never_fails_with_5xx(wire, place, body):
    path = f"/subscriptions/{place['sub']}/providers/Microsoft.Authorization/roleDefinitions/{uuid.uuid4()}"
    path += "?api-version=2022-04-01"
    assert wire("PUT", path, body) in (201, 400, 409), body


@FAST
@given(
    body=arm_body(
        {
            "hardwareProfile": st.just({"vmSize": "Standard_B1s"}) | json_values,
            "osProfile": json_values,
            "storageProfile": json_values,
            "networkProfile": st.fixed_dictionaries(
                {},
                optional={
                    "networkInterfaces": st.lists(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "id": st.text(max_size=5) | json_values,
                                "properties": json_values,
                            },
                        )
                    )
                    | json_values
                },
            )
            | json_values,
        },
        required={"location": st.just("westeurope")},
    )
)
def test_vm_put_never_fails_with_5xx(wire, place, body):
    path = f"{place['rg_id']}/providers/Microsoft.Compute/virtualMachines/vm-fuzz?api-version=2026-04-01"
    assert wire("PUT", path, body) in (400, 404), body
