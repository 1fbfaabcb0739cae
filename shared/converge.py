"""converge(target): make one NSG / classic firewall / firewall policy match the grants and policies.

Level-triggered: every pass reads the whole truth (grants on the target, policies, the target itself),
so duplicate, reordered or lost hints change nothing and a burst of grants costs one write.

    lease -> desired = f(grants on target, policies) -> read actual -> diff
          -> one write with If-Match if anything differs (412: re-read; 409/429: back off; bounded)
          -> record per-grant target state (Applied / Removed / Failed) -> grant status -> audit

`handle_grant` resolves a grant's path the first time (targets, connect address) and converges each
target; `sweep_expired` and `reconcile_all` are the timers' safety nets.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from azure.core.exceptions import AzureError

from shared.compliance import FindingStore
from shared.lease import HintBook, LeaseBusyError, TableLeases, TargetRegistry
from shared.model import (
    AuditTrail,
    ConcurrentUpdateError,
    DomainError,
    Grant,
    GrantStore,
    JitPolicy,
    PolicyPort,
    PortStatus,
    StatusReason,
    TargetKind,
    TargetRef,
    TargetState,
    VmPolicy,
    VmRef,
)
from shared.observability import REVOKE_FAILING, log_event
from shared.plan import (
    BaselineEntry,
    FirewallPlan,
    GrantOnFirewall,
    GrantOnNsg,
    NsgPlan,
    PriorityBands,
    allocate_mapped_ports,
    parse_marker,
    plan_firewall,
    plan_nsg,
)
from shared.settings import Settings
from shared.targets import ArmRefusal, Refusal, classify
from shared.targets.firewall_classic import ClassicFirewallTarget
from shared.targets.firewall_common import FirewallSnapshot, FirewallTarget, choose_priority
from shared.targets.firewall_policy import FirewallPolicyTarget
from shared.targets.nsg import NsgTarget
from shared.topology import TopologyError, TopologyResolver, VmPath

ACTOR = "portcullis-converge"
MAX_WRITE_ATTEMPTS = 6
MAX_BACKOFF_SECONDS = 30.0
MAX_DIRTY_PASSES = 5
MAX_RECORD_ATTEMPTS = 8
# Firewall hints wait a moment on the queue so a burst of grants lands in one firewall update
# (a firewall update takes minutes in Azure; a few seconds of batching is free).
FIREWALL_BATCH_SECONDS = 3


class PolicySource(Protocol):
    def all(self) -> Sequence[JitPolicy]: ...


class TargetWriteError(RuntimeError):
    """ARM kept refusing the write (bounded retries spent); the grants on the target say Failed."""

    def __init__(self, target: TargetRef, refusal: ArmRefusal, attempts: int) -> None:
        super().__init__(f"{target.key}: {refusal.status} {refusal.code}: {refusal.message}")
        self.target = target
        self.refusal = refusal
        self.attempts = attempts


class SimulatedCrash(BaseException):
    """Tests raise this at a checkpoint to model a process dying mid-converge (no cleanup runs)."""


@dataclass
class ConvergeDeps:
    settings: Settings
    store: GrantStore
    audit: AuditTrail
    policies: PolicySource
    topology: TopologyResolver
    leases: TableLeases
    hints: HintBook
    registry: TargetRegistry
    findings: FindingStore
    network: Callable[[str], Any]
    now: Callable[[], datetime]
    sleep: Callable[[float], None]
    # Sends a ConvergeTarget hint (optionally delayed); None = converge inline.
    enqueue_target: Callable[[TargetRef, int], None] | None = None
    # Test hook: called with a step name between the steps of converge.
    checkpoint: Callable[[str], None] = field(default=lambda step: None)
    baseline_index: BaselineIndex = field(default_factory=lambda: BaselineIndex())


@dataclass(frozen=True)
class TargetOutcome:
    target: TargetRef
    wrote: bool
    busy: bool = False
    passes: int = 0
    states: dict[str, TargetState] = field(default_factory=dict)


# ---- entry points ----


def handle_grant(deps: ConvergeDeps, grant_id: str) -> list[TargetOutcome]:
    """A grant was created, revoked, superseded or reached its end: converge every target it touches."""
    grant = deps.store.get(grant_id)
    if grant is None:
        log_event("converge.grant_unknown", logging.WARNING, grant_id=grant_id)
        return []
    if not grant.targets and grant.is_open_at(deps.now()):
        grant = _resolve_targets(deps, grant)
    if not grant.targets:
        _settle_pathless(deps, grant)
        return []
    return dispatch(deps, [TargetRef.from_key(key) for key in grant.targets])


def dispatch(deps: ConvergeDeps, targets: Iterable[TargetRef]) -> list[TargetOutcome]:
    outcomes = []
    for target in targets:
        if deps.enqueue_target is not None:
            if deps.hints.claim(target.key):
                delay = 0 if target.kind is TargetKind.NSG else FIREWALL_BATCH_SECONDS
                deps.enqueue_target(target, delay)
        else:
            outcomes.append(converge(deps, target))
    return outcomes


def converge(deps: ConvergeDeps, target: TargetRef) -> TargetOutcome:
    """Lease the target and converge it, once more for every hint that arrived meanwhile."""
    try:
        lease = deps.leases.acquire(target.key)
    except LeaseBusyError:
        log_event("converge.lease_busy", target=target.key)
        return TargetOutcome(target, wrote=False, busy=True)
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
            pass_wrote, states = _converge_once(deps, target)
            wrote = wrote or pass_wrote
            if not deps.leases.release(lease):
                break
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


def sweep_expired(deps: ConvergeDeps) -> list[TargetRef]:
    """Every minute: grants past their end that are not yet closed get their targets converged."""
    now = deps.now()
    pending: dict[str, TargetRef] = {}
    for grant in deps.store.list_ending_before(now):
        if not grant.targets:
            _settle_pathless(deps, grant)
            continue
        for key, state in grant.targets.items():
            if state is not TargetState.REMOVED:
                pending.setdefault(key, TargetRef.from_key(key))
    targets = list(pending.values())
    _dispatch_all(deps, targets, "sweep")
    return targets


def managed_targets(deps: ConvergeDeps) -> list[TargetRef]:
    """Every target a policy's VM sits behind, every target holding rules of ours (registry), and every
    target an unsettled grant touches."""
    found: dict[str, TargetRef] = {}
    for policy in deps.policies.all():
        for entry in policy.virtual_machines:
            try:
                path = deps.topology.path(entry.vm, entry)
            except (TopologyError, AzureError) as error:
                log_event("topology.unresolved", logging.WARNING, vm=entry.vm.id, error=str(error)[:300])
                continue
            for target in path.targets:
                found.setdefault(target.key, target)
    now = deps.now()
    for key in deps.registry.all():
        found.setdefault(key, TargetRef.from_key(key))
    target_keys, pathless = deps.store.unsettled_work()
    for key in sorted(target_keys):
        found.setdefault(key, TargetRef.from_key(key))
    for grant in pathless:
        if grant.is_open_at(now):
            # Its first hint was lost (or its path could not be read then): resolve it now.
            grant = _resolve_targets(deps, grant)
        for key in grant.targets:
            found.setdefault(key, TargetRef.from_key(key))
    return list(found.values())


def policy_changed(deps: ConvergeDeps, vm_ids: Iterable[str]) -> list[TargetRef]:
    """A policy was written or deleted (`vm_ids`: the VMs of its old and new version): converge the
    targets in front of those VMs now, so the Deny baseline follows without waiting for the reconcile
    timer. Runs from the converge queue, never inside the HTTP request that changed the policy."""
    policies = _policies(deps)
    found: dict[str, TargetRef] = {}
    for vm_id in dict.fromkeys(vm_ids):
        try:
            vm = VmRef.parse(vm_id)
        except DomainError:
            log_event("converge.message_invalid", logging.ERROR, vm=vm_id[:200])
            continue
        entry = next((e for p in policies if (e := p.vm_policy(vm)) is not None), None)
        try:
            path = deps.topology.path(vm, entry)
        except (TopologyError, AzureError) as error:
            log_event("topology.unresolved", logging.WARNING, vm=vm.id, error=str(error)[:300])
            continue
        for target in path.targets:
            found.setdefault(target.key, target)
    targets = list(found.values())
    _dispatch_all(deps, targets, "policy")
    return targets


def reconcile_all(deps: ConvergeDeps) -> list[TargetRef]:
    """Every few minutes: converge every managed target (drift, tamper, lost messages, findings)."""
    deps.topology.forget()
    targets = managed_targets(deps)
    _dispatch_all(deps, targets, "reconcile")
    return targets


def _dispatch_all(deps: ConvergeDeps, targets: list[TargetRef], reason: str) -> None:
    for target in targets:
        try:
            dispatch(deps, [target])
        except (TargetWriteError, AzureError, TopologyError) as error:
            # One stuck target must not stop the others; the next tick tries again.
            log_event(
                "converge.target_failed",
                logging.ERROR,
                target=target.key,
                reason=reason,
                error=str(error)[:500],
            )


# ---- resolving a grant's path ----


def _policies(deps: ConvergeDeps) -> list[JitPolicy]:
    return list(deps.policies.all())


def _vm_policy(policies: Sequence[JitPolicy], grant: Grant) -> VmPolicy | None:
    for policy in policies:
        if policy.ref.key == grant.policy.key and (entry := policy.vm_policy(grant.vm)) is not None:
            return entry
    for policy in policies:
        if (entry := policy.vm_policy(grant.vm)) is not None:
            return entry
    return None


def _resolve_targets(deps: ConvergeDeps, grant: Grant) -> Grant:
    policies = _policies(deps)
    try:
        path = deps.topology.path(grant.vm, _vm_policy(policies, grant))
    except TopologyError as error:
        deps.audit.record(
            "grant.path_unresolved", subject=grant.grant_id, actor=ACTOR, vm=grant.vm.id, reason=str(error)
        )
        log_event("converge.path_unresolved", logging.ERROR, grant_id=grant.grant_id, error=str(error))
        return grant
    targets = {t.key: TargetState.PENDING for t in path.targets}

    def change(current: Grant) -> Grant | None:
        if current.targets:
            return None
        return replace(current, targets=targets, connect_address=path.connect_address)

    updated = _update_grant(deps, grant.grant_id, change) or deps.store.get(grant.grant_id) or grant
    deps.audit.record(
        "grant.path_resolved",
        subject=grant.grant_id,
        actor=ACTOR,
        targets=sorted(targets),
        connect_address=path.connect_address,
    )
    return updated


def _settle_pathless(deps: ConvergeDeps, grant: Grant) -> None:
    """A grant with no path (VM gone, topology broken) opened nothing: close it when it ends."""
    if grant.status is not PortStatus.REVOKED and not grant.is_open_at(deps.now()):

        def change(current: Grant) -> Grant | None:
            if current.status is PortStatus.REVOKED or current.targets:
                return None
            return replace(current, status=PortStatus.REVOKED, status_reason=StatusReason.EXPIRED)

        if _update_grant(deps, grant.grant_id, change) is not None:
            deps.audit.record("grant.expired", subject=grant.grant_id, actor=ACTOR, opened=False)


def _update_grant(
    deps: ConvergeDeps,
    grant_id: str,
    change: Callable[[Grant], Grant | None],
    known: Grant | None = None,
) -> Grant | None:
    """Apply `change` to the grant, retrying on ETag conflicts with a fresh read. None if nothing to
    change. `known` (as read earlier in this pass) saves a read when it needs no change."""
    for attempt in range(MAX_RECORD_ATTEMPTS):
        current = known if attempt == 0 and known is not None else deps.store.get(grant_id)
        if current is None:
            return None
        updated = change(current)
        if updated is None or updated == current:
            return None
        try:
            return deps.store.update(updated)
        except ConcurrentUpdateError:
            continue
    raise ConcurrentUpdateError(f"grant {grant_id} kept changing; gave up after {MAX_RECORD_ATTEMPTS} tries")


# ---- one pass over one target ----


class BaselineIndex:
    """NSG target key -> (path, ports) of every policy VM behind that NSG: the Deny baseline's input.

    Built once from every policy VM's path and reused by every NSG converge until the policies
    change or the topology cache it was derived from is forgotten or expires, so a pass costs one
    path resolution per policy VM instead of one per policy VM per NSG."""

    def __init__(self) -> None:
        self._policies: list[JitPolicy] | None = None
        self._generation = -1
        self._built_at = 0.0
        self._by_nsg: dict[str, list[tuple[VmPath, tuple[PolicyPort, ...]]]] = {}
        self._lock = threading.Lock()

    def entries(
        self, topology: TopologyResolver, policies: list[JitPolicy], nsg: TargetRef
    ) -> list[BaselineEntry]:
        with self._lock:
            generation, now, ttl = topology.freshness()
            if not (
                self._policies == policies and self._generation == generation and now - self._built_at < ttl
            ):
                self._by_nsg = build_baseline_index(topology, policies)
                self._policies, self._generation, self._built_at = list(policies), generation, now
            found = self._by_nsg.get(nsg.key, [])
        return [BaselineEntry(path.on_nsg(nsg.id), ports) for path, ports in found]


def build_baseline_index(
    topology: TopologyResolver, policies: Sequence[JitPolicy]
) -> dict[str, list[tuple[VmPath, tuple[PolicyPort, ...]]]]:
    """Resolve each policy VM's path once and file it under every NSG on that path."""
    by_nsg: dict[str, list[tuple[VmPath, tuple[PolicyPort, ...]]]] = {}
    resolved: dict[str, VmPath | None] = {}
    for policy in policies:
        for entry in policy.virtual_machines:
            if entry.vm.key not in resolved:
                try:
                    resolved[entry.vm.key] = topology.path(entry.vm, entry)
                except TopologyError as error:
                    log_event("topology.unresolved", logging.WARNING, vm=entry.vm.key, error=str(error)[:300])
                    resolved[entry.vm.key] = None
            path = resolved[entry.vm.key]
            if path is None:
                continue
            for nsg in path.nsg_targets:
                by_nsg.setdefault(nsg.key, []).append((path, tuple(entry.ports)))
    return by_nsg


