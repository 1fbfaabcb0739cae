"""Notifications on real Azurite queues and real HTTP: an audit row of a state change becomes one
CloudEvent per channel on the events queue; the queue handler delivers it to a webhook (Standard
Webhooks signature, verified here independently of the app) and to Event Grid through the real
azure-eventgrid client; a failing webhook is retried on its own schedule and poisoned with an audit
row while the other channel is served once. Follow-ups: a grant whose VM path cannot be resolved
(real converge against the emulator) is published once as `grant.failed`; a retried `requested`
write reaches receivers with one webhook-id; a delivery the host poisons because our storage failed
is audited."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import AzureError, ServiceResponseError
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from localrig.credentials import StaticTokenCredential
from localrig.devusers import ALICE, BOB
from localrig.processes import free_port
from localrig.webhook_sink import WebhookSink, start_sink
from shared import enforcement
from shared.approval import Approval, ApprovalStatus, Decision, Verdict
from shared.audit import TableAuditTrail
from shared.events import EventId
from shared.grants import RequestRecord, TableGrantStore, grant_id, new_request_id
from shared.model import Grant, PolicyRef, PortStatus, Principal, PrincipalSource, TransportProtocol, VmRef
from shared.notify.channels import build_channels
from shared.notify.cloudevents import grant_context, requester_details
from shared.notify.delivery import HOST_MAX_DEQUEUE_COUNT, Notifier, handle_event_message, poison_queue_name
from shared.notify.expiring import announce_expiring
from shared.notify.messages import parse_event_delivery
from shared.notify.publisher import EventPublisher
from shared.settings import Settings, load_settings
from shared.storage import queue

from .conftest import World

REQUEST = "f" * 32
GRANT = f"{REQUEST}-000"


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    running = start_sink()
    try:
        yield running
    finally:
        running.stop()


def settings_for(storage_env: dict[str, str], sink: WebhookSink, webhook_path: str, **extra: str) -> Settings:
    return load_settings(
        {
            **storage_env,
            "PORTCULLIS_EVENTS_QUEUE": f"ev-{uuid.uuid4().hex[:12]}",
            "PORTCULLIS_WEBHOOK_URLS": f"{sink.url}{webhook_path}",
            "PORTCULLIS_WEBHOOK_SECRET": sink.secret,
            "PORTCULLIS_EVENTGRID_TOPIC_ENDPOINT": sink.eventgrid_endpoint,
            **extra,
        }
    )


def wire(settings: Settings) -> tuple[TableAuditTrail, Notifier, QueueClient, QueueClient]:
    events = queue(settings.events_queue, settings)
    poison = queue(poison_queue_name(settings.events_queue), settings)
    audit = TableAuditTrail(settings, on_recorded=EventPublisher(settings, lambda: events))
    notifier = Notifier(
        settings=settings,
        channels=build_channels(settings, StaticTokenCredential),
        events_queue=lambda: events,
        poison_queue=lambda: poison,
        audit=audit,
        now=lambda: datetime.now(UTC),
    )
    return audit, notifier, events, poison


def run_queue(events: QueueClient, notifier: Notifier, until: float) -> None:
    """What the `jit_events` trigger does, until the queue stays empty (or `until`)."""
    while time.monotonic() < until:
        batch = list(events.receive_messages(max_messages=16, visibility_timeout=30))
        for message in batch:
            handle_event_message(message.content, notifier)
            events.delete_message(message)
        if not batch:
            if events.get_queue_properties().approximate_message_count == 0:
                return
            time.sleep(0.2)


def record_opened(audit: TableAuditTrail) -> None:
    alice = Principal(ALICE.object_id, ALICE.display_name, PrincipalSource.EASY_AUTH)
    audit.record(
        EventId.GRANT_INITIATED,
        subject=GRANT,
        actor="portcullis-converge",
        request=REQUEST,
        **requester_details(alice),
        connect_address="203.0.113.4",
        connect_port=22,
    )


def standard_webhooks_valid(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The specification's check, written here from it (not shared/notify, not the sink)."""
    key = base64.b64decode(secret[len("whsec_") :])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if s.startswith("v1,")]
    fresh = abs(time.time() - int(headers["webhook-timestamp"])) < 300
    return fresh and any(hmac.compare_digest(expected, sig) for sig in offered)


