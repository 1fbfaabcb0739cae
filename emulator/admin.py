"""Admin endpoints under /_emulator/ (no auth): health, state, seed, faults, requests, config,
and direct resource writes that bypass locks, preconditions and LROs (drift). See README.md."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emulator import ids
from emulator.engine import RESOURCE_GROUP_TYPE, Call, Engine, Response
from emulator.errors import ArmError
from emulator.faults import parse_fault
from emulator.throttle import KINDS, Limit, parse_limits

log = logging.getLogger("emulator.admin")

AdminHandler = Callable[[Engine, Call, "re.Match[str]"], Response]


def _error(status: int, message: str, **extra: Any) -> Response:
    return Response(status, {"error": {"code": "InvalidAdminRequest", "message": message, **extra}})


def _json(call: Call) -> Any:
    try:
        return json.loads(call.raw_body or b"null")
    except ValueError as error:
        raise ArmError(400, "InvalidRequestContent", f"the body is not valid JSON: {error}") from error


def health(engine: Engine, call: Call, match: re.Match[str]) -> Response:
    return Response(200, {"status": "ok", "resources": len(engine.store)})


def state(engine: Engine, call: Call, match: re.Match[str]) -> Response:
    engine.settle()
    wanted = (call.query_value("type") or "").lower()
    resources = [
        {"id": r.id, "type": r.type_key, "body": r.body}
        for r in engine.store.all()
        if not wanted or r.type_key.lower() == wanted
    ]
    return Response(
        200,
        {
            "resources": resources,
            "operations": engine.operations(),
            "faults": [f.to_json() for f in engine.faults.list()],
            "config": _config_view(engine),
        },
    )


def admin_write(
    engine: Engine, resource_id: str, body: dict[str, Any], *, create_group: bool = False
) -> Response:
    """PUT a resource with the same validation as ARM, without locks, preconditions or LRO."""
    if resource_id.rstrip("/").count("/") == 4 and "/resourcegroups/" in resource_id.lower():
        path = resource_id
    else:
        rid = ids.parse(resource_id)
        if rid is None:
            raise ArmError(400, "InvalidResourceId", f"'{resource_id}' is not a resource id.")
        if create_group and rid.resource_group_id and engine.store.get(rid.resource_group_id) is None:
            location = body.get("location") or "westeurope"
            admin_write(engine, rid.resource_group_id, {"location": location})
        path = str(rid)
    raw = json.dumps(body).encode()
    call = Call(
        engine, "PUT", path, {"api-version": "admin"}, {}, raw, "https://emulator", "admin", admin=True
    )
    with engine.lock:
        return engine._dispatch(call)


def _admin_call(engine: Engine, method: str, path: str) -> Response:
    call = Call(
        engine, method, path, {"api-version": "admin"}, {}, b"", "https://emulator", "admin", admin=True
    )
    with engine.lock:
        try:
            return engine._dispatch(call)
        except ArmError as error:
            return engine.error_response(error)


def resource(engine: Engine, call: Call, match: re.Match[str]) -> Response:
    resource_id = "/" + match.group("id").lstrip("/")
    if call.method == "PUT":
        body = _json(call)
        if not isinstance(body, dict):
            return _error(400, "the body must be the resource as a JSON object")
        try:
            return admin_write(engine, resource_id, body)
        except ArmError as error:
            return engine.error_response(error)
    return _admin_call(engine, call.method, resource_id)


def seed_resources(engine: Engine, items: Any) -> int:
    """Apply an estate: `[{"id": ..., "body": {...}}, ...]` (or `{"resources": [...]}`), in order.
    Missing resource groups are created. Raises ArmError naming the first item that fails."""
    if isinstance(items, dict):
        items = items.get("resources")
    if not isinstance(items, list):
        raise ArmError(400, "InvalidSeed", 'a seed is a list of {id, body} (or {"resources": [...]})')
    for index, item in enumerate(items):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("id"), str)
            or not isinstance(item.get("body"), dict)
        ):
            raise ArmError(400, "InvalidSeed", f"seed item {index} must be an object with 'id' and 'body'")
        try:
            admin_write(engine, item["id"], item["body"], create_group=True)
        except ArmError as error:
            raise ArmError(
                400,
                "InvalidSeed",
                f"seed item {index} ({item['id']}) was refused: {error.code}: {error.message}",
                target=f"resources[{index}]",
            ) from error
    return len(items)


def seed(engine: Engine, call: Call, match: re.Match[str]) -> Response:
    try:
        count = seed_resources(engine, _json(call))
    except ArmError as error:
        return engine.error_response(error)
    return Response(200, {"applied": count, "resources": len(engine.store)})


def seed_file(engine: Engine, path: Path) -> int:
    return seed_resources(engine, json.loads(path.read_text(encoding="utf-8")))


def add_fault(engine: Engine, call: Call, match: re.Match[str]) -> Response:
    data = _json(call)
    try:
        faults = [parse_fault(item) for item in (data if isinstance(data, list) else [data])]
    except (ValueError, TypeError) as error:
        return _error(400, str(error))
    added = [engine.faults.add(f).to_json() for f in faults]
    return Response(201, added[0] if not isinstance(data, list) else {"value": added})


def list_faults(engine: Engine, call: Call, match: re.Match[str]) -> Response:
    return Response(200, {"value": [f.to_json() for f in engine.faults.list()]})


def clear_faults(engine: Engine, call: Call, match: re.Match[str]) -> Response:
    engine.faults.clear()
    return Response(204)


def requests(engine: Engine, call: Call, match: re.Match[str]) -> Response:
    """The counts and the log; with `?since=N` only entries numbered N or later (`next` is the number
    the next request will get: a mark for a later `since`)."""
    since_text = call.query_value("since")
    try:
        since = int(since_text) if since_text is not None else None
    except ValueError:
        return Response(
            400, {"error": {"code": "InvalidSince", "message": f"since={since_text!r}: not an integer"}}
        )
    with engine.lock:
        log = list(engine.request_log)
        return Response(
            200,
            {
                "counts": dict(engine.request_counts),
                "throttled_429s": engine.throttled_429s,
                "log": log if since is None else [entry for entry in log if entry["seq"] >= since],
                "next": engine.requests_logged,
            },
        )


def clear_requests(engine: Engine, call: Call, match: re.Match[str]) -> Response:
    with engine.lock:
        engine.request_counts.clear()
        engine.request_log.clear()
        engine.throttled_429s = 0
    return Response(204)


def get_throttle(engine: Engine, call: Call, match: re.Match[str]) -> Response:
    return Response(200, engine.throttle.state())


def _limits_from(value: Any) -> dict[str, Limit]:
    """`"reads=5/1,writes=..."` or `{"reads": {"size": 5, "refill_per_second": 1}, ...}`."""
    if isinstance(value, str):
        parsed = parse_limits(value)
        if parsed is None:
            raise ValueError('limits cannot be "off"; send {"enabled": false}')
        return parsed
    if not isinstance(value, dict):
        raise ValueError("limits must be a string like reads=250/25 or an object per kind")
    limits: dict[str, Limit] = {}
    for kind, spec in value.items():
        if kind not in KINDS or not isinstance(spec, dict):
            raise ValueError(
                f"limits.{kind}: expected one of {', '.join(KINDS)} with {{size, refill_per_second}}"
            )
        size, refill = spec.get("size"), spec.get("refill_per_second")
        if (
            isinstance(size, bool)
            or isinstance(refill, bool)
            or not isinstance(size, int | float)
            or not isinstance(refill, int | float)
            or size < 1
            or refill <= 0
        ):
            raise ValueError(f"limits.{kind}: size >= 1 and refill_per_second > 0 are required")
        limits[kind] = Limit(float(size), float(refill))
    return limits


def set_throttle(engine: Engine, call: Call, match: re.Match[str]) -> Response:
    """Switch throttling on/off, change sizes, reset the buckets, or move the throttle's clock."""
    data = _json(call)
    allowed = {"enabled", "limits", "global_factor", "reset", "advance_seconds"}
    if not isinstance(data, dict) or not data or set(data) - allowed:
        return _error(400, f"throttle takes an object with some of: {', '.join(sorted(allowed))}")
    enabled, reset, advance = data.get("enabled"), data.get("reset", False), data.get("advance_seconds")
    factor = data.get("global_factor")
    if enabled is not None and not isinstance(enabled, bool):
        return _error(400, "enabled must be true or false")
    if not isinstance(reset, bool):
        return _error(400, "reset must be true or false")
    if advance is not None and (
        isinstance(advance, bool) or not isinstance(advance, int | float) or advance < 0
    ):
        return _error(400, "advance_seconds must be a number of seconds >= 0")
    if factor is not None and (isinstance(factor, bool) or not isinstance(factor, int | float) or factor < 1):
        return _error(400, "global_factor must be a number >= 1")
    try:
        limits = _limits_from(data["limits"]) if "limits" in data else None
    except ValueError as error:
        return _error(400, str(error))
    engine.throttle.configure(
        enabled=enabled,
        limits=limits,
        global_factor=None if factor is None else float(factor),
        reset=reset,
    )
    if advance:
        engine.throttle.advance(float(advance))
    return Response(200, engine.throttle.state())


