"""The pure planning core: ownership, markers, names, priorities, mapped ports, compliance."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from shared import plan
from shared.model import (
    Grant,
    PolicyPort,
    PolicyRef,
    PortStatus,
    Principal,
    PrincipalSource,
    StatusReason,
    TransportProtocol,
    VmRef,
)
from shared.plan import Access, BaselineEntry, GrantOnFirewall, GrantOnNsg, NicOnTarget, NsgRule

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
VM = VmRef("sub", "rg", "vm1")
VM2 = VmRef("sub", "rg", "vm2")
NIC = NicOnTarget(VM, ("10.0.0.4",))
NIC2 = NicOnTarget(VM2, ("10.0.0.5",))
BANDS = plan.PriorityBands(3000, 3004, 3500, 3504)
SSH = PolicyPort(22, TransportProtocol.TCP, ("*",), timedelta(hours=3))
RDP = PolicyPort(3389, TransportProtocol.TCP, ("*",), timedelta(hours=3))


def grant(gid: str, *, port: int = 22, end: timedelta = timedelta(minutes=10), **changes: object) -> Grant:
    base = Grant(
        grant_id=gid,
        request_id="req-" + gid,
        policy=PolicyRef("sub", "rg", "westeurope", "default"),
        vm=VM,
        port=port,
        protocol=TransportProtocol.TCP,
        source_prefixes=("203.0.113.7",),
        start_time=NOW - timedelta(minutes=1),
        end_time=NOW + end,
        requester=Principal("oid", "alice", PrincipalSource.EASY_AUTH),
        justification=None,
        ticket_id=None,
    )
    return Grant(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def foreign(name: str, priority: int, **fields: object) -> NsgRule:
    values: dict[str, object] = {
        "name": name,
        "priority": priority,
        "access": Access.ALLOW,
        "protocol": "Tcp",
        "source_prefixes": ("10.9.0.0/16",),
        "destination_prefixes": ("*",),
        "destination_ports": ("443",),
    }
    values.update(fields)
    return NsgRule(**values)  # type: ignore[arg-type]


def apply(actual: list[NsgRule], result: plan.NsgPlan) -> list[NsgRule]:
    kept = [r for r in actual if r.name not in result.to_remove and r not in result.to_put]
    kept = [r for r in kept if all(r.name.lower() != p.name.lower() for p in result.to_put)]
    return kept + list(result.to_put)


def test_deny_baseline_and_allow_for_open_grant() -> None:
    result = plan.plan_nsg([], [BaselineEntry(NIC, (SSH, RDP))], [GrantOnNsg(grant("g1"), NIC)], BANDS, NOW)
    allows = [r for r in result.desired if r.access is Access.ALLOW]
    denies = [r for r in result.desired if r.access is Access.DENY]
    assert [r.priority for r in allows] == [3000]
    assert allows[0].source_prefixes == ("203.0.113.7",)
    assert allows[0].destination_prefixes == ("10.0.0.4",)
    assert allows[0].destination_ports == ("22",)
    assert sorted(r.destination_ports[0] for r in denies) == ["22", "3389"]
    assert all(3500 <= r.priority <= 3504 for r in denies)
    assert all(plan.is_ours(r.name) and len(r.name) <= 80 for r in result.desired)
    assert all(len(r.description) <= 140 for r in result.desired)
    assert result.changed and not result.to_remove


def test_no_change_when_actual_equals_desired() -> None:
    first = plan.plan_nsg([], [BaselineEntry(NIC, (SSH,))], [GrantOnNsg(grant("g1"), NIC)], BANDS, NOW)
    again = plan.plan_nsg(
        list(first.desired), [BaselineEntry(NIC, (SSH,))], [GrantOnNsg(grant("g1"), NIC)], BANDS, NOW
    )
    assert not again.changed


def test_expired_revoked_and_unknown_rules_of_ours_are_removed() -> None:
    g_open = grant("open")
    g_expired = grant("old", end=timedelta(seconds=-1))
    g_revoked = grant("rev", status=PortStatus.REVOKED, status_reason=StatusReason.USER_REQUESTED)
    before = plan.plan_nsg(
        [], [], [GrantOnNsg(g, NIC) for g in (g_open, grant("old"), grant("rev"))], BANDS, NOW
    ).desired
    stray = foreign(
        plan.NAME_PREFIX + "Allow-22-unknown", 3004, description="portcullis:grant=x;exp=2020-01-01T00:00:00Z"
    )
    result = plan.plan_nsg(
        [*before, stray], [], [GrantOnNsg(g, NIC) for g in (g_open, g_expired, g_revoked)], BANDS, NOW
    )
    assert set(result.to_remove) == {
        plan.allow_rule_name(g_expired),
        plan.allow_rule_name(g_revoked),
        stray.name,
    }
    assert [r.name for r in result.desired] == [plan.allow_rule_name(g_open)]


def test_foreign_and_defender_rules_never_in_plan_and_priorities_avoided() -> None:
    defender = foreign("MicrosoftDefenderForCloud-JITRule_123_abc", 3000, access=Access.DENY)
    people = foreign("allow-https", 3001)
    result = plan.plan_nsg([defender, people], [], [GrantOnNsg(grant("g1"), NIC)], BANDS, NOW)
    assert plan.is_defender(defender.name) and not plan.is_ours(defender.name)
    assert result.to_remove == ()
    assert [r.priority for r in result.to_put] == [3002]


def test_drifted_rule_of_ours_is_restored_in_place() -> None:
    good = plan.plan_nsg([], [], [GrantOnNsg(grant("g1"), NIC)], BANDS, NOW).desired[0]
    tampered = NsgRule(**{**good.__dict__, "source_prefixes": ("*",)})
    result = plan.plan_nsg([tampered], [], [GrantOnNsg(grant("g1"), NIC)], BANDS, NOW)
    assert result.to_put == (good,)
    assert result.to_put[0].priority == tampered.priority


def test_full_allow_band_refuses_grant_clearly() -> None:
    grants = [GrantOnNsg(grant(f"g{i}"), NIC) for i in range(6)]
    result = plan.plan_nsg([], [], grants, BANDS, NOW)
    assert len([r for r in result.desired if r.access is Access.ALLOW]) == 5
    assert list(result.refused) == ["g5"]
    assert "3000-3004" in result.refused["g5"]


def test_behind_firewall_nsg_allows_firewall_subnet_not_requester() -> None:
    result = plan.plan_nsg([], [], [GrantOnNsg(grant("g1"), NIC, "10.0.1.0/26")], BANDS, NOW)
    assert result.desired[0].source_prefixes == ("10.0.1.0/26",)


def test_marker_round_trip_and_tableless_expiry() -> None:
    g = grant("f3b1c7d2-1111-2222-3333-444455556666")
    marker = plan.grant_marker(g.grant_id, g.end_time)
    parsed = plan.parse_marker(marker)
    assert parsed is not None and parsed.grant_id == g.grant_id and parsed.expires == g.end_time
    assert not plan.marker_expired(marker, NOW)
    assert plan.marker_expired(marker, g.end_time)
    assert plan.marker_expired("hand edited", NOW)
    assert not plan.marker_expired(plan.baseline_marker(VM, 22), NOW)
    long_marker = plan.grant_marker("x" * 300, g.end_time)
    assert len(long_marker) <= 140 and plan.parse_marker(long_marker).expires == g.end_time  # type: ignore[union-attr]


@pytest.mark.parametrize("gid", ["a" * 200, "weird id/with:chars", "ends-with-dot."])
def test_rule_names_are_valid(gid: str) -> None:
    name = plan.allow_rule_name(grant(gid))
    assert len(name) <= 80 and plan.is_ours(name)
    assert name[0].isalnum() and (name[-1].isalnum() or name[-1] == "_")
    assert all(c.isalnum() or c in "._-" for c in name)


def test_compliance_finding_for_foreign_internet_rule_ahead_of_deny() -> None:
    open_ssh = foreign("open-ssh", 200, source_prefixes=("Internet",), destination_ports=("20-25",))
    narrow = foreign("corp-ssh", 201, source_prefixes=("10.0.0.0/8",), destination_ports=("22",))
    result = plan.plan_nsg([open_ssh, narrow], [BaselineEntry(NIC, (SSH,))], [], BANDS, NOW)
    assert [(f.kind, f.rule_name, f.port) for f in result.findings] == [
        (plan.FindingKind.PORT_OPEN_AHEAD_OF_DENY, "open-ssh", 22)
    ]
    assert "open-ssh" not in result.to_remove


def test_mapped_ports_unique_skip_taken_and_refuse_when_full() -> None:
    allocated, refused = plan.allocate_mapped_ports(
        [("a", "1.1.1.1"), ("b", "1.1.1.1"), ("c", "2.2.2.2"), ("d", "1.1.1.1")],
        {"1.1.1.1": {50000}},
        50000,
        50002,
    )
    assert allocated == {"a": 50001, "b": 50002, "c": 50000}
    assert "d" in refused and "50000-50002" in refused["d"]


def test_firewall_plan_dnat_rule_fields_and_idempotence() -> None:
    g = grant("g1", mapped_port=50001)
    placement = GrantOnFirewall(g, "10.0.0.4", "20.1.2.3")
    first = plan.plan_firewall(None, None, [placement], 100, NOW)
    (rule,) = first.desired
    assert (rule.source_addresses, rule.destination_address, rule.destination_port) == (
        ("203.0.113.7",),
        "20.1.2.3",
        50001,
    )
    assert (rule.translated_address, rule.translated_port, rule.protocols) == ("10.0.0.4", 22, ("TCP",))
    assert first.changed
    assert not plan.plan_firewall(first.desired, 100, [placement], 100, NOW).changed
    assert plan.plan_firewall(first.desired, 100, [placement], 100, g.end_time).changed  # expired
    assert not plan.plan_firewall(None, None, [placement], 100, g.end_time).changed
    unmapped = plan.plan_firewall(
        None, None, [GrantOnFirewall(grant("g2"), "10.0.0.4", "20.1.2.3")], 100, NOW
    )
    assert "g2" in unmapped.refused and not unmapped.desired


def test_baseline_without_private_ip_and_priority_kept_stable() -> None:
    result = plan.plan_nsg([], [BaselineEntry(NIC, (SSH,)), BaselineEntry(NIC2, (SSH,))], [], BANDS, NOW)
    moved = [
        NsgRule(**{**r.__dict__, "priority": r.priority + 2})
        if r.destination_prefixes == ("10.0.0.5",)
        else r
        for r in result.desired
    ]
    again = plan.plan_nsg(moved, [BaselineEntry(NIC, (SSH,)), BaselineEntry(NIC2, (SSH,))], [], BANDS, NOW)
    assert not again.changed


def test_connection_commands_ready_to_paste() -> None:
    lines = plan.connection_commands("20.1.2.3", 50022, "azureuser")
    assert lines == {
        "address": "20.1.2.3",
        "port": "50022",
        "ssh": "ssh -p 50022 azureuser@20.1.2.3",
        "rdp": "mstsc /v:20.1.2.3:50022",
    }
    assert plan.connection_commands(None, 22) is None


def test_arm_refusals_are_classified_for_converge() -> None:
    from azure.core.exceptions import HttpResponseError, ServiceRequestError

    from shared.targets import RefusalKind, classify

    class Response:
        def __init__(self, status: int, headers: dict[str, str]) -> None:
            self.status_code = status
            self.headers = headers
            self.reason = "x"

        def text(self) -> str:
            return '{"error": {"code": "X", "message": "m"}}'

    def error(status: int, headers: dict[str, str] | None = None) -> HttpResponseError:
        return HttpResponseError(response=Response(status, headers or {}))  # type: ignore[arg-type]

    assert classify(error(412)).kind is RefusalKind.STALE
    busy = classify(error(429, {"Retry-After": "7"}))
    assert busy.kind is RefusalKind.BUSY and busy.retry_after == 7.0
    assert classify(error(409)).kind is RefusalKind.BUSY
    assert classify(error(503)).kind is RefusalKind.TRANSIENT
    assert classify(error(400)).kind is RefusalKind.FATAL
    assert classify(ServiceRequestError("refused")).kind is RefusalKind.TRANSIENT


# ---- issue 15 item 3: Deny names cannot collide, and a duplicate is refused, never merged ----


def test_deny_names_of_vms_sharing_their_first_30_characters_stay_distinct_and_valid() -> None:
    """The report found a collision after 1,342 VMs sharing 30 characters (24-bit hash)."""
    common = "web-frontend-production-westeurope-"  # 35 characters in common
    ports = (SSH, PolicyPort(3389, TransportProtocol.ANY, ("*",), timedelta(hours=1)))
    names = {
        plan.deny_rule_name(VmRef("sub", "rg", f"{common}{i:05d}"), port)
        for i in range(20000)
        for port in ports
    }
    assert len(names) == 40000
    valid = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,78}[A-Za-z0-9_]$")
    assert all(valid.match(n) and len(n) <= plan.MAX_RULE_NAME for n in names)
    long_vm = VmRef("sub", "rg" * 40, "v" * 64)
    assert len(plan.deny_rule_name(long_vm, ports[1])) <= plan.MAX_RULE_NAME


def test_two_vms_whose_deny_names_collide_are_refused_not_merged(monkeypatch: pytest.MonkeyPatch) -> None:
    """A collision (forced here: every hash the same) used to drop one VM's Deny silently."""
    monkeypatch.setattr(plan, "_short_hash", lambda text, length=8: "0" * length)
    twins = [VmRef("sub", "rg", "a" * 40 + "-1"), VmRef("sub", "rg", "a" * 40 + "-2")]
    entries = [BaselineEntry(NicOnTarget(vm, (f"10.0.0.{i + 4}",)), (SSH,)) for i, vm in enumerate(twins)]
    assert plan.deny_rule_name(twins[0], SSH) == plan.deny_rule_name(twins[1], SSH)
    with pytest.raises(plan.DuplicateRuleNameError):
        plan.plan_nsg([], entries, [], BANDS, NOW)