@dataclass
class _Paths:
    deps: ConvergeDeps
    policies: list[JitPolicy]
    cache: dict[str, VmPath | None] = field(default_factory=dict)

    def for_grant(self, grant: Grant) -> VmPath | None:
        return self._path(
            grant.vm.key, lambda: self.deps.topology.path(grant.vm, _vm_policy(self.policies, grant))
        )

    def _path(self, key: str, load: Callable[[], VmPath]) -> VmPath | None:
        if key not in self.cache:
            try:
                self.cache[key] = load()
            except TopologyError as error:
                log_event("topology.unresolved", logging.WARNING, vm=key, error=str(error)[:300])
                self.cache[key] = None
        return self.cache[key]


def _converge_once(deps: ConvergeDeps, target: TargetRef) -> tuple[bool, dict[str, TargetState]]:
    grants = deps.store.list_for_target(target, include_closed=True)
    paths = _Paths(deps, _policies(deps))
    if target.kind is TargetKind.NSG:
        return _converge_nsg(deps, target, grants, paths)
    adapter: FirewallTarget
    if target.kind is TargetKind.FIREWALL_CLASSIC:
        adapter = ClassicFirewallTarget(target, deps.network)
    else:
        adapter = FirewallPolicyTarget(target, deps.network)
    return _converge_firewall(deps, target, adapter, grants, paths)


