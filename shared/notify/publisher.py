"""From audit row to queue: the audit trail's `on_recorded` observer (shared/audit.py).

Enqueueing is the only work done in the path that changed state (one queue send per channel); the
endpoints are called later, by the events queue trigger (delivery.py), so a slow or failing endpoint
never delays a grant. A failed enqueue is logged and does not fail the caller: the state change is
already recorded, and the audit trail remains the record of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from azure.core.exceptions import AzureError

from shared.events import EventId
from shared.notify.channels import channel_keys
from shared.notify.cloudevents import AuditFact, to_cloud_event
from shared.notify.messages import EventDelivery
from shared.observability import brief, log_event
from shared.settings import Settings
from shared.storage import send

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient


class EventPublisher:
    def __init__(self, settings: Settings, events_queue: Callable[[], QueueClient]) -> None:
        self._channels = channel_keys(settings)
        self._events_queue = events_queue

    def __call__(self, fact: AuditFact) -> None:
        try:
            self._publish(fact)
        except Exception as error:  # noqa: BLE001 - a notification bug must never fail a state change
            log_event(
                EventId.NOTIFY_ENQUEUE_FAILED, logging.ERROR, audit_event=fact.event, error=brief(error)
            )

    def _publish(self, fact: AuditFact) -> None:
        event = to_cloud_event(fact)
        if event is None or not self._channels:
            return
        for channel in self._channels:
            message = EventDelivery(channel=channel, attempt=1, event=event)
            try:
                send(self._events_queue(), message.model_dump_json())
            except AzureError as error:
                log_event(
                    EventId.NOTIFY_ENQUEUE_FAILED,
                    logging.ERROR,
                    event_id=event["id"],
                    type=event["type"],
                    channel=channel,
                    error=brief(error),
                )
