"""Everything enforcement needs: Table storage, ARM clients, caches, clock (the process builds it
once, in shared/composition.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from shared.compliance import FindingStore
from shared.enforcement.budget import ArmBudget
from shared.enforcement.views import BaselineIndex
from shared.lease import HintBook, TableLeases, TargetRegistry
from shared.model import AuditTrail, GrantStore, JitPolicy, TargetRef
from shared.settings import Settings
from shared.topology import TopologyResolver

if TYPE_CHECKING:
    from shared.policy_store import TablePolicyStore


class PolicySource(Protocol):
    def all(self) -> Sequence[JitPolicy]: ...


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
    baseline_index: BaselineIndex = field(default_factory=BaselineIndex)
    compute: Callable[[str], Any] | None = None
    budget: ArmBudget | None = None

    @property
    def concurrency(self) -> int:
        return self.settings.reconcile_concurrency


class TablePolicies:
    """Every stored JIT policy, across subscriptions: the Deny baseline and the managed targets."""

    def __init__(self, settings: Settings, store: TablePolicyStore | None = None) -> None:
        """`store`: the process's policy store (shared/composition.py), else a new one."""
        from shared.policy_store import TablePolicyStore

        self._store = store or TablePolicyStore(settings)

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
    policies: PolicySource | None = None,
) -> ConvergeDeps:
    """Everything converge needs, from settings (Table storage, ARM clients, caches)."""
    from functools import lru_cache

    from shared.audit import TableAuditTrail
    from shared.azure_clients import compute_client, network_client
    from shared.grants import TableGrantStore
    from shared.storage import table

    budget = ArmBudget(sleep)
    # Every answer of these clients reports the bucket (not only the list calls that pass
    # `observe` themselves): the adapters' GETs and If-Match writes too.
    network_factory = network or lru_cache(maxsize=16)(
        lambda sub: network_client(sub, settings, response_hook=budget.observe(sub))
    )
    compute_factory = compute or lru_cache(maxsize=16)(
        lambda sub: compute_client(sub, settings, response_hook=budget.observe(sub))
    )
    return ConvergeDeps(
        settings=settings,
        store=store or TableGrantStore(settings),
        audit=audit or TableAuditTrail(settings, now),
        policies=policies or TablePolicies(settings),
        topology=topology or TopologyResolver(network_factory, compute_factory),
        leases=TableLeases(table("leases", settings), now, settings.converge_lease_seconds),
        hints=HintBook(table("leases", settings), now),
        registry=TargetRegistry(table("leases", settings)),
        findings=FindingStore.from_settings(settings),
        network=network_factory,
        now=now,
        sleep=sleep,
        enqueue_target=enqueue_target,
        compute=compute_factory,
        budget=budget,
    )


def queue_enqueuer(settings: Settings, client: Any = None) -> Callable[[TargetRef, int], None]:
    """Sends ConvergeTarget hints on the converge queue, visible after `delay` seconds. `client`: the
    process's converge-queue client (shared/composition.py), else a new one."""
    from datetime import UTC

    from shared.messages import ConvergeTarget, dump_converge_message
    from shared.storage import queue, send

    client = client or queue(settings.converge_queue, settings)

    def enqueue(target: TargetRef, delay: int) -> None:
        moment = datetime.now(UTC)
        send(
            client,
            dump_converge_message(ConvergeTarget(target=target.key)),
            visible_at=moment + timedelta(seconds=delay),
            now=moment,
        )

    return enqueue
