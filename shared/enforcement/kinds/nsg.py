"""NSG targets: Allow rules for open grants, the Deny baseline for policy ports, one If-Match PUT."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.enforcement.kinds import KindPlan, PlanContext
from shared.model import Grant, TargetKind, TargetRef
from shared.plan import GrantOnNsg, PriorityBands, plan_nsg
from shared.targets.nsg import NsgSnapshot, NsgTarget

if TYPE_CHECKING:
    from shared.enforcement.deps import ConvergeDeps
    from shared.enforcement.snapshot import EstateSnapshot


class NsgKind:
    kind = TargetKind.NSG
    batch_seconds = 0

    def listed(self, estate: EstateSnapshot, target: TargetRef) -> NsgSnapshot | None:
        body = estate.body("nsg", target.id.value)
        return NsgSnapshot.from_wire(body) if body is not None else None

    def read(self, deps: ConvergeDeps, target: TargetRef) -> NsgSnapshot:
        return NsgTarget(target, deps.network).read()

    def plan(self, ctx: PlanContext, target: TargetRef, state: Any, grants: list[Grant]) -> KindPlan:
        assert isinstance(state, NsgSnapshot)
        placements: list[GrantOnNsg] = []
        blocked: dict[str, str] = {}
        for grant in grants:
            path = ctx.view.path_for(grant)
            if path is None or not grant.is_open_at(ctx.now):
                continue
            if path.firewall_blocked is not None:
                # Its firewall may not front the VM (invariant 6): nothing of it opens anywhere.
                blocked[grant.grant_id] = path.firewall_blocked
                continue
            subnet = path.firewall.subnet_prefix if path.firewall is not None else None
            placements.append(GrantOnNsg(grant, path.on_nsg(target.id), subnet))
        s = ctx.settings
        bands = PriorityBands(
            s.nsg_allow_priorities.first,
            s.nsg_allow_priorities.last,
            s.nsg_deny_priorities.first,
            s.nsg_deny_priorities.last,
        )
        plan = plan_nsg(state.rules, ctx.view.baseline(target), placements, bands, ctx.now)
        deps = ctx.deps

        def write() -> None:
            assert deps is not None
            NsgTarget(target, deps.network).write(state, plan)

        return KindPlan(
            changed=plan.changed,
            write=write if deps is not None else None,
            present={g.grant.grant_id for g in placements if plan.rule_for(g.grant.grant_id) is not None},
            refused={**plan.refused, **blocked},
            holds_ours=bool(plan.desired),
            grants=grants,
            findings=list(plan.findings),
            actual_descriptions={r.name: r.description for r in state.rules},
            to_put=tuple(plan.to_put),
            to_remove=tuple(plan.to_remove),
        )
