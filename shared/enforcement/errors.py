"""Temporary vs permanent failures (kopf's TemporaryError / PermanentError, applied to ARM).

Temporary: ARM is busy, throttling, failing for a while, or another writer got in first; the same work
succeeds later, so it is kept (the queue message is retried; a busy lease is requeued after its
remaining time, see reconciler.requeue_after). Permanent: the same request will fail again
(400/403/404): retrying the message cannot help, so it is not retried; the grants on the target say
Failed, the operator is told (target.write_failed, revoke.failing), and the timer still comes by.
"""

from __future__ import annotations

from shared.model import TargetRef
from shared.targets import ArmRefusal, RefusalKind


class TargetWriteError(RuntimeError):
    """ARM kept refusing the write (bounded retries spent); the grants on the target say Failed."""

    def __init__(self, target: TargetRef, refusal: ArmRefusal, attempts: int) -> None:
        super().__init__(f"{target.key}: {refusal.status} {refusal.code}: {refusal.message}")
        self.target = target
        self.refusal = refusal
        self.attempts = attempts

    @property
    def temporary(self) -> bool:
        return is_temporary(self.refusal)


class SimulatedCrash(BaseException):
    """Tests raise this at a checkpoint to model a process dying mid-converge (no cleanup runs)."""


def is_temporary(refusal: ArmRefusal) -> bool:
    return refusal.kind is not RefusalKind.FATAL
