"""Where grants' VMs sit, as one converge sees it: a VM's path and the Deny baseline of an NSG.

Two sources behind one small interface: `ResolverView` reads one VM at a time through the
TopologyResolver (a grant or policy hint between timer ticks); the estate snapshot
(`snapshot.EstateView`) derives every path from the per-subscription listing of a reconcile pass.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from shared.events import EventId
from shared.model import Grant, JitPolicy, PolicyPort, TargetRef, VmPolicy
from shared.observability import brief, log_event
from shared.plan import BaselineEntry
from shared.topology import TopologyError, TopologyResolver, VmPath


class PathView(Protocol):
    def path_for(self, grant: Grant) -> VmPath | None: ...

    def baseline(self, nsg: TargetRef) -> list[BaselineEntry]: ...


def vm_policy_of(policies: Sequence[JitPolicy], grant: Grant) -> VmPolicy | None:
    """The entry of the grant's own policy for its VM, else any policy's entry for the VM."""
    for policy in policies:
        if policy.ref.key == grant.policy.key and (entry := policy.vm_policy(grant.vm)) is not None:
            return entry
    for policy in policies:
        if (entry := policy.vm_policy(grant.vm)) is not None:
            return entry
    return None


BaselineMap = dict[str, list[tuple[VmPath, tuple[PolicyPort, ...]]]]


def baseline_map(paths: Sequence[tuple[VmPath, tuple[PolicyPort, ...]]]) -> BaselineMap:
    """File each policy VM's (path, ports) under every NSG on that path."""
    by_nsg: BaselineMap = {}
    for path, ports in paths:
        for nsg in path.nsg_targets:
            by_nsg.setdefault(nsg.key, []).append((path, ports))
    return by_nsg


def entries_on(by_nsg: BaselineMap, nsg: TargetRef) -> list[BaselineEntry]:
    return [BaselineEntry(path.on_nsg(nsg.id), ports) for path, ports in by_nsg.get(nsg.key, [])]


class BaselineIndex:
    """NSG target key -> (path, ports) of every policy VM behind that NSG, through the resolver.

    Built once and reused by every hint-driven NSG converge until the policies change or the
    topology cache it was derived from is forgotten or expires."""

    def __init__(self) -> None:
        self._policies: list[JitPolicy] | None = None
        self._generation = -1
        self._built_at = 0.0
        self._by_nsg: BaselineMap = {}
        self._lock = threading.Lock()

    def seed(self, topology: TopologyResolver, policies: list[JitPolicy], by_nsg: BaselineMap) -> None:
        """Adopt a baseline a reconcile pass derived from its snapshot (valid for one topology TTL)."""
        with self._lock:
            generation, now, _ = topology.freshness()
            self._by_nsg = by_nsg
            self._policies, self._generation, self._built_at = list(policies), generation, now

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
            return entries_on(self._by_nsg, nsg)


def build_baseline_index(topology: TopologyResolver, policies: Sequence[JitPolicy]) -> BaselineMap:
    """Resolve each policy VM's path once (failures are negatively cached by the resolver)."""
    resolved: dict[str, VmPath | None] = {}
    found: list[tuple[VmPath, tuple[PolicyPort, ...]]] = []
    for policy in policies:
        for entry in policy.virtual_machines:
            if entry.vm.key not in resolved:
                try:
                    resolved[entry.vm.key] = topology.path(entry.vm, entry)
                except TopologyError as error:
                    log_event(
                        EventId.TOPOLOGY_UNRESOLVED, logging.WARNING, vm=entry.vm.key, error=brief(error)
                    )
                    resolved[entry.vm.key] = None
            path = resolved[entry.vm.key]
            if path is not None:
                found.append((path, tuple(entry.ports)))
    return baseline_map(found)


class ResolverView:
    """Paths read VM by VM through the resolver (cached), for converges between timer ticks."""

    def __init__(self, topology: TopologyResolver, policies: list[JitPolicy], index: BaselineIndex) -> None:
        self._topology = topology
        self._policies = policies
        self._index = index
        self._cache: dict[str, VmPath | None] = {}

    def path_for(self, grant: Grant) -> VmPath | None:
        key = grant.vm.key
        if key not in self._cache:
            try:
                self._cache[key] = self._topology.path(grant.vm, vm_policy_of(self._policies, grant))
            except TopologyError as error:
                log_event(EventId.TOPOLOGY_UNRESOLVED, logging.WARNING, vm=key, error=brief(error))
                self._cache[key] = None
        return self._cache[key]

    def baseline(self, nsg: TargetRef) -> list[BaselineEntry]:
        return self._index.entries(self._topology, self._policies, nsg)
