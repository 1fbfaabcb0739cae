"""In-memory stand-ins for the request side's collaborators (the Protocols in shared/services.py),
so decisions such as initiate's run in microseconds in unit tests. Tests only: the app always uses
Table storage and the converge queue, and the integration tests run those against Azurite."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from shared.audit import AuditEvent
from shared.authz import Authorizer, Permission, RoleAssignment
from shared.defender import parse_policy_body
from shared.grants import (
    REQUESTER_PAGE_SIZE,
    RequestExistsError,
    RequestPage,
    RequestRecord,
    ReviewRow,
    StoredRequest,
    WaitingRow,
    active_until,
    requester_row_key,
)
from shared.identity import Authenticator
from shared.model import (
    ConcurrentUpdateError,
    Grant,
    JitPolicy,
    PolicyRef,
    PortStatus,
    TargetRef,
    VmRef,
    arm_key,
)
from shared.policy_store import StoredPolicy
from shared.services import Services
from shared.settings import load_settings
from shared.table_keys import time_key

CONTRIBUTOR = "/providers/Microsoft.Authorization/roleDefinitions/contributor"


class InMemoryPolicies:
    def __init__(self) -> None:
        self._by_key: dict[str, StoredPolicy] = {}

    def add(self, ref: PolicyRef, body: dict[str, Any]) -> StoredPolicy:
        policy, canonical = parse_policy_body(body, ref)
        stored = StoredPolicy(ref, canonical, policy, datetime.now(UTC))
        self._by_key[ref.key] = stored
        return stored

    def put(self, ref: PolicyRef, body: dict[str, Any], now: datetime | None = None) -> bool:
        created = ref.key not in self._by_key
        self.add(
            ref,
            {"kind": body.get("kind", "Basic"), "properties": {"virtualMachines": body["virtualMachines"]}},
        )
        return created

    def get(self, ref: PolicyRef) -> StoredPolicy | None:
        return self._by_key.get(ref.key)

    def delete(self, ref: PolicyRef) -> bool:
        return self._by_key.pop(ref.key, None) is not None

    def list_in(
        self, subscription_id: str, resource_group: str | None = None, location: str | None = None
    ) -> list[StoredPolicy]:
        return [
            stored
            for stored in self._by_key.values()
            if arm_key(stored.ref.subscription_id) == arm_key(subscription_id)
            and (resource_group is None or arm_key(stored.ref.resource_group) == arm_key(resource_group))
            and (location is None or arm_key(stored.ref.location) == arm_key(location))
        ]

    def list_all(self) -> list[StoredPolicy]:
        return list(self._by_key.values())

    def for_vm(self, vm: VmRef) -> Iterator[StoredPolicy]:
        for stored in self.list_in(vm.subscription_id, vm.resource_group):
            if stored.policy.vm_policy(vm) is not None:
                yield stored


class InMemoryRequests:
    """Requests and grants; `update` checks an etag as the Table does."""

    def __init__(self) -> None:
        self.records: dict[str, RequestRecord] = {}
        self.grants: dict[str, Grant] = {}
        self.waiting: dict[str, WaitingRow] = {}
        self.waits_for: dict[str, str] = {}
        self.reviews: dict[str, ReviewRow] = {}
        self._version = 0

    def _stamp(self, grant: Grant) -> Grant:
        self._version += 1
        stamped = replace(grant, etag=str(self._version))
        self.grants[grant.grant_id] = stamped
        return stamped

    def create_request(self, record: RequestRecord, grants: Sequence[Grant]) -> None:
        existing = self.get_request(record.request_id)
        if existing is not None:
            raise RequestExistsError(existing)
        self._version += 1
        self.records[record.request_id] = replace(record, etag=str(self._version))
        if record.approval is not None and record.approval.waiting:
            self._index(record)
        if record.approval is not None and record.approval.needs_review:
            self.reviews[record.request_id] = ReviewRow(record.request_id, record.approval.approvers)
        for grant in grants:
            self._stamp(grant)

    def update_request(self, record: RequestRecord) -> RequestRecord:
        current = self.records.get(record.request_id)
        if current is None or current.etag != record.etag:
            raise ConcurrentUpdateError(f"request {record.request_id} changed since it was read")
        self._version += 1
        written = replace(record, etag=str(self._version))
        self.records[record.request_id] = written
        if record.approval is not None and record.approval.waiting:
            self._index(record)
        if record.approval is not None and record.approval.break_glass and not record.approval.needs_review:
            self.reviews.pop(record.request_id, None)
        return written

    def reviews_awaited(self) -> list[ReviewRow]:
        return [self.reviews[request_id] for request_id in sorted(self.reviews)]

    def forget_review(self, request_id: str) -> None:
        self.reviews.pop(request_id, None)

    def list_for_requester(
        self,
        object_id: str,
        *,
        active_at: datetime | None = None,
        after: str | None = None,
        limit: int = REQUESTER_PAGE_SIZE,
    ) -> RequestPage:
        """The Table store's order (newest start first, then request id) and cursor."""
        rows = sorted(
            (requester_row_key(record), request_id)
            for request_id, record in self.records.items()
            if record.requester.object_id.lower() == object_id.lower()
        )
        rows = [row for row in rows if after is None or row[0] > after]
        if active_at is not None:
            rows = [
                row
                for row in rows
                if (stored := self.get_request(row[1])) is not None
                and active_until(stored.record, stored.grants) >= active_at
            ]
        page = rows[:limit]
        found = [stored for _, request_id in page if (stored := self.get_request(request_id)) is not None]
        return RequestPage(found, page[-1][0] if len(rows) > limit else None)

    def _index(self, record: RequestRecord) -> None:
        assert record.approval is not None
        row = WaitingRow(record.request_id, record.approval.approvers, record.approval.waits_until)
        self.waiting[record.request_id] = row
        self.waits_for[record.request_id] = record.approval.waits_for or "request"

    def waiting_requests(self) -> list[WaitingRow]:
        return [self.waiting[request_id] for request_id in sorted(self.waiting)]

    def forget_waiting(self, request_id: str, decided: frozenset[str] | None = None) -> None:
        row = self.waiting.get(request_id)
        if row is not None and (decided is None or self.waits_for[request_id] in decided):
            del self.waiting[request_id]

    def get_request(self, request_id: str) -> StoredRequest | None:
        record = self.records.get(request_id)
        if record is None:
            return None
        return StoredRequest(record, [g for g in self.grants.values() if g.request_id == request_id])

    def policy_history(self, policy: PolicyRef, limit: int = 50) -> list[StoredRequest]:
        ids = [r.request_id for r in self.records.values() if r.policy.key == policy.key][-limit:]
        return [stored for stored in map(self.get_request, reversed(ids)) if stored is not None]

    def list_for_vm(self, vm: VmRef, *, open_only: bool, port: int | None = None) -> list[Grant]:
        return [
            g
            for g in self.grants.values()
            if g.vm.key == vm.key
            and (port is None or g.port == port)
            and not (open_only and g.status is PortStatus.REVOKED)
        ]

    def list_for_target(self, target: TargetRef, *, include_closed: bool = False) -> list[Grant]:
        return [
            g
            for g in self.grants.values()
            if target.key in g.targets and (include_closed or g.status is not PortStatus.REVOKED)
        ]

    def open_grants(self, now: datetime, *, after: str | None = None) -> Iterator[tuple[str, Grant | None]]:
        """The Table store's expiry index order (end time, then grant id) and cursor."""
        start = max(time_key(now), after or "")
        rows = sorted(
            (f"{time_key(g.end_time)}|{g.grant_id}", g)
            for g in self.grants.values()
            if g.status is not PortStatus.REVOKED
        )
        for key, grant in rows:
            if key > start:
                yield key, grant

    def get(self, grant_id: str) -> Grant | None:
        return self.grants.get(grant_id)

    def update(self, grant: Grant) -> Grant:
        current = self.grants.get(grant.grant_id)
        if current is None or current.etag != grant.etag:
            raise ConcurrentUpdateError(f"grant {grant.grant_id} changed since it was read")
        return self._stamp(grant)


