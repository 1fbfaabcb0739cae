"""ARM's request throttling: token buckets per subscription, caller and operation class.

Since 2024 Azure Resource Manager throttles with token buckets ("Request limits and throttling",
learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling): per
subscription, per security principal and per operation type, reads 250 tokens refilled at 25/s,
writes and deletes 200 refilled at 10/s; across all principals of a subscription a global bucket 15x
that size and rate. A request takes one token from its caller's bucket and one from the global one;
when either is empty ARM answers 429 with `Retry-After`. The tenant-level buckets (requests without a
subscription id) are not modelled: nothing the app sends is tenant-scoped.

What an answer carries, as the live recordings show (azure-cli-extensions' azure-firewall
recordings of 2025-03, shared/azure-recordings): a GET (also polling an operation URL) carries
`x-ms-ratelimit-remaining-subscription-global-reads`, a PUT/PATCH `-writes` and `-global-writes`, a
DELETE `-deletes` and `-global-deletes`. The documented `-subscription-reads` header (the page's
"Remaining requests" table) is sent on reads too, so a client reading either one sees its budget.

The clock is injectable (`clock`, and `advance()` which the admin endpoint exposes) so that refill
can be shown without sleeping.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KINDS = ("reads", "writes", "deletes")
GLOBAL_CALLER = "*"  # the bucket every principal of a subscription shares


@dataclass(frozen=True)
class Limit:
    size: float  # tokens when full
    refill: float  # tokens per second

    def to_json(self) -> dict[str, float]:
        return {"size": self.size, "refill_per_second": self.refill}


DEFAULT_LIMITS: dict[str, Limit] = {
    "reads": Limit(250, 25),
    "writes": Limit(200, 10),
    "deletes": Limit(200, 10),
}
DEFAULT_GLOBAL_FACTOR = 15.0

_SUBSCRIPTION = re.compile(r"^/subscriptions/([^/]+)", re.IGNORECASE)


def kind_of(method: str) -> str:
    """ARM counts GET and HEAD as reads, DELETE as deletes, everything else (PUT, PATCH, POST
    actions such as listKeys) as writes."""
    method = method.upper()
    if method in ("GET", "HEAD"):
        return "reads"
    if method == "DELETE":
        return "deletes"
    return "writes"


def subscription_of(path: str) -> str | None:
    match = _SUBSCRIPTION.match(path)
    return match.group(1).lower() if match else None


def parse_limits(text: str) -> dict[str, Limit] | None:
    """`reads=250/25,writes=200/10,deletes=200/10` (any subset; the others keep their defaults), or
    `off` (None). `on` = the defaults. Raises ValueError naming what is wrong."""
    text = text.strip()
    if text.lower() in ("off", "false", "0", "no"):
        return None
    limits = dict(DEFAULT_LIMITS)
    if text.lower() in ("on", "true", "default", ""):
        return limits
    for part in text.split(","):
        kind, _, value = part.strip().partition("=")
        size, _, refill = value.partition("/")
        kind = kind.strip().lower()
        if kind not in KINDS:
            raise ValueError(
                f"unknown operation class {kind!r} in {text!r}: expected reads, writes or deletes"
            )
        try:
            limit = Limit(float(size), float(refill))
        except ValueError:
            raise ValueError(f"expected {kind}=SIZE/REFILL_PER_SECOND, got {part.strip()!r}") from None
        if limit.size < 1 or limit.refill <= 0:
            raise ValueError(f"{kind}: the size must be >= 1 and the refill > 0, got {part.strip()!r}")
        limits[kind] = limit
    return limits


class _Bucket:
    __slots__ = ("limit", "taken", "throttled", "tokens", "updated")

    def __init__(self, limit: Limit, now: float) -> None:
        self.limit = limit
        self.tokens = float(limit.size)
        self.updated = now
        self.throttled = 0  # 429 answers this bucket caused
        self.taken = 0  # tokens spent

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.limit.size, self.tokens + (now - self.updated) * self.limit.refill)
        self.updated = now

    def wait_seconds(self) -> float:
        """Seconds until one whole token is back."""
        return max(0.0, (1.0 - self.tokens) / self.limit.refill)


@dataclass
class Decision:
    """The outcome of one request: allowed or not, and what the answer tells the client."""

    allowed: bool
    kind: str
    headers: dict[str, str]
    retry_after: int = 0
    subscription: str = ""
    exhausted: str = ""  # "principal" or "global" when refused


class Throttle:
    """Token buckets keyed by (subscription, caller, kind); the caller `*` is the global one."""

    def __init__(
        self,
        limits: dict[str, Limit] | None = None,
        *,
        enabled: bool = True,
        global_factor: float = DEFAULT_GLOBAL_FACTOR,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._offset = 0.0
        self.enabled = enabled
        self.limits = dict(limits or DEFAULT_LIMITS)
        self.global_factor = global_factor
        self._buckets: dict[tuple[str, str, str], _Bucket] = {}
        self.throttled = 0  # 429 answers since start (or the last reset)

    def now(self) -> float:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        """Move this throttle's clock forward (tests: refill without sleeping)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds

    def configure(
        self,
        *,
        enabled: bool | None = None,
        limits: dict[str, Limit] | None = None,
        global_factor: float | None = None,
        reset: bool = False,
    ) -> None:
        """Change the switch or the sizes. New sizes start from full buckets (as does `reset`), so a
        test that shrinks them sees exactly the new budget."""
        with self._lock:
            if enabled is not None:
                self.enabled = enabled
            if limits is not None:
                self.limits = {**self.limits, **limits}
                reset = True
            if global_factor is not None:
                if global_factor < 1:
                    raise ValueError("global_factor must be >= 1")
                self.global_factor = global_factor
                reset = True
            if reset:
                self._buckets.clear()
                self.throttled = 0

    def _bucket(self, subscription: str, caller: str, kind: str, now: float) -> _Bucket:
        key = (subscription, caller, kind)
        bucket = self._buckets.get(key)
        if bucket is None:
            limit = self.limits[kind]
            if caller == GLOBAL_CALLER:
                limit = Limit(limit.size * self.global_factor, limit.refill * self.global_factor)
            bucket = self._buckets[key] = _Bucket(limit, now)
        else:
            bucket.refill(now)
        return bucket

    def take(self, method: str, path: str, caller: str) -> Decision | None:
        """Spend one token for this request, or refuse it. None: not throttled (off, or not
        subscription-scoped)."""
        subscription = subscription_of(path)
        if not self.enabled or subscription is None:
            return None
        kind = kind_of(method)
        with self._lock:
            now = self.now()
            own = self._bucket(subscription, caller, kind, now)
            shared = self._bucket(subscription, GLOBAL_CALLER, kind, now)
            empty = own if own.tokens < 1 else shared if shared.tokens < 1 else None
            if empty is None:
                own.tokens -= 1
                shared.tokens -= 1
                own.taken += 1
                shared.taken += 1
                return Decision(True, kind, self._headers(kind, own, shared), subscription=subscription)
            empty.throttled += 1
            self.throttled += 1
            return Decision(
                False,
                kind,
                self._headers(kind, own, shared),
                retry_after=max(1, math.ceil(empty.wait_seconds())),
                subscription=subscription,
                exhausted="principal" if empty is own else "global",
            )

    @staticmethod
    def _headers(kind: str, own: _Bucket, shared: _Bucket) -> dict[str, str]:
        return {
            f"x-ms-ratelimit-remaining-subscription-{kind}": str(max(0, math.floor(own.tokens))),
            f"x-ms-ratelimit-remaining-subscription-global-{kind}": str(max(0, math.floor(shared.tokens))),
        }

    def state(self) -> dict[str, Any]:
        """What GET /_emulator/throttle answers: the switch, the sizes and every bucket now."""
        with self._lock:
            now = self.now()
            buckets = []
            for (subscription, caller, kind), bucket in sorted(self._buckets.items()):
                bucket.refill(now)
                buckets.append(
                    {
                        "subscription": subscription,
                        "caller": caller,
                        "scope": "global" if caller == GLOBAL_CALLER else "principal",
                        "kind": kind,
                        "remaining": round(bucket.tokens, 3),
                        "size": bucket.limit.size,
                        "refill_per_second": bucket.limit.refill,
                        "taken": bucket.taken,
                        "throttled_429s": bucket.throttled,
                    }
                )
            return {
                "enabled": self.enabled,
                "limits": {kind: limit.to_json() for kind, limit in self.limits.items()},
                "global_factor": self.global_factor,
                "throttled_429s": self.throttled,
                "clock_offset_seconds": self._offset,
                "buckets": buckets,
            }


def throttled_error_message(decision: Decision, caller: str) -> str:
    """ARM's wording for an empty bucket (code `SubscriptionRequestsThrottled`)."""
    operation = decision.kind[:-1]  # read / write / delete
    who = "all principals" if decision.exhausted == "global" else f"actor '{caller}'"
    return (
        f"Number of '{operation}' requests for subscription '{decision.subscription}' {who} exceeded. "
        f"Please try again after '{decision.retry_after}' seconds after additional tokens are available. "
        "Refer to https://aka.ms/arm-throttling for additional information."
    )