def _backoff(deps: ConvergeDeps, target: TargetRef, refusal: ArmRefusal, attempt: int) -> None:
    delay = refusal.retry_after if refusal.retry_after is not None else min(2.0**attempt, MAX_BACKOFF_SECONDS)
    delay = min(max(delay, 0.0), MAX_BACKOFF_SECONDS) * (
        1.0 if refusal.retry_after is not None else random.uniform(0.5, 1.0)
    )
    log_event(
        "converge.arm_refused",
        logging.WARNING,
        target=target.key,
        status=refusal.status,
        code=refusal.code,
        attempt=attempt,
        delay_seconds=round(delay, 2),
    )
    deps.sleep(delay)


def _write_loop(
    deps: ConvergeDeps,
    target: TargetRef,
    step: Callable[[], tuple[bool, Callable[[], None] | None]],
) -> bool:
    """Run read+plan (`step` returns (changed, write)) and the write until it sticks; bounded."""
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
            if last.kind is Refusal.FATAL:
                break
            if last.kind is not Refusal.STALE and attempt + 1 < MAX_WRITE_ATTEMPTS:
                _backoff(deps, target, last, attempt)
    assert last is not None
    raise TargetWriteError(target, last, attempts)


def _converge_nsg(
    deps: ConvergeDeps, target: TargetRef, grants: list[Grant], paths: _Paths
) -> tuple[bool, dict[str, TargetState]]:
    now = deps.now()
    baseline = deps.baseline_index.entries(deps.topology, paths.policies, target)
    placements: list[GrantOnNsg] = []
    for grant in grants:
        path = paths.for_grant(grant)
        if path is None or not grant.is_open_at(now):
            continue
        subnet = path.firewall.subnet_prefix if path.firewall is not None else None
        placements.append(GrantOnNsg(grant, path.on_nsg(target.id), subnet))
    s = deps.settings
    bands = PriorityBands(
        s.nsg_allow_priorities.first,
        s.nsg_allow_priorities.last,
        s.nsg_deny_priorities.first,
        s.nsg_deny_priorities.last,
    )
    adapter = NsgTarget(target, deps.network)
    result: dict[str, NsgPlan] = {}

    def step() -> tuple[bool, Callable[[], None] | None]:
        snapshot = adapter.read()
        deps.checkpoint("read")
        plan = plan_nsg(snapshot.rules, baseline, placements, bands, deps.now())
        result["plan"] = plan
        _note_drift(
            deps, target, grants, {r.name: r.description for r in snapshot.rules}, plan.to_put, plan.to_remove
        )
        return plan.changed, (lambda: adapter.write(snapshot, plan))

    try:
        wrote = _write_loop(deps, target, step)
    except TargetWriteError as failure:
        _record_failure(deps, target, grants, failure)
        raise
    plan = result["plan"]
    deps.registry.note(target.key, bool(plan.desired))
    present = {g.grant.grant_id for g in placements if plan.rule_for(g.grant.grant_id) is not None}
    deps.findings.replace(target, list(plan.findings), deps.now())
    states = _record(deps, target, grants, present, plan.refused, wrote)
    return wrote, states


