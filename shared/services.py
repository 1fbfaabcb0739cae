"""The request side's collaborators (the process builds them once, in shared/composition.py; tests
build their own)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol

from azure.core.exceptions import AzureError
from azure.storage.queue import QueueClient

from shared.audit import AuditEvent, TableAuditTrail
from shared.authz import ArmRoleReader, Authorizer, RoleReader
from shared.azure_clients import authorization_client
from shared.events import EventId
from shared.grants import (
    RequestPage,
    RequestRecord,
    ReviewRow,
    StoredRequest,
    TableGrantStore,
    WaitingRow,
)
from shared.identity import Authenticator
from shared.messages import ConvergeGrant, ConvergePolicy, dump_converge_message
from shared.model import AuditTrail, Grant, JitPolicy, PolicyRef, TargetRef, VmRef
from shared.observability import brief, log_event
from shared.policy import Limits
from shared.policy_store import StoredPolicy, TablePolicyStore
from shared.settings import Settings
from shared.storage import queue, send
from shared.topology import TopologyResolver


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ConvergeNotifier:
    """Hands work to enforcement through the converge queue: a grant (`ConvergeGrant`, now or at a
    given time) or a policy change (`ConvergePolicy`). The request reads nothing from ARM."""

    def __init__(self, settings: Settings, client: QueueClient | None = None) -> None:
        """`client`: the process's converge-queue client (shared/composition.py), else a new one."""
        self._queue = client or queue(settings.converge_queue, settings)

    def notify(self, grant_id: str, *, visible_at: datetime | None = None) -> None:
        send(self._queue, dump_converge_message(ConvergeGrant(grant_id=grant_id)), visible_at=visible_at)

    def policy_changed(self, policy_id: str, *versions: JitPolicy | None) -> None:
        """Pass the old and the new version (None where there is none). Best effort: the reconcile
        timer converges every policy's targets anyway, so a failure here only delays the baseline."""
        vm_ids = list(dict.fromkeys(vm.vm.id for p in versions if p is not None for vm in p.virtual_machines))
        try:
            send(self._queue, dump_converge_message(ConvergePolicy(policy_id=policy_id, vm_ids=vm_ids)))
        except AzureError as error:
            log_event(EventId.POLICY_CONVERGE_DEFERRED, logging.WARNING, error=brief(error))


# ---- what the request side needs of its collaborators (Table storage and the converge queue in the
# app; in-memory fakes in tests/fakes.py, so request-side decisions have fast unit tests) ----


class PolicyStore(Protocol):
    def put(self, ref: PolicyRef, body: dict[str, Any], now: datetime | None = None) -> bool: ...

    def get(self, ref: PolicyRef) -> StoredPolicy | None: ...

    def delete(self, ref: PolicyRef) -> bool: ...

    def list_in(
        self, subscription_id: str, resource_group: str | None = None, location: str | None = None
    ) -> list[StoredPolicy]: ...

    def list_all(self) -> list[StoredPolicy]: ...

    def for_vm(self, vm: VmRef) -> Iterator[StoredPolicy]: ...


class RequestStore(Protocol):
    """Requests and their grants, as intake writes and the records read them."""

    def create_request(self, record: RequestRecord, grants: Sequence[Grant]) -> None:
        """Raises RequestExistsError if the request id is taken."""
        ...

    def get_request(self, request_id: str) -> StoredRequest | None: ...

    def update_request(self, record: RequestRecord) -> RequestRecord:
        """Raises ConcurrentUpdateError if the request row changed since it was read."""
        ...

    def waiting_requests(self) -> list[WaitingRow]: ...

    def forget_waiting(self, request_id: str, decided: frozenset[str] | None = None) -> None: ...

    def reviews_awaited(self) -> list[ReviewRow]: ...

    def forget_review(self, request_id: str) -> None: ...

    def list_for_requester(
        self,
        object_id: str,
        *,
        active_at: datetime | None = None,
        after: str | None = None,
        limit: int = ...,
    ) -> RequestPage: ...

    def policy_history(self, policy: PolicyRef, limit: int = ...) -> list[StoredRequest]: ...

    def list_for_vm(self, vm: VmRef, *, open_only: bool, port: int | None = None) -> list[Grant]: ...

    def list_for_target(self, target: TargetRef, *, include_closed: bool = False) -> list[Grant]: ...

    def open_grants(
        self, now: datetime, *, after: str | None = None
    ) -> Iterator[tuple[str, Grant | None]]: ...

    def get(self, grant_id: str) -> Grant | None: ...

    def update(self, grant: Grant) -> Grant:
        """Raises ConcurrentUpdateError if the grant changed since it was read."""
        ...


class RequestAudit(AuditTrail, Protocol):
    def for_subject(self, subject: str) -> list[AuditEvent]: ...


class Notifier(Protocol):
    def notify(self, grant_id: str, *, visible_at: datetime | None = None) -> None: ...

    def policy_changed(self, policy_id: str, *versions: JitPolicy | None) -> None: ...


@dataclass
class Services:
    settings: Settings
    policies: PolicyStore
    grants: RequestStore
    audit: RequestAudit
    authenticator: Authenticator
    authorizer: Authorizer
    converge: Notifier
    clock: Callable[[], datetime] = field(default=_utc_now)
    # A fresh topology reader per request (the policy API's firewall check): nothing stale, each
    # resource read once per request.
    topology_for: Callable[[], TopologyResolver] | None = None

    def new_topology(self) -> TopologyResolver:
        if self.topology_for is not None:
            return self.topology_for()
        from shared.azure_clients import compute_client, network_client

        settings = self.settings
        network = lru_cache(maxsize=8)(lambda sub: network_client(sub, settings))
        compute = lru_cache(maxsize=8)(lambda sub: compute_client(sub, settings))
        return TopologyResolver(network, compute)

    @property
    def limits(self) -> Limits:
        return Limits(self.settings.max_vms_per_request, self.settings.max_ports_per_request)


def build_services(
    settings: Settings,
    *,
    role_reader_for: Callable[[str], RoleReader] | None = None,
    clock: Callable[[], datetime] = _utc_now,
    policies: TablePolicyStore | None = None,
    grants: TableGrantStore | None = None,
    audit: TableAuditTrail | None = None,
    converge: ConvergeNotifier | None = None,
) -> Services:
    """The request side's collaborators; those given are shared with enforcement (the composition
    root, shared/composition.py), the rest are built here."""
    readers: dict[str, RoleReader] = {}

    def arm_role_reader(subscription_id: str) -> RoleReader:
        key = subscription_id.lower()
        if key not in readers:
            readers[key] = ArmRoleReader(authorization_client(subscription_id, settings))
        return readers[key]

    return Services(
        settings=settings,
        policies=policies or TablePolicyStore(settings),
        grants=grants or TableGrantStore(settings),
        audit=audit or TableAuditTrail(settings, clock),
        authenticator=Authenticator(settings),
        authorizer=Authorizer(role_reader_for or arm_role_reader, settings.rbac_cache_seconds),
        converge=converge or ConvergeNotifier(settings),
        clock=clock,
    )
