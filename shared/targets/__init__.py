"""Adapters between the Azure SDK's wire JSON and the plan's rule values, one per target kind.

Each reads the whole target with its ETag and writes the whole difference in one request with
`If-Match`; ARM's refusals are classified here so converge can decide: re-read, back off, or give up.
Targets travel as ARM's wire JSON, never as SDK models (`wire.py`: `get_raw`, `put_raw`,
`list_raw`), and a snapshot is built from that JSON whether it was read with GET or listed
(`NsgSnapshot.from_wire`, `FirewallSnapshot.from_classic_wire` / `from_policy_wire`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError, ServiceResponseError

from shared.observability import brief


class RefusalKind(StrEnum):
    """How ARM refused a write, which decides what converge does next (`ArmRefusal.kind`); not to be
    confused with `shared.actions.refusal.Refusal`, a 4xx/5xx answer to a caller."""

    STALE = "stale"  # 412: someone wrote since we read; re-read and re-plan
    BUSY = "busy"  # 409 AnotherOperationInProgress / 429: back off (Retry-After) and retry
    TRANSIENT = "transient"  # 5xx, a failed long-running operation, a dropped connection
    FATAL = "fatal"  # 400/403/404...: retrying the same write will not help


@dataclass(frozen=True)
class ArmRefusal:
    kind: RefusalKind
    status: int | None
    code: str
    message: str
    retry_after: float | None = None


def classify(error: AzureError) -> ArmRefusal:
    if isinstance(error, (ServiceRequestError, ServiceResponseError)):
        return ArmRefusal(RefusalKind.TRANSIENT, None, "ConnectionError", brief(error))
    status = getattr(error, "status_code", None)
    code = "Unknown"
    if isinstance(error, HttpResponseError):
        code = (error.error.code if error.error is not None else None) or getattr(error, "reason", "") or code
    retry_after: float | None = None
    response = getattr(error, "response", None)
    if response is not None:
        header = response.headers.get("Retry-After")
        try:
            retry_after = float(header) if header is not None else None
        except ValueError:
            retry_after = None
    message = brief(error)
    if status == 412:
        return ArmRefusal(RefusalKind.STALE, status, code, message)
    if status in (409, 429):
        return ArmRefusal(RefusalKind.BUSY, status, code, message, retry_after)
    if status is None or status >= 500 or status == 200:
        # status None / 200 with an error: the long-running operation ended Failed or Canceled.
        return ArmRefusal(RefusalKind.TRANSIENT, status, code, message, retry_after)
    return ArmRefusal(RefusalKind.FATAL, status, code, message)
