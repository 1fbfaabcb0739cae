"""What starts enforcement: the converge queue (grant, target and policy messages), the expiry sweep
and the reconcile timer. Each decides *which* targets to converge; reconciler.converge does the rest.

Request- and expiry-driven work (queue messages, the sweep) converges through hints at once and never
waits on ARM's budget; the timer's pass paces itself on the budget headers (budget.py), so it never
takes the tokens a revocation needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from azure.core.exceptions import AzureError

from shared.enforcement import recording, transitions
from shared.enforcement.deps import ConvergeDeps
from shared.enforcement.errors import TargetWriteError
from shared.enforcement.kinds import PlanContext, for_kind
from shared.enforcement.reconciler import TargetOutcome, converge, grants_by_target
from shared.enforcement.snapshot import EstateSnapshot, EstateView, target_subscriptions
from shared.enforcement.views import PathView, vm_policy_of
from shared.events import EventId
from shared.model import DomainError, Grant, TargetRef, TargetState, VmRef
from shared.notify.cloudevents import grant_context
from shared.observability import brief, log_event
from shared.topology import TopologyError, VmPath

ACTOR = recording.ACTOR


# ---- a grant: created, revoked, superseded, or reached its end ----


def handle_grant(deps: ConvergeDeps, grant_id: str) -> list[TargetOutcome]:
    """Converge every target the grant touches (resolving its path the first time)."""
    grant = deps.store.get(grant_id)
    if grant is None:
        log_event(EventId.CONVERGE_GRANT_UNKNOWN, logging.WARNING, grant_id=grant_id)
        return []
    if not grant.targets and grant.is_open_at(deps.now()):
        grant = resolve_targets(deps, grant)
    if not grant.targets:
        settle_pathless(deps, grant)
        return []
    return dispatch(deps, [TargetRef.from_key(key) for key in grant.targets])


def dispatch(deps: ConvergeDeps, targets: Iterable[TargetRef]) -> list[TargetOutcome]:
    """A hint per target on the queue (one pending per target), or converge inline without a queue."""
    outcomes = []
    for target in targets:
        if deps.enqueue_target is not None:
            delay = for_kind(target.kind).batch_seconds
            if deps.hints.claim(target.key, delay):
                deps.enqueue_target(target, delay)
        else:
            outcomes.append(converge(deps, target))
    return outcomes


def resolve_targets(deps: ConvergeDeps, grant: Grant, view: PathView | None = None) -> Grant:
    """Record the grant's targets (all Pending) and connect address, from its VM's path."""
    path: VmPath | None
    if view is not None:
        path = view.path_for(grant)
        error = "the VM's path could not be derived from the estate" if path is None else None
    else:
        try:
            path = deps.topology.path(grant.vm, vm_policy_of(list(deps.policies.all()), grant))
            error = None
        except TopologyError as failure:
            path, error = None, str(failure)
    if path is None:
        # Audited (and published as grant.failed) once per grant, not on every reconcile pass.
        if not any(e.event == EventId.GRANT_PATH_UNRESOLVED for e in deps.audit.for_subject(grant.grant_id)):
            deps.audit.record(
                EventId.GRANT_PATH_UNRESOLVED,
                subject=grant.grant_id,
                actor=ACTOR,
                **grant_context(grant),
                vm=grant.vm.id,
                reason=error,
            )
        log_event(EventId.CONVERGE_PATH_UNRESOLVED, logging.ERROR, grant_id=grant.grant_id, error=error)
        return grant
    keys = [t.key for t in path.targets]
    updated = recording.update_grant(
        deps,
        grant.grant_id,
        lambda current: transitions.with_path(current, keys, path.connect_address),
        known=grant,
    )
    return updated or deps.store.get(grant.grant_id) or grant


def settle_pathless(deps: ConvergeDeps, grant: Grant) -> None:
    recording.update_grant(
        deps, grant.grant_id, lambda current: transitions.settle_pathless(current, deps.now()), known=grant
    )


# ---- the queue message ----


def handle_converge_message(body: str | bytes, deps: ConvergeDeps) -> list[TargetOutcome]:
    """The `jit-converge` queue trigger. A malformed message is logged and dropped (a retry cannot
    fix it); ARM refusing after bounded retries raises, so the runtime retries it and then poisons it."""
    from pydantic import ValidationError

    from shared.messages import ConvergeGrant, ConvergePolicy, parse_converge_message

    try:
        message = parse_converge_message(body)
    except ValidationError as error:
        log_event(EventId.CONVERGE_MESSAGE_INVALID, logging.ERROR, error=brief(error))
        return []
    try:
        if isinstance(message, ConvergeGrant):
            return handle_grant(deps, message.grant_id)
        if isinstance(message, ConvergePolicy):
            policy_changed(deps, message.vm_ids)
            return []
        try:
            target = TargetRef.from_key(message.target)
        except ValueError:
            log_event(EventId.CONVERGE_MESSAGE_INVALID, logging.ERROR, target=message.target[:200])
            return []
        return [converge(deps, target)]
    except TargetWriteError as failure:
        if failure.temporary:
            raise  # the runtime retries the message (then poisons it); the timer comes by anyway
        # Permanent (400/403/404...): the same write fails again on every retry. Already recorded and
        # reported by the reconciler; the message is done.
        log_event(
            EventId.CONVERGE_PERMANENT_FAILURE,
            logging.ERROR,
            target=failure.target.key,
            code=failure.refusal.code,
        )
        return []


# ---- the expiry sweep (every minute) ----


def sweep_expired(deps: ConvergeDeps) -> list[TargetRef]:
    """Grants past their end that are not yet closed get their targets converged."""
    now = deps.now()
    pending: dict[str, TargetRef] = {}
    for grant in deps.store.list_ending_before(now):
        if not grant.targets:
            settle_pathless(deps, grant)
            continue
        for key, state in grant.targets.items():
            if state is not TargetState.REMOVED:
                pending.setdefault(key, TargetRef.from_key(key))
    targets = list(pending.values())
    _each_isolated(deps, targets, "sweep", lambda t: dispatch(deps, [t]))
    return targets


# ---- a policy was written or deleted ----


def policy_changed(deps: ConvergeDeps, vm_ids: Iterable[str]) -> list[TargetRef]:
    """Converge the targets in front of the policy's VMs (old and new version) now, so the Deny
    baseline follows without waiting for the timer. Runs from the converge queue, never inside the
    HTTP request; the targets come from a snapshot of those VMs' subscriptions."""
    vms: list[VmRef] = []
    for vm_id in dict.fromkeys(vm_ids):
        try:
            vms.append(VmRef.parse(vm_id))
        except DomainError:
            log_event(EventId.CONVERGE_MESSAGE_INVALID, logging.ERROR, vm=vm_id[:200])
    if not vms:
        return []
    policies = list(deps.policies.all())
    estate = EstateSnapshot.take(deps, {vm.subscription_id for vm in vms})
    view = EstateView(estate, policies, deps.topology.path)
    found: dict[str, TargetRef] = {}
    for vm in vms:
        entry = next((e for p in policies if (e := p.vm_policy(vm)) is not None), None)
        path = view.path(vm, entry)
        for target in path.targets if path is not None else ():
            found.setdefault(target.key, target)
    targets = list(found.values())
    if deps.enqueue_target is not None:
        _each_isolated(deps, targets, "policy", lambda t: dispatch(deps, [t]))
    else:
        _each_isolated(deps, targets, "policy", lambda t: converge(deps, t, view))
    return targets


