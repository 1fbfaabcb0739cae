"""What every HTTP handler shares: authentication first, ARM-shaped errors, bounded JSON bodies.

Errors are ARM's `{"error": {"code", "message", "target"?, "details"?}}`. Bad input is a 4xx naming
the field; a storage outage is a 503 (nothing was opened). Handlers take `services` so tests can pass
their own; the Functions triggers use the process's (shared/composition.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func
from azure.core.exceptions import AzureError

from shared.actions.refusal import Refusal
from shared.answers import Answer, Error, ErrorDetail, ErrorInfo
from shared.composition import root
from shared.defender import API_VERSION, check_json_depth
from shared.events import EventId
from shared.identity import AuthenticationError, caller_address
from shared.model import DomainError, Principal
from shared.observability import brief, log_event
from shared.services import Services

JSON = "application/json"


class ApiCall:
    def __init__(self, request: func.HttpRequest, services: Services) -> None:
        self.request = request
        self.services = services
        self._principal: Principal | None = None

    @property
    def principal(self) -> Principal:
        if self._principal is None:
            self._principal = self.services.authenticator.authenticate(dict(self.request.headers))
        return self._principal

    @property
    def caller_address(self) -> str | None:
        return caller_address(dict(self.request.headers), self.services.settings.trusted_proxy_hops)

    def route(self, name: str) -> str:
        return str(self.request.route_params.get(name, ""))

    def query(self, name: str) -> str | None:
        value = self.request.params.get(name)
        return str(value) if value is not None else None

    def json_body(self, *, depth_checked_by_action: bool = False) -> Any:
        """The body as JSON: bounded in size and, unless the action checks (and audits) it itself,
        in nesting depth."""
        body = self.request.get_body() or b""
        limit = self.services.settings.max_body_bytes
        if len(body) > limit:
            raise Refusal(413, "RequestEntityTooLarge", f"the body is {len(body)} bytes; at most {limit}")
        if not body.strip():
            raise Refusal(
                400, "InvalidRequestContent", "the request body is empty; send a JSON object", "body"
            )
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, ValueError) as error:
            raise Refusal(
                400, "InvalidRequestContent", f"the body is not valid JSON: {error}", "body"
            ) from None
        except RecursionError:
            raise Refusal(
                400, "InvalidRequestContent", "the body's JSON is nested too deeply", "body"
            ) from None
        if not depth_checked_by_action:
            try:
                check_json_depth(document)
            except DomainError as error:
                raise Refusal.invalid(error) from None
        return document


def request_location(request_id: str) -> str:
    """The `Location` of a request: a relative URL (RFC 9110 allows it), never one built from the
    client's `Host` header, which would let a caller point the answer at a host of its choosing."""
    return f"/api/requests/{request_id}"


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> func.HttpResponse:
    """`body` is an Answer (serialised by its `wire()`) or plain JSON (a policy, an error)."""
    if isinstance(body, Answer):
        body = body.wire()
    return func.HttpResponse(
        json.dumps(body, default=str), status_code=status, mimetype=JSON, headers=headers or {}
    )


def error_response(
    status: int, code: str, message: str, target: str | None = None, details: list[DomainError] | None = None
) -> func.HttpResponse:
    error = ErrorInfo(code=code, message=message)
    if target:
        error.target = target
    if details and len(details) > 1:
        error.details = [
            ErrorDetail(code=d.code, message=f"{d.field}: {d.reason}", target=d.field) for d in details
        ]
    headers = {"WWW-Authenticate": 'Bearer realm="portcullis"'} if status == 401 else None
    return json_response(status, Error(error=error), headers)


def check_api_version(call: ApiCall) -> None:
    """Defender's routes demand `api-version`, as ARM does; only 2020-01-01 is served."""
    version = call.query("api-version")
    if not version:
        raise Refusal(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
            "api-version",
        )
    if version != API_VERSION:
        raise Refusal(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{version}' is invalid. The supported versions are '{API_VERSION}'.",
            "api-version",
        )


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cross_site(method: str, headers: Mapping[str, str]) -> bool:
    """Is this a state-changing request a browser sends on another site's behalf? The web page calls
    the API with Easy Auth's session cookie, and a browser may attach that cookie to a form another
    site posts here (no CORS is needed for that). Browsers name the sender in `Sec-Fetch-Site` (or,
    older ones, `Origin`), which a page cannot forge; the CLI, SDKs and scripts send neither, so they
    are never refused here."""
    if method.upper() in SAFE_METHODS:
        return False
    lowered = {name.lower(): value for name, value in headers.items()}
    site = lowered.get("sec-fetch-site")
    if site:
        return site not in ("same-origin", "none")
    origin = lowered.get("origin")
    if origin is None:
        return False
    return urlsplit(origin.strip()).netloc.lower() != lowered.get("host", "").strip().lower()


Handler = Callable[[ApiCall], func.HttpResponse]
Endpoint = Callable[..., func.HttpResponse]


def endpoint(*, defender: bool = False, authenticate: bool = True) -> Callable[[Handler], Endpoint]:
    """Turn `handler(call)` into `(request, services=None) -> HttpResponse` with the shared rules."""

    def decorate(handler: Handler) -> Endpoint:
        @wraps(handler)
        def run(request: func.HttpRequest, services: Services | None = None) -> func.HttpResponse:
            if cross_site(request.method, request.headers):
                return error_response(
                    403,
                    "CrossSiteRequestRefused",
                    "a browser sent this request from another site; state changes come only from this "
                    "app's own page",
                    "Origin",
                )
            call = ApiCall(request, services or root().services)
            try:
                if authenticate:
                    _ = call.principal
                if defender:
                    check_api_version(call)
                return handler(call)
            except AuthenticationError as error:
                return error_response(401, "AuthenticationFailed", str(error))
            except Refusal as refusal:
                return error_response(
                    refusal.status, refusal.code, refusal.message, refusal.target, refusal.details
                )
            except DomainError as error:
                return error_response(400, error.code, f"{error.field}: {error.reason}", error.field)
            except AzureError as error:
                log_event(
                    EventId.API_STORAGE_UNAVAILABLE,
                    logging.ERROR,
                    handler=handler.__name__,
                    error=brief(error),
                )
                return error_response(
                    503,
                    "ServiceUnavailable",
                    "storage is unavailable; nothing was changed, try again shortly",
                )

        return run

    return decorate
