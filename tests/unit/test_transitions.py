"""Grant state transitions (shared/enforcement/transitions.py): pure, so every rule is checked with
plain values and a fixed clock, no Azurite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.enforcement import transitions
from shared.model import (
    Grant,
    PolicyRef,
    PortStatus,
    Principal,
    PrincipalSource,
    StatusReason,
    TargetState,
    TransportProtocol,
    VmRef,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
NSG = "nsg|/subscriptions/s/resourcegroups/rg/providers/microsoft.network/networksecuritygroups/a"
FW = "firewall-classic|/subscriptions/s/resourcegroups/rg/providers/microsoft.network/azurefirewalls/f"


def grant(*, targets: dict[str, TargetState] | None = None, ended: bool = False, **changes: object) -> Grant:
    base = Grant(
        grant_id="g-000",
        request_id="g",
        policy=PolicyRef("s", "rg", "westeurope", "default"),
        vm=VmRef("s", "rg", "vm1"),
        port=22,
        protocol=TransportProtocol.TCP,
        source_prefixes=("203.0.113.7",),
        start_time=NOW - timedelta(minutes=20),
        end_time=NOW - timedelta(minutes=1) if ended else NOW + timedelta(minutes=10),
        requester=Principal("oid", "alice", PrincipalSource.EASY_AUTH),
        justification=None,
        ticket_id=None,
        targets=dict(targets or {}),
        connect_address="198.51.100.1",
    )
    return Grant(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def events(t: transitions.Transition) -> list[str]:
    return [name for name, _ in t.events]


def test_initiated_only_once_every_target_is_applied() -> None:
    g = grant(targets={NSG: TargetState.PENDING, FW: TargetState.PENDING})
    first = transitions.on_target(g, NSG, TargetState.APPLIED, None, NOW)
    assert first.grant is not None and first.grant.status is PortStatus.INITIATING
    assert events(first) == ["grant.applied"]
    second = transitions.on_target(first.grant, FW, TargetState.APPLIED, None, NOW)
    assert second.grant is not None and second.grant.status is PortStatus.INITIATED
    assert events(second) == ["grant.applied", "grant.initiated"]


def test_the_same_finding_twice_changes_nothing() -> None:
    g = grant(targets={NSG: TargetState.APPLIED}, status=PortStatus.INITIATED)
    assert transitions.on_target(g, NSG, TargetState.APPLIED, None, NOW) == transitions.NO_CHANGE


def test_removed_everywhere_after_the_end_expires_the_grant() -> None:
    g = grant(
        targets={NSG: TargetState.APPLIED, FW: TargetState.REMOVED}, status=PortStatus.INITIATED, ended=True
    )
    t = transitions.on_target(g, NSG, TargetState.REMOVED, None, NOW)
    assert t.grant is not None
    assert (t.grant.status, t.grant.status_reason) == (PortStatus.REVOKED, StatusReason.EXPIRED)
    assert events(t) == ["grant.removed", "grant.expired"]


def test_a_revoked_grant_closing_keeps_its_reason() -> None:
    g = grant(
        targets={NSG: TargetState.APPLIED},
        status=PortStatus.REVOKED,
        status_reason=StatusReason.USER_REQUESTED,
        ended=True,
    )
    t = transitions.on_target(g, NSG, TargetState.REMOVED, None, NOW)
    assert t.grant is not None and t.grant.status_reason is StatusReason.USER_REQUESTED
    assert events(t) == ["grant.removed", "grant.closed"]


def test_an_applied_report_for_a_closed_grant_is_ignored() -> None:
    g = grant(targets={NSG: TargetState.PENDING}, ended=True)
    assert transitions.on_target(g, NSG, TargetState.APPLIED, None, NOW) == transitions.NO_CHANGE


def test_a_refusal_carries_its_reason_and_blocks_initiated() -> None:
    g = grant(targets={NSG: TargetState.APPLIED, FW: TargetState.PENDING})
    t = transitions.on_target(g, FW, TargetState.FAILED, "not peered", NOW)
    assert t.grant is not None and t.grant.status is PortStatus.INITIATING
    assert t.events == (("grant.refused", {"target": FW, "reason": "not peered"}),)


def test_a_target_the_grant_does_not_touch_changes_nothing() -> None:
    assert transitions.on_target(
        grant(targets={NSG: TargetState.PENDING}), FW, TargetState.APPLIED, None, NOW
    ) == (transitions.NO_CHANGE)


def test_target_changes_lists_only_grants_that_move() -> None:
    settled = grant(targets={NSG: TargetState.APPLIED}, status=PortStatus.INITIATED)
    pending = grant(grant_id="h-000", targets={NSG: TargetState.PENDING})
    changes = transitions.target_changes([settled, pending], NSG, {"g-000", "h-000"}, {}, NOW)
    assert set(changes) == {"h-000"}
    # In sync: the rule is there for both and both say so.
    assert transitions.target_changes([settled], NSG, {"g-000"}, {}, NOW) == {}
    # The rule is gone while the grant is open and says Applied: that differs (the pass converges it).
    assert set(transitions.target_changes([settled], NSG, set(), {}, NOW)) == {"g-000"}


def test_pathless_grants_close_only_after_their_end() -> None:
    assert transitions.settle_pathless(grant(), NOW) == transitions.NO_CHANGE
    t = transitions.settle_pathless(grant(ended=True), NOW)
    assert t.grant is not None and t.grant.status is PortStatus.REVOKED
    assert t.events == (("grant.expired", {"opened": False}),)


def test_the_path_is_recorded_once() -> None:
    t = transitions.with_path(grant(), [NSG, FW], "198.51.100.1")
    assert t.grant is not None and t.grant.targets == {NSG: TargetState.PENDING, FW: TargetState.PENDING}
    assert transitions.with_path(t.grant, [NSG], None) == transitions.NO_CHANGE


def test_a_write_refused_for_good_fails_only_open_pending_grants() -> None:
    pending = grant(targets={NSG: TargetState.PENDING})
    t = transitions.failed_by_write(pending, NSG, "AuthorizationFailed", NOW)
    assert t.grant is not None and t.grant.targets[NSG] is TargetState.FAILED
    applied = grant(targets={NSG: TargetState.APPLIED})
    assert transitions.failed_by_write(applied, NSG, "AuthorizationFailed", NOW) == transitions.NO_CHANGE
    ended = grant(targets={NSG: TargetState.PENDING}, ended=True)
    assert transitions.failed_by_write(ended, NSG, "AuthorizationFailed", NOW) == transitions.NO_CHANGE
