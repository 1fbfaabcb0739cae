"""converge(target): the generic reconciler, the same for every target kind.

Level-triggered, by key (as controller-runtime reconciles): every pass reads the whole truth (the
target's unsettled grants, the policies, the target itself), so duplicate, reordered or lost hints
change nothing and a burst of grants costs one write.

    lease -> read the target fresh (ETag) -> plan (kinds/) -> one If-Match write if anything differs
          (412: re-read and re-plan = RetryOnConflict; 409/429/5xx: back off; bounded)
          -> record per-grant target state (transitions.py) -> audit

A target leased by someone else is requeued after the lease's remaining time (RequeueAfter), never
dropped: if its holder died, the work still happens once the lease lapses.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import AzureError

from shared.enforcement import recording
from shared.enforcement.deps import ConvergeDeps
from shared.enforcement.errors import TargetWriteError
from shared.enforcement.kinds import KindPlan, PlanContext, for_kind
from shared.enforcement.views import PathView, ResolverView
from shared.events import EventId
from shared.lease import LeaseBusyError
from shared.model import Grant, TargetRef, TargetState
from shared.observability import log_event
from shared.targets import ArmRefusal, RefusalKind, classify

MAX_WRITE_ATTEMPTS = 6
MAX_BACKOFF_SECONDS = 30.0
MAX_DIRTY_PASSES = 5


@dataclass(frozen=True)
class TargetOutcome:
    target: TargetRef
    wrote: bool
    busy: bool = False
    passes: int = 0
    states: dict[str, TargetState] = field(default_factory=dict)
    requeue_after: float | None = None


def converge(deps: ConvergeDeps, target: TargetRef, view: PathView | None = None) -> TargetOutcome:
    """Lease the target and converge it, once more for every hint that arrived meanwhile."""
    try:
        lease = deps.leases.acquire(target.key)
    except LeaseBusyError as busy:
        delay = requeue_after(deps, target, busy.remaining_seconds)
        log_event(EventId.CONVERGE_LEASE_BUSY, target=target.key, requeue_after=delay)
        return TargetOutcome(target, wrote=False, busy=True, requeue_after=delay)
    deps.checkpoint("leased")
    wrote = False
    states: dict[str, TargetState] = {}
    passes = 0
    # Renewed in the background while this converge works, so the lease can be short: if the process
    # dies, the target is free again within one lease period (PORTCULLIS_CONVERGE_LEASE_SECONDS).
    heartbeat = deps.leases.keep_alive(lease)
    try:
        while True:
            passes += 1
            # Before reading the grants: a grant written after this point enqueues a new hint.
            deps.hints.clear(target.key)
            pass_wrote, states = converge_once(deps, target, view)
            wrote = wrote or pass_wrote
            if not deps.leases.release(lease):
                break
            view = None  # another pass was asked for: read paths afresh
            if passes >= MAX_DIRTY_PASSES:
                deps.leases.drop(lease)
                break
    except Exception:
        heartbeat.stop()
        deps.leases.drop(lease)
        raise
    finally:
        heartbeat.stop()
    return TargetOutcome(target, wrote=wrote, passes=passes, states=states)


def requeue_after(deps: ConvergeDeps, target: TargetRef, remaining: float) -> float | None:
    """Keep the work of a busy target: a hint visible once the holder's lease would have lapsed.

    The holder, if alive, also runs one more pass (the lease's dirty mark); if it died, this hint is
    what converges the target after the lease expires, within one lease period of the crash."""
    if deps.enqueue_target is None:
        return None
    delay = max(1, math.ceil(remaining) + 1)
    deps.hints.claim(target.key, delay, force=True)
    deps.enqueue_target(target, delay)
    return float(delay)


def converge_once(
    deps: ConvergeDeps, target: TargetRef, view: PathView | None = None
) -> tuple[bool, dict[str, TargetState]]:
    grants = deps.store.list_for_target(target)
    if view is None:
        view = ResolverView(deps.topology, list(deps.policies.all()), deps.baseline_index)
    kind = for_kind(target.kind)
    result: dict[str, KindPlan] = {}

    def step() -> tuple[bool, Callable[[], None] | None]:
        state: Any = kind.read(deps, target)
        deps.checkpoint("read")
        ctx = PlanContext(deps.settings, deps.now(), view, deps)
        planned = kind.plan(ctx, target, state, grants)
        result["plan"] = planned
        recording.note_drift(
            deps, target, planned.grants, planned.actual_descriptions, planned.to_put, planned.to_remove
        )
        return planned.changed, planned.write

    try:
        wrote = write_loop(deps, target, step)
    except TargetWriteError as failure:
        recording.record_failure(deps, target, grants, failure)
        raise
    planned = result["plan"]
    deps.registry.note(target.key, planned.holds_ours)
    deps.findings.replace(target, planned.findings, deps.now())
    states = recording.record(deps, target, planned.grants, planned.present, planned.refused, wrote)
    return wrote, states


def _backoff(deps: ConvergeDeps, target: TargetRef, refusal: ArmRefusal, attempt: int) -> None:
    delay = refusal.retry_after if refusal.retry_after is not None else min(2.0**attempt, MAX_BACKOFF_SECONDS)
    delay = min(max(delay, 0.0), MAX_BACKOFF_SECONDS) * (
        1.0 if refusal.retry_after is not None else random.uniform(0.5, 1.0)
    )
    log_event(
        EventId.CONVERGE_ARM_REFUSED,
        logging.WARNING,
        target=target.key,
        status=refusal.status,
        code=refusal.code,
        attempt=attempt,
        delay_seconds=round(delay, 2),
    )
    deps.sleep(delay)


def write_loop(
    deps: ConvergeDeps,
    target: TargetRef,
    step: Callable[[], tuple[bool, Callable[[], None] | None]],
) -> bool:
    """Run read+plan (`step` returns (changed, write)) and the write until it sticks; bounded.
    The one retry_on_conflict of enforcement: 412 re-reads at once, 409/429/5xx back off."""
    last: ArmRefusal | None = None
    attempts = 0
    for attempt in range(MAX_WRITE_ATTEMPTS):
        attempts = attempt + 1
        try:
            changed, write = step()
            if not changed or write is None:
                return False
            deps.checkpoint("planned")
            write()
            deps.checkpoint("written")
            return True
        except AzureError as error:
            last = classify(error)
            if last.kind is RefusalKind.FATAL:
                break
            if last.kind is not RefusalKind.STALE and attempt + 1 < MAX_WRITE_ATTEMPTS:
                _backoff(deps, target, last, attempt)
    assert last is not None
    raise TargetWriteError(target, last, attempts)


def grants_by_target(grants: list[Grant]) -> dict[str, list[Grant]]:
    """Unsettled grants filed under every target they touch (one bulk query feeds a whole pass)."""
    by_target: dict[str, list[Grant]] = {}
    for grant in grants:
        for key in grant.targets:
            by_target.setdefault(key, []).append(grant)
    return by_target
