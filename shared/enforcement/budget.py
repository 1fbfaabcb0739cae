"""ARM's per-subscription request budget, as the answers report it.

Since 2024 ARM throttles each subscription and principal with a token bucket (reads 250, refilled at
25/s; writes 200, refilled at 10/s) and reports what is left in `x-ms-ratelimit-remaining-
subscription-reads` / `-writes` on every answer. Enforcement's ARM clients are built with `observe`
as azure-core's `raw_response_hook` (shared/azure_clients.py, the one place that builds clients), so
every answer reports; the reconcile timer calls `pace` before each further call: when less than
`reserve` tokens remain, the timer waits for the bucket to refill that far, so the budget a
revocation or a new grant needs is always there. Request- and expiry-driven work never paces.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

READ_HEADER = "x-ms-ratelimit-remaining-subscription-reads"
WRITE_HEADER = "x-ms-ratelimit-remaining-subscription-writes"
READ_REFILL_PER_SECOND = 25.0
WRITE_REFILL_PER_SECOND = 10.0


class ArmBudget:
    def __init__(
        self,
        sleep: Callable[[float], None],
        *,
        read_reserve: int = 100,
        write_reserve: int = 80,
    ) -> None:
        self._sleep = sleep
        self._read_reserve = read_reserve
        self._write_reserve = write_reserve
        self._remaining: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self.paused_seconds = 0.0

    def observe(self, subscription_id: str) -> Callable[[Any], None]:
        """A `raw_response_hook` recording the headers of every answer for `subscription_id`."""
        sub = subscription_id.lower()

        def hook(response: Any) -> None:
            http = getattr(response, "http_response", response)
            headers = getattr(http, "headers", None) or {}
            for header, kind in ((READ_HEADER, "reads"), (WRITE_HEADER, "writes")):
                value = headers.get(header)
                if value is None:
                    continue
                try:
                    remaining = int(value)
                except ValueError:
                    continue
                with self._lock:
                    self._remaining[(sub, kind)] = remaining

        return hook

    def remaining(self, subscription_id: str, kind: str = "reads") -> int | None:
        with self._lock:
            return self._remaining.get((subscription_id.lower(), kind))

    def pace(self, subscription_id: str, kind: str = "reads") -> float:
        """Wait until at least `reserve` tokens would be back; returns the seconds waited."""
        left = self.remaining(subscription_id, kind)
        reserve, rate = (
            (self._read_reserve, READ_REFILL_PER_SECOND)
            if kind == "reads"
            else (self._write_reserve, WRITE_REFILL_PER_SECOND)
        )
        if left is None or left >= reserve:
            return 0.0
        delay = (reserve - left) / rate
        self._sleep(delay)
        with self._lock:
            # Assume the bucket refilled as ARM promises; the next answer says the truth.
            self._remaining[(subscription_id.lower(), kind)] = reserve
            self.paused_seconds += delay
        return delay