def _converge_firewall(
    deps: ConvergeDeps,
    target: TargetRef,
    adapter: FirewallTarget,
    grants: list[Grant],
    paths: _Paths,
) -> tuple[bool, dict[str, TargetState]]:
    result: dict[str, FirewallPlan] = {}
    refused_ports: dict[str, str] = {}
    latest: list[list[Grant]] = [grants]

    def step() -> tuple[bool, Callable[[], None] | None]:
        snapshot = adapter.read()
        deps.checkpoint("read")
        now = deps.now()
        current = _allocate_ports(deps, target, grants, snapshot, paths, refused_ports)
        latest[0] = current
        placements = []
        for grant in current:
            path = paths.for_grant(grant)
            if path is None or path.firewall is None or path.firewall.target != target or not path.private_ip:
                continue
            public_ip = grant.connect_address or path.firewall_public_ip
            if public_ip:
                placements.append(GrantOnFirewall(grant, path.private_ip, public_ip))
        priority = choose_priority(
            _configured_priority(deps.settings, target), snapshot.used_priorities, snapshot.our_priority
        )
        plan = plan_firewall(snapshot.our_rules, snapshot.our_priority, placements, priority, now)
        result["plan"] = plan
        _note_drift(
            deps,
            target,
            current,
            {r.name: r.description for r in snapshot.our_rules or ()},
            plan.desired if plan.changed else (),
            (),
        )
        return plan.changed, (lambda: adapter.write(snapshot, plan))

    try:
        wrote = _write_loop(deps, target, step)
    except TargetWriteError as failure:
        _record_failure(deps, target, grants, failure)
        raise
    plan = result["plan"]
    deps.registry.note(target.key, bool(plan.desired))
    present = {gid for g in latest[0] if plan.rule_for(gid := g.grant_id) is not None}
    refused = {**plan.refused, **refused_ports}
    deps.findings.replace(target, [], deps.now())
    states = _record(deps, target, latest[0], present, refused, wrote)
    return wrote, states


