"""Structured logging with stable event names, and OpenTelemetry to Application Insights.

Every log line the app wants someone to find again goes through `log_event(name, **fields)`: the
name is a member of `shared.events.EventId` (`revoke.failing`, `grant.applied`), the one catalogue
that alert rules and saved queries match on, so renaming one is a breaking change. The record's message is
`name {"field": ...}` (readable in the Functions host's console and in App Insights `traces`), and the
name and fields are also record attributes, which OpenTelemetry exports as `customDimensions`.

OpenTelemetry (azure-monitor-opentelemetry) is configured only when
`APPLICATIONINSIGHTS_CONNECTION_STRING` is set, and imported only then: the distro pulls in dozens of
modules, and a cold start that does not export telemetry should not pay for them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from typing import Any, Final

from shared.events import EventId

LOGGER_NAME: Final = "portcullis"
CONNECTION_STRING_SETTING: Final = "APPLICATIONINSIGHTS_CONNECTION_STRING"
# `ClientId=<guid>;Authorization=AAD`: App Insights with local (key) auth disabled, as infra/ deploys it.
AUTHENTICATION_STRING_SETTING: Final = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"


_EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
# Attributes a logging.LogRecord already has: an `extra` key with one of these names raises KeyError.
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

_logger = logging.getLogger(LOGGER_NAME)
if _logger.level == logging.NOTSET:
    # The root logger defaults to WARNING; our info events must reach the host and the exporter.
    _logger.setLevel(logging.INFO)
_configure_lock = threading.Lock()
_telemetry_state: dict[str, bool] = {"configured": False}


def _attribute_value(value: Any) -> str | int | float | bool:
    """OpenTelemetry exports only primitive attribute values; anything else becomes its JSON text."""
    if isinstance(value, str | bool | int | float):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def event_fields(name: str, fields: Mapping[str, Any]) -> dict[str, str | int | float | bool]:
    """The record attributes for an event: `event` plus each field (renamed if LogRecord owns it)."""
    attributes: dict[str, str | int | float | bool] = {"event": name}
    for key, value in fields.items():
        attribute = f"field_{key}" if key in _RESERVED or key == "event" else key
        attributes[attribute] = _attribute_value(value)
    return attributes


def log_event(name: EventId, level: int | str = logging.INFO, **fields: Any) -> None:
    """Log the event `name` (stable, dotted, lower case) with structured `fields`.

    `level` is a logging level (`logging.ERROR`) or its name (`"error"`). A malformed name is a
    programming error and raises ValueError, so it is caught by the first test that reaches it.
    """
    if not _EVENT_NAME.match(name):
        raise ValueError(f"event name {name!r} must be dotted lower-case words, like 'revoke.failing'")
    numeric_level = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric_level, int):
        raise ValueError(f"log level {level!r} is not a logging level")
    if not _logger.isEnabledFor(numeric_level):
        return
    message = f"{name} {json.dumps(fields, sort_keys=True, default=str)}" if fields else name
    _logger.log(numeric_level, message, extra=event_fields(name, fields))


# The longest error text a log field, an audit record or a recorded ARM refusal carries.
ERROR_TEXT_LIMIT: Final = 500


def brief(error: object) -> str:
    """An error as bounded text: an exception's text can hold a whole HTTP answer, and App Insights
    attributes and Table properties must stay small. The one place that bound is applied."""
    return str(error)[:ERROR_TEXT_LIMIT]


def _aad_client_id(authentication_string: str | None) -> str | None:
    """The managed identity's client id from `ClientId=<id>;Authorization=AAD`, else None."""
    if not authentication_string:
        return None
    parts = dict(
        part.split("=", 1) for part in authentication_string.split(";") if "=" in part and part.strip()
    )
    if parts.get("Authorization", "").upper() != "AAD":
        return None
    return parts.get("ClientId") or None


def configure_telemetry(env: Mapping[str, str] | None = None) -> bool:
    """Send logs, traces and Azure SDK calls to Application Insights when its connection string is
    set; otherwise do nothing (and import nothing). Idempotent; returns whether telemetry is on.

    A failure to configure the exporter is logged (`telemetry.failed`) and does not stop the app:
    losing telemetry must not stop ports from closing.
    """
    env = os.environ if env is None else env
    connection_string = (env.get(CONNECTION_STRING_SETTING) or "").strip()
    if not connection_string:
        return False
    with _configure_lock:
        if _telemetry_state["configured"]:
            return True
        options: dict[str, Any] = {"connection_string": connection_string, "logger_name": LOGGER_NAME}
        client_id = _aad_client_id(env.get(AUTHENTICATION_STRING_SETTING))
        try:
            from azure.monitor.opentelemetry import configure_azure_monitor  # lazy: heavy import

            if client_id:
                from azure.identity import ManagedIdentityCredential

                options["credential"] = ManagedIdentityCredential(client_id=client_id)
            configure_azure_monitor(**options)
        except Exception as error:  # noqa: BLE001 - telemetry is optional; the app must still run
            log_event(EventId.TELEMETRY_FAILED, logging.WARNING, error=repr(error))
            return False
        _telemetry_state["configured"] = True
    log_event(EventId.TELEMETRY_CONFIGURED, aad_auth=client_id is not None)
    return True
