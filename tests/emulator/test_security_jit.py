"""Pure rules of the Microsoft.Security JIT emulation: policy validation, initiate, request history."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from emulator import jit
from emulator.errors import ArmError

pytestmark = pytest.mark.unit  # pure: `make test-unit` runs it

SUB = "20ff7fc3-e762-44dd-bd96-b71116dcdc23"
RG = "myRg1"
VM = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/vm1"
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def policy(**port_overrides):
    port = {
        "number": 22,
        "protocol": "*",
        "allowedSourceAddressPrefix": "*",
        "maxRequestAccessDuration": "PT3H",
    }
    port.update(port_overrides)
    port = {k: v for k, v in port.items() if v is not None}
    return {"kind": "Basic", "properties": {"virtualMachines": [{"id": VM, "ports": [port]}]}}


def validate(body):
    return jit.validate_policy(body, subscription=SUB, resource_group=RG)


def test_valid_policy_is_echoed():
    props = validate(policy())
    assert props == {
        "virtualMachines": [{"id": VM, "ports": [policy()["properties"]["virtualMachines"][0]["ports"][0]]}]
    }


def test_protocol_is_accepted_case_insensitively_and_normalised():
    assert validate(policy(protocol="tcp"))["virtualMachines"][0]["ports"][0]["protocol"] == "TCP"


def test_vm_id_match_is_case_insensitive_on_resource_group():
    body = policy()
    body["properties"]["virtualMachines"][0]["id"] = VM.replace("myRg1", "MYRG1")
    assert validate(body)["virtualMachines"][0]["id"].endswith("vm1")


@pytest.mark.parametrize(
    ("overrides", "target"),
    [
        ({"number": 70000}, "properties.virtualMachines[0].ports[0].number"),
        ({"number": -1}, "properties.virtualMachines[0].ports[0].number"),
        ({"number": "22"}, "properties.virtualMachines[0].ports[0].number"),
        ({"number": True}, "properties.virtualMachines[0].ports[0].number"),
        ({"protocol": "ICMP"}, "properties.virtualMachines[0].ports[0].protocol"),
        ({"protocol": None}, "properties.virtualMachines[0].ports[0].protocol"),
        (
            {"allowedSourceAddressPrefixes": ["10.0.0.0/24"]},
            "properties.virtualMachines[0].ports[0].allowedSourceAddressPrefixes",
        ),
        (
            {"allowedSourceAddressPrefix": None},
            "properties.virtualMachines[0].ports[0].allowedSourceAddressPrefix",
        ),
        (
            {"allowedSourceAddressPrefix": "not-an-ip"},
            "properties.virtualMachines[0].ports[0].allowedSourceAddressPrefix",
        ),
        (
            {"allowedSourceAddressPrefix": None, "allowedSourceAddressPrefixes": []},
            "properties.virtualMachines[0].ports[0].allowedSourceAddressPrefixes",
        ),
        (
            {"maxRequestAccessDuration": "PT4M"},
            "properties.virtualMachines[0].ports[0].maxRequestAccessDuration",
        ),
        (
            {"maxRequestAccessDuration": "P2D"},
            "properties.virtualMachines[0].ports[0].maxRequestAccessDuration",
        ),
        (
            {"maxRequestAccessDuration": "PT24H1M"},
            "properties.virtualMachines[0].ports[0].maxRequestAccessDuration",
        ),
        (
            {"maxRequestAccessDuration": "3 hours"},
            "properties.virtualMachines[0].ports[0].maxRequestAccessDuration",
        ),
        (
            {"maxRequestAccessDuration": None},
            "properties.virtualMachines[0].ports[0].maxRequestAccessDuration",
        ),
    ],
)
def test_invalid_port_rules_are_400_naming_the_field(overrides, target):
    with pytest.raises(ArmError) as caught:
        validate(policy(**overrides))
    assert caught.value.status == 400
    assert caught.value.target == target


@pytest.mark.parametrize("duration", ["PT5M", "P1D", "PT24H", "PT1H30M", "PT300S"])
def test_duration_bounds_are_inclusive(duration):
    validate(policy(maxRequestAccessDuration=duration))


@pytest.mark.parametrize(
    ("mutate", "target"),
    [
        (lambda b: b.pop("properties"), "properties"),
        (lambda b: b["properties"].pop("virtualMachines"), "properties.virtualMachines"),
        (
            lambda b: b["properties"]["virtualMachines"][0].update(id="vm1"),
            "properties.virtualMachines[0].id",
        ),
        (
            lambda b: b["properties"]["virtualMachines"][0].update(id=VM.replace("myRg1", "otherRg")),
            "properties.virtualMachines[0].id",
        ),
        (
            lambda b: b["properties"]["virtualMachines"][0].update(ports=[]),
            "properties.virtualMachines[0].ports",
        ),
        (
            lambda b: b["properties"]["virtualMachines"].append(
                copy.deepcopy(b["properties"]["virtualMachines"][0])
            ),
            "properties.virtualMachines[1].id",
        ),
        (
            lambda b: b["properties"]["virtualMachines"][0]["ports"].append(
                copy.deepcopy(b["properties"]["virtualMachines"][0]["ports"][0])
            ),
            "properties.virtualMachines[0].ports[1].number",
        ),
        (
            lambda b: b["properties"]["virtualMachines"][0].update(publicIpAddress="fw"),
            "properties.virtualMachines[0].publicIpAddress",
        ),
    ],
)
def test_invalid_policies_are_400_naming_the_field(mutate, target):
    body = policy()
    mutate(body)
    with pytest.raises(ArmError) as caught:
        validate(body)
    assert caught.value.status == 400
    assert caught.value.target == target


def initiate_body(**port):
    entry = {
        "number": 22,
        "endTimeUtc": jit.format_time(NOW + timedelta(hours=1)),
        "allowedSourceAddressPrefix": "1.2.3.4",
    }
    entry.update(port)
    entry = {k: v for k, v in entry.items() if v is not None}
    return {"virtualMachines": [{"id": VM, "ports": [entry]}], "justification": "fix prod"}


def run_initiate(body, props=None, caller_ip="9.9.9.9"):
    props = props or validate(policy())
    return jit.initiate(props, body, requestor="alice@contoso.com", caller_ip=caller_ip, now=NOW)


def test_initiate_answers_initiating_request():
    request = run_initiate(initiate_body())
    assert request == {
        "virtualMachines": [
            {
                "id": VM,
                "ports": [
                    {
                        "number": 22,
                        "allowedSourceAddressPrefix": "1.2.3.4",
                        "endTimeUtc": "2026-03-01T13:00:00.0000000Z",
                        "status": "Initiating",
                        "statusReason": "UserRequested",
                    }
                ],
            }
        ],
        "startTimeUtc": "2026-03-01T12:00:00.0000000Z",
        "requestor": "alice@contoso.com",
        "justification": "fix prod",
    }


def test_initiate_without_source_uses_caller_ip():
    request = run_initiate(initiate_body(allowedSourceAddressPrefix=None))
    assert request["virtualMachines"][0]["ports"][0]["allowedSourceAddressPrefix"] == "9.9.9.9"


def test_initiate_accepts_duration_instead_of_end_time():
    request = run_initiate(initiate_body(endTimeUtc=None, duration="PT2H"))
    assert request["virtualMachines"][0]["ports"][0]["endTimeUtc"] == "2026-03-01T14:00:00.0000000Z"


def test_seven_digit_fractions_are_parsed():
    request = run_initiate(initiate_body(endTimeUtc="2026-03-01T13:00:00.5921811Z"))
    assert request["virtualMachines"][0]["ports"][0]["endTimeUtc"] == "2026-03-01T13:00:00.5921810Z"


@pytest.mark.parametrize(
    ("port", "code"),
    [
        ({"endTimeUtc": None}, "InvalidInitiateInput"),
        ({"duration": "PT1H"}, "InvalidInitiateInput"),
        ({"endTimeUtc": "2026-03-01T11:00:00Z"}, "InvalidInitiateInput"),
        ({"endTimeUtc": "2026-03-01T15:02:00Z"}, "InvalidInitiateInput"),
        ({"endTimeUtc": "tomorrow"}, "BadRequest"),
        ({"number": 3389}, "PortNotInPolicy"),
        ({"number": 99999}, "InvalidInitiateInput"),
    ],
)
def test_initiate_refusals(port, code):
    with pytest.raises(ArmError) as caught:
        run_initiate(initiate_body(**port))
    assert caught.value.status == 400
    assert caught.value.code == code


def test_initiate_for_vm_outside_policy_is_refused():
    body = initiate_body()
    body["virtualMachines"][0]["id"] = VM.replace("vm1", "vm2")
    with pytest.raises(ArmError) as caught:
        run_initiate(body)
    assert caught.value.code == "VirtualMachineNotInPolicy"


def test_source_must_match_a_policy_prefix_verbatim_unless_star():
    props = validate(
        policy(allowedSourceAddressPrefix=None, allowedSourceAddressPrefixes=["10.0.0.0/24", "1.2.3.4"])
    )
    run_initiate(initiate_body(allowedSourceAddressPrefix="10.0.0.0/24"), props)
    run_initiate(initiate_body(allowedSourceAddressPrefix="1.2.3.4"), props)
    with pytest.raises(ArmError) as caught:
        run_initiate(initiate_body(allowedSourceAddressPrefix="10.0.0.5"), props)
    assert caught.value.code == "SourceAddressNotAllowed"


def test_history_records_initiated_and_supersedes_older_request():
    first = run_initiate(initiate_body())
    history = jit.record_request([], first)
    assert history[0]["virtualMachines"][0]["ports"][0]["status"] == "Initiated"
    second = run_initiate(initiate_body(allowedSourceAddressPrefix="5.6.7.8"))
    history = jit.record_request(history, second)
    old_port = history[0]["virtualMachines"][0]["ports"][0]
    assert (old_port["status"], old_port["statusReason"]) == ("Revoked", "NewerRequestInitiated")
    assert history[1]["virtualMachines"][0]["ports"][0]["status"] == "Initiated"
    assert first["virtualMachines"][0]["ports"][0]["status"] == "Initiating"  # inputs untouched


def test_history_reads_expired_after_end_time():
    history = jit.record_request([], run_initiate(initiate_body()))
    later = jit.with_expiry(history, NOW + timedelta(hours=2))
    port = later[0]["virtualMachines"][0]["ports"][0]
    assert (port["status"], port["statusReason"]) == ("Revoked", "Expired")
    assert jit.with_expiry(history, NOW)[0]["virtualMachines"][0]["ports"][0]["status"] == "Initiated"


def test_history_in_put_is_validated():
    assert jit.validate_history([]) == []
    with pytest.raises(ArmError) as caught:
        jit.validate_history([{"virtualMachines": [], "startTimeUtc": "yesterday"}])
    assert caught.value.target == "properties.requests[0].startTimeUtc"