# ---- the reconcile timer ----


def managed_targets(deps: ConvergeDeps) -> list[TargetRef]:
    """Every target a policy's VM sits behind, every target holding rules of ours (registry), and every
    target an unsettled grant touches (resolving the path of open grants that have none yet)."""
    return plan_pass(deps).targets


@dataclass
class PassPlan:
    """One reconcile pass, decided in memory: the snapshot, the managed targets, which ones differ."""

    view: EstateView
    targets: list[TargetRef]
    differing: list[TargetRef]
    failed_planning: dict[str, str]


def plan_pass(deps: ConvergeDeps) -> PassPlan:
    now = deps.now()
    policies = list(deps.policies.all())
    grants = deps.store.list_unsettled()
    registry = set(deps.registry.all())
    grant_keys = {key for grant in grants for key in grant.targets}
    subscriptions = {e.vm.subscription_id for p in policies for e in p.virtual_machines}
    subscriptions |= {g.vm.subscription_id for g in grants}
    subscriptions |= target_subscriptions(registry | grant_keys)
    estate = EstateSnapshot.take(deps, subscriptions)
    view = EstateView(estate, policies, deps.topology.path)

    found: dict[str, TargetRef] = dict(view.policy_targets)
    for key in sorted(registry | grant_keys):
        found.setdefault(key, TargetRef.from_key(key))
    resolved: list[Grant] = []
    for grant in grants:
        if grant.targets:
            resolved.append(grant)
            continue
        try:
            if grant.is_open_at(now):
                # Its first hint was lost (or its path could not be read then): resolve it now.
                grant = resolve_targets(deps, grant, view)
                resolved.append(grant)
                for key in grant.targets:
                    found.setdefault(key, TargetRef.from_key(key))
            else:
                settle_pathless(deps, grant)
        except Exception as error:  # noqa: BLE001 - one grant must not stop the pass
            log_event(
                EventId.CONVERGE_GRANT_FAILED,
                logging.ERROR,
                grant_id=grant.grant_id,
                error=brief(repr(error)),
            )
    by_target = grants_by_target(resolved)
    stored_findings = _stored_findings(deps)
    differing: list[TargetRef] = []
    failed: dict[str, str] = {}
    for key, target in found.items():
        try:
            if _differs(deps, target, by_target.get(key, []), view, key in registry, stored_findings, now):
                differing.append(target)
        except Exception as error:  # noqa: BLE001 - one target's planning must not stop the pass
            log_event(EventId.CONVERGE_PLAN_FAILED, logging.ERROR, target=key, error=brief(repr(error)))
            failed[key] = brief(repr(error))
            differing.append(target)  # converge it the careful way (lease, GET), isolated there too
    return PassPlan(view, list(found.values()), differing, failed)


