"""Audit rows -> CloudEvents 1.0 and Standard Webhooks signatures: pure rules, checked against the
specifications' own definitions (written out here, independently of shared/notify)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.approval import (
    Approval,
    ApprovalStatus,
    Decision,
    Extension,
    Verdict,
    approvers_so_far,
    from_json,
    to_json,
)
from shared.audit import ONCE_PER_SUBJECT, row_id
from shared.events import EventId
from shared.notify.cloudevents import CLOUD_EVENT_TYPES, approval_to_look_up, to_cloud_event
from shared.notify.delivery import HOST_MAX_DEQUEUE_COUNT, retry_pause
from shared.notify.signing import WebhookSecretError, secret_key, sign, signature_headers
from shared.settings import load_settings

pytestmark = pytest.mark.unit

ALICE = {"requester_id": "11111111-1111-1111-1111-111111111111", "requester_name": "alice@contoso.com"}
MOMENT = datetime(2026, 12, 2, 21, 0, 5, 123456, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    event: str
    subject: str
    details: dict[str, Any] = field(default_factory=dict)
    actor: str = "portcullis-converge"
    time: datetime = MOMENT
    id: str = "0123456789abcdef0123456789abcdef"


def test_every_state_change_the_issue_names_has_one_type() -> None:
    states = {t.rsplit(".", 1)[1] for t in CLOUD_EVENT_TYPES.values()}
    wanted = {"requested", "pending", "approved", "denied", "opened", "expiring", "extended"}
    assert wanted | {"revoked", "expired", "failed"} <= states
    assert all(t.startswith("com.portcullis.") for t in CLOUD_EVENT_TYPES.values())
    # Opened once per grant (all targets applied), not once per target.
    assert EventId.GRANT_APPLIED not in CLOUD_EVENT_TYPES
    assert CLOUD_EVENT_TYPES[EventId.GRANT_INITIATED] == "com.portcullis.grant.opened"


def test_the_approvals_events_keep_the_values_issue_13_fixed() -> None:
    fixed = {
        EventId.REQUEST_PENDING: "request.pending",
        EventId.REQUEST_APPROVED: "request.approved",
        EventId.REQUEST_DENIED: "request.denied",
        EventId.REQUEST_LAPSED: "request.lapsed",
        EventId.GRANT_EXTENDED: "grant.extended",
        EventId.REQUEST_BREAK_GLASS: "request.break_glass",
        EventId.REQUEST_REVIEWED: "request.reviewed",
    }
    assert {member: member.value for member in fixed} == fixed
    assert set(fixed) <= set(CLOUD_EVENT_TYPES)


def test_a_grant_event_carries_every_required_cloudevents_attribute() -> None:
    row = Row(
        EventId.GRANT_INITIATED,
        "a" * 32 + "-000",
        {**ALICE, "request": "a" * 32, "connect_address": "203.0.113.4", "connect_port": 50022},
    )
    event = to_cloud_event(row)
    assert event is not None
    assert event["specversion"] == "1.0"
    assert event["id"] == row.id
    assert event["source"] == "/portcullis"  # a URI-reference
    assert event["type"] == "com.portcullis.grant.opened"
    assert event["subject"] == f"/requests/{'a' * 32}/grants/{'a' * 32}-000"
    assert event["datacontenttype"] == "application/json"
    # RFC 3339, UTC.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", event["time"])
    assert datetime.fromisoformat(event["time"].replace("Z", "+00:00")) == MOMENT
    data = event["data"]
    assert data["requester"] == {"objectId": ALICE["requester_id"], "displayName": "alice@contoso.com"}
    assert data["requestId"] == "a" * 32 and data["grantId"] == "a" * 32 + "-000"
    assert data["details"] == {"connect_address": "203.0.113.4", "connect_port": 50022}


def test_a_request_event_names_requester_and_approvers_so_far() -> None:
    approvers = [{"objectId": "b0b", "displayName": "bob@contoso.com"}]
    event = to_cloud_event(
        Row(EventId.REQUEST_APPROVED, "r" * 32, {**ALICE, "approvers": approvers}, actor="b0b")
    )
    assert event is not None
    assert event["type"] == "com.portcullis.request.approved"
    assert event["subject"] == f"/requests/{'r' * 32}"
    assert event["data"]["approvers"] == approvers and event["data"]["actor"] == "b0b"
    assert event["data"]["requester"]["displayName"] == "alice@contoso.com"


def test_a_grant_whose_path_cannot_be_resolved_is_published_as_failed_with_the_reason() -> None:
    """It can never open: a subscriber must hear of it as it hears of a target refusing the rule."""
    row = Row(
        EventId.GRANT_PATH_UNRESOLVED,
        "a" * 32 + "-000",
        {**ALICE, "request": "a" * 32, "vm": "/subscriptions/s/.../vm-gone", "reason": "VM not found"},
    )
    event = to_cloud_event(row)
    assert event is not None
    assert event["type"] == CLOUD_EVENT_TYPES[EventId.GRANT_REFUSED] == "com.portcullis.grant.failed"
    assert event["subject"] == f"/requests/{'a' * 32}/grants/{'a' * 32}-000"
    assert event["data"]["event"] == "grant.path_unresolved"
    assert event["data"]["details"] == {"vm": "/subscriptions/s/.../vm-gone", "reason": "VM not found"}
    assert event["data"]["requester"]["objectId"] == ALICE["requester_id"]


# ---- grant events name who approved their request (issue 13 item 9) ----

BOB = Decision("b0b", "bob@contoso.com", Verdict.APPROVED, MOMENT, "looks fine")
CAROL = Decision("ca401", "carol@contoso.com", Verdict.APPROVED, MOMENT)
DAVE_DENIES = Decision("da7e", "dave@contoso.com", Verdict.DENIED, MOMENT)
GRANT_ROW = Row(EventId.GRANT_INITIATED, "a" * 32 + "-000", {**ALICE, "request": "a" * 32})


def approval(status: ApprovalStatus, *decisions: Decision, **extra: Any) -> Approval:
    return Approval(("b0b", "ca401", "da7e"), 2, MOMENT, status, tuple(decisions), **extra)


def test_the_approvers_of_a_grant_are_who_approved_its_request_so_far() -> None:
    assert approvers_so_far(None) == []  # no approval policy: auto-approved, nobody to name
    bob = {"objectId": "b0b", "displayName": "bob@contoso.com"}
    carol = {"objectId": "ca401", "displayName": "carol@contoso.com"}
    assert approvers_so_far(approval(ApprovalStatus.PENDING)) == []
    assert approvers_so_far(approval(ApprovalStatus.PENDING, BOB)) == [bob]  # one of two so far
    assert approvers_so_far(approval(ApprovalStatus.APPROVED, BOB, CAROL)) == [bob, carol]
    assert approvers_so_far(approval(ApprovalStatus.DENIED, BOB, DAVE_DENIES)) == [bob]  # not the denial
    # An approved extension is named by grant.extended itself, not by the grant's other events.
    extended = approval(
        ApprovalStatus.APPROVED,
        BOB,
        CAROL,
        extension=Extension(MOMENT, MOMENT, MOMENT, ApprovalStatus.APPROVED, (replace(CAROL, comment="x"),)),
    )
    assert approvers_so_far(extended) == [bob, carol]
    # The storage form gives the same answer (the publisher reads it back from the request row).
    assert approvers_so_far(from_json(to_json(extended))) == [bob, carol]


def test_a_break_glass_grant_names_what_its_request_events_name() -> None:
    """`request.break_glass` names every listed approver (ids only) until `request.reviewed` names
    the reviewer: a grant of it says the same."""
    glass = approval(ApprovalStatus.BREAK_GLASS, break_glass=True)
    assert approvers_so_far(glass) == [
        {"objectId": "b0b", "displayName": ""},
        {"objectId": "ca401", "displayName": ""},
        {"objectId": "da7e", "displayName": ""},
    ]
    reviewed = replace(glass, review=replace(CAROL, verdict=Verdict.REVIEWED))
    assert approvers_so_far(reviewed) == [{"objectId": "ca401", "displayName": "carol@contoso.com"}]


def test_only_published_grant_rows_that_name_no_approvers_look_their_request_up() -> None:
    assert approval_to_look_up(GRANT_ROW) == "a" * 32
    for name in (EventId.GRANT_REVOKED, EventId.GRANT_EXPIRED, EventId.GRANT_EXPIRING, EventId.GRANT_REFUSED):
        assert approval_to_look_up(replace(GRANT_ROW, event=name)) == "a" * 32
    # grant.extended names the extension's approvers itself (none when it needed no approval).
    extended = Row(EventId.GRANT_EXTENDED, GRANT_ROW.subject, {**GRANT_ROW.details, "approvers": []})
    assert approval_to_look_up(extended) is None
    assert approval_to_look_up(replace(GRANT_ROW, event=EventId.GRANT_APPLIED)) is None  # not published
    assert approval_to_look_up(Row(EventId.REQUEST_APPROVED, "r" * 32, {**ALICE, "approvers": []})) is None
    assert approval_to_look_up(Row(EventId.REQUEST_ACCEPTED, "r" * 32, dict(ALICE))) is None
    assert approval_to_look_up(Row(EventId.GRANT_INITIATED, GRANT_ROW.subject, dict(ALICE))) is None


def test_looked_up_approvers_fill_a_grant_event_but_never_replace_the_rows_own() -> None:
    bob = {"objectId": "b0b", "displayName": "bob@contoso.com"}
    opened = to_cloud_event(GRANT_ROW, [bob])
    assert opened is not None and opened["data"]["approvers"] == [bob]
    assert "approvers" not in opened["data"]["details"]
    unread = to_cloud_event(GRANT_ROW)
    assert unread is not None and unread["data"]["approvers"] == []
    extended = Row(EventId.GRANT_EXTENDED, GRANT_ROW.subject, {**GRANT_ROW.details, "approvers": []})
    event = to_cloud_event(extended, [bob])
    assert event is not None and event["data"]["approvers"] == []


def test_facts_that_happen_once_per_subject_keep_their_id_when_recorded_again() -> None:
    """The CloudEvent id (= webhook-id) of a re-recorded `requested` is the first one's; other rows
    get a fresh id each."""
    request = "r" * 32
    assert row_id(EventId.REQUEST_ACCEPTED, request) == row_id(EventId.REQUEST_ACCEPTED, request)
    assert row_id(EventId.REQUEST_ACCEPTED, request) != row_id(EventId.REQUEST_ACCEPTED, "s" * 32)
    assert row_id(EventId.GRANT_PATH_UNRESOLVED, request) != row_id(EventId.REQUEST_ACCEPTED, request)
    assert row_id(EventId.REQUEST_APPROVED, request) != row_id(EventId.REQUEST_APPROVED, request)
    assert EventId.REQUEST_PENDING not in ONCE_PER_SUBJECT  # an extension waits again
    assert re.fullmatch(r"[0-9a-f]{32}", row_id(EventId.REQUEST_ACCEPTED, request))


def test_the_host_poison_threshold_is_the_one_in_host_json() -> None:
    """Storage-poisoned deliveries are audited on the host's last try: the two numbers must agree."""
    host = json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text(encoding="utf-8"))
    assert host["extensions"]["queues"]["maxDequeueCount"] == HOST_MAX_DEQUEUE_COUNT


