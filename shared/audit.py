"""The append-only audit trail on Table storage (implements shared.model.AuditTrail).

Every event is written twice, with `create` only (never update or delete), into:

| table          | PartitionKey             | RowKey                 | serves                               |
|----------------|--------------------------|------------------------|--------------------------------------|
| `audit`        | UTC day `YYYYMMDD`       | time `|` event id      | "what happened on day D", in order   |
| `auditsubject` | sha256(subject)          | time `|` event id      | "everything about request/grant/VM X"|

A subject is what the event is about: a request id, a grant id, a policy or VM id, a ticket.

The event id is random per row, except for the facts in `ONCE_PER_SUBJECT`, which happen at most
once per subject: their id is derived from event and subject, so when the same fact is recorded
again (the caller retried after storage failed part-way, a reconcile pass met it again) the row and
the CloudEvent published from it carry the same id, and a webhook receiver deduplicates on
`webhook-id` as Standard Webhooks says (shared/notify/signing.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError

from shared.events import EventId
from shared.observability import log_event
from shared.settings import Settings
from shared.storage import table
from shared.table_keys import hashed_key, odata_quote, time_key

# Table storage caps a string property at 32K UTF-16 characters.
_MAX_DETAILS_CHARS = 30000
# Facts that happen at most once per subject (see the module docstring). Not `request.pending`: an
# extension of the same request waits again.
ONCE_PER_SUBJECT: frozenset[EventId] = frozenset({EventId.REQUEST_ACCEPTED, EventId.GRANT_PATH_UNRESOLVED})
_ONCE_NAMESPACE = uuid.UUID("5e1f3c2a-6d0b-4b8e-9a57-3f2c1d0e9b41")


def row_id(event: EventId, subject: str) -> str:
    """A new row's event id: stable for a fact in ONCE_PER_SUBJECT, random otherwise."""
    if event in ONCE_PER_SUBJECT:
        return uuid.uuid5(_ONCE_NAMESPACE, f"{event.value}|{subject}").hex
    return uuid.uuid4().hex


@dataclass(frozen=True)
class AuditEvent:
    event: str
    subject: str
    actor: str
    time: datetime
    details: dict[str, Any]
    id: str = ""  # the RowKey's suffix (see `row_id`); a CloudEvent derived from it carries it


class TableAuditTrail:
    """`on_recorded` is told of every row once both copies are written (notifications derive their
    events from it, shared/notify/publisher.py); it must not raise."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], datetime] | None = None,
        on_recorded: Callable[[AuditEvent], None] | None = None,
    ) -> None:
        self._by_day = table("audit", settings)
        self._by_subject = table("auditsubject", settings)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._on_recorded = on_recorded

    def record(self, event: EventId, *, subject: str, actor: str, **details: object) -> None:
        moment = self._clock()
        event_id = row_id(event, subject)
        row_key = f"{time_key(moment)}|{event_id}"
        details_text = json.dumps(details, sort_keys=True, default=str)
        if len(details_text) > _MAX_DETAILS_CHARS:
            details_text = json.dumps({"truncated": details_text[:_MAX_DETAILS_CHARS]})
        entity = {
            "RowKey": row_key,
            "Event": event,
            "Subject": subject,
            "Actor": actor,
            "Time": moment,
            "Details": details_text,
        }
        _create(self._by_day, {"PartitionKey": moment.astimezone(UTC).strftime("%Y%m%d"), **entity})
        _create(self._by_subject, {"PartitionKey": hashed_key(subject), **entity})
        log_event(EventId.AUDIT_RECORDED, audit_event=event, subject=subject, actor=actor)
        if self._on_recorded is not None:
            self._on_recorded(
                AuditEvent(event, subject, actor, moment, json.loads(details_text), id=event_id)
            )

    def for_subject(self, subject: str) -> list[AuditEvent]:
        """Every event about `subject`, oldest first."""
        rows = self._by_subject.query_entities(f"PartitionKey eq {odata_quote(hashed_key(subject))}")
        return [_event(row) for row in rows]


def _create(client: Any, entity: dict[str, Any]) -> None:
    """Create the row; one that exists already is this very row (its key holds the time and the event
    id), written by an attempt whose answer was lost (the SDK retried it): it is written, go on, so
    the event is still published."""
    try:
        client.create_entity(entity)
    except ResourceExistsError:
        log_event(EventId.AUDIT_ROW_EXISTED, row_key=entity["RowKey"])


def _event(row: Any) -> AuditEvent:
    moment = row["Time"]
    return AuditEvent(
        event=row["Event"],
        subject=row["Subject"],
        actor=row["Actor"],
        time=moment if isinstance(moment, datetime) else datetime.fromisoformat(str(moment)),
        details=json.loads(row["Details"]),
        id=str(row["RowKey"]).rpartition("|")[2],
    )
