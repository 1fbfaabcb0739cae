"""The events queue trigger: deliver one event to one channel; on failure, enqueue the next attempt
after a doubling pause; after `PORTCULLIS_EVENTS_MAX_ATTEMPTS` attempts, move it to
`<events queue>-poison` and audit `notify.delivery_poisoned`. Never raises for an endpoint's
failure (the retry is ours), only for our own storage failing, which the host retries (host.json
`extensions.queues.maxDequeueCount`, `HOST_MAX_DEQUEUE_COUNT` here) and then moves to the poison queue
itself: on that last try the failure is audited as `notify.delivery_poisoned` too (`cause: storage`),
so every lost notification is in the audit trail, whoever poisoned it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError
from pydantic import ValidationError

from shared.events import EventId
from shared.notify.channels import Channel, DeliveryError
from shared.notify.messages import EventDelivery, parse_event_delivery
from shared.observability import brief, log_event
from shared.settings import Settings
from shared.storage import send

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

    from shared.audit import TableAuditTrail

ACTOR = "portcullis-notify"
# host.json extensions.queues.maxDequeueCount (tests/unit/test_notify_events.py keeps them equal).
HOST_MAX_DEQUEUE_COUNT = 5
MAX_RETRY_PAUSE = timedelta(hours=1)


def poison_queue_name(queue_name: str) -> str:
    return f"{queue_name}-poison"


@dataclass
class Notifier:
    settings: Settings
    channels: Mapping[str, Channel]
    events_queue: Callable[[], QueueClient]
    poison_queue: Callable[[], QueueClient]
    audit: TableAuditTrail
    now: Callable[[], datetime]


def retry_pause(settings: Settings, attempt: int) -> timedelta:
    """The pause after failed attempt `attempt` (1-based): base, 2 x base, 4 x base ... capped."""
    return min(MAX_RETRY_PAUSE, timedelta(seconds=settings.events_retry_seconds * 2 ** (attempt - 1)))


def handle_event_message(raw: str | bytes, notifier: Notifier, dequeue_count: int = 1) -> None:
    """`dequeue_count`: the host's count for this queue message (1 on its first try)."""
    try:
        _handle(raw, notifier)
    except AzureError as error:
        if dequeue_count >= HOST_MAX_DEQUEUE_COUNT:
            _storage_poisoned(notifier, raw, dequeue_count, error)
        raise


def _handle(raw: str | bytes, notifier: Notifier) -> None:
    try:
        message = parse_event_delivery(raw)
    except ValidationError as error:
        log_event(EventId.NOTIFY_MESSAGE_INVALID, logging.ERROR, error=brief(error))
        send(notifier.poison_queue(), raw.decode() if isinstance(raw, bytes) else raw)
        return
    channel = notifier.channels.get(message.channel)
    if channel is None:
        # The channel was removed from the settings since the event was enqueued: nobody to tell.
        log_event(EventId.NOTIFY_CHANNEL_UNKNOWN, logging.WARNING, channel=message.channel)
        return
    try:
        channel.deliver(message.event)
    except DeliveryError as failure:
        _failed(notifier, message, channel, str(failure))
        return
    log_event(
        EventId.NOTIFY_DELIVERED,
        channel=message.channel,
        endpoint=channel.endpoint_host,
        event_id=message.event.get("id"),
        type=message.event.get("type"),
        attempt=message.attempt,
    )


def _failed(notifier: Notifier, message: EventDelivery, channel: Channel, reason: str) -> None:
    settings = notifier.settings
    event = message.event
    if message.attempt < settings.events_max_attempts:
        pause = retry_pause(settings, message.attempt)
        now = notifier.now()
        retry = message.model_copy(update={"attempt": message.attempt + 1})
        send(notifier.events_queue(), retry.model_dump_json(), visible_at=now + pause, now=now)
        log_event(
            EventId.NOTIFY_DELIVERY_FAILED,
            logging.WARNING,
            channel=message.channel,
            endpoint=channel.endpoint_host,
            event_id=event.get("id"),
            attempt=message.attempt,
            retry_in_seconds=int(pause.total_seconds()),
            reason=reason,
        )
        return
    send(notifier.poison_queue(), message.model_dump_json())
    notifier.audit.record(
        EventId.NOTIFY_DELIVERY_POISONED,
        subject=_subject(event),
        actor=ACTOR,
        channel=message.channel,
        endpoint=channel.endpoint_host,
        event_id=event.get("id"),
        type=event.get("type"),
        attempts=message.attempt,
        reason=reason,
        poison_queue=poison_queue_name(settings.events_queue),
    )


def _storage_poisoned(notifier: Notifier, raw: str | bytes, dequeue_count: int, error: AzureError) -> None:
    """The host is about to poison this message because our storage failed on its every try."""
    try:
        message: EventDelivery | None = parse_event_delivery(raw)
    except ValidationError:
        message = None
    event = message.event if message is not None else {}
    channel = notifier.channels.get(message.channel) if message is not None else None
    try:
        notifier.audit.record(
            EventId.NOTIFY_DELIVERY_POISONED,
            subject=_subject(event),
            actor=ACTOR,
            cause="storage",
            channel=message.channel if message is not None else None,
            endpoint=channel.endpoint_host if channel is not None else None,
            event_id=event.get("id"),
            type=event.get("type"),
            attempts=message.attempt if message is not None else None,
            dequeue_count=dequeue_count,
            reason=f"storage failed: {brief(error)}",
            poison_queue=poison_queue_name(notifier.settings.events_queue),
        )
    except AzureError as audit_error:  # the audit's storage is down too: the log is all there is
        log_event(
            EventId.NOTIFY_POISON_UNAUDITED,
            logging.ERROR,
            event_id=event.get("id"),
            error=brief(error),
            audit_error=brief(audit_error),
        )


def _subject(event: Mapping[str, Any]) -> str:
    """What the failed notification was about: its grant, else its request, else its subject."""
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    assert isinstance(data, dict)
    return str(data.get("grantId") or data.get("requestId") or event.get("subject") or "notification")
