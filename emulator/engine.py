"""The ARM engine: routing, generic CRUD for declared resource types, ETags, preconditions,
per-resource operation locks, long-running operations, fault injection and the request log.

Providers plug in through `Engine.add_type` and `Engine.route` (see PROVIDERS.md). The HTTP layer
(server.py) turns each request into a `Call` and sends back the `Response` of `Engine.handle`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from emulator import apiversions, ids
from emulator.errors import (
    ArmError,
    another_operation_in_progress,
    bad_request,
    precondition_failed,
    resource_group_not_found,
    resource_not_found,
    retryable_another_operation,
)
from emulator.faults import FaultRules
from emulator.ids import ResourceId
from emulator.resource import ResourceType
from emulator.store import Record, Store
from emulator.throttle import Throttle, throttled_error_message

log = logging.getLogger("emulator.engine")

RESOURCE_GROUP_TYPE = "Microsoft.Resources/resourceGroups"
MAX_BODY_BYTES = 4 * 1024 * 1024  # ARM refuses request bodies above 4 MB
DEFAULT_LRO_SECONDS: dict[str, float] = {
    "microsoft.network/azurefirewalls": 2.0,
    "microsoft.network/firewallpolicies": 1.0,
    "microsoft.network/firewallpolicies/rulecollectiongroups": 2.0,
}
DEFAULT_REGION = "westeurope"
# The ARM control plane around the resource types (emulator/providers/arm.py): the tenant answered
# when a token names none, the subscription listed even before it holds a resource group (the one
# localrig's clients use), and the login endpoint `/metadata/endpoints` advertises.
DEFAULT_TENANT = "00000000-0000-0000-0000-0000000000a1"
DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-0000000000e1"
DEFAULT_LOGIN_ENDPOINT = "https://login.microsoftonline.com/"
# Items per page of a list answer before a `nextLink`. Microsoft documents no fixed size for the
# Network and Compute lists (only that long lists carry `nextLink`); 1000 is a common ARM page size.
# Configurable (`--page-size`, POST /_emulator/config) so tests can make small estates page.
DEFAULT_PAGE_SIZE = 1000
_KEEP_FINISHED_OPERATIONS = 20_000


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-serialisable; None means an empty body unless `null_body`
    headers: dict[str, str] = field(default_factory=dict)
    null_body: bool = False  # answer the JSON literal `null` (what ARM sends for some results)
    drop: bool = False  # close the connection without answering (fault injection)


@dataclass
class Call:
    """One request, as providers see it."""

    engine: Engine
    method: str
    path: str  # URL path, percent-decoded, without the query
    query: dict[str, str]  # first value of each parameter; keys as sent
    headers: dict[str, str]  # lower-cased names
    raw_body: bytes
    base_url: str  # https://host:port as the client addressed us
    caller: str = "anonymous"
    admin: bool = False  # admin writes bypass preconditions, locks, faults and LROs
    lro_failure: dict[str, str] | None = None  # set by an lro_fail fault: the operation ends Failed

    @property
    def store(self) -> Store:
        return self.engine.store

    @property
    def api_version(self) -> str:
        return self.query_value("api-version") or ""

    def query_value(self, name: str) -> str | None:
        for k, v in self.query.items():
            if k.lower() == name.lower():
                return v
        return None

    def json(self) -> Any:
        if not self.raw_body.strip():
            raise bad_request("InvalidRequestContent", "The request content was invalid: the body is empty.")
        try:
            return json.loads(self.raw_body)
        except (ValueError, UnicodeDecodeError) as error:
            raise bad_request(
                "InvalidRequestContent",
                f"The request content was invalid and could not be deserialized: '{error}'.",
            ) from error

    def json_object(self) -> dict[str, Any]:
        body = self.json()
        if not isinstance(body, dict):
            raise bad_request(
                "InvalidRequestContent", "The request content was invalid: expected a JSON object."
            )
        return body


RouteHandler = Callable[[Call, "re.Match[str]"], Response]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: RouteHandler
    anonymous: bool = False  # answered without a bearer token or api-version (e.g. /metadata/endpoints)


def new_etag(style: str | None) -> str | None:
    if style is None:
        return None
    if style == "strong":
        return str(uuid.uuid4())
    return f'W/"{uuid.uuid4()}"'


def etag_header(etag: str | None) -> str | None:
    if etag is None:
        return None
    return etag if etag.startswith(("W/", '"')) else f'"{etag}"'


def etag_value(etag: str) -> str:
    """Compare etags by their opaque part: `W/"x"`, `"x"` and `x` are the same tag."""
    text = etag.strip()
    if text.startswith("W/"):
        text = text[2:]
    return text.strip('"')


def _set_states(node: Any, old: str | tuple[str, ...], new: str) -> None:
    """Flip every nested provisioningState equal to `old` (the body and its embedded children)."""
    olds = (old,) if isinstance(old, str) else old
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "provisioningState" and v in olds:
                node[k] = new
            else:
                _set_states(v, old, new)
    elif isinstance(node, list):
        for item in node:
            _set_states(item, old, new)


def _set_all_states(node: Any, state: str) -> None:
    """A write puts the resource and everything embedded in it into the same state."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "provisioningState" and isinstance(v, str):
                node[k] = state
            else:
                _set_all_states(v, state)
    elif isinstance(node, list):
        for item in node:
            _set_all_states(item, state)