def test_rows_that_are_not_state_changes_publish_nothing() -> None:
    for name in (EventId.GRANT_APPLIED, EventId.TARGET_CONVERGED, EventId.NOTIFY_DELIVERY_POISONED):
        assert to_cloud_event(Row(name, "x")) is None


# ---- Standard Webhooks, from the spec: base64(HMAC-SHA256(key, "{id}.{ts}.{body}")), "v1,<sig>" ----


def independent_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.split("_", 1)[1])
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def test_signature_matches_the_specifications_test_vector() -> None:
    # The example of the Standard Webhooks reference libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = sign(secret_key(secret), "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert signature == independent_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)


def test_headers_carry_id_timestamp_and_signature() -> None:
    secret = "whsec_" + base64.b64encode(bytes(range(32))).decode()
    headers = signature_headers(secret_key(secret), "evt-1", 1700000000, b"{}")
    assert headers == {
        "webhook-id": "evt-1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": independent_signature(secret, "evt-1", 1700000000, b"{}"),
    }


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"),
        ("whsec_not base64!", "base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "24-64 bytes"),
    ],
)
def test_bad_secrets_are_refused_with_the_reason(secret: str, reason: str) -> None:
    with pytest.raises(WebhookSecretError, match=reason):
        secret_key(secret)


def test_retries_back_off_doubling_up_to_an_hour() -> None:
    settings = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert [retry_pause(settings, n) for n in (1, 2, 3)] == [timedelta(seconds=s) for s in (30, 60, 120)]
    assert retry_pause(settings, 12) == timedelta(hours=1)
