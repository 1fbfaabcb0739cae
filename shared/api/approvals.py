"""Approvals over HTTP (issue 13): approve, deny, extend, review a request, and the approver's list
`GET /api/requests?status=Pending&approver=me`. The rules live in shared/actions/approvals.py."""

from __future__ import annotations

import azure.functions as func

from shared.actions.approvals import Approvals, parse_comment, parse_extend
from shared.actions.refusal import Refusal
from shared.answers import RequestList
from shared.api.http import ApiCall, endpoint, json_response, request_location
from shared.api.records import request_answer
from shared.approval import Verdict
from shared.grants import StoredRequest
from shared.model import DomainError


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
    """Only the approver's view is served: `status=Pending&approver=me`."""
    status, approver = call.query("status"), call.query("approver")
    if status != "Pending":
        raise Refusal.invalid(DomainError("status", f"{status!r}: only status=Pending is supported"))
    if approver != "me":
        raise Refusal.invalid(DomainError("approver", f"{approver!r}: only approver=me is supported"))
    waiting = Approvals(call.services, call.principal).waiting()
    return json_response(200, RequestList(value=[request_answer(s) for s in waiting]))