def _token_caller(authorization: str) -> str:
    """Who is calling: the token's oid/upn/appid claim if it looks like a JWT, else a hash of it."""
    token = authorization.split(" ", 1)[1].strip() if " " in authorization else authorization
    parts = token.split(".")
    if len(parts) == 3:
        try:
            padded = parts[1] + "=" * (-len(parts[1]) % 4)
            claims = json.loads(base64.urlsafe_b64decode(padded))
            for claim in ("oid", "upn", "unique_name", "appid", "sub"):
                if isinstance(claims.get(claim), str):
                    return str(claims[claim])
        except (ValueError, TypeError):
            pass
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:12]


# Set by the test suite (tests/arm_calls.py): every ARM request is appended to this file as one JSON
# line, so the ARM operations the app performs can be checked against infra/'s custom role even when
# a test clears the in-memory log. Unset: nothing is written.
CALL_LOG_ENV = "PORTCULLIS_EMULATOR_CALL_LOG"


def _append_call_log(call: Call) -> None:
    path = os.environ.get(CALL_LOG_ENV)
    if not path:
        return
    line = json.dumps(
        {
            "method": call.method,
            "path": call.path,
            "api_version": call.api_version,
            "user_agent": call.headers.get("user-agent", ""),
        }
    )
    with open(path, "a", encoding="utf-8") as sink:  # one short write per line: O_APPEND keeps lines whole
        sink.write(line + "\n")


def api_version_type(path: str) -> tuple[str, list[str]] | None:
    """(namespace, candidate resource types, most specific first) a request path addresses, for the
    api-version check: `/providers/{ns}/{t1}/{n1}/{t2}...` gives `t1/t2...` then shorter prefixes (an
    action or a sub-path like `/instanceView` falls back to its resource's type); ARM's own endpoints
    (`/subscriptions`, `/tenants`, resource groups, resources, locations, providers) are
    Microsoft.Resources'."""
    segments = [s for s in path.split("/") if s]
    lowered = [s.lower() for s in segments]
    if "providers" in lowered:
        at = len(lowered) - 1 - lowered[::-1].index("providers")
        rest = segments[at + 1 :]
        if len(rest) <= 1:  # /subscriptions/{s}/providers[/{ns}]
            return "Microsoft.Resources", ["providers"]
        types = rest[1::2]
        return rest[0], ["/".join(types[:n]) for n in range(len(types), 0, -1)]
    if lowered[:1] == ["tenants"]:
        return "Microsoft.Resources", ["tenants"]
    if lowered[:1] != ["subscriptions"]:
        return None
    if len(lowered) <= 2:
        return "Microsoft.Resources", ["subscriptions"]
    tail = lowered[2:]
    if tail[0] == "resourcegroups":
        if len(tail) <= 2:
            return "Microsoft.Resources", ["resourceGroups"]
        return ("Microsoft.Resources", ["resources"]) if tail[2:] == ["resources"] else None
    if tail == ["resources"] or tail == ["locations"]:
        return "Microsoft.Resources", [tail[0]]
    if tail == ["tagnames"]:
        return "Microsoft.Resources", ["tags"]
    return None


