"""From audit row to queue: the audit trail's `on_recorded` observer (shared/audit.py).

Enqueueing is the only work done in the path that changed state (one queue send per channel); the
endpoints are called later, by the events queue trigger (delivery.py), so a slow or failing endpoint
never delays a grant. A failed enqueue is logged and does not fail the caller: the state change is
already recorded, and the audit trail remains the record of it.

A grant event names who approved its request (`data.approvers`). The approval lives on the request
row only, decided there with the row's ETag; here, once per published grant event, it is read back
(`approval_of`, one point read of one column) rather than copied onto every grant: a copy would be a
second record every grant writer must carry along and keep current (a break-glass request is reviewed
after its grants opened), and the enforcement paths that write grant rows would have to know about
approvals. The read is bounded (one try, `APPROVAL_READ_OPTIONS`: a few ms on Azurite, at most ~5 s
on a storage endpoint that stops answering, the same storage the audit row was just written to) and
may fail: the event then goes out with no approvers and a `notify.approvers_unread` log line, and the
state change is never failed by it. A grant whose request row is gone (or that needed no approval)
names none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from azure.core.exceptions import AzureError

from shared.approval import Approval, approvers_so_far
from shared.events import EventId
from shared.notify.channels import channel_keys
from shared.notify.cloudevents import AuditFact, approval_to_look_up, to_cloud_event
from shared.notify.messages import EventDelivery
from shared.observability import brief, log_event
from shared.settings import Settings
from shared.storage import send

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

# How long the approvers read may hold up the state change that is being published (azure-core's
# per-call settings): one try, a few seconds at most.
APPROVAL_READ_OPTIONS: dict[str, Any] = {"retry_total": 0, "connection_timeout": 2, "read_timeout": 3}


class ApprovalReader(Protocol):
    """A request's approval state by request id (TableGrantStore.get_approval), with per-call options."""

    def __call__(self, request_id: str, **options: Any) -> Approval | None: ...


class EventPublisher:
    def __init__(
        self,
        settings: Settings,
        events_queue: Callable[[], QueueClient],
        approval_of: ApprovalReader | None = None,
    ) -> None:
        """`approval_of(request id)`: the request's approval state, for the approvers of a grant
        event (None: a request that needed none, or is gone); without it grant events name none."""
        self._channels = channel_keys(settings)
        self._events_queue = events_queue
        self._approval_of = approval_of

    def __call__(self, fact: AuditFact) -> None:
        try:
            self._publish(fact)
        except Exception as error:  # noqa: BLE001 - a notification bug must never fail a state change
            log_event(
                EventId.NOTIFY_ENQUEUE_FAILED, logging.ERROR, audit_event=fact.event, error=brief(error)
            )

    def _publish(self, fact: AuditFact) -> None:
        if not self._channels:
            return
        event = to_cloud_event(fact, self._approvers(fact))
        if event is None:
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

    def _approvers(self, fact: AuditFact) -> list[dict[str, str]] | None:
        """Who approved the request of a grant event so far (read once per event); None when the row
        needs no look-up; empty, logged, when the read fails."""
        request_id = approval_to_look_up(fact)
        if request_id is None or self._approval_of is None:
            return None
        try:
            return approvers_so_far(self._approval_of(request_id, **APPROVAL_READ_OPTIONS))
        except Exception as error:  # noqa: BLE001 - storage or a bad row: the event still goes out
            log_event(
                EventId.NOTIFY_APPROVERS_UNREAD,
                logging.WARNING,
                audit_event=fact.event,
                request=request_id,
                error=brief(error),
            )
            return []
