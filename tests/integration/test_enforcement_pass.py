"""The snapshot-driven reconcile pass (issue 16): what an in-sync pass costs (list calls only, no
write to ARM or Table, no lease), that only drifted targets are written, that one failing target does
not stop the others, crash recovery, firewall confinement at converge time, and the IaC finding.
Real Azurite and the ARM emulator through the real SDKs; counting wrappers let every request through."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest

from shared import enforcement, plan
from shared.audit import TableAuditTrail
from shared.model import PortStatus, TargetKind, TargetRef, TargetState

from .conftest import World


@contextmanager
def storage_requests(world: World) -> Iterator[Counter[str]]:
    """Counts the HTTP requests this process sends to Azurite's Table port, by read/write."""
    from azure.core.pipeline.transport import RequestsTransport

    counts: Counter[str] = Counter()
    original = RequestsTransport.send

    def send(transport: Any, request: Any, **kwargs: Any) -> Any:
        if urlsplit(request.url).port == world.table_port:
            counts["reads" if request.method.upper() in ("GET", "HEAD") else "writes"] += 1
        return original(transport, request, **kwargs)

    RequestsTransport.send = send  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        RequestsTransport.send = original  # type: ignore[method-assign]


def arm_requests(world: World, since: int) -> list[dict[str, Any]]:
    """ARM requests the app sent since the mark `since` (polls of operations excluded)."""
    log = world.emulator.requests_since(since)
    return [
        r for r in log if "portcullis/" in (r.get("user_agent") or "") and "/operations/" not in r["path"]
    ]


def arm_log_length(world: World) -> int:
    return world.emulator.log_mark()


def _settled_world(world_factory: Callable[..., World]) -> tuple[World, list[str]]:
    """Grants open on NSGs, the classic firewall and the Firewall Policy, converged; one pass more so
    the Deny baseline and registry are in place."""
    world = world_factory()
    grants = [
        world.request(world.estate.vm_web, 22),
        world.request(world.estate.vm_app, 22),
        world.request(world.estate.vm_ops, 3389),
    ]
    for grant in grants:
        enforcement.handle_grant(world.deps, grant.grant_id)
    enforcement.reconcile_all(world.deps)
    for grant in grants:
        stored = world.store.get(grant.grant_id)
        assert stored is not None and stored.status is PortStatus.INITIATED, stored
    return world, [g.grant_id for g in grants]


def test_in_sync_pass_lists_and_writes_nothing(world_factory: Callable[..., World]) -> None:
    world, _ = _settled_world(world_factory)
    start = arm_log_length(world)
    with storage_requests(world) as table_ops:
        targets = enforcement.reconcile_all(world.deps)
    calls = arm_requests(world, start)
    kinds = {t.kind for t in targets}
    assert kinds == {TargetKind.NSG, TargetKind.FIREWALL_CLASSIC, TargetKind.FIREWALL_POLICY}
    # Reads only, every one a list: the subscription's collections plus one per Firewall Policy.
    assert [c for c in calls if c["method"] != "GET"] == []
    singles = [c for c in calls if not _is_list(c["path"])]
    assert singles == [], [c["path"] for c in singles]
    assert len(calls) <= 8, [c["path"] for c in calls]
    # Table: reads (policies, grants, registry, findings), not one write: no lease, no audit, no record.
    assert table_ops["writes"] == 0, table_ops
    assert table_ops["reads"] <= 8, table_ops


def _is_list(path: str) -> bool:
    """`.../providers/Microsoft.Network/networkSecurityGroups` (a collection), not `.../{name}`;
    rule collection groups of a policy are a collection under the policy."""
    segments = [s for s in path.split("?", 1)[0].strip("/").split("/") if s]
    provider_at = max(i for i, s in enumerate(segments) if s.lower() == "providers")
    return len(segments[provider_at + 2 :]) % 2 == 1