def _config_view(engine: Engine) -> dict[str, Any]:
    return {
        "lro_seconds": {"default": engine.default_lro_seconds, **engine.lro_seconds},
        "page_size": engine.page_size,
    }


def get_config(engine: Engine, call: Call, match: re.Match[str]) -> Response:
    return Response(200, _config_view(engine))


def set_config(engine: Engine, call: Call, match: re.Match[str]) -> Response:
    data = _json(call)
    if not isinstance(data, dict) or set(data) - {"lro_seconds", "page_size"}:
        return _error(400, 'config takes {"lro_seconds": {"<type or default>": seconds}, "page_size": n}')
    page_size = data.get("page_size")
    if page_size is not None and (
        isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1
    ):
        return _error(400, "page_size must be an integer >= 1")
    durations = data.get("lro_seconds") or {}
    if not isinstance(durations, dict):
        return _error(400, "lro_seconds must be an object of type -> seconds")
    for type_key, seconds in durations.items():
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            return _error(400, f"lro_seconds['{type_key}'] must be a number of seconds >= 0")
    for type_key, seconds in durations.items():
        engine.set_lro_seconds(type_key, float(seconds))
    if page_size is not None:
        engine.page_size = page_size
    return Response(200, _config_view(engine))


def reset(engine: Engine, call: Call, match: re.Match[str]) -> Response:
    """Forget every resource, operation, fault and logged request."""
    with engine.lock:
        engine.store.clear()
        engine.reset_operations()
        engine.faults.clear()
        engine.request_counts.clear()
        engine.request_log.clear()
        engine.throttled_429s = 0
        engine.throttle.configure(reset=True)
    return Response(204)


