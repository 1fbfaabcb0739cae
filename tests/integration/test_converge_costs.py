"""What a converge or reconcile pass costs in reads (Azurite and the ARM emulator through the real SDKs):
policies parsed once per version, each policy VM's path resolved once per pass, open grants found
through index scans instead of one read each, supersede reading only same-port grants."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from shared import enforcement, plan
from shared.defender import parse_policy_body
from shared.grants import RequestRecord, grant_id, new_request_id
from shared.model import PortStatus, StatusReason, TargetKind, TargetRef, TargetState, VmRef
from shared.policy_store import TablePolicyStore

from .conftest import World


def _count_calls(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[tuple[Any, ...]]:
    """Wrap `owner.name` so the real method still runs and each call is recorded."""
    calls: list[tuple[Any, ...]] = []
    real = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_policies_are_parsed_again_only_when_their_etag_changes(world_factory: Callable[..., World]) -> None:
    world = world_factory()
    store = TablePolicyStore(world.settings)
    first = store.list_all()
    again = store.list_all()
    assert [p.policy for p in first] == [p.policy for p in again]
    assert all(a is b for a, b in zip(first, again, strict=True))  # same objects: not parsed again

    body = world.estate.policy_body()
    body["properties"]["virtualMachines"] = body["properties"]["virtualMachines"][:1]
    _, canonical = parse_policy_body(body, world.policy_ref)
    store.put(world.policy_ref, canonical)
    changed = store.list_all()
    assert len(changed) == 1 and changed[0] is not first[0]
    assert len(changed[0].policy.virtual_machines) == 1


def test_reconcile_resolves_each_policy_vm_once_whatever_the_number_of_nsgs(
    world_factory: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = world_factory()
    policy_vms = len(world.estate.policy_body()["properties"]["virtualMachines"])
    paths = _count_calls(monkeypatch, world.deps.topology, "path")
    targets = enforcement.reconcile_all(world.deps)
    nsgs = [t for t in targets if t.kind is TargetKind.NSG]
    assert len(nsgs) >= 3
    # The pass derives every path from its per-subscription listing: no per-VM resolution at all
    # (before the snapshot: once per policy VM, plus once per policy VM per NSG before the index).
    assert policy_vms >= 3 and paths == []
    denies = {
        r["properties"]["destinationAddressPrefix"]
        for r in world.nsg_rules("nsg-web-subnet")
        if plan.is_ours(r["name"]) and r["properties"]["access"] == "Deny"
    }
    assert denies == {"10.0.0.4", "10.0.0.5"}

    # A grant's converge later in the same topology period reuses the pass's baseline: only the
    # grant's own VM is resolved.
    paths.clear()
    grant = world.request(world.estate.vm_web, 22)
    enforcement.handle_grant(world.deps, grant.grant_id)
    stored = world.store.get(grant.grant_id)
    assert stored is not None and stored.status is PortStatus.INITIATED
    vms = {call[0].key for call in paths}
    assert vms == {VmRef.parse(world.estate.vm_id(world.estate.vm_web)).key}


def test_managed_targets_reads_only_grants_without_targets(
    world_factory: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = world_factory()
    resolved = [world.request(world.estate.vm_web, port) for port in (22, 3389)]
    for grant in resolved:
        enforcement.handle_grant(world.deps, grant.grant_id)
    lost_hint = world.request(world.estate.vm_db, 22)  # written, its first hint never arrived
    expected = {key for grant in resolved for key in (world.store.get(grant.grant_id) or grant).targets}

    reads = _count_calls(monkeypatch, world.store, "get")
    keys = {t.key for t in enforcement.managed_targets(world.deps)}
    assert expected <= keys
    assert {call[0] for call in reads} == {lost_hint.grant_id}  # only the pathless grant is read
    recovered = world.store.get(lost_hint.grant_id)
    assert recovered is not None and recovered.targets and set(recovered.targets) <= keys

    # A revoked grant that is not yet removed from its targets still counts; once settled it does not.
    first = world.store.get(resolved[0].grant_id)
    assert first is not None
    world.store.update(replace(first, status=PortStatus.REVOKED, status_reason=StatusReason.USER_REQUESTED))
    target_keys, pathless = world.store.unsettled_work()
    assert set(first.targets) <= target_keys and pathless == []


def test_vm_index_filters_on_port(
    world_factory: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = world_factory()
    ssh = world.request(world.estate.vm_web, 22, minutes=30)
    world.clock.advance(60)
    world.request(world.estate.vm_web, 3389, minutes=30)
    vm = ssh.vm
    reads = _count_calls(monkeypatch, world.store, "get")
    same_port = world.store.list_for_vm(vm, open_only=True, port=22)
    assert [g.grant_id for g in same_port] == [ssh.grant_id]
    assert [call[0] for call in reads] == [ssh.grant_id]
    assert {g.port for g in world.store.list_for_vm(vm, open_only=True)} == {22, 3389}
    assert world.store.list_for_vm(vm, open_only=True, port=5985) == []


def test_concurrent_invocations_share_one_pool_without_dropping_connections(
    world_factory: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    world = world_factory(policy=False)
    network = world.network()
    caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")

    def read(index: int) -> str:
        return str(network.network_security_groups.get(world.estate.resource_group, "nsg-web-nic").name)

    with ThreadPoolExecutor(max_workers=24) as pool:  # the queue trigger's concurrency
        names = list(pool.map(read, range(96)))
    assert set(names) == {"nsg-web-nic"}
    assert not [r for r in caplog.records if "Connection pool is full" in r.getMessage()]


def test_environment_settings_are_read_only_when_some_are_set() -> None:
    from shared.azure_clients import uses_environment_settings

    assert not uses_environment_settings({"PATH": "/usr/bin", "HOME": "/home/app"})
    assert uses_environment_settings({"https_proxy": "http://proxy.contoso.com:3128"})
    assert uses_environment_settings({"REQUESTS_CA_BUNDLE": "/etc/ssl/corp.pem"})


def test_grants_of_one_request_on_a_target_are_read_in_one_query(
    world_factory: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = world_factory()
    template = world.request(world.estate.vm_web, 22)  # a one-grant request, for its fields
    request_id = new_request_id()
    grants = [
        replace(template, grant_id=grant_id(request_id, index), request_id=request_id, port=port, etag=None)
        for index, port in enumerate((22, 3389))
    ]
    record = RequestRecord(
        request_id, world.policy_ref, template.requester, template.start_time, "test", None, "fp"
    )
    world.store.create_request(record, grants)
    for grant in (template, *grants):
        enforcement.handle_grant(world.deps, grant.grant_id)
    nsg = next(TargetRef.from_key(key) for key in (world.store.get(template.grant_id) or template).targets)

    reads = _count_calls(monkeypatch, world.store, "get")
    listed = world.store.list_for_target(nsg)
    assert {g.grant_id for g in listed} == {template.grant_id, *(g.grant_id for g in grants)}
    assert all(g.targets[nsg.key] is TargetState.APPLIED for g in listed)
    assert [call[0] for call in reads] == [template.grant_id]  # the two-grant request: one query
