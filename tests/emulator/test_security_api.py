"""Microsoft.Security JIT policies through the real azure-mgmt-security 7.0.0 client, against the emulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.security import SecurityCenter
from azure.mgmt.security.v2020_01_01.models import (
    JitNetworkAccessPolicy,
    JitNetworkAccessPolicyInitiatePort,
    JitNetworkAccessPolicyInitiateRequest,
    JitNetworkAccessPolicyInitiateVirtualMachine,
    JitNetworkAccessPolicyVirtualMachine,
    JitNetworkAccessPortRule,
)


@pytest.fixture(scope="module")
def security(arm_emulator):
    return arm_emulator.client(SecurityCenter)


@pytest.fixture
def group(arm_emulator):
    return arm_emulator.new_resource_group(location="westeurope")


def vm_id(arm_emulator, group, name="vm1"):
    return (
        f"/subscriptions/{arm_emulator.subscription_id}/resourceGroups/{group}/providers/"
        f"Microsoft.Compute/virtualMachines/{name}"
    )


def a_policy(vm, *, prefix="*", duration="PT3H"):
    return JitNetworkAccessPolicy(
        kind="Basic",
        virtual_machines=[
            JitNetworkAccessPolicyVirtualMachine(
                id=vm,
                ports=[
                    JitNetworkAccessPortRule(
                        number=22,
                        protocol="TCP",
                        allowed_source_address_prefix=prefix,
                        max_request_access_duration=duration,
                    ),
                    JitNetworkAccessPortRule(
                        number=3389,
                        protocol="*",
                        allowed_source_address_prefixes=["10.0.0.0/24", "192.168.1.1"],
                        max_request_access_duration="PT1H",
                    ),
                ],
            )
        ],
    )


def test_policy_round_trip_and_listings(security, arm_emulator, group):
    vm = vm_id(arm_emulator, group)
    created = security.jit_network_access_policies.create_or_update(
        group, "westeurope", "default", a_policy(vm)
    )
    assert created.name == "default"
    assert created.location == "westeurope"
    assert created.type == "Microsoft.Security/locations/jitNetworkAccessPolicies"
    assert created.provisioning_state == "Succeeded"
    assert created.virtual_machines[0].ports[1].allowed_source_address_prefixes == [
        "10.0.0.0/24",
        "192.168.1.1",
    ]
    assert created.requests == []
    got = security.jit_network_access_policies.get(group, "westeurope", "default")
    assert got.id == created.id
    assert got.virtual_machines[0].ports[0].max_request_access_duration == "PT3H"
    other = arm_emulator.new_resource_group(location="northeurope")
    security.jit_network_access_policies.create_or_update(
        other, "northeurope", "default", a_policy(vm_id(arm_emulator, other))
    )
    ids = {p.id for p in security.jit_network_access_policies.list()}
    assert {
        created.id,
        f"{created.id.split('/resourceGroups/')[0]}/resourceGroups/{other}/providers/Microsoft.Security/locations/northeurope/jitNetworkAccessPolicies/default",
    } <= ids
    assert created.id in {p.id for p in security.jit_network_access_policies.list_by_region("westeurope")}
    assert created.id not in {
        p.id for p in security.jit_network_access_policies.list_by_region("northeurope")
    }
    assert [p.id for p in security.jit_network_access_policies.list_by_resource_group(group)] == [created.id]
    assert [
        p.id
        for p in security.jit_network_access_policies.list_by_resource_group_and_region(group, "westeurope")
    ] == [created.id]
    assert (
        list(security.jit_network_access_policies.list_by_resource_group_and_region(group, "northeurope"))
        == []
    )
    security.jit_network_access_policies.delete(group, "westeurope", "default")
    security.jit_network_access_policies.delete(group, "westeurope", "default")  # 204, not an error
    with pytest.raises(ResourceNotFoundError):
        security.jit_network_access_policies.get(group, "westeurope", "default")


def initiate_request(vm, number=22, prefix="1.2.3.4", minutes=60):
    return JitNetworkAccessPolicyInitiateRequest(
        virtual_machines=[
            JitNetworkAccessPolicyInitiateVirtualMachine(
                id=vm,
                ports=[
                    JitNetworkAccessPolicyInitiatePort(
                        number=number,
                        allowed_source_address_prefix=prefix,
                        end_time_utc=datetime.now(UTC) + timedelta(minutes=minutes),
                    )
                ],
            )
        ],
        justification="incident 42",
    )


def test_initiate_answers_202_and_records_history(security, arm_emulator, group):
    vm = vm_id(arm_emulator, group)
    security.jit_network_access_policies.create_or_update(group, "westeurope", "default", a_policy(vm))
    answer = security.jit_network_access_policies.initiate(
        group, "westeurope", "default", initiate_request(vm)
    )
    port = answer.virtual_machines[0].ports[0]
    assert (port.number, port.status, port.status_reason) == (22, "Initiating", "UserRequested")
    assert port.allowed_source_address_prefix == "1.2.3.4"
    assert answer.justification == "incident 42"
    second = initiate_request(vm, prefix="5.6.7.8")
    security.jit_network_access_policies.initiate(group, "westeurope", "default", second)
    history = security.jit_network_access_policies.get(group, "westeurope", "default").requests
    assert [
        (r.virtual_machines[0].ports[0].status, r.virtual_machines[0].ports[0].status_reason) for r in history
    ] == [
        ("Revoked", "NewerRequestInitiated"),
        ("Initiated", "UserRequested"),
    ]
    # A new PUT of the policy (new VM list) keeps the history.
    security.jit_network_access_policies.create_or_update(
        group, "westeurope", "default", a_policy(vm, duration="PT2H")
    )
    assert len(security.jit_network_access_policies.get(group, "westeurope", "default").requests) == 2


@pytest.mark.parametrize(
    ("number", "prefix", "minutes", "code"),
    [
        (3389, "10.0.0.7", 30, "SourceAddressNotAllowed"),
        (3389, "10.0.0.0/24", 120, "InvalidInitiateInput"),
        (8080, "1.2.3.4", 30, "PortNotInPolicy"),
        (22, "1.2.3.4", -5, "InvalidInitiateInput"),
    ],
)
def test_initiate_refusals(security, arm_emulator, group, number, prefix, minutes, code):
    vm = vm_id(arm_emulator, group)
    security.jit_network_access_policies.create_or_update(group, "westeurope", "default", a_policy(vm))
    with pytest.raises(HttpResponseError) as caught:
        security.jit_network_access_policies.initiate(
            group, "westeurope", "default", initiate_request(vm, number, prefix, minutes)
        )
    assert (caught.value.status_code, caught.value.error.code) == (400, code)
    assert security.jit_network_access_policies.get(group, "westeurope", "default").requests == []


def test_initiate_on_missing_policy_is_404(security, arm_emulator, group):
    with pytest.raises(ResourceNotFoundError) as caught:
        security.jit_network_access_policies.initiate(
            group, "westeurope", "nope", initiate_request(vm_id(arm_emulator, group))
        )
    assert caught.value.error.code == "PolicyNotFound"


@pytest.mark.parametrize(
    ("policy_kwargs", "target"),
    [
        ({"prefix": "not-an-ip"}, "properties.virtualMachines[0].ports[0].allowedSourceAddressPrefix"),
        ({"duration": "PT2M"}, "properties.virtualMachines[0].ports[0].maxRequestAccessDuration"),
        ({"duration": "P2D"}, "properties.virtualMachines[0].ports[0].maxRequestAccessDuration"),
    ],
)
def test_invalid_policy_is_400_and_changes_nothing(security, arm_emulator, group, policy_kwargs, target):
    with pytest.raises(HttpResponseError) as caught:
        security.jit_network_access_policies.create_or_update(
            group, "westeurope", "default", a_policy(vm_id(arm_emulator, group), **policy_kwargs)
        )
    assert caught.value.status_code == 400
    assert caught.value.error.target == target
    assert list(security.jit_network_access_policies.list_by_resource_group(group)) == []


def test_policy_for_a_vm_of_another_group_is_refused(security, arm_emulator, group):
    with pytest.raises(HttpResponseError) as caught:
        security.jit_network_access_policies.create_or_update(
            group, "westeurope", "default", a_policy(vm_id(arm_emulator, "elsewhere"))
        )
    assert caught.value.error.target == "properties.virtualMachines[0].id"


def test_missing_resource_group_is_404(security):
    with pytest.raises(ResourceNotFoundError) as caught:
        security.jit_network_access_policies.get("no-such-group-x", "westeurope", "default")
    assert caught.value.error.code == "ResourceGroupNotFound"