def test_only_the_drifted_target_is_written_and_the_iac_conflict_recorded(
    world_factory: Callable[..., World],
) -> None:
    world, grant_ids = _settled_world(world_factory)
    stored = world.store.get(grant_ids[0])
    assert stored is not None
    name = plan.allow_rule_name(stored)
    # A pipeline that owns the whole NSG applies its template: our live rule is gone.
    body = world.nsg("nsg-web-nic")
    body["properties"]["securityRules"] = [
        r for r in body["properties"]["securityRules"] if r["name"] != name
    ]
    world.emulator.put_resource(world.estate.nsg_id("nsg-web-nic"), body)

    start = arm_log_length(world)
    enforcement.reconcile_all(world.deps)
    writes = [c for c in arm_requests(world, start) if c["method"] in ("PUT", "DELETE", "PATCH")]
    assert len(writes) == 1 and writes[0]["path"].lower().endswith("/nsg-web-nic")
    assert name in {r["name"] for r in world.nsg_rules("nsg-web-nic")}
    events = _events(world, world.estate.nsg_id("nsg-web-nic"))
    conflict = [e for e in events if e.event == "drift.iac_conflict"]
    assert conflict and conflict[0].details["rule"] == name and conflict[0].details["change"] == "deleted"
    assert conflict[0].details["grant_id"] == grant_ids[0]


def _events(world: World, nsg_id: str) -> list[Any]:
    return TableAuditTrail(world.settings, world.clock.now).for_subject(f"nsg|{nsg_id}".lower())


