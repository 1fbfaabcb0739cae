"""'Expiring in 10 minutes': every minute, open grants that end within `EXPIRING_WINDOW` are
announced once each. The announcement is an audit row (`grant.expiring`), so it is published like
every other state change, and the audit trail is the memory of what was announced."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.events import EventId
from shared.model import PortStatus
from shared.notify.cloudevents import grant_context

if TYPE_CHECKING:
    from shared.audit import TableAuditTrail
    from shared.grants import TableGrantStore

EXPIRING_WINDOW = timedelta(minutes=10)
ACTOR = "portcullis-notify"


def announce_expiring(
    grants: TableGrantStore, audit: TableAuditTrail, now: Callable[[], datetime]
) -> list[str]:
    """Record `grant.expiring` for each open grant ending within the window, once; the grant ids."""
    moment = now()
    announced = []
    for grant in grants.list_ending_before(moment + EXPIRING_WINDOW):
        if grant.status is not PortStatus.INITIATED or not grant.is_open_at(moment):
            continue
        if any(row.event == EventId.GRANT_EXPIRING for row in audit.for_subject(grant.grant_id)):
            continue
        audit.record(
            EventId.GRANT_EXPIRING,
            subject=grant.grant_id,
            actor=ACTOR,
            **grant_context(grant),
            vm=grant.vm.id,
            port=grant.port,
            end=grant.end_time.isoformat(),
            minutes_left=int((grant.end_time - moment).total_seconds() // 60),
        )
        announced.append(grant.grant_id)
    return announced
