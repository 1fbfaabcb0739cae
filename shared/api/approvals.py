"""Approvals over HTTP (issue 13): approve, deny, extend, review a request, and the lists of
`GET /api/requests` (the caller's own requests, what waits for their decision, what awaits their
review). The rules live in shared/actions/approvals.py and shared/actions/request_lists.py."""

from __future__ import annotations

from urllib.parse import urlencode

import azure.functions as func

from shared.actions.approvals import Approvals, parse_comment, parse_extend
from shared.actions.request_lists import (
    SKIP_TOKEN,
    RequestListKind,
    RequestListQuery,
    my_requests,
    parse_request_list_query,
)
from shared.answers import RequestList
from shared.api.http import ApiCall, endpoint, json_response, request_location
from shared.api.records import request_answer
from shared.approval import Verdict
from shared.grants import StoredRequest


def _optional_body(call: ApiCall) -> object:
    """Approve, deny and review take an optional `{"comment": ...}`: an empty body is no comment."""
    if not (call.request.get_body() or b"").strip():
        return None
    return call.json_body()


def _answer(call: ApiCall, status: int, stored: StoredRequest) -> func.HttpResponse:
    location = request_location(stored.record.request_id)
    return json_response(status, request_answer(stored), {"Location": location})


@endpoint()
def approve(call: ApiCall) -> func.HttpResponse:
    comment = parse_comment(_optional_body(call))
    stored = Approvals(call.services, call.principal).decide(
        call.route("requestId"), Verdict.APPROVED, comment
    )
    return _answer(call, 200, stored)


@endpoint()
def deny(call: ApiCall) -> func.HttpResponse:
    comment = parse_comment(_optional_body(call))
    stored = Approvals(call.services, call.principal).decide(call.route("requestId"), Verdict.DENIED, comment)
    return _answer(call, 200, stored)


@endpoint()
def review(call: ApiCall) -> func.HttpResponse:
    comment = parse_comment(_optional_body(call))
    stored = Approvals(call.services, call.principal).review(call.route("requestId"), comment)
    return _answer(call, 200, stored)


@endpoint()
def extend(call: ApiCall) -> func.HttpResponse:
    end_time = parse_extend(call.json_body())
    stored = Approvals(call.services, call.principal).extend(call.route("requestId"), end_time)
    return _answer(call, 200, stored)


@endpoint()
def list_requests(call: ApiCall) -> func.HttpResponse:
    """`requester=me[&active=true]` (paged by `nextLink`), `status=Pending&approver=me` or
    `status=ReviewRequired&approver=me`; anything else is a 400 naming the parameter."""
    query = parse_request_list_query(call.query, call.principal)
    if query.kind is RequestListKind.MINE:
        page = my_requests(call.services, call.principal, query)
        answer = RequestList(value=[request_answer(s) for s in page.requests])
        if page.cursor is not None:
            answer.nextLink = next_link(query, page.cursor)
        return json_response(200, answer)
    approvals = Approvals(call.services, call.principal)
    found = approvals.waiting() if query.kind is RequestListKind.PENDING else approvals.awaiting_review()
    return json_response(200, RequestList(value=[request_answer(s) for s in found]))


def next_link(query: RequestListQuery, cursor: str) -> str:
    """Relative, as `Location` is: the same list from after the page's last request."""
    params = {"requester": "me", **({"active": "true"} if query.active else {}), SKIP_TOKEN: cursor}
    return "/api/requests?" + urlencode(params)
