"""Firewall targets (classic rules on an Azure Firewall, or a Firewall Policy's rule collection group):
DNAT rules for open grants on a mapped port, persisted on the grant before any rule uses it."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from shared.enforcement import transitions
from shared.enforcement.kinds import KindPlan, PlanContext
from shared.enforcement.recording import ACTOR, update_grant
from shared.events import EventId
from shared.model import Grant, TargetKind, TargetRef, TargetState
from shared.plan import GrantOnFirewall, allocate_mapped_ports, plan_firewall
from shared.settings import Settings
from shared.targets.firewall_classic import ClassicFirewallTarget
from shared.targets.firewall_common import (
    FirewallSnapshot,
    choose_priority,
)
from shared.targets.firewall_policy import FirewallPolicyTarget

if TYPE_CHECKING:
    from shared.enforcement.deps import ConvergeDeps
    from shared.enforcement.snapshot import EstateSnapshot


def _configured_priority(settings: Settings, kind: TargetKind) -> int:
    if kind is TargetKind.FIREWALL_POLICY:
        return settings.firewall_policy_rule_collection_group_priority
    return settings.firewall_nat_collection_priority


class _FirewallKind:
    kind: TargetKind
    batch_seconds = 3  # a firewall update takes minutes in Azure; a few seconds of batching is free

    def _adapter(self, deps: ConvergeDeps, target: TargetRef) -> Any:
        raise NotImplementedError

    def read(self, deps: ConvergeDeps, target: TargetRef) -> FirewallSnapshot:
        snapshot: FirewallSnapshot = self._adapter(deps, target).read()
        return snapshot

    def plan(self, ctx: PlanContext, target: TargetRef, state: Any, grants: list[Grant]) -> KindPlan:
        assert isinstance(state, FirewallSnapshot)
        needs_port = False
        if ctx.deps is not None:
            grants = allocate_ports(ctx, target, grants, state)
        else:
            needs_port = any(
                g.mapped_port is None and g.is_open_at(ctx.now) and _fronting_ip(ctx, g) is not None
                for g in grants
            )
        placements: list[GrantOnFirewall] = []
        blocked: dict[str, str] = {}
        for grant in grants:
            path = ctx.view.path_for(grant)
            if path is None or path.firewall is None or path.firewall.target != target or not path.private_ip:
                continue
            if path.firewall_blocked is not None:
                if grant.is_open_at(ctx.now):
                    blocked[grant.grant_id] = path.firewall_blocked
                continue
            public_ip = grant.connect_address or path.firewall_public_ip
            if public_ip:
                placements.append(GrantOnFirewall(grant, path.private_ip, public_ip))
        priority = choose_priority(
            _configured_priority(ctx.settings, target.kind), state.used_priorities, state.our_priority
        )
        plan = plan_firewall(state.our_rules, state.our_priority, placements, priority, ctx.now)
        deps = ctx.deps
        adapter = self._adapter(deps, target) if deps is not None else None
        actual = {r.name: r for r in state.our_rules or ()}

        def write() -> None:
            assert adapter is not None
            adapter.write(state, plan)

        return KindPlan(
            changed=plan.changed or needs_port,
            write=write if adapter is not None else None,
            present={gid for g in grants if plan.rule_for(gid := g.grant_id) is not None},
            refused={**plan.refused, **ctx.refused_ports, **blocked},
            holds_ours=bool(plan.desired),
            grants=grants,
            actual_descriptions={r.name: r.description for r in state.our_rules or ()},
            # Only rules that differ from what is there: an unchanged rule beside a new one is no drift.
            to_put=tuple(r for r in plan.desired if actual.get(r.name) != r) if plan.changed else (),
        )


class ClassicFirewallKind(_FirewallKind):
    kind = TargetKind.FIREWALL_CLASSIC

    def _adapter(self, deps: ConvergeDeps, target: TargetRef) -> ClassicFirewallTarget:
        return ClassicFirewallTarget(target, deps.network)

    def listed(self, estate: EstateSnapshot, target: TargetRef) -> FirewallSnapshot | None:
        body = estate.body("firewall", target.id.value)
        return FirewallSnapshot.from_classic_wire(body) if body is not None else None


class FirewallPolicyKind(_FirewallKind):
    kind = TargetKind.FIREWALL_POLICY

    def _adapter(self, deps: ConvergeDeps, target: TargetRef) -> FirewallPolicyTarget:
        return FirewallPolicyTarget(target, deps.network)

    def listed(self, estate: EstateSnapshot, target: TargetRef) -> FirewallSnapshot | None:
        groups = estate.rule_groups(target.id.value)
        return FirewallSnapshot.from_policy_wire(groups) if groups is not None else None


def _fronting_ip(ctx: PlanContext, grant: Grant) -> str | None:
    if grant.connect_address is not None:
        return grant.connect_address
    path = ctx.view.path_for(grant)
    return path.firewall_public_ip if path is not None else None


def allocate_ports(
    ctx: PlanContext, target: TargetRef, grants: list[Grant], snapshot: FirewallSnapshot
) -> list[Grant]:
    """Give open grants without a mapped port one, and persist it before any rule uses it."""
    deps = ctx.deps
    assert deps is not None
    now = ctx.now
    taken: dict[str, set[int]] = {ip: set(ports) for ip, ports in snapshot.foreign_ports.items()}
    needing: list[tuple[str, str]] = []
    for grant in grants:
        ip = _fronting_ip(ctx, grant)
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
    ctx.refused_ports.update(refused)
    by_id = {g.grant_id: g for g in grants}
    for grant_id, port in allocated.items():

        def change(current: Grant, port: int = port) -> transitions.Transition:
            if current.mapped_port is not None:
                return transitions.NO_CHANGE
            return transitions.Transition(replace(current, mapped_port=port))

        updated = update_grant(deps, grant_id, change)
        fresh = updated or deps.store.get(grant_id)
        if fresh is not None:
            by_id[grant_id] = fresh
            deps.audit.record(
                EventId.GRANT_PORT_MAPPED,
                subject=grant_id,
                actor=ACTOR,
                target=target.key,
                mapped_port=fresh.mapped_port,
            )
    deps.checkpoint("allocated")
    return [by_id[g.grant_id] for g in grants]
