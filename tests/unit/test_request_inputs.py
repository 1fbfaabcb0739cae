"""Inputs that parse in Python but that Azure's rules refuse must be refused at intake, naming the
field, rather than recorded as grants enforcement can never open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.defender import parse_policy_body
from shared.model import DomainError, JitPolicy, PolicyPort, PolicyRef, TransportProtocol, VmPolicy, VmRef
from shared.policy import AccessRequest, Limits, RequestedPort, RequestedVm, evaluate

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
VM = VmRef("00000000-0000-0000-0000-0000000000a1", "rg", "vm1")
REF = PolicyRef("00000000-0000-0000-0000-0000000000a1", "rg", "westeurope", "default")


def open_policy() -> JitPolicy:
    return JitPolicy(
        REF, (VmPolicy(VM, (PolicyPort(22, TransportProtocol.TCP, ("*",), timedelta(hours=3)),)),)
    )


@pytest.mark.parametrize("source", ["fe80::1%eth0", "fe80::1%1/128"])
def test_a_requested_source_with_an_ipv6_zone_id_is_refused_naming_the_field(source: str) -> None:
    request = AccessRequest(
        (RequestedVm(VM, (RequestedPort(22, NOW + timedelta(hours=1), (source,)),)),), "why", None
    )
    decision = evaluate(request, open_policy(), NOW, Limits(2, 2))
    assert not decision.allowed
    [refusal] = decision.refusals
    assert refusal.field == "virtualMachines[0].ports[0].allowedSourceAddressPrefix"
    assert "zone id" in refusal.reason


def test_a_policy_prefix_with_a_zone_id_is_refused_naming_the_field() -> None:
    body = {
        "properties": {
            "virtualMachines": [
                {
                    "id": VM.id,
                    "ports": [
                        {
                            "number": 22,
                            "protocol": "TCP",
                            "allowedSourceAddressPrefixes": ["10.0.0.0/16", "fe80::1%eth0"],
                            "maxRequestAccessDuration": "PT3H",
                        }
                    ],
                }
            ]
        }
    }
    with pytest.raises(DomainError) as raised:
        parse_policy_body(body, REF)
    assert raised.value.field == "properties.virtualMachines[0].ports[0].allowedSourceAddressPrefixes[1]"


def test_duplicate_ports_in_a_large_policy_are_found_quickly() -> None:
    """Imports bypass the 64 KiB body limit; the duplicate check must not be quadratic."""
    ports = [
        {
            "number": n,
            "protocol": "TCP",
            "allowedSourceAddressPrefix": "*",
            "maxRequestAccessDuration": "PT1H",
        }
        for n in range(20000)
    ]
    ports.append(dict(ports[5]))
    body = {"properties": {"virtualMachines": [{"id": VM.id, "ports": ports}]}}
    started = datetime.now(UTC)
    with pytest.raises(DomainError) as raised:
        parse_policy_body(body, REF)
    assert raised.value.field == "properties.virtualMachines[0].ports[20000].number"
    assert datetime.now(UTC) - started < timedelta(seconds=5)