class RecordingAudit:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: str, *, subject: str, actor: str, **details: object) -> None:
        self.events.append(AuditEvent(event, subject, actor, datetime.now(UTC), dict(details)))

    def for_subject(self, subject: str) -> list[AuditEvent]:
        return [e for e in self.events if e.subject == subject]

    def names(self) -> list[str]:
        return [e.event for e in self.events]


@dataclass
class RecordingNotifier:
    notified: list[tuple[str, datetime | None]] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)

    def notify(self, grant_id: str, *, visible_at: datetime | None = None) -> None:
        self.notified.append((grant_id, visible_at))

    def policy_changed(self, policy_id: str, *versions: JitPolicy | None) -> None:
        self.policies.append(policy_id)


class Roles:
    """A RoleReader: `grant(principal, scope, *actions)`; `down = True` makes every read fail."""

    def __init__(self) -> None:
        self.assignments: list[RoleAssignment] = []
        self.permissions: dict[str, list[Permission]] = {}
        self.down = False

    def grant(self, principal_id: str, scope: str, *actions: str) -> None:
        role = f"{CONTRIBUTOR}-{len(self.permissions)}"
        self.permissions[role] = [Permission(tuple(actions))]
        self.assignments.append(RoleAssignment(principal_id, role, scope))

    def assignments_at_or_above(self, scope: str) -> list[RoleAssignment]:
        if self.down:
            raise ConnectionError("RBAC unreachable")
        return [a for a in self.assignments if arm_key(scope).startswith(arm_key(a.scope))]

    def assignments_in_subscription(self, subscription_id: str) -> list[RoleAssignment]:
        if self.down:
            raise ConnectionError("RBAC unreachable")
        return list(self.assignments)

    def role_permissions(self, role_definition_id: str) -> list[Permission]:
        return self.permissions.get(role_definition_id, [])


@dataclass
class FakeWorld:
    services: Services
    policies: InMemoryPolicies
    requests: InMemoryRequests
    audit: RecordingAudit
    notifier: RecordingNotifier
    roles: Roles


def fake_services(now: datetime) -> FakeWorld:
    settings = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    policies, requests, audit, notifier, roles = (
        InMemoryPolicies(),
        InMemoryRequests(),
        RecordingAudit(),
        RecordingNotifier(),
        Roles(),
    )
    services = Services(
        settings=settings,
        policies=policies,
        grants=requests,
        audit=audit,
        authenticator=Authenticator(settings),
        authorizer=Authorizer(lambda sub: roles, cache_seconds=0),
        converge=notifier,
        clock=lambda: now,
    )
    return FakeWorld(services, policies, requests, audit, notifier, roles)
