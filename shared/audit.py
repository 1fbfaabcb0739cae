"""The append-only audit trail on Table storage (implements shared.model.AuditTrail).

Every event is written twice, with `create` only (never update or delete), into:

| table          | PartitionKey             | RowKey                 | serves                               |
|----------------|--------------------------|------------------------|--------------------------------------|
| `audit`        | UTC day `YYYYMMDD`       | time `|` event id      | "what happened on day D", in order   |
| `auditsubject` | sha256(subject)          | time `|` event id      | "everything about request/grant/VM X"|

A subject is what the event is about: a request id, a grant id, a policy or VM id, a ticket.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.events import EventId
from shared.observability import log_event
from shared.settings import Settings
from shared.storage import table
from shared.table_keys import hashed_key, odata_quote, time_key

# Table storage caps a string property at 32K UTF-16 characters.
_MAX_DETAILS_CHARS = 30000


@dataclass(frozen=True)
class AuditEvent:
    event: str
    subject: str
    actor: str
    time: datetime
    details: dict[str, Any]
    id: str = ""  # unique per row (the RowKey's suffix); a CloudEvent derived from it carries it


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
        row_id = uuid.uuid4().hex
        row_key = f"{time_key(moment)}|{row_id}"
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
        self._by_day.create_entity({"PartitionKey": moment.astimezone(UTC).strftime("%Y%m%d"), **entity})
        self._by_subject.create_entity({"PartitionKey": hashed_key(subject), **entity})
        log_event(EventId.AUDIT_RECORDED, audit_event=event, subject=subject, actor=actor)
        if self._on_recorded is not None:
            self._on_recorded(AuditEvent(event, subject, actor, moment, json.loads(details_text), id=row_id))

    def for_subject(self, subject: str) -> list[AuditEvent]:
        """Every event about `subject`, oldest first."""
        rows = self._by_subject.query_entities(f"PartitionKey eq {odata_quote(hashed_key(subject))}")
        return [_event(row) for row in rows]


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
