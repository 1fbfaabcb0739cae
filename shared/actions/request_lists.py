"""`GET /api/requests`: which list the query asks for, and the caller's own requests (issues 11, 13,
14). Three lists share the route, told apart by their parameters:

- `requester=me[&active=true][&$skipToken=...]`: the caller's own requests across every VM, newest
  first, a page at a time (the `requestsbyrequester` index, shared/grants.py), so the web page and the
  CLI make one call instead of one per VM;
- `status=Pending&approver=me`: what waits for the caller's decision (`Approvals.waiting`);
- `status=ReviewRequired&approver=me`: break-glass requests the caller may review and nobody has
  (`Approvals.awaiting_review`).

A mix of them, an unknown value or someone else's object id is refused naming the parameter: a list
of other people's requests is never served here (they are under `GET /api/grants?vm=` for those who
may read the policy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.actions.refusal import Refusal
from shared.grants import RequestPage, StoredRequest, is_requester_cursor
from shared.model import DomainError, PortStatus, Principal
from shared.services import Services

SKIP_TOKEN = "$skipToken"  # noqa: S105 - a page cursor's parameter name, not a secret
_GUID_LENGTH = 36


class RequestListKind(StrEnum):
    MINE = "mine"
    PENDING = "Pending"
    REVIEW_REQUIRED = "ReviewRequired"


@dataclass(frozen=True)
class RequestListQuery:
    kind: RequestListKind
    active: bool = False
    cursor: str | None = None


def _invalid(field: str, reason: str) -> Refusal:
    return Refusal.invalid(DomainError(field, reason))


def parse_request_list_query(query: Callable[[str], str | None], caller: Principal) -> RequestListQuery:
    """Which list `GET /api/requests` asks for. Pure: `query` reads one parameter (None if absent)."""
    requester, status, approver = query("requester"), query("status"), query("approver")
    active_text, cursor = query("active"), query(SKIP_TOKEN)
    if requester is not None:
        for name, value in (("status", status), ("approver", approver)):
            if value is not None:
                raise _invalid(
                    name, "not with requester=me: ask for your own requests or for an approver's list"
                )
        if requester.strip().lower() not in ("me", caller.object_id.lower()):
            if len(requester) == _GUID_LENGTH and requester.count("-") == 4:
                raise Refusal.forbidden(
                    f"{caller.display_name} may list only their own requests (requester=me)", "requester"
                )
            raise _invalid("requester", f"{requester[:64]!r}: only requester=me is supported")
        if active_text is not None and active_text.lower() not in ("true", "false"):
            raise _invalid("active", f"{active_text[:64]!r} must be true or false")
        if cursor is not None and not is_requester_cursor(cursor):
            raise _invalid(SKIP_TOKEN, "not a token this API gave out: follow nextLink as it is")
        return RequestListQuery(
            RequestListKind.MINE, active=(active_text or "").lower() == "true", cursor=cursor
        )
    kinds = {RequestListKind.PENDING.value: RequestListKind.PENDING}
    kinds[RequestListKind.REVIEW_REQUIRED.value] = RequestListKind.REVIEW_REQUIRED
    if status not in kinds:
        raise _invalid(
            "status",
            f"{(status or '')[:64]!r}: give status=Pending or status=ReviewRequired with approver=me, or "
            "requester=me",
        )
    if approver != "me":
        raise _invalid("approver", f"{(approver or '')[:64]!r}: only approver=me is supported")
    for name, value in (("active", active_text), (SKIP_TOKEN, cursor)):
        if value is not None:
            raise _invalid(name, "only with requester=me")
    return RequestListQuery(kinds[status])


def is_active(stored: StoredRequest, now: datetime) -> bool:
    """Still something to it: a port waiting for approval, scheduled, or open."""
    return any(
        grant.status is PortStatus.PENDING
        or (grant.status is not PortStatus.REVOKED and now < grant.end_time)
        for grant in stored.grants
    )


def my_requests(services: Services, caller: Principal, query: RequestListQuery) -> RequestPage:
    """The caller's own page of requests. With `active`, the index's hint (`ActiveUntil`) narrows the
    rows read, and each request is then judged by its grants."""
    now = services.clock()
    page = services.grants.list_for_requester(
        caller.object_id, active_at=now if query.active else None, after=query.cursor
    )
    if not query.active:
        return page
    return RequestPage([s for s in page.requests if is_active(s, now)], page.cursor)