def test_a_state_change_reaches_each_channel_once_signed_and_as_a_cloudevent(
    storage_env: dict[str, str], sink: WebhookSink, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(storage_env, sink, "/hooks/team-channel")
    audit, notifier, events, _ = wire(settings)

    record_opened(audit)
    audit.record(
        EventId.GRANT_APPLIED, subject=GRANT, actor="portcullis-converge", target="t"
    )  # not a change
    queued = [parse_event_delivery(m.content) for m in events.peek_messages(max_messages=32)]
    assert sorted(m.channel.split(":")[0] for m in queued) == ["eventgrid", "webhook"]  # one per channel

    run_queue(events, notifier, time.monotonic() + 20)

    received = sink.received()
    assert sorted(r["channel"] for r in received) == ["eventgrid", "webhook"]
    hook = next(r for r in received if r["channel"] == "webhook")
    assert standard_webhooks_valid(sink.secret, hook["headers"], hook["body"].encode())
    assert not standard_webhooks_valid(
        "whsec_" + base64.b64encode(b"x" * 32).decode(), hook["headers"], hook["body"].encode()
    )
    assert hook["headers"]["content-type"].startswith("application/cloudevents+json")
    event = json.loads(hook["body"])
    assert hook["headers"]["webhook-id"] == event["id"]
    assert {k: event[k] for k in ("specversion", "source", "type", "subject", "datacontenttype")} == {
        "specversion": "1.0",
        "source": "/portcullis",
        "type": "com.portcullis.grant.opened",
        "subject": f"/requests/{REQUEST}/grants/{GRANT}",
        "datacontenttype": "application/json",
    }
    assert (
        abs(datetime.fromisoformat(event["time"].replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds()
        < 60
    )
    assert event["data"]["requester"] == {"objectId": ALICE.object_id, "displayName": ALICE.display_name}
    # The row's own id: the audit trail and the event can be matched.
    assert event["id"] in [row.id for row in audit.for_subject(GRANT) if row.event == EventId.GRANT_INITIATED]

    grid = next(r for r in received if r["channel"] == "eventgrid")["event"]
    assert {k: grid[k] for k in ("id", "type", "subject", "source", "specversion")} == {
        k: event[k] for k in ("id", "type", "subject", "source", "specversion")
    }
    assert grid["data"]["requester"]["displayName"] == ALICE.display_name

    # What `make demo` prints from the sink.
    sink.print_received(REQUEST)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all("com.portcullis.grant.opened" in line for line in lines)
    assert any(line.startswith("  webhook") and line.endswith("signed") for line in lines)
    assert all(f"requester={ALICE.display_name}" in line for line in lines)
    sink.print_received("0" * 32)
    assert capsys.readouterr().out == ""


def test_a_failing_webhook_is_retried_alone_then_poisoned_and_audited(
    storage_env: dict[str, str], sink: WebhookSink
) -> None:
    settings = settings_for(
        storage_env,
        sink,
        "/hooks/fail/500?sig=credential-in-the-url",
        PORTCULLIS_EVENTS_MAX_ATTEMPTS="3",
        PORTCULLIS_EVENTS_RETRY_SECONDS="1",
    )
    audit, notifier, events, poison = wire(settings)
    bob = Principal(BOB.object_id, BOB.display_name, PrincipalSource.EASY_AUTH)
    audit.record(
        EventId.REQUEST_APPROVED,
        subject=REQUEST,
        actor=bob.object_id,
        **requester_details(Principal(ALICE.object_id, ALICE.display_name, PrincipalSource.EASY_AUTH)),
        approvers=[{"objectId": bob.object_id, "displayName": bob.display_name}],
    )
    started = time.monotonic()
    run_queue(events, notifier, started + 30)

    hooks = [r for r in sink.received() if r["channel"] == "webhook"]
    grid = [r for r in sink.received() if r["channel"] == "eventgrid"]
    assert len(hooks) == 3 and len(grid) == 1  # the healthy channel was served once, at once
    assert len({h["headers"]["webhook-id"] for h in hooks}) == 1  # one event, retried
    assert all(standard_webhooks_valid(sink.secret, h["headers"], h["body"].encode()) for h in hooks)
    assert time.monotonic() - started >= 1 + 2  # the pauses: 1 s, then 2 s
    assert grid[0]["event"]["data"]["approvers"] == [
        {"objectId": BOB.object_id, "displayName": BOB.display_name}
    ]

    poisoned = [parse_event_delivery(m.content) for m in poison.peek_messages(max_messages=32)]
    assert [(p.attempt, p.event["type"]) for p in poisoned] == [(3, "com.portcullis.request.approved")]
    failures = [row for row in audit.for_subject(REQUEST) if row.event == EventId.NOTIFY_DELIVERY_POISONED]
    assert len(failures) == 1
    details = failures[0].details
    assert details["attempts"] == 3 and details["reason"].startswith("HTTP 500")
    assert details["endpoint"] == sink.url.removeprefix("http://")
    assert details["poison_queue"] == poison_queue_name(settings.events_queue)
    # The webhook URL may carry a credential: it is in no queue message, detail or poisoned body.
    assert "credential-in-the-url" not in json.dumps(details)
    assert all("credential-in-the-url" not in m.model_dump_json() for m in poisoned)


def test_an_unreachable_events_queue_never_fails_the_state_change(
    storage_env: dict[str, str], sink: WebhookSink, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(storage_env, sink, "/hooks/team-channel")
    # A real queue client on a port where nothing listens: the send fails as storage would.
    connection = ";".join(
        f"QueueEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1"
        if part.startswith("QueueEndpoint=")
        else part
        for part in storage_env["AzureWebJobsStorage"].split(";")
    )
    assert "QueueEndpoint=" in connection
    dead = QueueClient.from_connection_string(connection, "jit-events", retry_total=0, connection_timeout=2)
    audit = TableAuditTrail(settings, on_recorded=EventPublisher(settings, lambda: dead))
    record_opened(audit)  # returns: the state change is recorded even though nothing could be enqueued
    assert [row.event for row in audit.for_subject(GRANT)] == [EventId.GRANT_INITIATED]
    assert EventId.NOTIFY_ENQUEUE_FAILED.value in caplog.text


def test_expiring_is_announced_once_for_open_grants_ending_within_ten_minutes(
    storage_env: dict[str, str], sink: WebhookSink
) -> None:
    settings = settings_for(storage_env, sink, "/hooks/team-channel")
    audit, notifier, events, _ = wire(settings)
    store = TableGrantStore(settings)
    now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    alice = Principal(ALICE.object_id, ALICE.display_name, PrincipalSource.EASY_AUTH)
    policy = PolicyRef("00000000-0000-0000-0000-0000000000a1", "rg1", "westeurope", "default")
    request_id = new_request_id()
    ends = {
        22: timedelta(minutes=9),
        80: timedelta(minutes=11),
        443: timedelta(minutes=5),
        3389: timedelta(minutes=-1),
    }
    grants = [
        Grant(
            grant_id=grant_id(request_id, index),
            request_id=request_id,
            policy=policy,
            vm=VmRef(policy.subscription_id, "rg1", "vm1"),
            port=port,
            protocol=TransportProtocol.TCP,
            source_prefixes=("203.0.113.7/32",),
            start_time=now - timedelta(hours=1),
            end_time=now + end,
            requester=alice,
            justification="debugging",
            ticket_id=None,
        )
        for index, (port, end) in enumerate(ends.items())
    ]
    store.create_request(RequestRecord(request_id, policy, alice, now, "debugging", None, "fp"), grants)
    for grant in grants[:2] + grants[3:]:  # 443 stays Initiating: nothing is open to announce
        store.update(replace(store.get(grant.grant_id) or grant, status=PortStatus.INITIATED))

    assert announce_expiring(store, audit, lambda: now) == [grants[0].grant_id]  # 22: 9 minutes left
    assert announce_expiring(store, audit, lambda: now + timedelta(seconds=60)) == []  # once
    assert announce_expiring(store, audit, lambda: now + timedelta(minutes=2)) == [grants[1].grant_id]

    run_queue(events, notifier, time.monotonic() + 20)
    expiring = [r["event"] for r in sink.received() if r["channel"] == "webhook"]
    assert [e["type"] for e in expiring] == ["com.portcullis.grant.expiring"] * 2
    assert expiring[0]["data"]["details"]["minutes_left"] == 9
    assert expiring[0]["data"]["requester"]["objectId"] == ALICE.object_id


# ---- issue 13 item 9: a grant event names who approved its request ----


def test_a_grant_event_names_its_requests_approvers_and_a_failed_read_still_publishes(
    storage_env: dict[str, str], sink: WebhookSink, caplog: pytest.LogCaptureFixture
) -> None:
    """The publisher reads the approval from the real request row in Azurite (once per event): bob's
    approval is named on `grant.opened`; a grant whose request row is gone names nobody; a request
    row that cannot be read (a table endpoint that accepts and never answers) costs the state change
    one bounded try, and the event still goes out, with no approvers and a logged reason."""
    settings = settings_for(storage_env, sink, "/hooks/team-channel")
    events = queue(settings.events_queue, settings)
    store = TableGrantStore(settings)
    audit = TableAuditTrail(
        settings, on_recorded=EventPublisher(settings, lambda: events, approval_of=store.get_approval)
    )
    now = datetime.now(UTC)
    alice = Principal(ALICE.object_id, ALICE.display_name, PrincipalSource.EASY_AUTH)
    policy = PolicyRef("00000000-0000-0000-0000-0000000000a1", "rg1", "westeurope", "default")
    approved = Approval(
        (BOB.object_id,),
        1,
        now + timedelta(hours=1),
        ApprovalStatus.APPROVED,
        (Decision(BOB.object_id, BOB.display_name, Verdict.APPROVED, now, "looks fine"),),
    )
    request_id = new_request_id()
    grant = Grant(
        grant_id=grant_id(request_id, 0),
        request_id=request_id,
        policy=policy,
        vm=VmRef(policy.subscription_id, "rg1", "vm1"),
        port=22,
        protocol=TransportProtocol.TCP,
        source_prefixes=("203.0.113.7/32",),
        start_time=now,
        end_time=now + timedelta(minutes=30),
        requester=alice,
        justification="debugging",
        ticket_id=None,
    )
    record = RequestRecord(request_id, policy, alice, now, "debugging", None, "fp", approval=approved)
    store.create_request(record, [grant])

    def published(grant: Grant) -> dict[str, Any]:
        for message in events.peek_messages(max_messages=32):
            delivery = parse_event_delivery(message.content)
            if (
                delivery.channel.startswith("webhook:")
                and delivery.event["data"]["grantId"] == grant.grant_id
            ):
                return delivery.event
        raise AssertionError(f"no event for {grant.grant_id}")

    audit.record(
        EventId.GRANT_INITIATED, subject=grant.grant_id, actor="portcullis-converge", **grant_context(grant)
    )
    bob = {"objectId": BOB.object_id, "displayName": BOB.display_name}
    assert published(grant)["data"]["approvers"] == [bob]

    orphan = replace(grant, request_id=new_request_id(), grant_id=grant_id(new_request_id(), 0))
    audit.record(
        EventId.GRANT_EXPIRED, subject=orphan.grant_id, actor="portcullis-converge", **grant_context(orphan)
    )
    assert published(orphan)["data"]["approvers"] == []
    assert EventId.NOTIFY_APPROVERS_UNREAD.value not in caplog.text

    with socket.create_server(("127.0.0.1", 0), backlog=8) as silent:  # accepts, never answers
        connection = ";".join(
            f"TableEndpoint=http://127.0.0.1:{silent.getsockname()[1]}/devstoreaccount1"
            if part.startswith("TableEndpoint=")
            else part
            for part in storage_env["AzureWebJobsStorage"].split(";")
        )
        store._grants = TableClient.from_connection_string(connection, "grants")  # type: ignore[assignment]
        started = time.monotonic()
        audit.record(
            EventId.GRANT_REVOKED, subject=grant.grant_id, actor=alice.object_id, **grant_context(grant)
        )
        waited = time.monotonic() - started
    revoked = [
        parse_event_delivery(m.content).event
        for m in events.peek_messages(max_messages=32)
        if parse_event_delivery(m.content).event["type"] == "com.portcullis.grant.revoked"
    ]
    assert revoked and all(e["data"]["approvers"] == [] for e in revoked)
    assert EventId.NOTIFY_APPROVERS_UNREAD.value in caplog.text
    assert waited < 8, f"the unread approvers held the state change up {waited:.1f} s"
    print(f"an unanswered approvers read held the revoke's audit write up {waited:.2f} s")


# ---- issue 13 follow-ups: a grant that cannot open, retried audit writes, storage-poisoned deliveries ----


def test_a_grant_whose_vm_path_cannot_be_resolved_is_published_once_as_failed_with_the_reason(
    world_factory: Callable[..., World], storage_env: dict[str, str], sink: WebhookSink
) -> None:
    """Real converge against the ARM emulator: the grant's VM does not exist, so it can never open.
    Subscribers hear `grant.failed` with the reason, once, though every pass meets the grant again."""
    settings = settings_for(storage_env, sink, "/hooks/team-channel")
    world = world_factory(env=settings_env_of(settings, sink))
    audit, notifier, events, _ = wire(world.settings)
    deps = replace(world.deps, audit=audit)
    grant = world.request("vm-ghost")
    for _ in range(3):  # the hint, then two reconcile passes meeting the open pathless grant again
        enforcement.handle_grant(deps, grant.grant_id)
    rows = [row for row in audit.for_subject(grant.grant_id) if row.event == EventId.GRANT_PATH_UNRESOLVED]
    assert len(rows) == 1 and "vm-ghost" in str(rows[0].details["reason"]).lower()

    run_queue(events, notifier, time.monotonic() + 20)
    hooks = [r for r in sink.received() if r["channel"] == "webhook"]
    assert len(hooks) == 1
    assert standard_webhooks_valid(sink.secret, hooks[0]["headers"], hooks[0]["body"].encode())
    event = hooks[0]["event"]
    assert event["type"] == "com.portcullis.grant.failed"
    assert event["subject"] == f"/requests/{grant.request_id}/grants/{grant.grant_id}"
    assert event["data"]["event"] == "grant.path_unresolved"
    assert "vm-ghost" in event["data"]["details"]["reason"].lower()
    assert event["data"]["requester"]["objectId"] == grant.requester.object_id
    assert hooks[0]["headers"]["webhook-id"] == event["id"] == rows[0].id


def settings_env_of(settings: Settings, sink: WebhookSink) -> dict[str, str]:
    return {
        "PORTCULLIS_EVENTS_QUEUE": settings.events_queue,
        "PORTCULLIS_WEBHOOK_URLS": ",".join(settings.webhook_urls),
        "PORTCULLIS_WEBHOOK_SECRET": sink.secret,
    }


class AnswerLostOnce:
    """A real Table client whose first create lands in Azurite but whose answer is lost (as when a
    connection drops after the write): what makes a caller retry an audit write that happened."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.lost = 0

    def create_entity(self, entity: dict[str, Any]) -> Any:
        written = self._client.create_entity(entity)
        if not self.lost:
            self.lost += 1
            raise ServiceResponseError("connection reset after the write")
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_retried_requested_write_reaches_receivers_with_the_same_webhook_id(
    storage_env: dict[str, str], sink: WebhookSink
) -> None:
    """`requested` is recorded again when a delivery is retried after storage failed part-way (see
    shared/actions/initiate.py's resend). The first attempt's answer is lost after its row landed:
    the retry finds its own row and still publishes; a later re-record (a redelivered message) keeps
    the id. Receivers get one webhook-id for the one fact and can deduplicate (Standard Webhooks)."""
    settings = settings_for(storage_env, sink, "/hooks/team-channel")
    _, notifier, events, _ = wire(settings)
    moments = iter(
        [datetime(2030, 1, 1, 12, 0, tzinfo=UTC)] * 2 + [datetime(2030, 1, 1, 12, 0, 5, tzinfo=UTC)] * 2
    )
    audit = TableAuditTrail(
        settings, lambda: next(moments), on_recorded=EventPublisher(settings, lambda: events)
    )
    flaky = AnswerLostOnce(audit._by_subject)
    audit._by_subject = flaky  # type: ignore[assignment]
    alice = Principal(ALICE.object_id, ALICE.display_name, PrincipalSource.EASY_AUTH)

    def requested(request_id: str) -> None:
        audit.record(
            EventId.REQUEST_ACCEPTED, subject=request_id, actor=alice.object_id, **requester_details(alice)
        )

    with pytest.raises(ServiceResponseError):
        requested(REQUEST)  # both rows landed; the caller saw a failure and nothing was published
    assert events.peek_messages(max_messages=32) == []
    requested(REQUEST)  # the caller's retry, same moment: finds its own rows, publishes
    requested(REQUEST)  # a redelivery later on: a new row, the same fact
    other = "e" * 32
    requested(other)
    rows = [row for row in audit.for_subject(REQUEST) if row.event == EventId.REQUEST_ACCEPTED]
    assert len(rows) == 2 and len({row.id for row in rows}) == 1  # one row per moment, one id

    run_queue(events, notifier, time.monotonic() + 20)
    hooks = [r for r in sink.received() if r["channel"] == "webhook"]
    ids = [(h["event"]["data"]["requestId"], h["headers"]["webhook-id"]) for h in hooks]
    assert sorted(ids) == sorted([(REQUEST, rows[0].id), (REQUEST, rows[0].id), (other, ids[-1][1])])
    assert ids[-1][1] != rows[0].id
    assert all(h["event"]["id"] == h["headers"]["webhook-id"] for h in hooks)
    assert all(standard_webhooks_valid(sink.secret, h["headers"], h["body"].encode()) for h in hooks)
    # Event Grid gets the same id too (CloudEvents: source + id identify an event).
    grid = [r["event"]["id"] for r in sink.received() if r["channel"] == "eventgrid"]
    assert grid.count(rows[0].id) == 2


def test_a_delivery_the_host_poisons_because_our_storage_failed_is_audited(
    storage_env: dict[str, str], sink: WebhookSink
) -> None:
    """The endpoint fails, and the retry cannot be enqueued (the queue service is unreachable): the
    handler raises so the host retries; on the host's last try the loss is audited (cause storage)."""
    settings = settings_for(storage_env, sink, "/hooks/fail/503")
    audit, notifier, events, _ = wire(settings)
    record_opened(audit)
    raw = next(
        m.content
        for m in events.peek_messages(max_messages=32)
        if parse_event_delivery(m.content).channel.startswith("webhook:")
    )
    connection = ";".join(
        f"QueueEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1"
        if part.startswith("QueueEndpoint=")
        else part
        for part in storage_env["AzureWebJobsStorage"].split(";")
    )
    dead = QueueClient.from_connection_string(connection, "jit-events", retry_total=0, connection_timeout=2)
    broken = replace(notifier, events_queue=lambda: dead)

    def poisoned() -> list[Any]:
        return [row for row in audit.for_subject(GRANT) if row.event == EventId.NOTIFY_DELIVERY_POISONED]

    for dequeue_count in range(1, HOST_MAX_DEQUEUE_COUNT):
        with pytest.raises(AzureError):
            handle_event_message(raw, broken, dequeue_count)
    assert poisoned() == []  # the host still retries: nothing lost yet
    with pytest.raises(AzureError):
        handle_event_message(raw, broken, HOST_MAX_DEQUEUE_COUNT)
    [row] = poisoned()
    event = parse_event_delivery(raw).event
    assert row.details["cause"] == "storage" and row.details["reason"].startswith("storage failed")
    assert row.details["event_id"] == event["id"] and row.details["type"] == "com.portcullis.grant.opened"
    assert row.details["dequeue_count"] == HOST_MAX_DEQUEUE_COUNT
    assert row.details["endpoint"] == sink.url.removeprefix("http://")
    assert row.details["poison_queue"] == poison_queue_name(settings.events_queue)
    assert "fail/503" not in json.dumps(row.details)  # the URL is never in the trail, only its host