def test_one_failing_target_does_not_stop_the_pass(
    world_factory: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    world, _ = _settled_world(world_factory)
    for nsg in ("nsg-web-nic", "nsg-app-nic"):
        body = world.nsg(nsg)
        body["properties"]["securityRules"] = [
            r for r in body["properties"]["securityRules"] if not plan.is_ours(r["name"])
        ]
        world.emulator.put_resource(world.estate.nsg_id(nsg), body)
    # ARM refuses every write to one of them for good (403); the other is still repaired.
    world.emulator.add_fault(
        method="PUT", path="nsg-web-nic$", status=403, code="AuthorizationFailed", count=None
    )
    caplog.set_level(logging.ERROR, logger="portcullis")
    try:
        enforcement.reconcile_all(world.deps)
    finally:
        world.emulator.clear_faults()
    assert any(plan.is_ours(r["name"]) for r in world.nsg_rules("nsg-app-nic"))
    assert not any(plan.is_ours(r["name"]) for r in world.nsg_rules("nsg-web-nic"))
    failed = [r for r in caplog.records if r.getMessage().startswith("converge.target_failed")]
    assert failed and "nsg-web-nic" in failed[0].getMessage()


def test_a_bug_in_one_target_is_isolated(
    world_factory: Callable[..., World], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    world, _ = _settled_world(world_factory)
    from shared.enforcement import kinds

    nsg_kind = kinds.for_kind(TargetKind.NSG)
    real = nsg_kind.plan

    def buggy(ctx: Any, target: TargetRef, state: Any, grants: Any) -> Any:
        if target.id.name == "nsg-web-nic":
            raise KeyError("a bug")
        return real(ctx, target, state, grants)

    monkeypatch.setattr(nsg_kind, "plan", buggy)
    body = world.nsg("nsg-app-nic")
    body["properties"]["securityRules"] = []
    world.emulator.put_resource(world.estate.nsg_id("nsg-app-nic"), body)
    caplog.set_level(logging.ERROR, logger="portcullis")
    enforcement.reconcile_all(world.deps)
    assert any(plan.is_ours(r["name"]) for r in world.nsg_rules("nsg-app-nic"))
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("converge.target_failed") and "nsg-web-nic" in m for m in messages)


def test_busy_lease_requeues_the_work_after_the_lease_lapses(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory()
    queued: list[tuple[str, int]] = []
    world.deps.enqueue_target = lambda target, delay: queued.append((target.key, delay))
    grant = world.request(world.estate.vm_web, 22)
    enforcement.handle_grant(world.deps, grant.grant_id)
    nsg = next(TargetRef.from_key(k) for k, _ in queued if "nsg-web-nic" in k)
    # A host took the lease and died (no release, no renewal).
    world.deps.leases.acquire(nsg.key)
    queued.clear()
    outcome = enforcement.converge(world.deps, nsg)
    assert outcome.busy and outcome.requeue_after is not None
    lease_seconds = world.settings.converge_lease_seconds
    assert queued == [(nsg.key, int(outcome.requeue_after))]
    assert lease_seconds <= outcome.requeue_after <= lease_seconds + 2
    # When the requeued hint runs, the dead host's lease has lapsed: the target converges.
    world.clock.advance(outcome.requeue_after)
    assert enforcement.converge(world.deps, nsg).busy is False
    assert plan.allow_rule_name(grant) in {r["name"] for r in world.nsg_rules("nsg-web-nic")}


def test_host_crash_after_the_write_is_reported_initiated_by_the_next_pass(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory()
    grant = world.request(world.estate.vm_web, 22)

    def die(step: str) -> None:
        if step == "written":
            raise enforcement.SimulatedCrash(step)

    world.deps.checkpoint = die
    with pytest.raises(enforcement.SimulatedCrash):
        enforcement.handle_grant(world.deps, grant.grant_id)
    world.deps.checkpoint = lambda step: None
    stored = world.store.get(grant.grant_id)
    assert stored is not None and stored.status is PortStatus.INITIATING  # the rule exists, unrecorded
    # The dead host's lease lapses; the next timer pass sees the rule in its snapshot and records it.
    world.clock.advance(world.settings.converge_lease_seconds + 1)
    enforcement.reconcile_all(world.deps)
    stored = world.store.get(grant.grant_id)
    assert stored is not None and stored.status is PortStatus.INITIATED
    assert all(state is TargetState.APPLIED for state in stored.targets.values())


def test_firewall_outside_the_vms_network_is_refused_at_converge(world_factory: Callable[..., World]) -> None:
    world = world_factory()
    grant = world.request(world.estate.vm_app, 22)
    enforcement.handle_grant(world.deps, grant.grant_id)
    stored = world.store.get(grant.grant_id)
    assert stored is not None and stored.status is PortStatus.INITIATED
    firewall_key = next(k for k in stored.targets if k.startswith("firewall-classic|"))
    # The VM's NIC moves to a VNet that is not the firewall's nor peered with it.
    nic_id = world.estate.rid("networkInterfaces", "nic-app")
    nic = world.emulator.resource(nic_id)
    config = nic["properties"]["ipConfigurations"][0]["properties"]
    config["subnet"] = {"id": world.estate.subnet_id("vnet-direct", "workload")}
    config["privateIPAddress"] = "10.0.0.9"
    world.emulator.put_resource(nic_id, nic)
    enforcement.reconcile_all(world.deps)
    stored = world.store.get(grant.grant_id)
    assert stored is not None
    assert stored.targets[firewall_key] is TargetState.FAILED
    # Nothing of the grant stays open on its NSG either (the allow from the firewall subnet).
    assert not [r for r in world.nsg_rules("nsg-app-nic") if r["name"] == plan.allow_rule_name(grant)]
    assert all(state is TargetState.FAILED for state in stored.targets.values())
    firewall = world.emulator.resource(world.estate.classic_firewall_id)
    ours = [c for c in firewall["properties"].get("natRuleCollections") or [] if plan.is_ours(c["name"])]
    assert ours == []  # our DNAT rule there is gone
    trail = TableAuditTrail(world.settings, world.clock.now)
    refused = [e for e in trail.for_subject(grant.grant_id) if e.event == "grant.refused"]
    assert refused and "peered" in str(refused[-1].details.get("reason"))


def test_a_missing_vm_is_looked_up_once_per_negative_period(
    world_factory: Callable[..., World],
) -> None:
    from shared.model import VmRef
    from shared.topology import TopologyError

    world = world_factory()
    ghost = VmRef.parse(world.estate.vm_id("vm-ghost"))
    start = arm_log_length(world)
    for _ in range(3):
        with pytest.raises(TopologyError):
            world.deps.topology.path(ghost, None)
    gets = [c for c in arm_requests(world, start) if "vm-ghost" in c["path"].lower()]
    assert len(gets) == 1


def test_unsettled_grants_come_from_one_query(
    world_factory: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    world, grant_ids = _settled_world(world_factory)
    reads: list[Any] = []
    real_get = world.store.get
    monkeypatch.setattr(world.store, "get", lambda *a, **k: reads.append(a) or real_get(*a, **k))
    enforcement.reconcile_all(world.deps)
    assert reads == []  # no read per grant or per target
    assert {g.grant_id for g in world.store.list_unsettled()} == set(grant_ids)
    # Once a grant is settled it leaves both the bulk query and its targets' index.
    grant = world.store.get(grant_ids[0])
    assert grant is not None
    world.clock.advance(11 * 60)
    enforcement.sweep_expired(world.deps)
    settled = world.store.get(grant_ids[0])
    assert settled is not None and settled.status is PortStatus.REVOKED
    assert grant_ids[0] not in {g.grant_id for g in world.store.list_unsettled()}
    for key in grant.targets:
        assert grant_ids[0] not in {g.grant_id for g in world.store.list_for_target(TargetRef.from_key(key))}


def test_differing_targets_converge_concurrently_through_a_bounded_pool(
    world_factory: Callable[..., World],
) -> None:
    import threading

    world = world_factory(env={"PORTCULLIS_RECONCILE_CONCURRENCY": "2"})
    assert world.deps.concurrency == 2
    threads: set[str] = set()
    inside = [0]
    most = [0]
    lock = threading.Lock()
    release = threading.Event()

    def checkpoint(step: str) -> None:
        with lock:
            if step == "leased":
                threads.add(threading.current_thread().name)
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                if inside[0] >= 2:
                    release.set()
            elif step == "recording":
                inside[0] -= 1
        if step == "leased":
            release.wait(timeout=5)  # hold the first until a second runs beside it

    world.deps.checkpoint = checkpoint
    targets = enforcement.reconcile_all(world.deps)  # the first pass lays the Deny baseline everywhere
    assert len([t for t in targets if t.kind is TargetKind.NSG]) >= 3
    assert len(threads) == 2 and most[0] == 2


def test_a_permanent_refusal_is_not_retried_by_the_queue_a_temporary_one_is(
    world_factory: Callable[..., World],
) -> None:
    from shared.messages import ConvergeTarget, dump_converge_message

    world = world_factory()
    nsg = TargetRef.from_key(f"nsg|{world.estate.nsg_id('nsg-web-nic')}")
    message = dump_converge_message(ConvergeTarget(target=nsg.key))
    world.emulator.add_fault(
        method="PUT", path="nsg-web-nic$", status=403, code="AuthorizationFailed", count=None
    )
    try:
        assert enforcement.handle_converge_message(message, world.deps) == []  # done: retrying cannot help
    finally:
        world.emulator.clear_faults()
    world.emulator.add_fault(
        method="PUT", path="nsg-web-nic$", status=503, code="ServiceUnavailable", count=None
    )
    try:
        with pytest.raises(enforcement.TargetWriteError):
            enforcement.handle_converge_message(message, world.deps)  # the runtime retries it
    finally:
        world.emulator.clear_faults()


_KILLED_HOST = """
import sys, time
from datetime import datetime
from shared import enforcement
from shared.model import TargetRef
from shared.settings import load_settings
moment = datetime.fromisoformat(sys.argv[1])
deps = enforcement.build_deps(load_settings(), now=lambda: moment, sleep=time.sleep)
enforcement.converge(deps, TargetRef.from_key(sys.argv[2]))
"""


def test_host_killed_while_writing_a_firewall_closes_within_the_readme_bound(
    world_factory: Callable[..., World],
) -> None:
    """Issue 16 item 10: a real process killed (SIGKILL) in the middle of a firewall write, holding
    the lease; its successor finds the lease, keeps the work (requeue-after), and the rules close
    within end + lease + one timer period (README), with the grant recorded as closed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    world = world_factory()
    queued: list[tuple[str, int]] = []
    grant = world.request(world.estate.vm_app, 22, minutes=5)
    enforcement.handle_grant(world.deps, grant.grant_id)
    stored = world.store.get(grant.grant_id)
    assert stored is not None and stored.status is PortStatus.INITIATED
    firewall = next(k for k in stored.targets if k.startswith("firewall-classic|"))
    end = stored.end_time

    start = arm_log_length(world)
    env = {**os.environ, **world.settings_env}
    with world.emulator.lro_seconds({"Microsoft.Network/azureFirewalls": 4}):
        host = subprocess.Popen(
            [sys.executable, "-c", _KILLED_HOST, (end.replace(microsecond=0)).isoformat(), firewall],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until its PUT of the firewall is in flight
            log = world.emulator.requests_since(start)
            if any(r["method"] == "PUT" and "azurefirewalls" in r["path"].lower() for r in log):
                break
            time.sleep(0.05)
        else:
            host.kill()
            raise AssertionError("the host never wrote the firewall")
        host.send_signal(signal.SIGKILL)
        host.wait(timeout=10)
        time.sleep(4.5)  # ARM finishes the accepted write on its own
    world.deps.enqueue_target = lambda target, delay: queued.append((target.key, delay))
    # The restarted host's expiry sweep at end + 1 s: the target is leased by the dead host.
    world.clock.moment = end.replace(microsecond=0)
    world.clock.advance(1)
    enforcement.sweep_expired(world.deps)
    hints, queued[:] = list(queued), []
    outcome = [enforcement.converge(world.deps, TargetRef.from_key(key)) for key, _ in hints]
    busy = [o for o in outcome if o.busy and o.target.key == firewall]
    assert busy and busy[0].requeue_after is not None  # the work is kept, not dropped
    assert (firewall, int(busy[0].requeue_after)) in queued
    # The requeued hint runs when the dead host's lease has lapsed.
    world.clock.advance(busy[0].requeue_after)
    enforcement.converge(world.deps, TargetRef.from_key(firewall))
    closed_at = world.clock.now()
    body = world.emulator.resource(world.estate.classic_firewall_id)
    assert not [c for c in body["properties"].get("natRuleCollections") or [] if plan.is_ours(c["name"])]
    lease = world.settings.converge_lease_seconds
    assert (closed_at - end).total_seconds() <= lease + 60
    final = world.store.get(grant.grant_id)
    assert final is not None and final.targets[firewall] is TargetState.REMOVED


def test_a_new_grant_beside_live_ones_on_a_firewall_is_no_drift(world_factory: Callable[..., World]) -> None:
    world = world_factory()
    first = world.request(world.estate.vm_app, 22)
    enforcement.handle_grant(world.deps, first.grant_id)
    second = world.request(world.estate.vm_app, 22, source="198.51.100.9")
    enforcement.handle_grant(world.deps, second.grant_id)
    subject = f"firewall-classic|{world.estate.classic_firewall_id}".lower()
    events = [e.event for e in TableAuditTrail(world.settings, world.clock.now).for_subject(subject)]
    assert "target.converged" in events
    assert not [e for e in events if e.startswith("drift.")]


def test_a_grant_written_after_the_listing_was_released_is_resolved_not_taken_as_gone(
    world_factory: Callable[..., World],
) -> None:
    from shared.enforcement import triggers

    world = world_factory()
    plan_ = triggers.plan_pass(world.deps)
    plan_.view.estate.release()
    late = world.request(world.estate.vm_web, 22)  # written after the pass read the grants
    path = plan_.view.path_for(late)
    assert path is not None and path.private_ip == "10.0.0.4"