def _configured_priority(settings: Settings, target: TargetRef) -> int:
    if target.kind is TargetKind.FIREWALL_POLICY:
        return settings.firewall_policy_rule_collection_group_priority
    return settings.firewall_nat_collection_priority


def _allocate_ports(
    deps: ConvergeDeps,
    target: TargetRef,
    grants: list[Grant],
    snapshot: FirewallSnapshot,
    paths: _Paths,
    refused_out: dict[str, str],
) -> list[Grant]:
    """Give open grants without a mapped port one, and persist it before any rule uses it."""
    now = deps.now()
    taken: dict[str, set[int]] = {ip: set(ports) for ip, ports in snapshot.foreign_ports.items()}
    needing: list[tuple[str, str]] = []
    for grant in grants:
        ip = grant.connect_address
        if ip is None:
            path = paths.for_grant(grant)
            ip = path.firewall_public_ip if path is not None else None
        if ip is None:
            continue
        if grant.mapped_port is not None and grant.targets.get(target.key) is not TargetState.REMOVED:
            taken.setdefault(ip, set()).add(grant.mapped_port)
        elif grant.mapped_port is None and grant.is_open_at(now):
            needing.append((grant.grant_id, ip))
    for rule in snapshot.our_rules or ():
        # A rule of ours whose grant we do not know still holds its port until it is removed.
        taken.setdefault(rule.destination_address, set()).add(rule.destination_port)
    if not needing:
        return grants
    ports = deps.settings.mapped_ports
    allocated, refused = allocate_mapped_ports(needing, taken, ports.first, ports.last)
    refused_out.update(refused)
    by_id = {g.grant_id: g for g in grants}
    for grant_id, port in allocated.items():

        def change(current: Grant, port: int = port) -> Grant | None:
            if current.mapped_port is not None:
                return None
            return replace(current, mapped_port=port)

        updated = _update_grant(deps, grant_id, change)
        fresh = updated or deps.store.get(grant_id)
        if fresh is not None:
            by_id[grant_id] = fresh
            deps.audit.record(
                "grant.port_mapped",
                subject=grant_id,
                actor=ACTOR,
                target=target.key,
                mapped_port=fresh.mapped_port,
            )
    deps.checkpoint("allocated")
    return [by_id[g.grant_id] for g in grants]