def test_the_same_vm_and_port_listed_twice_is_one_deny_rule() -> None:
    result = plan.plan_nsg([], [BaselineEntry(NIC, (SSH,)), BaselineEntry(NIC, (SSH,))], [], BANDS, NOW)
    assert len(result.desired) == 1


# ---- issue 15 item 10: ours = our prefix AND our marker ----


def test_a_rule_with_our_prefix_but_no_marker_is_foreign_kept_and_reported() -> None:
    backup = foreign("portcullis-jit-backup-exception", 3000, description="break-glass, ask ops")
    result = plan.plan_nsg([backup], [BaselineEntry(NIC, (SSH,))], [GrantOnNsg(grant("g1"), NIC)], BANDS, NOW)
    assert plan.is_ours(backup.name) and not plan.owns_rule(backup.name, backup.description)
    assert result.to_remove == ()
    assert backup.name not in {r.name for r in result.desired}
    assert [r.priority for r in result.desired if r.access is Access.ALLOW] == [3001]  # its priority avoided
    kinds = [(f.kind, f.rule_name) for f in result.findings]
    assert (plan.FindingKind.FOREIGN_RULE_WITH_OUR_PREFIX, backup.name) in kinds


def test_a_foreign_rule_holding_the_name_of_ours_is_not_overwritten() -> None:
    taken = foreign(plan.allow_rule_name(grant("g1")), 3003, description="someone else's")
    result = plan.plan_nsg([taken], [], [GrantOnNsg(grant("g1"), NIC)], BANDS, NOW)
    assert result.to_put == () and result.to_remove == ()
    assert "g1" in result.refused


def test_our_firewall_collection_is_ours_by_exact_name_only() -> None:
    assert plan.is_our_collection("Portcullis-JIT") and plan.is_our_collection("portcullis-jit")
    assert not plan.is_our_collection("Portcullis-JIT-backup")
    # The DNAT collection inside our Firewall Policy group is ours too (else every converge of the
    # policy rewrote the group, and a reconcile pass never found it in sync).
    assert plan.is_our_collection("Portcullis-JIT-DNAT")
    assert not plan.is_our_collection("Portcullis-JI\u212a")  # KELVIN SIGN is not K to ARM


def test_two_grants_whose_dnat_names_collide_are_refused_not_merged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan, "nat_rule_name", lambda grant: "Portcullis-JIT-22-same")
    placements = [
        GrantOnFirewall(grant(gid, mapped_port=port), "10.1.0.4", "20.0.0.1")
        for gid, port in (("a", 50000), ("b", 50001))
    ]
    with pytest.raises(plan.DuplicateRuleNameError):
        plan.plan_firewall(None, None, placements, 100, NOW)