class Engine:
    def __init__(
        self,
        store: Store,
        *,
        lro_seconds: dict[str, float] | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        self.store = store
        # ARM's token buckets; off unless given (`python -m emulator` turns them on by default).
        self.throttle = throttle or Throttle(enabled=False)
        self.throttled_429s = 0  # 429 answers of the throttle since the request stats were cleared
        self.lock = store.lock
        self.types: dict[str, ResourceType] = {}
        self._routes: list[_Route] = []
        self.faults = FaultRules()
        self.lro_seconds: dict[str, float] = dict(DEFAULT_LRO_SECONDS)
        self.default_lro_seconds = 0.0
        self.page_size = DEFAULT_PAGE_SIZE
        self.tenant_id = DEFAULT_TENANT
        self.default_subscriptions: list[str] = [DEFAULT_SUBSCRIPTION]
        self.login_endpoint = DEFAULT_LOGIN_ENDPOINT
        for type_key, seconds in (lro_seconds or {}).items():
            self.set_lro_seconds(type_key, seconds)
        self._secret = secrets.token_bytes(16)
        self.request_log: deque[dict[str, Any]] = deque(maxlen=50_000)
        # Numbers every logged request, never reset: a client marks a point with it and reads what came
        # after (`GET /_emulator/requests?since=N`) even once the capped log has dropped older entries.
        self.requests_logged = 0
        self.request_counts: Counter[str] = Counter()
        self._operations: dict[str, dict[str, Any]] = store.extra.setdefault("operations", {})
        self._locks: dict[str, str] = {}  # lower(lock_id) -> operation id still running
        self._pending: set[str] = set()  # ids of operations still running
        # Called by settle() (before each request and by the ticker): providers with operations of
        # their own (resource group deletion) complete them here.
        self.settle_hooks: list[Callable[[], None]] = []
        for op in self._operations.values():
            if op["status"] == "InProgress":
                self._locks[op["lock_id"].lower()] = op["id"]
                self._pending.add(op["id"])
        self._add_operation_routes()

    # --- registration ----------------------------------------------------------------------------

    def add_type(self, resource_type: ResourceType) -> None:
        self.types[resource_type.type_key.lower()] = resource_type

    def route(self, method: str, pattern: str, handler: RouteHandler, *, anonymous: bool = False) -> None:
        """A custom route, tried before the generic resource routes, in registration order.
        `pattern` is a regex matched (case-insensitively, whole) against the URL path. `anonymous`
        routes answer without a bearer token and without an api-version (ARM's `/metadata/endpoints`)."""
        self._routes.append(
            _Route(method.upper(), re.compile(pattern, re.IGNORECASE), handler, anonymous=anonymous)
        )

    def _anonymous_route(self, call: Call) -> tuple[_Route, re.Match[str]] | None:
        for route in self._routes:
            if route.anonymous and route.method in (call.method, "*"):
                match = route.pattern.fullmatch(call.path.rstrip("/"))
                if match:
                    return route, match
        return None

    def type_of(self, rid: ResourceId) -> ResourceType | None:
        return self.types.get(rid.type_key.lower())

    # --- configuration ---------------------------------------------------------------------------

    def set_lro_seconds(self, type_key: str, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("an operation duration cannot be negative")
        if type_key.lower() in ("default", "*"):
            self.default_lro_seconds = seconds
        else:
            self.lro_seconds[type_key.lower()] = seconds

    def lro_duration(self, type_key: str) -> float:
        return self.lro_seconds.get(type_key.lower(), self.default_lro_seconds)

    # --- dispatch ----------------------------------------------------------------------------------

    def handle(self, call: Call) -> Response:
        """Answer one ARM request (not the admin endpoints): throttling, faults, auth, routing, errors.

        The throttle comes first because ARM's front door spends (or refuses) the token before any
        resource provider sees the request; its remaining-budget headers go on every answer."""
        if call.headers.get("authorization"):
            call.caller = _token_caller(call.headers["authorization"])
        logged = self._record_request(call)
        decision = None
        if call.headers.get("authorization", "").lower().startswith("bearer "):
            decision = self.throttle.take(call.method, call.path, call.caller)
        if decision is not None and not decision.allowed:
            # ARM's front door refuses before any resource provider (or injected fault) sees it.
            with self.lock:
                self.throttled_429s += 1
            logged["status"] = 429
            logged["throttled"] = True
            error = ArmError(
                429, "SubscriptionRequestsThrottled", throttled_error_message(decision, call.caller)
            )
            response = self.error_response(error)
            response.headers.update(decision.headers)
            response.headers["Retry-After"] = str(decision.retry_after)
            log.info(
                "engine.throttled method=%s path=%s caller=%s kind=%s retry_after=%d",
                call.method,
                call.path,
                call.caller,
                decision.kind,
                decision.retry_after,
            )
            return response
        response = self._serve(call, logged)
        if decision is not None:
            response.headers.update(decision.headers)
        return response

    def _serve(self, call: Call, logged: dict[str, Any]) -> Response:
        fault = self.faults.take(call.method, call.path)
        if fault is not None and fault.latency_ms:
            time.sleep(fault.latency_ms / 1000)
        if fault is not None:
            if fault.drop_connection:
                return Response(0, drop=True)
            if fault.status:
                error = ArmError(fault.status, fault.code, fault.message)
                if fault.retry_after is not None:
                    error.headers["Retry-After"] = str(fault.retry_after)
                return self.error_response(error)
            if fault.lro_fail:
                call.lro_failure = {"code": fault.code, "message": fault.message}
        try:
            anonymous = self._anonymous_route(call)
            if anonymous is not None:
                with self.lock:
                    response = anonymous[0].handler(call, anonymous[1])
                logged["status"] = response.status
                return response
            if not call.headers.get("authorization", "").lower().startswith("bearer "):
                raise ArmError(
                    401,
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing.",
                )
            if not call.api_version:
                raise bad_request(
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            self.check_api_version(call)
            if len(call.raw_body) > MAX_BODY_BYTES:
                raise ArmError(
                    413,
                    "RequestEntityTooLarge",
                    f"The request content size exceeds the maximum of {MAX_BODY_BYTES} bytes.",
                )
            with self.lock:
                self.settle()
                response = self._dispatch(call)
        except ArmError as error:
            response = self.error_response(error)
        except Exception:  # a bug of ours must still answer ARM-shaped, and be loud in the log
            log.exception("engine.unhandled method=%s path=%s", call.method, call.path)
            response = self.error_response(
                ArmError(500, "InternalServerError", "The emulator failed to process the request.")
            )
        logged["status"] = response.status
        if response.status >= 400 and isinstance(response.body, dict):
            refusal = response.body.get("error") or {}
            log.info(
                "engine.refused method=%s path=%s status=%d code=%s message=%s",
                call.method,
                call.path,
                response.status,
                refusal.get("code"),
                str(refusal.get("message"))[:300],
            )
        return response

    def check_api_version(self, call: Call) -> None:
        """Refuse an api-version the addressed type does not register (emulator/apiversions.py), as ARM
        does; types the emulator does not list, and Microsoft.Authorization (whose provider checks its
        own list), are not checked here."""
        if call.admin:
            return
        found = api_version_type(call.path)
        if found is None:
            return
        namespace, candidates = found
        if namespace.lower() == "microsoft.authorization":
            return
        for resource_type in candidates:
            if apiversions.supported(namespace, resource_type) is not None:
                apiversions.check(call.api_version, namespace, resource_type)
                return

    def error_response(self, error: ArmError) -> Response:
        return Response(error.status, error.body(), headers=dict(error.headers))

    def _record_request(self, call: Call) -> dict[str, Any]:
        type_key = self.classify(call.path)
        entry: dict[str, Any] = {
            "time": time.time(),
            "method": call.method,
            "path": call.path,
            "api_version": call.api_version,
            "type": type_key,
            "caller": call.caller,
            "if_match": call.headers.get("if-match"),
            "user_agent": call.headers.get("user-agent", ""),
            "status": None,
        }
        with self.lock:
            self.request_counts[f"{call.method} {type_key}"] += 1
            entry["seq"] = self.requests_logged
            self.requests_logged += 1
            self.request_log.append(entry)
        _append_call_log(call)
        return entry

    def classify(self, path: str) -> str:
        """The resource type a path addresses, for counting: `Microsoft.Network/azureFirewalls`,
        `operations` for operation polling, `Microsoft.Resources/resourceGroups`, or `other`."""
        lowered = path.lower().rstrip("/")
        if re.search(
            r"/locations/[^/]+/(operations|nfvoperations|operationresults|nfvoperationresults)/", lowered
        ):
            return "operations"
        at = lowered.rfind("/providers/")
        if at < 0:
            return RESOURCE_GROUP_TYPE if "/resourcegroups" in lowered else "other"
        segments = path.rstrip("/")[at + len("/providers/") :].split("/")
        namespace, types = segments[0], segments[1::2]
        type_key = "/".join([namespace, *types])
        registered = self.types.get(type_key.lower())
        if registered is None and len(types) > 1:  # an action: POST .../{name}/{action}
            registered = self.types.get("/".join([namespace, *types[:-1]]).lower())
        return registered.type_key if registered else type_key

    def _dispatch(self, call: Call) -> Response:
        for route in self._routes:
            if route.method != call.method and route.method != "*":
                continue
            match = route.pattern.fullmatch(call.path.rstrip("/"))
            if match:
                return route.handler(call, match)
        rid = ids.parse(call.path)
        if rid is not None:
            resource_type = self.type_of(rid)
            if resource_type is not None:
                return self._resource_call(call, resource_type, rid)
        return self._collection_or_action(call)

    def _unknown_type(self, path: str) -> ArmError:
        return ArmError(
            400,
            "InvalidResourceType",
            f"The resource type could not be found for the request path '{path}'.",
        )

    def _resource_call(self, call: Call, resource_type: ResourceType, rid: ResourceId) -> Response:
        if call.method == "GET":
            return self.get_response(call, resource_type, rid)
        if call.method == "PUT":
            return self.put(call, resource_type, rid, call.json_object())
        if call.method == "DELETE":
            return self.delete(call, resource_type, rid)
        if call.method == "PATCH" and resource_type.patch_supported:
            return self.patch(call, resource_type, rid, call.json_object())
        raise ArmError(405, "MethodNotAllowed", f"The method '{call.method}' is not allowed on {rid}.")

    def _collection_or_action(self, call: Call) -> Response:
        path = call.path.rstrip("/")
        at = path.lower().rfind("/providers/")
        if at < 0:
            raise self._unknown_type(path)
        scope, segments = path[:at], path[at + len("/providers/") :].split("/")
        if len(segments) < 2 or len(segments) % 2 != 0:
            raise self._unknown_type(path)
        namespace, pairs = segments[0], segments[1:]
        types, names = pairs[0::2], pairs[1::2]
        # An action on a resource: POST {resource id}/{action}
        if call.method == "POST" and names:
            owner = ids.parse(f"{scope}/providers/{namespace}/" + "/".join(pairs[:-1]))
            resource_type = self.type_of(owner) if owner else None
            if owner is not None and resource_type is not None:
                handler = resource_type.actions.get(types[-1]) or resource_type.actions.get(types[-1].lower())
                if handler is None:
                    raise self._unknown_type(path)
                record = self.require(call, resource_type, owner)
                return handler(call, owner, record)
        if call.method != "GET":
            raise ArmError(405, "MethodNotAllowed", f"The method '{call.method}' is not allowed on {path}.")
        type_key = "/".join([namespace, *types])
        resource_type = self.types.get(type_key.lower())
        if resource_type is None:
            raise self._unknown_type(path)
        if names:  # children of a parent resource
            parent = ids.parse(f"{scope}/providers/{namespace}/" + "/".join(pairs[:-1]))
            if parent is None:
                raise self._unknown_type(path)
            return self.list_children(call, resource_type, parent)
        return self.list_at_scope(call, resource_type, scope)

    # --- generic resource operations -----------------------------------------------------------------

    def require_scope(self, rid: ResourceId) -> None:
        """The resource group of an RG-scoped resource must exist (any subscription exists)."""
        rg_id = rid.resource_group_id
        if rg_id is not None and self.store.get(rg_id) is None:
            raise resource_group_not_found(rid.resource_group or "")

    def not_found(self, rid: ResourceId) -> ArmError:
        return resource_not_found(
            "/".join((rid.namespace, *rid.types)), "/".join(rid.names), rid.resource_group
        )

    def require(self, call: Call, resource_type: ResourceType, rid: ResourceId) -> Record:
        """The stored record of a resource (for embedded children: a Record wrapping the child)."""
        self.require_scope(rid)
        if resource_type.embedded_in:
            parent_record, _, child = self._embedded(resource_type, rid)
            if parent_record is None or child is None:
                raise self.not_found(rid)
            return Record(child["id"], resource_type.type_key, child)
        record = self.store.get(str(rid))
        if record is None:
            raise self.not_found(rid)
        return record

    def get_response(self, call: Call, resource_type: ResourceType, rid: ResourceId) -> Response:
        record = self.require(call, resource_type, rid)
        body = resource_type.render(call, record.body)
        return Response(200, body, headers=self._etag_headers(body))

    def _etag_headers(self, body: dict[str, Any]) -> dict[str, str]:
        header = etag_header(body.get("etag"))
        return {"ETag": header} if header else {}

    def _embedded(
        self, resource_type: ResourceType, rid: ResourceId
    ) -> tuple[Record | None, int, dict[str, Any] | None]:
        """(parent record, index in the parent's array or -1, child body or None)."""
        assert resource_type.embedded_in is not None
        parent_id = rid.parent
        parent_record = self.store.get(str(parent_id)) if parent_id else None
        if parent_record is None:
            return None, -1, None
        for index, item in enumerate(self._array(parent_record.body, resource_type.embedded_in)):
            if ids.same(str(item.get("name", "")), rid.name):
                return parent_record, index, item
        return parent_record, -1, None

    @staticmethod
    def _array(body: dict[str, Any], path: tuple[str, ...]) -> list[dict[str, Any]]:
        node: Any = body
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        return node if isinstance(node, list) else []

    @staticmethod
    def _set_array(body: dict[str, Any], path: tuple[str, ...], items: list[dict[str, Any]]) -> None:
        node = body
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = items

    def check_preconditions(self, call: Call, current_etag: str | None, exists: bool) -> None:
        if call.admin:
            return
        if_match = call.headers.get("if-match")
        if if_match:
            if if_match.strip() == "*":
                if not exists:
                    raise precondition_failed()
            elif not exists or current_etag is None or etag_value(if_match) != etag_value(current_etag):
                raise precondition_failed()
        if_none_match = call.headers.get("if-none-match")
        if if_none_match and if_none_match.strip() == "*" and exists:
            raise precondition_failed()

    def check_busy(self, call: Call, resource_type: ResourceType, rid: ResourceId) -> None:
        if call.admin:
            return
        lock_id = resource_type.lock_id(rid)
        op_id = self._locks.get(lock_id.lower())
        if op_id is None:
            return
        op = self._operations.get(op_id)
        if op is None or op["status"] != "InProgress":
            self._locks.pop(lock_id.lower(), None)
            return
        if resource_type.busy_status == 409:
            raise another_operation_in_progress(lock_id, self.operation_url(call, op))
        if resource_type.busy_status == 429:
            raise retryable_another_operation(lock_id, max(1, math.ceil(op["completes_at"] - time.time())))
        self._finish(
            op,
            "Canceled",
            error={
                "code": "CanceledAndSupersededDueToAnotherOperation",
                "message": "Operation was canceled and superseded by another operation on the same resource.",
            },
        )

    def stamp(self, resource_type: ResourceType, rid: ResourceId, body: dict[str, Any], state: str) -> None:
        """Set the identity fields every ARM resource carries, a new etag and the state."""
        body["id"] = str(rid)
        body["name"] = rid.name
        body["type"] = resource_type.body_type
        self._renew_etag(resource_type, body)
        _set_all_states(body, state)
        properties = body.setdefault("properties", {})
        if isinstance(properties, dict):
            properties["provisioningState"] = state

    def _renew_etag(self, resource_type: ResourceType, body: dict[str, Any]) -> None:
        """Every write gives a resource a new etag (none for types without), which its embedded
        children carry too."""
        etag = new_etag(resource_type.etag_style)
        if etag is not None:
            body["etag"] = etag
        else:
            body.pop("etag", None)
        self._stamp_embedded_etags(resource_type, body)

    def _stamp_embedded_etags(self, resource_type: ResourceType, body: dict[str, Any]) -> None:
        """Embedded children carry their parent's etag, as ARM answers them."""
        etag = body.get("etag")
        for path in resource_type.etag_arrays:
            for item in self._array(body, path):
                if etag is not None:
                    item["etag"] = etag
        for child_type in self.types.values():
            if (
                child_type.embedded_in
                and child_type.types[:-1] == resource_type.types
                and (child_type.namespace == resource_type.namespace)
            ):
                for item in self._array(body, child_type.embedded_in):
                    if etag is not None:
                        item["etag"] = etag

    def put(
        self, call: Call, resource_type: ResourceType, rid: ResourceId, request_body: dict[str, Any]
    ) -> Response:
        """Create or replace; answers 201/200 with the resource (and an async operation if LRO)."""
        self.require_scope(rid)
        rg_id = rid.resource_group_id
        group = self.store.get(rg_id) if rg_id else None
        if group is not None and group.body.get("properties", {}).get("provisioningState") == "Deleting":
            raise ArmError(
                409,
                "ResourceGroupBeingDeleted",
                f"The resource group '{rid.resource_group}' is in deprovisioning state and cannot perform "
                "this operation.",
            )
        if resource_type.embedded_in:
            return self._put_embedded(call, resource_type, rid, request_body)
        parent_body: dict[str, Any] | None = None
        if rid.parent is not None:
            parent = self.store.get(str(rid.parent))
            if parent is None:
                raise self.not_found(rid.parent)
            parent_body = parent.body
        existing = self.store.get(str(rid))
        existing_body = existing.body if existing else None
        self.check_preconditions(
            call, existing_body.get("etag") if existing_body else None, existing is not None
        )
        self.check_busy(call, resource_type, rid)
        body = resource_type.prepare(call, rid, copy.deepcopy(request_body), existing_body, parent_body)
        if resource_type.tracked and rid.parent is None and not body.get("location"):
            raise bad_request("LocationRequired", "The location property is required for this definition.")
        long_running = resource_type.long_running and not call.admin
        state = "Succeeded"
        if long_running:
            state = (
                resource_type.creating_state
                if existing is None and resource_type.creating_state
                else "Updating"
            )
        self.stamp(resource_type, rid, body, state)
        record = self.store.put(str(rid), resource_type.type_key, body)
        resource_type.after_write(call, rid, record.body)
        headers = self._etag_headers(record.body)
        if long_running:
            op = self._start(call, resource_type, rid, "put", str(rid))
            headers.update(self._operation_headers(call, op, location=False))
        answer = resource_type.render(call, record.body)
        return Response(200 if existing else 201, answer, headers=headers)

    def _put_embedded(
        self, call: Call, resource_type: ResourceType, rid: ResourceId, request_body: dict[str, Any]
    ) -> Response:
        assert resource_type.embedded_in is not None and rid.parent is not None
        parent_record, index, existing = self._embedded(resource_type, rid)
        if parent_record is None:
            raise self.not_found(rid.parent)
        parent_type = self.type_of(rid.parent)
        self.check_preconditions(call, parent_record.body.get("etag"), existing is not None)
        self.check_busy(call, resource_type, rid)
        child = resource_type.prepare(call, rid, copy.deepcopy(request_body), existing, parent_record.body)
        long_running = resource_type.long_running and not call.admin
        state = "Updating" if long_running else "Succeeded"
        self.stamp(resource_type, rid, child, state)
        parent_body = copy.deepcopy(parent_record.body)
        items = self._array(parent_body, resource_type.embedded_in)
        if index >= 0:
            items[index] = child
        else:
            items.append(child)
        self._set_array(parent_body, resource_type.embedded_in, items)
        if parent_type is not None:
            self._renew_etag(parent_type, parent_body)
            parent_body.setdefault("properties", {})["provisioningState"] = state
        stored = self.store.put(parent_record.id, parent_record.type_key, parent_body)
        resource_type.after_write(call, rid, child)
        answer = next(
            item
            for item in self._array(stored.body, resource_type.embedded_in)
            if item["name"] == child["name"]
        )
        headers = self._etag_headers(answer)
        if long_running:
            op = self._start(call, resource_type, rid, "put", parent_record.id)
            headers.update(self._operation_headers(call, op, location=False))
        return Response(200 if existing else 201, resource_type.render(call, answer), headers=headers)

    def patch(
        self, call: Call, resource_type: ResourceType, rid: ResourceId, request_body: dict[str, Any]
    ) -> Response:
        """Update tags: synchronous 200, as the Network and Compute providers answer it."""
        record = self.require(call, resource_type, rid)
        if resource_type.embedded_in:
            raise ArmError(405, "MethodNotAllowed", "PATCH is not supported on this resource type.")
        self.check_preconditions(call, record.body.get("etag"), True)
        tags = request_body.get("tags")
        if tags is not None and not isinstance(tags, dict):
            raise bad_request("InvalidRequestFormat", "tags must be an object of strings.", target="tags")
        body = copy.deepcopy(record.body)
        if tags is not None:
            body["tags"] = tags
        self._renew_etag(resource_type, body)
        stored = self.store.put(record.id, record.type_key, body)
        answer = resource_type.render(call, stored.body)
        return Response(200, answer, headers=self._etag_headers(answer))

    def delete(self, call: Call, resource_type: ResourceType, rid: ResourceId) -> Response:
        self.require_scope(rid)
        if resource_type.embedded_in:
            parent_record, _, existing = self._embedded(resource_type, rid)
            record_id = parent_record.id if parent_record else ""
        else:
            record = self.store.get(str(rid))
            existing = record.body if record else None
            record_id = str(rid)
        if existing is None:
            return Response(resource_type.delete_missing_status)
        self.check_preconditions(call, existing.get("etag"), True)
        self.check_busy(call, resource_type, rid)
        resource_type.check_delete(call, rid, existing)
        long_running = resource_type.long_running
        if resource_type.long_running_delete is not None:
            long_running = resource_type.long_running_delete
        if not long_running or call.admin:
            self.remove(call, resource_type, rid)
            return Response(resource_type.sync_delete_status)
        self._mark_deleting(resource_type, rid)
        answer = None
        if resource_type.delete_returns_body:
            answer = resource_type.render(call, self.require(call, resource_type, rid).body)
        op = self._start(call, resource_type, rid, "delete", record_id)
        return Response(202, answer, headers=self._operation_headers(call, op, location=True))

    def _mark_deleting(self, resource_type: ResourceType, rid: ResourceId) -> None:
        if resource_type.embedded_in:
            parent_record, index, _ = self._embedded(resource_type, rid)
            if parent_record is None or index < 0:
                return
            body = copy.deepcopy(parent_record.body)
            self._array(body, resource_type.embedded_in)[index].setdefault("properties", {})[
                "provisioningState"
            ] = "Deleting"
            self.store.put(parent_record.id, parent_record.type_key, body)
            return
        record = self.store.get(str(rid))
        if record is not None:
            body = copy.deepcopy(record.body)
            body.setdefault("properties", {})["provisioningState"] = "Deleting"
            self.store.put(record.id, record.type_key, body)

    def remove(self, call: Call, resource_type: ResourceType, rid: ResourceId) -> None:
        """Delete now: the resource, and any records under its id (child resources)."""
        if resource_type.embedded_in:
            parent_record, index, existing = self._embedded(resource_type, rid)
            if parent_record is None or existing is None:
                return
            body = copy.deepcopy(parent_record.body)
            items = self._array(body, resource_type.embedded_in)
            del items[index]
            parent_type = self.type_of(rid.parent) if rid.parent else None
            if parent_type is not None:
                self._renew_etag(parent_type, body)
            self.store.put(parent_record.id, parent_record.type_key, body)
            resource_type.after_delete(call, rid, existing)
            return
        record = self.store.delete(str(rid))
        for child in self.store.children(str(rid)):
            self.store.delete(child.id)
        if record is not None:
            resource_type.after_delete(call, rid, record.body)

    def list_at_scope(self, call: Call, resource_type: ResourceType, scope: str) -> Response:
        if resource_type.embedded_in or len(resource_type.types) > 1:
            raise self._unknown_type(call.path)
        match = re.fullmatch(r"/subscriptions/([^/]+)(?:/resourceGroups/([^/]+))?", scope, re.IGNORECASE)
        if match is None:
            raise self._unknown_type(call.path)
        if match.group(2) and self.store.get(scope) is None:
            raise resource_group_not_found(match.group(2))
        records = self.store.list(resource_type.type_key, under=scope)
        return self._page(
            call, [r.body for r in records], render=lambda body: resource_type.render(call, body)
        )

    def list_children(self, call: Call, resource_type: ResourceType, parent: ResourceId) -> Response:
        self.require_scope(parent)
        parent_record = self.store.get(str(parent))
        if parent_record is None:
            raise self.not_found(parent)
        if resource_type.embedded_in:
            items = self._array(parent_record.body, resource_type.embedded_in)
        else:
            items = [r.body for r in self.store.list(resource_type.type_key, under=str(parent))]
        return self._page(call, items, render=lambda body: resource_type.render(call, body))

    def _page(
        self,
        call: Call,
        items: list[dict[str, Any]],
        page_size: int | None = None,
        render: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> Response:
        """`{"value": [...], "nextLink"?}`: long lists come in pages, as ARM does (`page_size`, default
        the engine's). Only the page's items go through `render`, so reading a large list page by page
        costs each resource's rendering once, not once per page."""
        page_size = page_size or self.page_size
        try:
            skip = max(0, int(call.query_value("$skiptoken") or 0))
        except ValueError:
            raise bad_request(
                "InvalidSkipToken", "The $skiptoken is not one this server handed out."
            ) from None
        page = items[skip : skip + page_size]
        if render is not None:
            page = [render(item) for item in page]
        body: dict[str, Any] = {"value": page}
        if skip + page_size < len(items):
            query = {k: v for k, v in call.query.items() if k.lower() != "$skiptoken"}
            query["$skiptoken"] = str(skip + page_size)
            body["nextLink"] = f"{call.base_url}{call.path}?{urlencode(query)}"
        return Response(200, body)

    # --- long-running operations -------------------------------------------------------------------

    def _start(
        self,
        call: Call,
        resource_type: ResourceType,
        rid: ResourceId,
        kind: str,
        record_id: str,
        *,
        locks: bool = True,
        **extra: Any,
    ) -> dict[str, Any]:
        """Record a long-running operation; one that `locks` holds its resource's lock until done
        (a concurrent write gets 409/429), an action locks nothing. `extra` is kept on the record."""
        now = time.time()
        record = self.store.get(record_id)
        location = (record.body.get("location") if record else None) or DEFAULT_REGION
        op: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "kind": kind,
            "resource_id": str(rid),
            "record_id": record_id,
            "lock_id": resource_type.lock_id(rid) if locks else f"action:{uuid.uuid4()}",
            "type": resource_type.type_key,
            "namespace": rid.namespace,
            "segment": resource_type.operations_segment,
            "subscription": rid.subscription or "00000000-0000-0000-0000-000000000000",
            "region": str(location).replace(" ", "").lower(),
            "api_version": call.api_version,
            "status": "InProgress",
            "started": now,
            "completes_at": now + self.lro_duration(resource_type.type_key),
            "failure": call.lro_failure,
            "caller": call.caller,
            **extra,
        }
        self._operations[op["id"]] = op
        if locks:
            self._locks[op["lock_id"].lower()] = op["id"]
        self._pending.add(op["id"])
        self.store.mark_dirty()
        if op["completes_at"] <= now:
            self.settle()
        return op

    def start_action(self, call: Call, resource_type: ResourceType, rid: ResourceId, result: Any) -> Response:
        """A long-running POST action whose result is known now (e.g. a NIC's effective NSGs): 202
        with `Location` (+ `Azure-AsyncOperation`); the Location URL answers 202 until the type's
        duration has passed, then 200 with `result`. The action locks nothing."""
        op = self._start(call, resource_type, rid, "action", str(rid), locks=False, result=result)
        return Response(202, headers=self._operation_headers(call, op, location=True))

    def _signature(self, op_id: str) -> str:
        return hmac.new(self._secret, op_id.encode(), hashlib.sha256).hexdigest()[:43]

    def operation_url(self, call: Call, op: dict[str, Any], *, results: bool = False) -> str:
        """Opaque, signed-looking, subscription + region scoped, as ARM hands them out."""
        segment = op["segment"]
        if results:
            segment = "nfvOperationResults" if segment == "nfvOperations" else "operationResults"
        query = urlencode(
            {
                "api-version": op["api_version"] or "2024-07-01",
                "t": str(int(op["started"] * 10_000_000)),
                "c": base64.urlsafe_b64encode(op["id"].encode()).decode().rstrip("="),
                "s": self._signature(op["id"]),
                "h": hashlib.sha256(op["resource_id"].encode()).hexdigest()[:43],
            }
        )
        return (
            f"{call.base_url}/subscriptions/{op['subscription']}/providers/{op['namespace']}"
            f"/locations/{op['region']}/{segment}/{op['id']}?{query}"
        )

    def _retry_after(self, op: dict[str, Any]) -> str:
        if op["status"] != "InProgress":
            return "0"
        return str(max(0, math.ceil(op["completes_at"] - time.time())))

    def _operation_headers(self, call: Call, op: dict[str, Any], *, location: bool) -> dict[str, str]:
        headers = {"Azure-AsyncOperation": self.operation_url(call, op), "Retry-After": self._retry_after(op)}
        if location:
            headers["Location"] = self.operation_url(call, op, results=True)
        return headers

    def settle(self) -> None:
        """Complete every operation whose time has come (called before each request and by a ticker)."""
        now = time.time()
        with self.lock:
            due = [
                op
                for op in (self._operations[i] for i in list(self._pending) if i in self._operations)
                if op["status"] == "InProgress" and op["completes_at"] <= now
            ]
            for op in due:
                if op["failure"]:
                    self._finish(op, "Failed", error=op["failure"])
                else:
                    self._finish(op, "Succeeded")
            for hook in self.settle_hooks:
                hook()
            if len(self._operations) > _KEEP_FINISHED_OPERATIONS:
                # forget the oldest finished quarter at once, so this runs rarely
                finished = [k for k, op in self._operations.items() if op["status"] != "InProgress"]
                for k in finished[: _KEEP_FINISHED_OPERATIONS // 4]:
                    del self._operations[k]
                self.store.mark_dirty()

    def _finish(self, op: dict[str, Any], status: str, error: dict[str, str] | None = None) -> None:
        op["status"] = status
        self._pending.discard(op["id"])
        op["ended"] = time.time()
        if error:
            op["error"] = {
                "code": error.get("code") or "InternalServerError",
                "message": error.get("message") or "",
            }
        if self._locks.get(op["lock_id"].lower()) == op["id"]:
            del self._locks[op["lock_id"].lower()]
        self.store.mark_dirty()
        rid = ids.parse(op["resource_id"])
        resource_type = self.type_of(rid) if rid else None
        if rid is None or resource_type is None:
            return
        call = Call(self, "SETTLE", op["resource_id"], {}, {}, b"", "", caller=op["caller"], admin=True)
        if op["kind"] == "delete":
            if status == "Succeeded":
                self.remove(call, resource_type, rid)
            else:
                self._flip_state(
                    op["record_id"], "Deleting", "Succeeded" if status == "Canceled" else "Failed"
                )
            return
        if op["kind"] == "action":
            return
        if status != "Canceled":
            self._flip_state(
                op["record_id"], ("Updating", "Creating"), "Succeeded" if status == "Succeeded" else "Failed"
            )

    def _flip_state(self, record_id: str, old: str | tuple[str, ...], new: str) -> None:
        record = self.store.get(record_id)
        if record is None:
            return
        body = copy.deepcopy(record.body)
        _set_states(body, old, new)
        rid = ids.parse(record_id)
        resource_type = self.type_of(rid) if rid else None
        if resource_type is not None:  # the etag changes again when the operation completes
            self._renew_etag(resource_type, body)
        self.store.put(record.id, record.type_key, body)

    def start_ticker(self, interval: float = 0.1) -> threading.Thread:
        def run() -> None:
            while True:
                time.sleep(interval)
                try:
                    self.settle()
                except Exception:
                    log.exception("engine.settle_failed")

        thread = threading.Thread(target=run, name="lro-ticker", daemon=True)
        thread.start()
        return thread

    def _add_operation_routes(self) -> None:
        prefix = r"/subscriptions/(?P<sub>[^/]+)/providers/(?P<ns>[^/]+)/locations/(?P<loc>[^/]+)"
        self.route("GET", prefix + r"/(?:operations|nfvOperations)/(?P<op>[^/]+)", self._operation_status)
        self.route(
            "GET", prefix + r"/(?:operationResults|nfvOperationResults)/(?P<op>[^/]+)", self._operation_result
        )

    def _operation(self, call: Call, op_id: str) -> dict[str, Any]:
        op = self._operations.get(op_id)
        signature = call.query_value("s")
        if op is None or (
            signature is not None and not hmac.compare_digest(signature, self._signature(op_id))
        ):
            raise ArmError(404, "OperationNotFound", f"The operation '{op_id}' could not be found.")
        return op

    def _operation_status(self, call: Call, match: re.Match[str]) -> Response:
        op = self._operation(call, match.group("op"))
        body: dict[str, Any] = {"status": op["status"]}
        if "error" in op:
            body["error"] = op["error"]
        return Response(200, body, headers={"Retry-After": self._retry_after(op)})

    def _operation_result(self, call: Call, match: re.Match[str]) -> Response:
        op = self._operation(call, match.group("op"))
        if op["status"] == "InProgress":
            return Response(202, headers=self._operation_headers(call, op, location=True))
        if op["status"] != "Succeeded":
            error = op.get("error") or {"code": "OperationFailed", "message": "The operation failed."}
            return Response(200, {"status": op["status"], "error": error})
        if op["kind"] == "action":
            return Response(200, op.get("result"))
        rid = ids.parse(op["resource_id"])
        resource_type = self.type_of(rid) if rid else None
        if op["kind"] == "delete":
            status = resource_type.delete_result_status if resource_type else 204
            return Response(status, null_body=status == 200)
        record = self.store.get(op["record_id"])
        if record is None or resource_type is None:
            return Response(204)
        return Response(200, resource_type.render(call, record.body))

    # --- views for the admin endpoints ----------------------------------------------------------------

    def reset_operations(self) -> None:
        with self.lock:
            self._operations = self.store.extra.setdefault("operations", {})
            self._operations.clear()
            self._locks.clear()
            self._pending.clear()

    def operations(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(op) for op in self._operations.values()]
