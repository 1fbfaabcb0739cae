"""Timer schedules as the Functions timer trigger reads them: NCRONTAB or a constant TimeSpan.

NCRONTAB has six fields, `{second} {minute} {hour} {day} {month} {day-of-week}`; like the host we
also accept the classic five (no seconds). NCrontab requires BOTH day-of-month and day-of-week to
match when both are restricted (unlike Vixie cron's OR), so croniter runs with `day_or=False`.
A schedule such as `00:05:00` is a TimeSpan: every five minutes from start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import croniter
from croniter.croniter import CroniterError

_TIMESPAN = re.compile(r"^(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2})(?::(?P<s>\d{1,2}(?:\.\d+)?))?$")


class ScheduleError(ValueError):
    pass


@dataclass(frozen=True)
class Schedule:
    expression: str
    cron: str | None
    interval: timedelta | None

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment` (aware datetime, UTC)."""
        if self.interval is not None:
            return moment + self.interval
        assert self.cron is not None
        iterator = croniter(self.cron, moment, second_at_beginning=True, day_or=False)
        occurrence: datetime = iterator.get_next(datetime)
        return occurrence.astimezone(UTC)


def parse_schedule(expression: str) -> Schedule:
    text = expression.strip()
    timespan = _TIMESPAN.match(text)
    if timespan:
        interval = timedelta(
            days=int(timespan["days"] or 0),
            hours=int(timespan["h"]),
            minutes=int(timespan["m"]),
            seconds=float(timespan["s"] or 0),
        )
        if interval <= timedelta(0):
            raise ScheduleError(f"timer schedule {expression!r}: a TimeSpan must be positive")
        return Schedule(expression, None, interval)
    fields = text.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ScheduleError(
            f"timer schedule {expression!r}: NCRONTAB needs 6 fields "
            "'{second} {minute} {hour} {day} {month} {day-of-week}' (or 5 without seconds), "
            f"got {len(text.split())}"
        )
    cron = " ".join(fields)
    try:
        croniter(cron, datetime(2000, 1, 1, tzinfo=UTC), second_at_beginning=True, day_or=False)
    except (CroniterError, ValueError, KeyError) as error:
        raise ScheduleError(f"timer schedule {expression!r} is not valid NCRONTAB: {error}") from error
    return Schedule(expression, cron, None)
