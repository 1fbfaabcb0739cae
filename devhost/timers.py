"""Timer triggers: one thread per function, so a function never overlaps itself.

After each run the next occurrence is computed from the current time, so occurrences missed while
the function was still running are skipped, as the host's timer listener does.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from azure.functions.timer import TimerRequest

from devhost.functions import TimerFunction, invoke
from devhost.logs import log_event

# A tick that starts later than this after its scheduled time is reported as past due.
PAST_DUE_AFTER = timedelta(seconds=1)


class TimerRunner:
    def __init__(self, function: TimerFunction, stop: threading.Event) -> None:
        assert function.schedule is not None
        self.function = function
        self.schedule = function.schedule
        self.stop = stop
        self.last: datetime | None = None
        # Held for each run, scheduled or manual, so a function never overlaps itself.
        self._running = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"timer-{function.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        now = datetime.now(UTC)
        next_due = self.schedule.next_after(now)
        log_event("timer.scheduled", function=self.function.name, next=next_due.isoformat())
        if self.function.run_on_startup:
            self._fire(scheduled=now, next_due=next_due, past_due=False)
            next_due = self.schedule.next_after(datetime.now(UTC))
        while not self.stop.is_set():
            wait = (next_due - datetime.now(UTC)).total_seconds()
            if wait > 0:
                if self.stop.wait(wait):
                    return
                continue
            now = datetime.now(UTC)
            following = self.schedule.next_after(now)
            self._fire(scheduled=next_due, next_due=following, past_due=now - next_due > PAST_DUE_AFTER)
            next_due = self.schedule.next_after(datetime.now(UTC))

    def run_now(self) -> threading.Thread:
        """One run outside the schedule, as the host's `POST /admin/functions/{name}` starts one: in
        the background, after any run in progress, and the schedule is left as it was."""
        now = datetime.now(UTC)
        log_event("timer.manual", function=self.function.name)
        thread = threading.Thread(
            target=self._fire,
            kwargs={"scheduled": now, "next_due": self.schedule.next_after(now), "past_due": False},
            name=f"timer-{self.function.name}-manual",
            daemon=True,
        )
        thread.start()
        return thread

    def _fire(self, *, scheduled: datetime, next_due: datetime, past_due: bool) -> None:
        with self._running:
            self._fire_alone(scheduled=scheduled, next_due=next_due, past_due=past_due)

    def _fire_alone(self, *, scheduled: datetime, next_due: datetime, past_due: bool) -> None:
        status = {
            "Last": (self.last or scheduled).isoformat(),
            "Next": next_due.isoformat(),
            "LastUpdated": datetime.now(UTC).isoformat(),
        }
        request = TimerRequest(past_due=past_due, schedule_status=status, schedule={"AdjustForDST": True})
        invoke(self.function, request, scheduled=scheduled.isoformat(), past_due=past_due)
        self.last = scheduled
