"""local.settings.json, host.json and `%Setting%` binding expressions, read as the host reads them."""

from __future__ import annotations

import json
import os
import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")
_SETTING_EXPRESSION = re.compile(r"%([^%]+)%")


class ConfigError(ValueError):
    pass


def parse_timespan(text: str, *, field: str) -> timedelta:
    """A .NET TimeSpan `[d.]hh:mm:ss[.fff]` as host.json uses for durations."""
    match = _TIMESPAN.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ConfigError(f"host.json {field}: {text!r} is not a TimeSpan like '00:00:30'")
    days, hours, minutes, seconds = match.groups()
    return timedelta(days=int(days or 0), hours=int(hours), minutes=int(minutes), seconds=float(seconds))


def apply_local_settings(path: Path, environ: MutableMapping[str, str]) -> list[str]:
    """Put local.settings.json `Values` into the environment as `func start` does.

    Like Core Tools, a variable that is already set to a non-empty value wins over the file
    (func prints "Skipping 'X' from local settings as it's already defined in current
    environment variables"). Returns the names that were skipped.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    if document.get("IsEncrypted"):
        raise ConfigError(f"{path}: IsEncrypted is true; this host cannot decrypt settings")
    values = document.get("Values") or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: Values must be an object of strings")
    skipped = []
    for name, value in values.items():
        if environ.get(name):
            skipped.append(name)
            continue
        environ[name] = "" if value is None else str(value)
    return skipped


def local_http_port(path: Path) -> int | None:
    """`Host.LocalHttpPort` from local.settings.json, used when no --port is given."""
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, json.JSONDecodeError):
        return None
    port = (document.get("Host") or {}).get("LocalHttpPort") if isinstance(document, dict) else None
    return int(port) if port else None


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the Storage Queues extension v5 defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    visibility_timeout: timedelta = timedelta(0)
    max_dequeue_count: int = 5
    max_polling_interval: timedelta = timedelta(minutes=1)
    message_encoding: str = "base64"


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str = "api"
    queues: QueueOptions = QueueOptions()
    function_timeout: timedelta | None = None


def load_host_config(path: Path | None) -> HostConfig:
    if path is None or not path.exists():
        return HostConfig()
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    if document.get("version") not in (None, "2.0"):
        raise ConfigError(f'{path}: version must be "2.0", got {document.get("version")!r}')
    extensions = _object(document.get("extensions"), "extensions")
    http = _object(extensions.get("http"), "extensions.http")
    prefix = http.get("routePrefix", "api")
    if not isinstance(prefix, str):
        raise ConfigError("host.json extensions.http.routePrefix must be a string")
    timeout_text = document.get("functionTimeout")
    timeout = parse_timespan(timeout_text, field="functionTimeout") if timeout_text is not None else None
    return HostConfig(prefix.strip("/"), _queue_options(extensions.get("queues")), timeout)


def _object(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"host.json {field} must be an object")
    return value


def _queue_options(value: Any) -> QueueOptions:
    section = _object(value, "extensions.queues")
    defaults = QueueOptions()
    batch_size = _int(section, "batchSize", defaults.batch_size, 1, 32)
    threshold_default = batch_size // 2
    threshold = _int(section, "newBatchThreshold", threshold_default, -1, 10_000)
    if threshold < 0:
        threshold = threshold_default
    encoding = str(section.get("messageEncoding", defaults.message_encoding)).lower()
    if encoding not in {"base64", "none"}:
        raise ConfigError(
            f"host.json extensions.queues.messageEncoding must be 'base64' or 'none', got {encoding!r}"
        )
    return QueueOptions(
        batch_size=batch_size,
        new_batch_threshold=threshold,
        visibility_timeout=_timespan(section, "visibilityTimeout", defaults.visibility_timeout),
        max_dequeue_count=_int(section, "maxDequeueCount", defaults.max_dequeue_count, 1, 10_000),
        max_polling_interval=_timespan(section, "maxPollingInterval", defaults.max_polling_interval),
        message_encoding=encoding,
    )


def _int(section: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"host.json extensions.queues.{name} must be an integer {low}..{high}, got {value!r}"
        )
    return value


def _timespan(section: dict[str, Any], name: str, default: timedelta) -> timedelta:
    if name not in section:
        return default
    return parse_timespan(section[name], field=f"extensions.queues.{name}")


def resolve_setting_expressions(text: str, *, where: str) -> str:
    """Replace `%Name%` with the app setting (environment variable) Name, as bindings do."""

    def lookup(match: re.Match[str]) -> str:
        name = match[1]
        value = os.environ.get(name)
        if value is None:
            raise ConfigError(f"{where}: app setting {name!r} (from %{name}%) is not defined")
        return value

    return _SETTING_EXPRESSION.sub(lookup, text)
