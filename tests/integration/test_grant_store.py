"""TableGrantStore against Azurite: atomic requests, ETag concurrency, bounded indexes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.grants import (
    RequestExistsError,
    RequestRecord,
    TableGrantStore,
    grant_id,
    is_open_cursor,
    new_request_id,
    request_id_for_ticket,
    take_page,
)
from shared.model import (
    ConcurrentUpdateError,
    Grant,
    PolicyRef,
    PortStatus,
    Principal,
    PrincipalSource,
    ResourceId,
    StatusReason,
    TargetKind,
    TargetRef,
    TargetState,
    TransportProtocol,
    VmRef,
)
from shared.settings import Settings

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
SUB = "00000000-0000-0000-0000-0000000000a1"
POLICY = PolicyRef(SUB, "rg1", "westeurope", "default")
ALICE = Principal("alice-oid", "alice@contoso.com", PrincipalSource.JWT)
NSG = TargetRef(
    TargetKind.NSG,
    ResourceId(
        f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Network/networkSecurityGroups/nsg1"
    ),
)


def make_request(request_id: str, ports: list[int], *, end: timedelta = timedelta(hours=1), vm: str = "vm1"):
    vm_ref = VmRef(SUB, "rg1", vm)
    record = RequestRecord(request_id, POLICY, ALICE, NOW, "debugging", None, "fp")
    grants = [
        Grant(
            grant_id=grant_id(request_id, index),
            request_id=request_id,
            policy=POLICY,
            vm=vm_ref,
            port=port,
            protocol=TransportProtocol.TCP,
            source_prefixes=("203.0.113.7/32",),
            start_time=NOW,
            end_time=NOW + end,
            requester=ALICE,
            justification="debugging",
            ticket_id=None,
        )
        for index, port in enumerate(ports)
    ]
    return record, grants


@pytest.fixture
def store(storage_settings: Settings) -> TableGrantStore:
    return TableGrantStore(storage_settings)


def test_request_round_trips_whole(store: TableGrantStore) -> None:
    request_id = new_request_id()
    record, grants = make_request(request_id, [22, 3389])
    store.create_request(record, grants)
    stored = store.get_request(request_id)
    assert stored is not None
    assert stored.record.requester == ALICE
    assert [g.port for g in stored.grants] == [22, 3389]
    assert stored.grants[0].status is PortStatus.INITIATING
    assert stored.grants[0].end_time == NOW + timedelta(hours=1)
    assert store.get(grants[1].grant_id) is not None
    assert store.get("not-a-grant") is None
    assert store.get_request("../../etc") is None


def test_second_create_with_same_id_reports_the_first(store: TableGrantStore) -> None:
    request_id = request_id_for_ticket("INC-1")
    record, grants = make_request(request_id, [22])
    store.create_request(record, grants)
    with pytest.raises(RequestExistsError) as raised:
        store.create_request(record, grants)
    assert raised.value.existing.record.request_id == request_id
    assert len(store.list_for_request(request_id)) == 1


def test_update_is_optimistic(store: TableGrantStore) -> None:
    request_id = new_request_id()
    record, grants = make_request(request_id, [22])
    store.create_request(record, grants)
    read = store.get(grants[0].grant_id)
    assert read is not None
    first = store.update(replace(read, status=PortStatus.INITIATED))
    assert first.etag != read.etag
    with pytest.raises(ConcurrentUpdateError):
        store.update(replace(read, status=PortStatus.REVOKED, status_reason=StatusReason.USER_REQUESTED))
    assert store.get(read.grant_id).status is PortStatus.INITIATED  # type: ignore[union-attr]


def test_target_index_follows_the_grant(store: TableGrantStore) -> None:
    request_id = new_request_id()
    record, grants = make_request(request_id, [22])
    store.create_request(record, grants)
    assert store.list_for_target(NSG) == []
    read = store.get(grants[0].grant_id)
    assert read is not None
    applied = store.update(replace(read, targets={NSG.key: TargetState.APPLIED}, status=PortStatus.INITIATED))
    assert [g.grant_id for g in store.list_for_target(NSG)] == [read.grant_id]
    revoked = store.update(replace(applied, status=PortStatus.REVOKED, status_reason=StatusReason.EXPIRED))
    # Revoked but the rule not yet confirmed gone: still listed, so converge removes it.
    assert [g.grant_id for g in store.list_for_target(NSG)] == [read.grant_id]
    assert [g.grant_id for g in store.list_unsettled()] == [read.grant_id]
    store.update(replace(revoked, targets={NSG.key: TargetState.REMOVED}))
    assert store.list_for_target(NSG) == []
    # Settled: its index row is pruned, so a converge of the target never reads its history, and the
    # reconcile pass's one bulk query no longer returns it.
    assert store.list_for_target(NSG, include_closed=True) == []
    assert store.list_unsettled() == []


def test_expiry_index_lists_only_unrevoked_grants_before_the_moment(store: TableGrantStore) -> None:
    short_id, long_id = new_request_id(), new_request_id()
    short_record, short_grants = make_request(short_id, [22], end=timedelta(minutes=10), vm="vmshort")
    long_record, long_grants = make_request(long_id, [22], end=timedelta(hours=3), vm="vmlong")
    store.create_request(short_record, short_grants)
    store.create_request(long_record, long_grants)
    ending = {g.grant_id for g in store.list_ending_before(NOW + timedelta(hours=1))}
    assert short_grants[0].grant_id in ending
    assert long_grants[0].grant_id not in ending
    read = store.get(short_grants[0].grant_id)
    assert read is not None
    store.update(replace(read, status=PortStatus.REVOKED, status_reason=StatusReason.USER_REQUESTED))
    assert short_grants[0].grant_id not in {
        g.grant_id for g in store.list_ending_before(NOW + timedelta(hours=1))
    }


def test_vm_index_and_policy_history(store: TableGrantStore) -> None:
    first, second = new_request_id(), new_request_id()
    record, grants = make_request(first, [22])
    store.create_request(record, grants)
    later, later_grants = make_request(second, [3389])
    later = replace(later, start_time=NOW + timedelta(minutes=1))
    store.create_request(later, later_grants)
    vm = VmRef(SUB, "rg1", "vm1")
    assert {g.port for g in store.list_for_vm(vm, open_only=True)} == {22, 3389}
    read = store.get(grants[0].grant_id)
    assert read is not None
    store.update(replace(read, status=PortStatus.REVOKED, status_reason=StatusReason.NEWER_REQUEST_INITIATED))
    assert {g.port for g in store.list_for_vm(vm, open_only=True)} == {3389}
    assert {g.port for g in store.list_for_vm(vm, open_only=False)} == {22, 3389}
    history = store.policy_history(POLICY)
    assert [h.record.request_id for h in history] == [first, second]


def test_open_grants_read_the_expiry_range_after_now_a_page_at_a_time(store: TableGrantStore) -> None:
    """Who holds access now (`GET /api/grants?active=true`): soonest end first, revoked grants and
    grants already ended left out, and a page's cursor picks up where it stopped."""
    later = timedelta(days=400)  # past every other test's grants in this Azurite
    made = []
    for minutes in (3, 1, 2, 4):
        record, grants = make_request(new_request_id(), [22], end=later + timedelta(minutes=minutes))
        store.create_request(record, grants)
        made.append(grants[0])
    ended, first, second, revoked = sorted(made, key=lambda g: g.end_time)
    read = store.get(revoked.grant_id)
    assert read is not None
    store.update(replace(read, status=PortStatus.REVOKED, status_reason=StatusReason.USER_REQUESTED))
    now = NOW + later + timedelta(minutes=1, seconds=30)  # `ended` ended a moment ago
    mine = {g.grant_id for g in made}
    page = take_page(store.open_grants(now), lambda g: g.grant_id in mine, limit=1)
    assert [g.grant_id for g in page.grants] == [first.grant_id] and page.cursor is not None
    assert is_open_cursor(page.cursor)
    rest = take_page(store.open_grants(now, after=page.cursor), lambda g: g.grant_id in mine)
    assert [g.grant_id for g in rest.grants] == [second.grant_id] and rest.cursor is None
    assert ended.grant_id not in {g.grant_id for _, g in store.open_grants(now) if g is not None}