def _note_drift(
    deps: ConvergeDeps,
    target: TargetRef,
    grants: Sequence[Grant],
    actual_descriptions: dict[str, str],
    to_put: Iterable[Any],
    to_remove: Iterable[str],
) -> None:
    """Audit repairs of rules someone else changed: ours edited, ours deleted after we applied them."""
    known = {g.grant_id: g for g in grants}
    for rule in to_put:
        marker = parse_marker(rule.description)
        grant = known.get(marker.grant_id) if marker and marker.grant_id else None
        if rule.name in actual_descriptions:
            deps.audit.record(
                "drift.repaired", subject=target.key, actor=ACTOR, rule=rule.name, change="edited"
            )
        elif grant is not None and grant.targets.get(target.key) is TargetState.APPLIED:
            deps.audit.record(
                "drift.repaired", subject=target.key, actor=ACTOR, rule=rule.name, change="deleted"
            )
    for name in to_remove:
        marker = parse_marker(actual_descriptions.get(name))
        if marker is None or (marker.grant_id is not None and marker.grant_id not in known):
            deps.audit.record("drift.removed_unknown", subject=target.key, actor=ACTOR, rule=name)


def _record(
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
        if grant.grant_id in present:
            state = TargetState.APPLIED
        elif grant.grant_id in refused:
            state = TargetState.FAILED
        elif not grant.is_open_at(now):
            state = TargetState.REMOVED
        else:
            # Open, not refused, yet no rule: its path no longer crosses this target.
            state = TargetState.REMOVED
        states[grant.grant_id] = state
        _record_grant(deps, target, grant, state, refused.get(grant.grant_id))
    if wrote:
        deps.audit.record("target.converged", subject=target.key, actor=ACTOR, grants=len(states))
    return states


def _record_grant(
    deps: ConvergeDeps, target: TargetRef, grant: Grant, state: TargetState, why: str | None
) -> None:
    grant_id = grant.grant_id
    events: list[tuple[str, dict[str, object]]] = []

    def change(current: Grant) -> Grant | None:
        events.clear()
        if target.key not in current.targets:
            return None
        effective = state
        if state is TargetState.APPLIED and not current.is_open_at(deps.now()):
            return None  # revoked since we read it: the next pass removes the rule
        targets = {**current.targets, target.key: effective}
        status, reason = current.status, current.status_reason
        if current.targets.get(target.key) is not effective:
            name = {
                TargetState.APPLIED: "grant.applied",
                TargetState.REMOVED: "grant.removed",
                TargetState.FAILED: "grant.refused",
                TargetState.PENDING: "grant.pending",
            }[effective]
            events.append((name, {"target": target.key, "reason": why} if why else {"target": target.key}))
        all_applied = all(s is TargetState.APPLIED for s in targets.values())
        if status is PortStatus.INITIATING and all_applied and current.is_open_at(deps.now()):
            status = PortStatus.INITIATED
            events.append(
                (
                    "grant.initiated",
                    {"connect_address": current.connect_address, "connect_port": current.connect_port},
                )
            )
        if not current.is_open_at(deps.now()) and all(s is TargetState.REMOVED for s in targets.values()):
            if status is not PortStatus.REVOKED:
                status, reason = PortStatus.REVOKED, StatusReason.EXPIRED
                events.append(("grant.expired", {}))
            elif current.targets.get(target.key) is not TargetState.REMOVED:
                events.append(("grant.closed", {"reason": reason.value if reason else None}))
        return replace(current, targets=targets, status=status, status_reason=reason)

    if _update_grant(deps, grant_id, change, known=grant) is not None:
        for name, details in events:
            deps.audit.record(name, subject=grant_id, actor=ACTOR, **details)


def _record_failure(
    deps: ConvergeDeps, target: TargetRef, grants: list[Grant], failure: TargetWriteError
) -> None:
    log_event(
        "converge.write_failed",
        logging.ERROR,
        target=target.key,
        status=failure.refusal.status,
        code=failure.refusal.code,
        message=failure.refusal.message,
    )
    deps.audit.record(
        "target.write_failed",
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
            REVOKE_FAILING,
            logging.ERROR,
            target=target.key,
            grant_ids=sorted(closing),
            attempts=failure.attempts,
            error=f"{failure.refusal.status} {failure.refusal.code}: {failure.refusal.message}"[:500],
        )
    for grant in grants:
        if grant.is_open_at(now) and grant.targets.get(target.key) is TargetState.PENDING:
            _record_grant(deps, target, grant, TargetState.FAILED, failure.refusal.code)


# ---- wiring ----


class TablePolicies:
    """Every stored JIT policy, across subscriptions: the Deny baseline and the managed targets."""

    def __init__(self, settings: Settings) -> None:
        from shared.policy_store import TablePolicyStore

        self._store = TablePolicyStore(settings)

    def all(self) -> Sequence[JitPolicy]:
        return [stored.policy for stored in self._store.list_all()]


def build_deps(
    settings: Settings,
    *,
    now: Callable[[], datetime],
    sleep: Callable[[float], None],
    enqueue_target: Callable[[TargetRef, int], None] | None = None,
    network: Callable[[str], Any] | None = None,
    compute: Callable[[str], Any] | None = None,
    store: GrantStore | None = None,
    audit: AuditTrail | None = None,
    topology: TopologyResolver | None = None,
) -> ConvergeDeps:
    """Everything converge needs, from settings (Table storage, ARM clients, caches)."""
    from functools import lru_cache

    from shared.audit import TableAuditTrail
    from shared.azure_clients import compute_client, network_client
    from shared.grants import TableGrantStore
    from shared.storage import table

    network_factory = network or lru_cache(maxsize=16)(lambda sub: network_client(sub, settings))
    compute_factory = compute or lru_cache(maxsize=16)(lambda sub: compute_client(sub, settings))
    return ConvergeDeps(
        settings=settings,
        store=store or TableGrantStore(settings),
        audit=audit or TableAuditTrail(settings, now),
        policies=TablePolicies(settings),
        topology=topology or TopologyResolver(network_factory, compute_factory),
        leases=TableLeases(table("leases", settings), now, settings.converge_lease_seconds),
        hints=HintBook(table("leases", settings), now),
        registry=TargetRegistry(table("leases", settings)),
        findings=FindingStore.from_settings(settings),
        network=network_factory,
        now=now,
        sleep=sleep,
        enqueue_target=enqueue_target,
    )


def handle_converge_message(body: str | bytes, deps: ConvergeDeps) -> list[TargetOutcome]:
    """The `jit-converge` queue trigger. A malformed message is logged and dropped (a retry cannot
    fix it); ARM refusing after bounded retries raises, so the runtime retries it and then poisons it."""
    from pydantic import ValidationError

    from shared.messages import ConvergeGrant, ConvergePolicy, parse_converge_message

    try:
        message = parse_converge_message(body)
    except ValidationError as error:
        log_event("converge.message_invalid", logging.ERROR, error=str(error)[:500])
        return []
    if isinstance(message, ConvergeGrant):
        return handle_grant(deps, message.grant_id)
    if isinstance(message, ConvergePolicy):
        policy_changed(deps, message.vm_ids)
        return []
    try:
        target = TargetRef.from_key(message.target)
    except ValueError:
        log_event("converge.message_invalid", logging.ERROR, target=message.target[:200])
        return []
    return [converge(deps, target)]


def queue_enqueuer(settings: Settings) -> Callable[[TargetRef, int], None]:
    """Sends ConvergeTarget hints on the converge queue, visible after `delay` seconds."""
    from datetime import UTC

    from shared.messages import ConvergeTarget, dump_converge_message
    from shared.storage import queue, send

    client = queue(settings.converge_queue, settings)

    def enqueue(target: TargetRef, delay: int) -> None:
        now = datetime.now(UTC)
        send(
            client,
            dump_converge_message(ConvergeTarget(target=target.key)),
            visible_at=now + timedelta(seconds=delay),
            now=now,
        )

    return enqueue


_process_deps: list[ConvergeDeps] = []


def get_converge_deps() -> ConvergeDeps:
    """The process-wide enforcement collaborators (real clock, real sleep, hints on the queue)."""
    if not _process_deps:
        import time
        from datetime import UTC

        from shared.settings import get_settings

        settings = get_settings()
        _process_deps.append(
            build_deps(
                settings,
                now=lambda: datetime.now(UTC),
                sleep=time.sleep,
                enqueue_target=queue_enqueuer(settings),
            )
        )
    return _process_deps[0]
