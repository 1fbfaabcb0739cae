"""Approvals, extensions, break-glass and scheduled access: the pure rules (shared/approval.py) with
plain values, and the actions (shared/actions/approvals.py, InitiateAccess) with the in-memory
collaborators of tests/fakes.py. The same paths through the running host, Azurite and the emulator
are in tests/integration/test_approvals_host.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.actions.approvals import Approvals, lapse_due
from shared.actions.initiate import InitiateAccess, InitiateCommand
from shared.actions.refusal import Refusal
from shared.approval import (
    ApprovalRefusedError,
    ApprovalStatus,
    Verdict,
    check_extension,
    decide,
    from_json,
    is_listed,
    lapse,
    new_pending,
    opened_window,
    request_policy,
    review,
    to_json,
)
from shared.authz import INITIATE_ACTION, READ_POLICY_ACTION
from shared.defender import parse_policy_body, wire_status
from shared.events import EventId
from shared.model import (
    ApprovalPolicy,
    DomainError,
    PolicyRef,
    PortStatus,
    Principal,
    PrincipalSource,
    StatusReason,
    WirePortStatus,
)
from tests.fakes import FakeWorld, fake_services

pytestmark = pytest.mark.unit

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
SUB = "00000000-0000-0000-0000-0000000000c1"
REF = PolicyRef(SUB, "rg1", "westeurope", "default")
VM = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1"
ALICE = Principal("a11ce000-0000-4000-8000-000000000001", "alice", PrincipalSource.JWT)
BOB = Principal("b0b00000-0000-4000-8000-000000000002", "bob", PrincipalSource.JWT)
CAROL = Principal("ca401000-0000-4000-8000-000000000006", "carol", PrincipalSource.JWT)
GROUP = "90000000-0000-4000-8000-00000000000a"
DAVE = Principal(
    "da7e0000-0000-4000-8000-000000000007", "dave", PrincipalSource.JWT, group_ids=frozenset({GROUP})
)
EVE = Principal("e0e00000-0000-4000-8000-000000000004", "eve", PrincipalSource.JWT)


def policy_body(approval: dict[str, Any] | None) -> dict[str, Any]:
    vm: dict[str, Any] = {
        "id": VM,
        "ports": [
            {
                "number": 22,
                "protocol": "TCP",
                "allowedSourceAddressPrefix": "*",
                "maxRequestAccessDuration": "PT3H",
            }
        ],
    }
    if approval is not None:
        vm["portcullis"] = {"approval": approval}
    return {"kind": "Basic", "properties": {"virtualMachines": [vm]}}


TWO_OF = {"approvers": [BOB.object_id, CAROL.object_id, GROUP], "required": 2, "pendingTimeout": "PT1H"}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def world_with(approval: dict[str, Any] | None) -> tuple[FakeWorld, Clock]:
    world = fake_services(NOW)
    clock = Clock()
    world.services.clock = clock
    world.policies.add(REF, policy_body(approval))
    world.roles.grant(ALICE.object_id, f"/subscriptions/{SUB}", INITIATE_ACTION)
    for approver in (BOB, CAROL, DAVE, EVE):
        world.roles.grant(approver.object_id, f"/subscriptions/{SUB}", READ_POLICY_ACTION)
    return world, clock


def ask(hours: float = 1, **extra: Any) -> InitiateCommand:
    body: dict[str, Any] = {
        "virtualMachines": [
            {
                "id": VM,
                "ports": [
                    {
                        "number": 22,
                        "endTimeUtc": (extra.pop("start", NOW) + timedelta(hours=hours)).isoformat(),
                        "allowedSourceAddressPrefix": "203.0.113.7",
                    }
                ],
            }
        ],
        "justification": extra.pop("justification", "patching"),
        **extra,
    }
    return InitiateCommand(body=body, requester=ALICE, channel="http", policy=REF)


# ---- the policy extension ----


@pytest.mark.parametrize(
    ("approval", "field"),
    [
        ({"approvers": [BOB.object_id], "required": 2}, "required"),
        ({"approvers": [BOB.object_id], "required": 0}, "required"),
        ({"approvers": ["bob"]}, "approvers[0]"),
        ({"approvers": []}, "approvers"),
        ({"approvers": [BOB.object_id, BOB.object_id.upper()]}, "approvers[1]"),
        ({"approvers": [BOB.object_id], "pendingTimeout": "soon"}, "pendingTimeout"),
        ({"approvers": [BOB.object_id], "pendingTimeout": "PT30S"}, "pendingTimeout"),
        ({"approvers": [BOB.object_id], "pendingTimeout": "P8D"}, "pendingTimeout"),
        ({"approvers": [BOB.object_id], "breakGlass": "yes"}, "breakGlass"),
    ],
)
def test_a_bad_approval_extension_is_refused_naming_the_field(approval: dict[str, Any], field: str) -> None:
    with pytest.raises(DomainError) as refused:
        parse_policy_body(policy_body(approval), REF)
    assert refused.value.field == f"properties.virtualMachines[0].portcullis.approval.{field}"


def test_the_approval_extension_is_parsed_and_kept_in_the_stored_body() -> None:
    policy, body = parse_policy_body(policy_body({**TWO_OF, "breakGlass": True}), REF)
    rule = policy.virtual_machines[0].approval
    assert rule == ApprovalPolicy((BOB.object_id, CAROL.object_id, GROUP), 2, timedelta(hours=1), True)
    assert body["virtualMachines"][0]["portcullis"]["approval"]["required"] == 2


def test_vms_with_different_approvals_go_in_separate_requests() -> None:
    one = ApprovalPolicy((BOB.object_id,), 1)
    other = ApprovalPolicy((CAROL.object_id,), 1)
    assert request_policy([("a", None), ("b", one), ("c", one)]) == one
    assert request_policy([("a", None)]) is None
    with pytest.raises(DomainError) as refused:
        request_policy([("virtualMachines[0].id", one), ("virtualMachines[1].id", other)])
    assert refused.value.field == "virtualMachines[1].id"


# ---- who may decide, and what decisions do ----


def pending(required: int = 2) -> Any:
    return new_pending(ApprovalPolicy((BOB.object_id, CAROL.object_id, GROUP), required), NOW)


def test_the_requester_may_not_approve_even_when_listed() -> None:
    approval = replace(pending(), approvers=(*pending().approvers, ALICE.object_id))
    with pytest.raises(ApprovalRefusedError) as refused:
        decide(approval, ALICE, ALICE, Verdict.APPROVED, NOW)
    assert (refused.value.status, refused.value.code) == (403, "SelfApprovalNotAllowed")


def test_someone_not_listed_may_not_decide_but_a_member_of_a_listed_group_may() -> None:
    with pytest.raises(ApprovalRefusedError) as refused:
        decide(pending(), EVE, ALICE, Verdict.APPROVED, NOW)
    assert refused.value.code == "NotAnApprover"
    assert is_listed(pending(), DAVE)
    assert decide(pending(), DAVE, ALICE, Verdict.APPROVED, NOW).approved_by[0].object_id == DAVE.object_id


def test_required_approvals_must_come_from_distinct_people() -> None:
    once = decide(pending(), BOB, ALICE, Verdict.APPROVED, NOW, "ok")
    assert once.status is ApprovalStatus.PENDING
    with pytest.raises(ApprovalRefusedError) as refused:
        decide(once, BOB, ALICE, Verdict.APPROVED, NOW)
    assert refused.value.code == "AlreadyDecided"
    twice = decide(once, CAROL, ALICE, Verdict.APPROVED, NOW)
    assert twice.status is ApprovalStatus.APPROVED
    assert [d.object_id for d in twice.approved_by] == [BOB.object_id, CAROL.object_id]


def test_one_denial_ends_it_even_after_an_approval() -> None:
    once = decide(pending(), BOB, ALICE, Verdict.APPROVED, NOW)
    assert decide(once, CAROL, ALICE, Verdict.DENIED, NOW, "no").status is ApprovalStatus.DENIED
    with pytest.raises(ApprovalRefusedError):
        decide(decide(once, CAROL, ALICE, Verdict.DENIED, NOW), DAVE, ALICE, Verdict.APPROVED, NOW)


def test_a_pending_request_lapses_at_its_timeout_and_cannot_be_decided_after() -> None:
    approval = pending()
    assert lapse(approval, NOW + timedelta(minutes=59)) is None
    lapsed = lapse(approval, NOW + timedelta(hours=1))
    assert lapsed is not None and lapsed.status is ApprovalStatus.EXPIRED
    with pytest.raises(ApprovalRefusedError) as refused:
        decide(approval, BOB, ALICE, Verdict.APPROVED, NOW + timedelta(hours=2))
    assert refused.value.code == "ApprovalTimedOut"


def test_a_review_is_for_break_glass_requests_and_happens_once() -> None:
    with pytest.raises(ApprovalRefusedError):
        review(pending(), BOB, ALICE, NOW, None)
    glass = replace(pending(), status=ApprovalStatus.BREAK_GLASS, break_glass=True)
    assert glass.needs_review
    reviewed = review(glass, BOB, ALICE, NOW, "seen")
    assert not reviewed.needs_review
    with pytest.raises(ApprovalRefusedError):
        review(reviewed, CAROL, ALICE, NOW, None)


def test_the_approval_state_survives_its_storage_form() -> None:
    approval = decide(pending(), BOB, ALICE, Verdict.APPROVED, NOW, "fine")
    assert from_json(to_json(approval)) == approval


# ---- windows ----


def test_the_window_starts_at_approval_and_never_exceeds_the_policy_maximum(world_grant: Any) -> None:
    later = NOW + timedelta(minutes=30)
    assert opened_window(world_grant, timedelta(hours=3), later) == (later, later + timedelta(hours=1))
    assert opened_window(world_grant, timedelta(minutes=20), later) == (later, later + timedelta(minutes=20))
    scheduled = replace(world_grant, not_before=NOW + timedelta(hours=5), start_time=NOW + timedelta(hours=5))
    start, end = opened_window(
        replace(scheduled, end_time=scheduled.start_time + timedelta(hours=1)), timedelta(hours=3), later
    )
    assert (start, end) == (NOW + timedelta(hours=5), NOW + timedelta(hours=6))


def test_an_extension_stays_within_the_maximum_counted_from_the_start(world_grant: Any) -> None:
    opened = replace(world_grant, status=PortStatus.INITIATED)
    maxima = {opened.grant_id: timedelta(hours=3)}
    check_extension([opened], maxima, NOW + timedelta(hours=3), NOW, timedelta(0))
    with pytest.raises(DomainError) as refused:
        check_extension([opened], maxima, NOW + timedelta(hours=3, minutes=1), NOW, timedelta(0))
    assert (refused.value.field, refused.value.code) == ("endTimeUtc", "DurationTooLong")
    with pytest.raises(DomainError) as earlier:
        check_extension([opened], maxima, NOW + timedelta(minutes=30), NOW, timedelta(0))
    assert earlier.value.code == "NotAnExtension"


@pytest.fixture
def world_grant() -> Any:
    world, _ = world_with(None)
    return InitiateAccess(world.services)(ask()).request.grants[0]


# ---- the actions, with in-memory collaborators ----


def test_an_approval_vm_answers_pending_and_hands_nothing_to_enforcement() -> None:
    world, _ = world_with(TWO_OF)
    stored = InitiateAccess(world.services)(ask()).request
    grant = stored.grants[0]
    assert grant.status is PortStatus.PENDING and not grant.is_open_at(NOW)
    assert wire_status(grant) is WirePortStatus.PENDING
    assert world.notifier.notified == []
    assert "request.pending" in world.audit.names()
    assert [row.request_id for row in world.requests.waiting_requests()] == [stored.record.request_id]


def test_two_distinct_approvals_open_the_grant_with_the_window_starting_then() -> None:
    world, clock = world_with(TWO_OF)
    request_id = InitiateAccess(world.services)(ask()).request.record.request_id
    clock.now = NOW + timedelta(minutes=10)
    after_one = Approvals(world.services, BOB).decide(request_id, Verdict.APPROVED, "ok")
    assert after_one.grants[0].status is PortStatus.PENDING and world.notifier.notified == []
    assert [s.record.request_id for s in Approvals(world.services, CAROL).waiting()] == [request_id]
    assert Approvals(world.services, BOB).waiting() == []  # already decided
    opened = Approvals(world.services, CAROL).decide(request_id, Verdict.APPROVED, None).grants[0]
    assert opened.status is PortStatus.INITIATING
    assert (opened.start_time, opened.end_time) == (clock.now, clock.now + timedelta(hours=1))
    assert world.notifier.notified == [(opened.grant_id, None), (opened.grant_id, opened.end_time)]
    assert world.requests.waiting_requests() == []
    approved = [e for e in world.audit.events if e.event == EventId.REQUEST_APPROVED]
    assert [len(e.details["approvers"]) for e in approved] == [1, 2]
    assert approved[-1].details["opened"] is True


def test_self_and_outsider_decisions_are_refused_and_audited() -> None:
    world, _ = world_with(TWO_OF)
    request_id = InitiateAccess(world.services)(ask()).request.record.request_id
    for who, code in ((ALICE, "SelfApprovalNotAllowed"), (EVE, "NotAnApprover")):
        with pytest.raises(Refusal) as refused:
            Approvals(world.services, who).decide(request_id, Verdict.APPROVED, None)
        assert (refused.value.status, refused.value.code) == (403, code)
    refusals = [e for e in world.audit.events if e.event == EventId.APPROVAL_REFUSED]
    assert [e.details["code"] for e in refusals] == ["SelfApprovalNotAllowed", "NotAnApprover"]


def test_an_approval_after_the_requester_lost_the_role_is_refused() -> None:
    world, _ = world_with({"approvers": [BOB.object_id]})
    request_id = InitiateAccess(world.services)(ask()).request.record.request_id
    world.roles.assignments = [a for a in world.roles.assignments if a.principal_id != ALICE.object_id]
    with pytest.raises(Refusal) as refused:
        Approvals(world.services, BOB).decide(request_id, Verdict.APPROVED, None)
    assert (refused.value.status, refused.value.code) == (403, "RequesterNotAuthorized")
    assert world.requests.get_request(request_id).grants[0].status is PortStatus.PENDING  # type: ignore[union-attr]


def test_a_denial_closes_the_pending_grants_as_denied() -> None:
    world, _ = world_with(TWO_OF)
    request_id = InitiateAccess(world.services)(ask()).request.record.request_id
    grant = Approvals(world.services, BOB).decide(request_id, Verdict.DENIED, "not now").grants[0]
    assert (grant.status, grant.status_reason) == (PortStatus.REVOKED, StatusReason.DENIED)
    assert wire_status(grant) is WirePortStatus.DENIED
    assert world.notifier.notified == []


def test_the_lapse_timer_ends_an_undecided_request_as_expired() -> None:
    world, clock = world_with(TWO_OF)
    request_id = InitiateAccess(world.services)(ask()).request.record.request_id
    assert lapse_due(world.services) == 0
    clock.now = NOW + timedelta(hours=1, seconds=1)
    assert lapse_due(world.services) == 1
    grant = world.requests.get_request(request_id).grants[0]  # type: ignore[union-attr]
    assert (grant.status, grant.status_reason) == (PortStatus.REVOKED, StatusReason.APPROVAL_TIMED_OUT)
    assert wire_status(grant) is WirePortStatus.EXPIRED
    assert EventId.REQUEST_LAPSED in world.audit.names()
    assert world.requests.waiting_requests() == []


def test_break_glass_opens_at_once_names_every_approver_and_waits_for_review() -> None:
    world, _ = world_with({**TWO_OF, "breakGlass": True})
    with pytest.raises(Refusal) as no_reason:
        InitiateAccess(world.services)(ask(breakGlass=True, justification="x"))
    assert no_reason.value.target == "justification"
    stored = InitiateAccess(world.services)(
        ask(breakGlass=True, justification="prod is down, INC-42")
    ).request
    assert stored.grants[0].status is PortStatus.INITIATING and world.notifier.notified
    glass = next(e for e in world.audit.events if e.event == EventId.REQUEST_BREAK_GLASS)
    assert {a["objectId"] for a in glass.details["approvers"]} == {BOB.object_id, CAROL.object_id, GROUP}
    assert stored.record.approval is not None and stored.record.approval.needs_review
    reviewed = Approvals(world.services, BOB).review(stored.record.request_id, "checked")
    assert reviewed.record.approval is not None and not reviewed.record.approval.needs_review


def test_break_glass_is_refused_where_the_policy_does_not_allow_it() -> None:
    world, _ = world_with(TWO_OF)
    with pytest.raises(Refusal) as refused:
        InitiateAccess(world.services)(ask(breakGlass=True, justification="prod is down, INC-42"))
    assert (refused.value.target, refused.value.code) == ("breakGlass", "BreakGlassNotAllowed")


def test_an_extension_without_approval_moves_the_end_in_place() -> None:
    world, clock = world_with(None)
    stored = InitiateAccess(world.services)(ask()).request
    clock.now = NOW + timedelta(minutes=30)
    grant = (
        Approvals(world.services, ALICE).extend(stored.record.request_id, NOW + timedelta(hours=2)).grants[0]
    )
    assert grant.grant_id == stored.grants[0].grant_id and grant.end_time == NOW + timedelta(hours=2)
    assert (grant.grant_id, NOW + timedelta(hours=2)) in world.notifier.notified
    with pytest.raises(Refusal) as too_long:
        Approvals(world.services, ALICE).extend(stored.record.request_id, NOW + timedelta(hours=4))
    assert too_long.value.target == "endTimeUtc"
    with pytest.raises(Refusal) as not_theirs:
        Approvals(world.services, BOB).extend(stored.record.request_id, NOW + timedelta(hours=2, minutes=5))
    assert not_theirs.value.code == "NotTheRequester"


def test_an_extension_on_an_approval_vm_waits_for_approval() -> None:
    world, clock = world_with({"approvers": [BOB.object_id]})
    request_id = InitiateAccess(world.services)(ask()).request.record.request_id
    Approvals(world.services, BOB).decide(request_id, Verdict.APPROVED, None)
    clock.now = NOW + timedelta(minutes=20)
    asked = Approvals(world.services, ALICE).extend(request_id, NOW + timedelta(hours=2))
    assert asked.grants[0].end_time == NOW + timedelta(hours=1)  # unchanged until approved
    assert asked.record.approval is not None and asked.record.approval.waiting
    done = Approvals(world.services, BOB).decide(request_id, Verdict.APPROVED, "fine")
    assert done.grants[0].end_time == NOW + timedelta(hours=2)
    assert done.grants[0].status is PortStatus.INITIATING
    assert EventId.GRANT_EXTENDED in world.audit.names()


def test_a_scheduled_request_opens_nothing_before_its_start() -> None:
    world, _ = world_with(None)
    start = NOW + timedelta(hours=2)
    grant = InitiateAccess(world.services)(ask(start=start, startTimeUtc=start.isoformat())).request.grants[0]
    assert grant.not_before == start and grant.end_time == start + timedelta(hours=1)
    assert not grant.is_open_at(NOW) and grant.is_open_at(start)
    assert (grant.grant_id, start) in world.notifier.notified
    with pytest.raises(Refusal) as past:
        InitiateAccess(world.services)(ask(startTimeUtc=(NOW - timedelta(minutes=1)).isoformat()))
    assert past.value.target == "startTimeUtc"


def test_a_scheduled_request_on_an_approval_vm_can_be_approved_ahead() -> None:
    world, _ = world_with({"approvers": [BOB.object_id], "pendingTimeout": "P1D"})
    start = NOW + timedelta(hours=5)
    request_id = InitiateAccess(world.services)(
        ask(start=start, startTimeUtc=start.isoformat())
    ).request.record.request_id
    grant = Approvals(world.services, BOB).decide(request_id, Verdict.APPROVED, None).grants[0]
    assert (grant.start_time, grant.end_time) == (start, start + timedelta(hours=1))
    assert grant.status is PortStatus.INITIATING and not grant.is_open_at(NOW)


def test_a_withdrawn_request_leaves_the_approvers_list_and_cannot_be_approved() -> None:
    from shared.actions.revoke import RevokeAccess

    world, _ = world_with({"approvers": [BOB.object_id]})
    request_id = InitiateAccess(world.services)(ask()).request.record.request_id
    RevokeAccess(world.services)(request_id, ALICE)
    assert Approvals(world.services, BOB).waiting() == []
    with pytest.raises(Refusal) as refused:
        Approvals(world.services, BOB).decide(request_id, Verdict.APPROVED, None)
    assert (refused.value.status, refused.value.code) == (409, "NothingToDecide")
    assert world.notifier.notified == [(world.requests.get_request(request_id).grants[0].grant_id, None)]  # type: ignore[union-attr]


def test_the_lapse_timer_keeps_an_index_row_whose_request_is_being_written() -> None:
    """The index row goes first; the timer must not forget it while the request row is on its way
    (it did in `make demo`: the request then never showed in the approver's list)."""
    world, _ = world_with({"approvers": [BOB.object_id]})
    request_id = InitiateAccess(world.services)(ask()).request.record.request_id
    record = world.requests.records.pop(request_id)  # as if its transaction had not landed yet
    assert lapse_due(world.services) == 0
    world.requests.records[request_id] = record
    assert [row.request_id for row in world.requests.waiting_requests()] == [request_id]
    assert [s.record.request_id for s in Approvals(world.services, BOB).waiting()] == [request_id]


def test_settling_a_decision_keeps_the_index_row_of_a_newer_extension() -> None:
    """An extension's index row is written ahead of its request row; settling the previous decision
    meanwhile must not drop it (it would vanish from the approvers' list and never lapse)."""
    from shared.actions.approvals import settle

    world, clock = world_with({"approvers": [BOB.object_id]})
    request_id = InitiateAccess(world.services)(ask()).request.record.request_id
    decided = Approvals(world.services, BOB).decide(request_id, Verdict.APPROVED, None)
    clock.now = NOW + timedelta(minutes=5)
    Approvals(world.services, ALICE).extend(request_id, NOW + timedelta(hours=2))
    settle(world.services, decided)  # the approval's settle, arriving late (its view: nothing waits)
    assert [row.request_id for row in world.requests.waiting_requests()] == [request_id]
    assert [s.record.request_id for s in Approvals(world.services, BOB).waiting()] == [request_id]
