"""One reconciler per target kind behind one small protocol, and the registry keyed by kind.

A kind knows three things: how to find its target's state in the estate snapshot (no request), how
to read it fresh (GET with ETag), and how to plan it (pure planner + the adapter's one write). Adding
Application Gateway or a Virtual WAN hub later is one module here plus one entry in `REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from shared.model import Grant, TargetKind, TargetRef
from shared.plan import Finding
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.enforcement.deps import ConvergeDeps
    from shared.enforcement.snapshot import EstateSnapshot
    from shared.enforcement.views import PathView


@dataclass
class PlanContext:
    settings: Settings
    now: datetime
    view: PathView
    # None: a dry plan against the snapshot (nothing is written, not even a mapped port).
    deps: ConvergeDeps | None = None
    # Filled by a firewall's port allocation: grants no free mapped port was left for.
    refused_ports: dict[str, str] = field(default_factory=dict)


@dataclass
class KindPlan:
    changed: bool
    write: Callable[[], None] | None
    present: set[str]
    refused: dict[str, str]
    holds_ours: bool
    grants: list[Grant]  # as planned (a firewall may have given some a mapped port)
    findings: list[Finding] = field(default_factory=list)
    # For the drift audit: descriptions of our rules as read, rules to put, rule names to remove.
    actual_descriptions: dict[str, str] = field(default_factory=dict)
    to_put: tuple[Any, ...] = ()
    to_remove: tuple[str, ...] = ()


class TargetKindReconciler(Protocol):
    kind: TargetKind
    # Hints for this kind wait this long on the queue so a burst lands in one write.
    batch_seconds: int

    def listed(self, estate: EstateSnapshot, target: TargetRef) -> Any | None:
        """The target's state as the snapshot listed it; None if the snapshot does not hold it."""
        ...

    def read(self, deps: ConvergeDeps, target: TargetRef) -> Any:
        """The target's state now, with the ETag the write will be conditional on."""
        ...

    def plan(self, ctx: PlanContext, target: TargetRef, state: Any, grants: list[Grant]) -> KindPlan: ...


def _registry() -> dict[TargetKind, TargetKindReconciler]:
    from shared.enforcement.kinds.firewall import ClassicFirewallKind, FirewallPolicyKind
    from shared.enforcement.kinds.nsg import NsgKind

    kinds: list[TargetKindReconciler] = [NsgKind(), ClassicFirewallKind(), FirewallPolicyKind()]
    return {k.kind: k for k in kinds}


REGISTRY: dict[TargetKind, TargetKindReconciler] = {}


def for_kind(kind: TargetKind) -> TargetKindReconciler:
    if not REGISTRY:
        REGISTRY.update(_registry())
    return REGISTRY[kind]
