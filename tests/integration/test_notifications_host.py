"""Notifications through the local host (devhost + Azurite + emulator): a request opens its grant on
time while one webhook answers 500 on every delivery; the healthy webhook gets every state change,
signed; the failing one is retried by the `jit_events` trigger and poisoned, audited; the expiry
timer announces 'expiring in 10 minutes' once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from localrig.appclient import AppClient
from localrig.emulator_client import EmulatorClient
from localrig.estates.roles import grant_roles
from localrig.estates.sample import Estate
from localrig.estates.snapshot import ports_of, wait_for
from localrig.stack import Stack, start_stack
from localrig.webhook_sink import WebhookSink, start_sink
from shared.audit import TableAuditTrail
from shared.events import EventId
from shared.settings import load_settings


@pytest.fixture(scope="module")
def sink() -> Iterator[WebhookSink]:
    running = start_sink()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, sink: WebhookSink) -> Iterator[Stack]:
    env = {
        "PORTCULLIS_WEBHOOK_URLS": f"{sink.url}/hooks/team,{sink.url}/hooks/fail/500",
        "PORTCULLIS_WEBHOOK_SECRET": sink.secret,
        "PORTCULLIS_EVENTGRID_TOPIC_ENDPOINT": sink.eventgrid_endpoint,
        "PORTCULLIS_EVENTS_MAX_ATTEMPTS": "3",
        "PORTCULLIS_EVENTS_RETRY_SECONDS": "3",
    }
    with start_stack(tmp_path_factory.mktemp("notify-stack"), extra_env=env) as running:
        yield running


def verified(secret: str, record: dict) -> bool:
    """Standard Webhooks, from the specification (independent of the app and the sink)."""
    headers, body = record["headers"], record["body"].encode()
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return expected in headers["webhook-signature"].split()


def events_for(sink: WebhookSink, path: str, request_id: str) -> list[dict]:
    return [
        r for r in sink.received() if r["path"] == path and f"/requests/{request_id}" in r["event"]["subject"]
    ]


def test_a_500_webhook_never_delays_the_grant_and_is_poisoned(stack: Stack, sink: WebhookSink) -> None:
    arm = EmulatorClient(stack.emulator.base_url, stack.emulator.ca_file)
    estate = Estate(arm.subscription_id, f"rg-{uuid.uuid4().hex[:8]}")
    arm.seed(estate.resources())
    admin, alice = grant_roles(arm, estate)
    app_admin = AppClient(stack.api_url, admin, stack.headers_for)
    app_alice = AppClient(stack.api_url, alice, stack.headers_for)
    app_admin.put_policy(estate, estate.policy_body())
    audit = TableAuditTrail(load_settings(stack.env))

    started = time.monotonic()
    end = datetime.now(UTC) + timedelta(minutes=9)  # inside the 10-minute notice window
    answer = app_alice.initiate(estate, {estate.vm_web: [(22, "203.0.113.7")]}, end)
    answered = time.monotonic() - started
    request_id = answer["requestId"]
    status = wait_for(
        lambda: (
            (s := app_alice.request_status(request_id))
            and all(p["status"] == "Initiated" for p in ports_of(s))
            and s
        ),
        20,
        "the port Initiated",
    )
    opened = time.monotonic() - started
    # The grant opened while the failing channel was still retrying (3 attempts, 3 s then 6 s apart):
    # enforcement did not wait. Compared by the audit rows' own times, not by when this poll looked
    # (a poll that comes late on a loaded machine may already find the poisoning).
    grant_id = ports_of(status)[0]["grantId"]
    initiated = min(
        wait_for(  # its row may land a moment after the status the poll saw
            lambda: [r.time for r in audit.for_subject(grant_id) if r.event == EventId.GRANT_INITIATED],
            20,
            "the grant.initiated audit row",
        )
    )
    early_poison = [
        r.time for r in audit.for_subject(request_id) if r.event == EventId.NOTIFY_DELIVERY_POISONED
    ]
    assert all(initiated < poisoned for poisoned in early_poison), (initiated, early_poison)
    print(f"initiate answered in {answered:.2f} s, port Initiated after {opened:.2f} s")

    # Queue delivery does not keep order (Azure Queue Storage never promised it): a receiver orders by
    # the event's `time`, and so does this test.
    first_two = {"com.portcullis.request.requested", "com.portcullis.grant.opened"}
    team = wait_for(
        lambda: (
            (e := [r for r in events_for(sink, "/hooks/team", request_id) if r["event"]["type"] in first_two])
            and {r["event"]["type"] for r in e} == first_two
            and sorted(e, key=lambda r: datetime.fromisoformat(r["event"]["time"]))
        ),
        20,
        "requested and opened on the healthy webhook",
    )
    assert [r["event"]["type"] for r in team] == [
        "com.portcullis.request.requested",
        "com.portcullis.grant.opened",
    ]
    assert all(verified(sink.secret, r) for r in team)
    assert {r["event"]["data"]["requester"]["objectId"] for r in team} == {alice.object_id}
    # Event Grid is a channel of its own (one queue message per channel): wait for its copies too.
    wait_for(
        lambda: (
            {r["event"]["id"] for r in events_for(sink, "/eventgrid/api/events", request_id)}
            >= {r["event"]["id"] for r in team}
        ),
        20,
        "requested and opened on the Event Grid topic",
    )

    assert sink.wait_for(request_id, "com.portcullis.grant.opened", timeout=5)
    assert not sink.wait_for(request_id, "com.portcullis.request.denied", timeout=0.5)
    assert team[1]["event"]["data"]["grantId"] == grant_id
    poisoned = wait_for(
        lambda: [r for r in audit.for_subject(grant_id) if r.event == EventId.NOTIFY_DELIVERY_POISONED],
        40,
        "the failing webhook's delivery of 'opened' poisoned and audited",
    )
    assert (
        poisoned[0].details["attempts"] == 3 and poisoned[0].details["type"] == "com.portcullis.grant.opened"
    )
    failing = events_for(sink, "/hooks/fail/500", request_id)
    opened_id = team[1]["event"]["id"]
    assert sum(r["event"]["id"] == opened_id for r in failing) == 3
    # 'requested' is poisoned on its own schedule: queue messages keep no order, so wait for it too.
    wait_for(
        lambda: [r for r in audit.for_subject(request_id) if r.event == EventId.NOTIFY_DELIVERY_POISONED],
        40,
        "the failing webhook's delivery of 'requested' poisoned and audited",
    )

    # The expiry-notice timer announces the grant once, however often it runs: run it twice now (as
    # the host's admin API does) rather than wait for its minute.
    for _ in range(2):
        stack.run_timer_now("jit_expiry_notices")
    expiring = wait_for(
        lambda: [
            r for r in events_for(sink, "/hooks/team", request_id) if r["event"]["type"].endswith(".expiring")
        ],
        20,
        "the expiring-in-10-minutes event",
    )
    assert expiring[0]["event"]["data"]["grantId"] == grant_id

    app_alice.ok("DELETE", f"/requests/{request_id}")
    revoked = wait_for(
        lambda: [
            r for r in events_for(sink, "/hooks/team", request_id) if r["event"]["type"].endswith(".revoked")
        ],
        20,
        "the revoked event",
    )
    assert revoked[0]["event"]["data"]["details"]["reason"] == "UserRequested"
    # The policy needs no approval: nobody approved, so grant events name no approvers.
    assert revoked[0]["event"]["data"]["approvers"] == team[1]["event"]["data"]["approvers"] == []
    assert json.loads(revoked[0]["body"])["data"]["actor"] == alice.object_id
    time.sleep(1)
    notices = [
        r for r in events_for(sink, "/hooks/team", request_id) if r["event"]["type"].endswith(".expiring")
    ]
    assert len(notices) == 1