_ROUTES: list[tuple[str, re.Pattern[str], AdminHandler]] = [
    ("GET", re.compile(r"/_emulator/health"), health),
    ("GET", re.compile(r"/_emulator/state"), state),
    ("POST", re.compile(r"/_emulator/seed"), seed),
    ("POST", re.compile(r"/_emulator/faults"), add_fault),
    ("GET", re.compile(r"/_emulator/faults"), list_faults),
    ("DELETE", re.compile(r"/_emulator/faults"), clear_faults),
    ("GET", re.compile(r"/_emulator/requests"), requests),
    ("DELETE", re.compile(r"/_emulator/requests"), clear_requests),
    ("GET", re.compile(r"/_emulator/config"), get_config),
    ("POST", re.compile(r"/_emulator/config"), set_config),
    ("POST", re.compile(r"/_emulator/reset"), reset),
    ("GET", re.compile(r"/_emulator/throttle"), get_throttle),
    ("PUT", re.compile(r"/_emulator/throttle"), set_throttle),
    ("PUT", re.compile(r"/_emulator/resources(?P<id>/.+)"), resource),
    ("GET", re.compile(r"/_emulator/resources(?P<id>/.+)"), resource),
    ("DELETE", re.compile(r"/_emulator/resources(?P<id>/.+)"), resource),
]


def handle(engine: Engine, call: Call) -> Response:
    path = call.path.rstrip("/")
    known_path = False
    for method, pattern, handler in _ROUTES:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        known_path = True
        if method == call.method:
            try:
                return handler(engine, call, match)
            except ArmError as error:
                return engine.error_response(error)
            except Exception:
                log.exception("admin.unhandled path=%s", path)
                return _error(500, "the admin endpoint failed; see the emulator log")
    if known_path:
        return _error(405, f"{call.method} is not allowed on {path}")
    return _error(404, f"no admin endpoint {path}")


__all__ = ["RESOURCE_GROUP_TYPE", "handle", "seed_file"]
