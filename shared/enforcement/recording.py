"""Writing down what a converge found: per-grant target states (through the pure transitions), the
audit trail, drift and IaC-conflict findings, and loud reports when ARM keeps refusing."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from shared.enforcement import transitions
from shared.enforcement.errors import TargetWriteError
from shared.events import EventId
from shared.model import Grant, TargetRef, TargetState, retry_on_conflict
from shared.notify.cloudevents import grant_context
from shared.observability import brief, log_event
from shared.plan import parse_marker

if TYPE_CHECKING:
    from shared.enforcement.deps import ConvergeDeps

ACTOR = "portcullis-converge"
MAX_RECORD_ATTEMPTS = 8


def update_grant(
    deps: ConvergeDeps,
    grant_id: str,
    change: Callable[[Grant], transitions.Transition],
    known: Grant | None = None,
) -> Grant | None:
    """Apply `change` with an ETag-guarded update, re-reading on conflict (RetryOnConflict); audit the
    events of the version that was written. None if nothing changed. `known` (as read earlier in this
    pass) saves a read when it needs no change."""

    def attempt(number: int) -> Grant | None:
        current = known if number == 0 and known is not None else deps.store.get(grant_id)
        if current is None:
            return None
        transition = change(current)
        if transition.grant is None:
            return None
        written = deps.store.update(transition.grant)
        context = grant_context(transition.grant)  # so each event names the request and requester
        for name, details in transition.events:
            deps.audit.record(name, subject=grant_id, actor=ACTOR, **{**context, **details})
        return written

    return retry_on_conflict(
        attempt,
        attempts=MAX_RECORD_ATTEMPTS,
        gave_up=f"grant {grant_id} kept changing; gave up after {MAX_RECORD_ATTEMPTS} tries",
    )


def record(
    deps: ConvergeDeps,
    target: TargetRef,
    grants: list[Grant],
    present: set[str],
    refused: Mapping[str, str],
    wrote: bool,
) -> dict[str, TargetState]:
    """Per-grant state on this target, then the grant's status; one audit event per transition."""
    deps.checkpoint("recording")
    now = deps.now()
    states: dict[str, TargetState] = {}
    for grant in grants:
        if target.key not in grant.targets:
            continue
        state = transitions.found_state(
            grant, present=grant.grant_id in present, refused=grant.grant_id in refused, now=now
        )
        states[grant.grant_id] = state
        why = refused.get(grant.grant_id)

        def change(
            current: Grant, state: TargetState = state, why: str | None = why
        ) -> transitions.Transition:
            return transitions.on_target(current, target.key, state, why, deps.now())

        update_grant(deps, grant.grant_id, change, known=grant)
    if wrote:
        deps.audit.record(EventId.TARGET_CONVERGED, subject=target.key, actor=ACTOR, grants=len(states))
    return states


def note_drift(
    deps: ConvergeDeps,
    target: TargetRef,
    grants: Sequence[Grant],
    actual_descriptions: dict[str, str],
    to_put: Iterable[Any],
    to_remove: Iterable[str],
) -> None:
    """Audit repairs of rules someone else changed: ours edited, ours deleted after we applied them.

    A rule of a live grant that someone else edited or deleted is also an IaC conflict: a pipeline
    (Terraform, Bicep) that owns the whole NSG is fighting Portcullis. ARM's answer does not say who
    wrote last (the Activity Log does), so `changed_by` is unknown here; `detected_at` bounds when."""
    known = {g.grant_id: g for g in grants}
    now = deps.now()
    for rule in to_put:
        marker = parse_marker(rule.description)
        grant = known.get(marker.grant_id) if marker and marker.grant_id else None
        change = None
        if rule.name in actual_descriptions:
            change = "edited"
        elif grant is not None and grant.targets.get(target.key) is TargetState.APPLIED:
            change = "deleted"
        if change is None:
            continue
        deps.audit.record(
            EventId.DRIFT_REPAIRED, subject=target.key, actor=ACTOR, rule=rule.name, change=change
        )
        if grant is not None and grant.is_open_at(now):
            deps.audit.record(
                EventId.DRIFT_IAC_CONFLICT,
                subject=target.key,
                actor=ACTOR,
                rule=rule.name,
                grant_id=grant.grant_id,
                change=change,
                detected_at=now.isoformat(),
                changed_by=None,
            )
            log_event(
                EventId.DRIFT_IAC_CONFLICT,
                logging.WARNING,
                target=target.key,
                rule=rule.name,
                grant_id=grant.grant_id,
                change=change,
            )
    for name in to_remove:
        marker = parse_marker(actual_descriptions.get(name))
        if marker is None or (marker.grant_id is not None and marker.grant_id not in known):
            deps.audit.record(EventId.DRIFT_REMOVED_UNKNOWN, subject=target.key, actor=ACTOR, rule=name)


def record_failure(
    deps: ConvergeDeps, target: TargetRef, grants: list[Grant], failure: TargetWriteError
) -> None:
    log_event(
        EventId.CONVERGE_WRITE_FAILED,
        logging.ERROR,
        target=target.key,
        status=failure.refusal.status,
        code=failure.refusal.code,
        message=failure.refusal.message,
    )
    deps.audit.record(
        EventId.TARGET_WRITE_FAILED,
        subject=target.key,
        actor=ACTOR,
        status=failure.refusal.status,
        code=failure.refusal.code,
    )
    now = deps.now()
    closing = [
        grant.grant_id
        for grant in grants
        if not grant.is_open_at(now)
        and grant.targets.get(target.key, TargetState.REMOVED) is not TargetState.REMOVED
    ]
    if closing:
        # A rule that should be gone stays open: the alert in infra/ pages someone on this event.
        log_event(
            EventId.REVOKE_FAILING,
            logging.ERROR,
            target=target.key,
            grant_ids=sorted(closing),
            attempts=failure.attempts,
            error=brief(f"{failure.refusal.status} {failure.refusal.code}: {failure.refusal.message}"),
        )
    for grant in grants:
        update_grant(
            deps,
            grant.grant_id,
            lambda current: transitions.failed_by_write(
                current, target.key, failure.refusal.code, deps.now()
            ),
            known=grant,
        )
