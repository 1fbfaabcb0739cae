"""Grant state transitions as pure functions: given a grant and what one target's converge found,
the grant's new version (targets map, status, reason) and the audit events it owes.

No storage, no clock of its own, no Azure: the reconciler applies the result with an ETag-guarded
update (re-reading and re-applying on conflict), so the same function decides on every retry; the
snapshot pass calls it in memory to tell whether a target needs converging at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from shared.events import EventId
from shared.model import Grant, PortStatus, StatusReason, TargetState

Event = tuple[EventId, dict[str, object]]

_EVENT_FOR_STATE = {
    TargetState.APPLIED: EventId.GRANT_APPLIED,
    TargetState.REMOVED: EventId.GRANT_REMOVED,
    TargetState.FAILED: EventId.GRANT_REFUSED,
    TargetState.PENDING: EventId.GRANT_PENDING,
}


@dataclass(frozen=True)
class Transition:
    grant: Grant | None  # the new version, or None when nothing changes
    events: tuple[Event, ...] = ()

    @property
    def changes(self) -> bool:
        return self.grant is not None


NO_CHANGE = Transition(None)


def found_state(grant: Grant, *, present: bool, refused: bool, now: datetime) -> TargetState:
    """What a target's converge says about one grant: its rule is there (Applied), the plan refused
    it (Failed), or it has no rule (Removed: ended, or its path no longer crosses this target)."""
    if present:
        return TargetState.APPLIED
    if refused:
        return TargetState.FAILED
    return TargetState.REMOVED


def on_target(
    current: Grant, target_key: str, state: TargetState, why: str | None, now: datetime
) -> Transition:
    """The grant after `target_key` was found in `state`.

    Applied on every target makes an Initiating grant Initiated (never before: invariant 2). Removed
    everywhere after its end makes it Revoked/Expired. An Applied report for a grant that closed since
    it was read changes nothing: the next pass removes the rule."""
    if target_key not in current.targets:
        return NO_CHANGE
    open_now = current.is_open_at(now)
    if state is TargetState.APPLIED and not open_now:
        return NO_CHANGE
    events: list[Event] = []
    previous = current.targets.get(target_key)
    targets = {**current.targets, target_key: state}
    status, reason = current.status, current.status_reason
    if previous is not state:
        details: dict[str, object] = {"target": target_key}
        if why:
            details["reason"] = why
        events.append((_EVENT_FOR_STATE[state], details))
    if (
        status is PortStatus.INITIATING
        and open_now
        and all(s is TargetState.APPLIED for s in targets.values())
    ):
        status = PortStatus.INITIATED
        events.append(
            (
                EventId.GRANT_INITIATED,
                {"connect_address": current.connect_address, "connect_port": current.connect_port},
            )
        )
    if not open_now and all(s is TargetState.REMOVED for s in targets.values()):
        if status is not PortStatus.REVOKED:
            status, reason = PortStatus.REVOKED, StatusReason.EXPIRED
            events.append((EventId.GRANT_EXPIRED, {}))
        elif previous is not TargetState.REMOVED:
            events.append((EventId.GRANT_CLOSED, {"reason": reason.value if reason else None}))
    updated = replace(current, targets=targets, status=status, status_reason=reason)
    if updated == current:
        return NO_CHANGE
    return Transition(updated, tuple(events))


def target_changes(
    grants: Iterable[Grant],
    target_key: str,
    present: set[str],
    refused: Mapping[str, str],
    now: datetime,
) -> dict[str, Transition]:
    """The transitions one target's outcome implies, for the grants that change (grant id -> it)."""
    changes: dict[str, Transition] = {}
    for grant in grants:
        if target_key not in grant.targets:
            continue
        state = found_state(
            grant, present=grant.grant_id in present, refused=grant.grant_id in refused, now=now
        )
        transition = on_target(grant, target_key, state, refused.get(grant.grant_id), now)
        if transition.changes:
            changes[grant.grant_id] = transition
    return changes


def settle_pathless(current: Grant, now: datetime) -> Transition:
    """A grant with no path (VM gone, topology broken) opened nothing: it closes when it ends. A grant
    waiting for approval, or scheduled to start later, is not pathless: its path is resolved when it
    opens, and a pending one is ended by the approvals side (denied, lapsed), never here."""
    if current.status is PortStatus.REVOKED or current.status is PortStatus.PENDING:
        return NO_CHANGE
    if current.targets or current.is_open_at(now) or now < current.end_time:
        return NO_CHANGE
    updated = replace(current, status=PortStatus.REVOKED, status_reason=StatusReason.EXPIRED)
    return Transition(updated, ((EventId.GRANT_EXPIRED, {"opened": False}),))


def with_path(current: Grant, targets: Iterable[str], connect_address: str | None) -> Transition:
    """The grant's path was resolved: every target starts Pending. Only the first resolution counts."""
    if current.targets:
        return NO_CHANGE
    pending = dict.fromkeys(targets, TargetState.PENDING)
    if not pending:
        return NO_CHANGE
    updated = replace(current, targets=pending, connect_address=connect_address)
    return Transition(
        updated,
        ((EventId.GRANT_PATH_RESOLVED, {"targets": sorted(pending), "connect_address": connect_address}),),
    )


def failed_by_write(current: Grant, target_key: str, code: str, now: datetime) -> Transition:
    """ARM refused the target's write for good: an open grant still Pending there is Failed."""
    if not current.is_open_at(now) or current.targets.get(target_key) is not TargetState.PENDING:
        return NO_CHANGE
    return on_target(current, target_key, TargetState.FAILED, code, now)
