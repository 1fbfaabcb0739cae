"""evaluate(request, policy, now): every refusal names its field; sub-ranges of allowed CIDRs pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.model import (
    DomainError,
    JitPolicy,
    PolicyPort,
    PolicyRef,
    TransportProtocol,
    VmPolicy,
    VmRef,
)
from shared.policy import (
    AccessRequest,
    Limits,
    RequestedPort,
    RequestedVm,
    evaluate,
    format_duration,
    parse_duration,
    prefix_is_allowed,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
VM = VmRef("sub", "rg", "vm1")
OTHER_VM = VmRef("sub", "rg", "vm2")
LIMITS = Limits(max_vms=2, max_ports_per_vm=2)


def policy(*ports: PolicyPort) -> JitPolicy:
    ports = ports or (
        PolicyPort(22, TransportProtocol.TCP, ("10.0.0.0/16", "203.0.113.0/24"), timedelta(hours=3)),
        PolicyPort(3389, TransportProtocol.ANY, ("*",), timedelta(hours=1)),
    )
    return JitPolicy(PolicyRef("sub", "rg", "westeurope", "default"), (VmPolicy(VM, tuple(ports)),))


def request(*ports: RequestedPort, vm: VmRef = VM, caller: str | None = None) -> AccessRequest:
    return AccessRequest((RequestedVm(vm, tuple(ports)),), "why", caller)


def port(number: int = 22, hours: float = 1, sources: tuple[str, ...] | None = ("10.0.1.0/24",), **kw):
    return RequestedPort(number, NOW + timedelta(hours=hours), sources, **kw)


def refusal_fields(decision) -> list[str]:
    return [r.field for r in decision.refusals]


def test_sub_range_of_allowed_cidr_is_granted() -> None:
    decision = evaluate(request(port()), policy(), NOW, LIMITS)
    assert decision.allowed
    [approved] = decision.approved
    assert approved.source_prefixes == ("10.0.1.0/24",)
    assert approved.policy_port.protocol is TransportProtocol.TCP


def test_host_inside_second_prefix_is_granted() -> None:
    assert evaluate(request(port(sources=("203.0.113.9",))), policy(), NOW, LIMITS).allowed


@pytest.mark.parametrize("source", ["*", "Internet", "Any", "0.0.0.0/0", "10.0.0.0/8", "192.0.2.1"])
def test_sources_outside_the_policy_are_refused_naming_the_field(source: str) -> None:
    decision = evaluate(request(port(sources=(source,))), policy(), NOW, LIMITS)
    assert not decision.allowed
    assert refusal_fields(decision) == ["virtualMachines[0].ports[0].allowedSourceAddressPrefix"]
    assert decision.refusals[0].code == "SourceNotAllowed"


@pytest.mark.parametrize("source", ["*", "Internet", "0.0.0.0/0", "198.51.100.0/24"])
def test_any_source_only_where_the_policy_allows_star(source: str) -> None:
    decision = evaluate(request(port(3389, sources=(source,))), policy(), NOW, LIMITS)
    assert decision.allowed
    expected = "*" if source.lower() in ("*", "internet", "0.0.0.0/0") else source
    assert decision.approved[0].source_prefixes == (expected,)


def test_no_prefix_means_the_callers_own_address() -> None:
    decision = evaluate(request(port(sources=None), caller="10.0.5.6"), policy(), NOW, LIMITS)
    assert decision.approved[0].source_prefixes == ("10.0.5.6/32",)
    outside = evaluate(request(port(sources=None), caller="192.0.2.1"), policy(), NOW, LIMITS)
    assert refusal_fields(outside) == ["virtualMachines[0].ports[0].allowedSourceAddressPrefix"]


def test_no_prefix_and_no_known_address_is_refused() -> None:
    decision = evaluate(request(port(sources=None), caller=None), policy(), NOW, LIMITS)
    assert decision.refusals[0].code == "SourceRequired"


def test_vm_not_in_policy() -> None:
    decision = evaluate(request(port(), vm=OTHER_VM), policy(), NOW, LIMITS)
    assert refusal_fields(decision) == ["virtualMachines[0].id"]
    assert decision.refusals[0].code == "VmNotInPolicy"


def test_port_not_in_policy() -> None:
    decision = evaluate(request(port(8080)), policy(), NOW, LIMITS)
    assert refusal_fields(decision) == ["virtualMachines[0].ports[0].number"]
    assert "22, 3389" in decision.refusals[0].reason


def test_protocol_must_match_unless_policy_allows_any() -> None:
    refused = evaluate(request(port(protocol=TransportProtocol.UDP)), policy(), NOW, LIMITS)
    assert refusal_fields(refused) == ["virtualMachines[0].ports[0].protocol"]
    assert evaluate(
        request(port(3389, sources=("*",), protocol=TransportProtocol.UDP)), policy(), NOW, LIMITS
    ).allowed


@pytest.mark.parametrize(
    ("hours", "code"), [(-0.1, "EndTimeInPast"), (0, "EndTimeInPast"), (3.5, "DurationTooLong")]
)
def test_end_time_must_be_future_and_within_maximum(hours: float, code: str) -> None:
    decision = evaluate(request(port(hours=hours)), policy(), NOW, LIMITS)
    assert refusal_fields(decision) == ["virtualMachines[0].ports[0].endTimeUtc"]
    assert decision.refusals[0].code == code


def test_end_time_at_the_maximum_is_fine() -> None:
    assert evaluate(request(port(hours=3)), policy(), NOW, LIMITS).allowed


def test_bounded_number_of_vms_and_ports() -> None:
    three_vms = AccessRequest(tuple(RequestedVm(VmRef("sub", "rg", f"vm{i}"), (port(),)) for i in range(3)))
    assert refusal_fields(evaluate(three_vms, policy(), NOW, LIMITS))[0] == "virtualMachines"
    many_ports = request(port(22), port(3389, sources=("*",)), port(23))
    assert "virtualMachines[0].ports" in refusal_fields(evaluate(many_ports, policy(), NOW, LIMITS))


def test_any_refusal_refuses_the_whole_request() -> None:
    decision = evaluate(request(port(22), port(8080)), policy(), NOW, LIMITS)
    assert not decision.allowed
    assert decision.approved == ()


def test_duplicate_ports_are_refused() -> None:
    decision = evaluate(request(port(22), port(22)), policy(), NOW, LIMITS)
    assert refusal_fields(decision) == ["virtualMachines[0].ports[1].number"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT3H", timedelta(hours=3)),
        ("P1D", timedelta(days=1)),
        ("PT90M", timedelta(minutes=90)),
        ("PT5M", timedelta(minutes=5)),
    ],
)
def test_durations_round_trip(text: str, expected: timedelta) -> None:
    assert parse_duration(text, "f") == expected
    assert parse_duration(format_duration(expected), "f") == expected


@pytest.mark.parametrize("text", ["3H", "PT", "P", "PTH", "1 hour", "PT3H30"])
def test_bad_durations_name_the_field(text: str) -> None:
    with pytest.raises(DomainError) as raised:
        parse_duration(text, "ports[0].maxRequestAccessDuration")
    assert raised.value.field == "ports[0].maxRequestAccessDuration"


def test_ipv6_prefix_never_matches_ipv4_policy() -> None:
    assert not prefix_is_allowed("2001:db8::/64", ["10.0.0.0/8"])
    assert prefix_is_allowed("2001:db8::1", ["2001:db8::/32"])
