"""Durations (`2h`, `15m`, `1h30m`, ISO 8601 `PT2H`) and end times (`17:30`, an ISO date-time) as the
command line takes them; pure, so they are tested with plain values."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_PLAIN = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_ISO = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")


class TimeError(ValueError):
    """A duration or end time the command line cannot read; the message says what is accepted."""


def parse_duration(text: str) -> timedelta:
    """`90m`, `2h`, `1h30m`, `1d`, `45s`, or ISO 8601 (`PT2H`, as JIT policies write it). A bare
    number is minutes, as people type `--duration 30`."""
    value = text.strip()
    if value.isdigit():
        seconds = int(value) * 60
    else:
        match = _PLAIN.match(value.lower()) or _ISO.match(value.upper())
        if not match or not any(match.groups()):
            raise TimeError(f"{text!r} is not a duration: use e.g. 30m, 2h, 1h30m or PT2H")
        days, hours, minutes, secs = (int(group or 0) for group in match.groups())
        seconds = days * 86400 + hours * 3600 + minutes * 60 + secs
    if seconds <= 0:
        raise TimeError(f"{text!r} is not a duration: it must be longer than zero")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """`2h`, `1h30m`, `45s`: the short form the command line reads back."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in _UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_until(text: str, now: datetime, local: tzinfo | None = None) -> datetime:
    """The end time in UTC. `17:30` is a clock time in the local time zone (`local`, default the
    machine's): today, or tomorrow if it has passed. An ISO 8601 date-time is taken as written (local
    time when it has no offset)."""
    value = text.strip()
    zone = local or now.astimezone().tzinfo or UTC
    clock = _CLOCK.match(value)
    if clock:
        hour, minute = int(clock.group(1)), int(clock.group(2))
        if hour > 23 or minute > 59:
            raise TimeError(f"{text!r} is not a clock time: use HH:MM, e.g. 17:30")
        here = now.astimezone(zone)
        end = here.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if end <= here:
            end += timedelta(days=1)
        return end.astimezone(UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise TimeError(f"{text!r} is not an end time: use HH:MM (local) or an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    end = parsed.astimezone(UTC)
    if end <= now:
        raise TimeError(f"{text!r} is in the past")
    return end


def end_time(now: datetime, duration: str | None, until: str | None, default: timedelta) -> datetime:
    """The end time `--duration` or `--until` asks for (never both), else now + `default`."""
    if duration and until:
        raise TimeError("give --duration or --until, not both")
    if until:
        return parse_until(until, now)
    return now + (parse_duration(duration) if duration else default)


def wire_time(moment: datetime) -> str:
    """UTC, as Defender's `endTimeUtc` is written."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_wire_time(text: str) -> datetime:
    """A time the API answered (`2026-01-01T10:00:00.000000Z`) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