def _stored_findings(deps: ConvergeDeps) -> dict[str, set[tuple[str, str, str, int, str]]]:
    stored: dict[str, set[tuple[str, str, str, int, str]]] = {}
    for row in deps.findings.list():
        stored.setdefault(row.target, set()).add((row.kind, row.rule, row.vm.lower(), row.port, row.detail))
    return stored


def _differs(
    deps: ConvergeDeps,
    target: TargetRef,
    grants: list[Grant],
    view: EstateView,
    registered: bool,
    stored_findings: dict[str, set[tuple[str, str, str, int, str]]],
    now: datetime,
) -> bool:
    """Would converging this target change anything: a rule, a grant's record, the registry, a finding?"""
    kind = for_kind(target.kind)
    listed = kind.listed(view.estate, target)
    if listed is None:
        return True  # not in the snapshot (gone, or its subscription could not be listed): read it
    planned = kind.plan(PlanContext(deps.settings, now, view, None), target, listed, grants)
    if planned.changed:
        return True
    if transitions.target_changes(grants, target.key, planned.present, planned.refused, now):
        return True
    if planned.holds_ours != registered:
        return True
    findings = {
        (f.kind.value, f.rule_name, f.vm.id.lower() if f.vm is not None else "", f.port, f.detail)
        for f in planned.findings
    }
    return findings != stored_findings.get(target.key, set())


def reconcile_all(deps: ConvergeDeps) -> list[TargetRef]:
    """Every few minutes: snapshot the estate, plan every managed target in memory, and converge only
    those that differ, a few at a time (PORTCULLIS_RECONCILE_CONCURRENCY). A pass that finds
    everything in sync writes nothing (ARM or Table) and takes no lease. Returns every managed target."""
    deps.topology.forget()
    try:
        plan = plan_pass(deps)
    except AzureError as error:
        # Fail closed: without the grants (or policies) nothing is planned, opened or removed; the
        # next tick tries again. Loud, since revocations also wait on this.
        log_event(
            EventId.RECONCILE_UNPLANNABLE,
            logging.ERROR,
            error_type=type(error).__name__,
            error=brief(error),
        )
        return []
    # Hint-driven converges until the next tick reuse this pass's Deny baseline instead of
    # resolving every policy VM again.
    deps.baseline_index.seed(deps.topology, plan.view.policies, plan.view.baseline_by_nsg)
    log_event(
        EventId.RECONCILE_PLANNED,
        targets=len(plan.targets),
        differing=len(plan.differing),
        unresolved_vms=len(plan.view.unresolved),
    )
    plan.view.estate.release()
    converge_all(deps, plan.differing, plan.view, "reconcile")
    return plan.targets


def converge_all(deps: ConvergeDeps, targets: Sequence[TargetRef], view: PathView, reason: str) -> None:
    """Converge `targets` through a bounded pool; each failure is logged with its key, the rest go on."""
    budget = deps.budget

    def one(target: TargetRef) -> None:
        if budget is not None:
            sub = target.id.subscription_id
            budget.pace(sub, "writes")
            budget.pace(sub, "reads")
        converge(deps, target, view)

    workers = max(1, min(deps.concurrency, len(targets)))
    if workers <= 1:
        _each_isolated(deps, list(targets), reason, one)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reconcile") as pool:
        list(pool.map(lambda t: _each_isolated(deps, [t], reason, one), targets))


def _each_isolated(
    deps: ConvergeDeps, targets: list[TargetRef], reason: str, work: Callable[[TargetRef], object]
) -> None:
    for target in targets:
        try:
            work(target)
        except Exception as error:  # noqa: BLE001 - one target must not stop the others
            # A ConcurrentUpdateError after its retries, ARM refusing, a bug: logged with its key; the
            # next trigger or tick tries again.
            log_event(
                EventId.CONVERGE_TARGET_FAILED,
                logging.ERROR,
                target=target.key,
                reason=reason,
                error_type=type(error).__name__,
                error=brief(error),
            )


__all__ = [
    "dispatch",
    "handle_converge_message",
    "handle_grant",
    "managed_targets",
    "policy_changed",
    "reconcile_all",
    "sweep_expired",
]
