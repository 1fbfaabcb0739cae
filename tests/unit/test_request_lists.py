"""`GET /api/requests`'s lists as pure rules and actions with the in-memory collaborators: which list a
query asks for (and the 400/403 naming the parameter otherwise), what counts as active, the caller's
own requests a page at a time, and the break-glass requests awaiting the caller's review. The same
through the host, Azurite and the emulator: tests/integration/test_approvals_host.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from shared.actions.approvals import Approvals
from shared.actions.initiate import InitiateAccess
from shared.actions.refusal import Refusal
from shared.actions.request_lists import (
    SKIP_TOKEN,
    RequestListKind,
    RequestListQuery,
    is_active,
    my_requests,
    parse_request_list_query,
)
from shared.actions.revoke import RevokeAccess
from shared.api.approvals import next_link
from shared.authz import INITIATE_ACTION
from shared.grants import is_requester_cursor
from tests.unit.test_approvals import ALICE, BOB, DAVE, GROUP, NOW, TWO_OF, ask, world_with

pytestmark = pytest.mark.unit


def parse(**params: str) -> RequestListQuery:
    return parse_request_list_query(params.get, ALICE)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"requester": "me"}, RequestListQuery(RequestListKind.MINE)),
        ({"requester": "ME", "active": "True"}, RequestListQuery(RequestListKind.MINE, active=True)),
        ({"requester": ALICE.object_id.upper()}, RequestListQuery(RequestListKind.MINE)),
        (
            {"requester": "me", SKIP_TOKEN: f"{'9' * 17}|{'a' * 32}"},
            RequestListQuery(RequestListKind.MINE, cursor=f"{'9' * 17}|{'a' * 32}"),
        ),
        ({"status": "Pending", "approver": "me"}, RequestListQuery(RequestListKind.PENDING)),
        ({"status": "ReviewRequired", "approver": "me"}, RequestListQuery(RequestListKind.REVIEW_REQUIRED)),
    ],
)
def test_each_list_is_told_by_its_parameters(params: dict[str, str], expected: RequestListQuery) -> None:
    assert parse(**params) == expected


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "status"),
        ({"status": "Approved", "approver": "me"}, "status"),
        ({"status": "pending", "approver": "me"}, "status"),
        ({"status": "Pending"}, "approver"),
        ({"status": "ReviewRequired", "approver": BOB.object_id}, "approver"),
        ({"approver": "me"}, "status"),
        ({"requester": "me", "status": "Pending"}, "status"),
        ({"requester": "me", "approver": "me"}, "approver"),
        ({"requester": "alice"}, "requester"),
        ({"requester": ""}, "requester"),
        ({"requester": "me", "active": "yes"}, "active"),
        ({"requester": "me", SKIP_TOKEN: "page2"}, SKIP_TOKEN),
        ({"status": "Pending", "approver": "me", "active": "true"}, "active"),
        ({"status": "Pending", "approver": "me", SKIP_TOKEN: f"{'9' * 17}|{'a' * 32}"}, SKIP_TOKEN),
    ],
)
def test_an_unknown_value_or_a_mix_is_a_400_naming_the_parameter(params: dict[str, str], field: str) -> None:
    with pytest.raises(Refusal) as refused:
        parse(**params)
    assert (refused.value.status, refused.value.target) == (400, field)


def test_someone_elses_object_id_as_requester_is_a_403() -> None:
    with pytest.raises(Refusal) as refused:
        parse(requester=BOB.object_id)
    assert (refused.value.status, refused.value.target) == (403, "requester")


def test_next_link_carries_the_cursor_and_the_active_flag() -> None:
    cursor = f"{'9' * 17}|{'a' * 32}"
    link = next_link(RequestListQuery(RequestListKind.MINE, active=True), cursor)
    assert link == f"/api/requests?requester=me&active=true&%24skipToken={'9' * 17}%7C{'a' * 32}"
    assert is_requester_cursor(cursor) and not is_requester_cursor(cursor + "x")


def test_my_requests_are_mine_only_newest_first_and_paged() -> None:
    world, clock = world_with(None)
    world.roles.grant(BOB.object_id, f"/subscriptions/{ask().policy.subscription_id}", INITIATE_ACTION)
    made = []
    for minutes in range(5):
        clock.now = NOW + timedelta(minutes=minutes)
        made.append(InitiateAccess(world.services)(ask(start=clock.now)).request.record.request_id)
    bob = InitiateAccess(world.services)(replace(ask(start=clock.now), requester=BOB))
    first = world.requests.list_for_requester(ALICE.object_id, limit=2)
    assert [s.record.request_id for s in first.requests] == made[::-1][:2]
    assert first.cursor is not None
    second = world.requests.list_for_requester(ALICE.object_id, after=first.cursor, limit=2)
    third = world.requests.list_for_requester(ALICE.object_id, after=second.cursor, limit=2)
    seen = [s.record.request_id for page in (first, second, third) for s in page.requests]
    assert seen == made[::-1] and third.cursor is None
    assert bob.request.record.request_id not in seen


def test_active_means_open_scheduled_or_waiting_for_approval() -> None:
    world, _ = world_with({"approvers": [BOB.object_id]})
    waiting = InitiateAccess(world.services)(ask()).request
    withdrawn = InitiateAccess(world.services)(ask()).request
    RevokeAccess(world.services)(withdrawn.record.request_id, ALICE)
    assert is_active(waiting, NOW)
    assert not is_active(world.requests.get_request(withdrawn.record.request_id), NOW)  # type: ignore[arg-type]
    mine = my_requests(world.services, ALICE, RequestListQuery(RequestListKind.MINE, active=True))
    assert [s.record.request_id for s in mine.requests] == [waiting.record.request_id]
    everything = my_requests(world.services, ALICE, RequestListQuery(RequestListKind.MINE))
    assert len(everything.requests) == 2
    world_open, _ = world_with(None)
    opened = InitiateAccess(world_open.services)(ask(hours=1)).request
    assert is_active(opened, NOW + timedelta(minutes=59)) and not is_active(opened, NOW + timedelta(hours=1))


def test_break_glass_awaits_review_of_listed_approvers_until_one_reviews() -> None:
    world, _ = world_with({**TWO_OF, "breakGlass": True})
    glass = InitiateAccess(world.services)(ask(breakGlass=True, justification="prod is down, INC-42")).request
    InitiateAccess(world.services)(ask())  # an ordinary pending request: not a review
    request_id = glass.record.request_id
    assert [s.record.request_id for s in Approvals(world.services, BOB).awaiting_review()] == [request_id]
    assert [s.record.request_id for s in Approvals(world.services, DAVE).awaiting_review()] == [request_id]
    assert GROUP in glass.record.approval.approvers  # type: ignore[union-attr]
    assert Approvals(world.services, ALICE).awaiting_review() == []  # the requester reviews nothing
    Approvals(world.services, DAVE).review(request_id, "seen")
    assert Approvals(world.services, BOB).awaiting_review() == []
    assert world.requests.reviews_awaited() == []


def test_a_review_row_left_behind_by_a_crash_is_dropped_by_the_next_reader() -> None:
    world, _ = world_with({**TWO_OF, "breakGlass": True})
    glass = InitiateAccess(world.services)(ask(breakGlass=True, justification="prod is down, INC-42")).request
    row = world.requests.reviews[glass.record.request_id]
    Approvals(world.services, BOB).review(glass.record.request_id, None)
    world.requests.reviews[row.request_id] = row  # as if the process died before the delete
    assert Approvals(world.services, DAVE).awaiting_review() == []
    assert world.requests.reviews_awaited() == []
