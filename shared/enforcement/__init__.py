"""Enforcement: make every NSG, classic firewall and Firewall Policy match the grants and policies.

triggers.py     queue messages (grant, target, policy), the expiry sweep, the reconcile timer
snapshot.py     one reconcile pass's view of the estate: ARM list calls per subscription
reconciler.py   converge(target): lease, read fresh, plan, one If-Match write, record
kinds/          one reconciler per target kind (NSG, classic firewall, Firewall Policy) + registry
transitions.py  grant state transitions, pure
recording.py    writing what a converge found (grants, audit, drift and IaC findings)
views.py        where a grant's VM sits: per-VM resolver or snapshot, behind one interface
budget.py       ARM's remaining-request headers, and pacing the timer on them
errors.py       temporary vs permanent failures
deps.py         wiring
"""

from shared.enforcement.deps import ConvergeDeps, build_deps, queue_enqueuer
from shared.enforcement.errors import SimulatedCrash, TargetWriteError
from shared.enforcement.reconciler import MAX_WRITE_ATTEMPTS, TargetOutcome, converge
from shared.enforcement.triggers import (
    dispatch,
    handle_converge_message,
    handle_grant,
    managed_targets,
    policy_changed,
    reconcile_all,
    sweep_expired,
)

__all__ = [
    "MAX_WRITE_ATTEMPTS",
    "ConvergeDeps",
    "SimulatedCrash",
    "TargetOutcome",
    "TargetWriteError",
    "build_deps",
    "converge",
    "dispatch",
    "handle_converge_message",
    "handle_grant",
    "managed_targets",
    "policy_changed",
    "queue_enqueuer",
    "reconcile_all",
    "sweep_expired",
]
