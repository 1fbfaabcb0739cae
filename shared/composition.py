"""The composition root: every collaborator of the process, built once, from settings.

The request side (`Services`: stores, audit, authenticator, authorizer, converge notifier) and the
enforcement side (`ConvergeDeps`: stores, audit, ARM clients, leases, budget) share what they have
in common: one policy store, one grant store, one audit trail, one converge-queue client. Each side
is built on first use (a worker that only serves HTTP never builds ARM clients for enforcement) and
at most once per process, under a lock because the Functions worker runs invocations on threads.
Tests build their own collaborators (`build_services`, `build_deps`) and never touch this root.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from shared.settings import Settings, get_settings

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

    from shared.audit import TableAuditTrail
    from shared.enforcement.deps import ConvergeDeps
    from shared.grants import TableGrantStore
    from shared.notify.delivery import Notifier
    from shared.policy_store import TablePolicyStore
    from shared.services import Services


T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Root:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.RLock()  # re-entrant: `services` builds `grants` under it
        self._built: dict[str, Any] = {}

    def _once(self, name: str, build: Callable[[], T]) -> T:
        """The one memo of the process: `build()` runs at most once per name."""
        with self._lock:
            if name not in self._built:
                self._built[name] = build()
            return cast(T, self._built[name])

    @property
    def grants(self) -> TableGrantStore:
        return self._once("grants", self._build_grants)

    def _build_grants(self) -> TableGrantStore:
        from shared.grants import TableGrantStore

        return TableGrantStore(self.settings)

    @property
    def audit(self) -> TableAuditTrail:
        return self._once("audit", self._build_audit)

    def _build_audit(self) -> TableAuditTrail:
        from shared.audit import TableAuditTrail

        publisher = None
        if self.settings.notifications_enabled:
            from shared.notify.publisher import EventPublisher

            publisher = EventPublisher(
                self.settings,
                lambda: self.events_queue,
                approval_of=lambda request_id, **options: self.grants.get_approval(request_id, **options),
            )
        return TableAuditTrail(self.settings, utc_now, on_recorded=publisher)

    @property
    def events_queue(self) -> QueueClient:
        return self._once("events_queue", lambda: self._queue(self.settings.events_queue))

    def _queue(self, name: str) -> QueueClient:
        from shared.storage import queue

        return queue(name, self.settings)

    @property
    def notifier(self) -> Notifier:
        return self._once("notifier", self._build_notifier)

    def _build_notifier(self) -> Notifier:
        from shared.azure_clients import arm_credential
        from shared.notify.channels import build_channels
        from shared.notify.delivery import Notifier, poison_queue_name

        poison = poison_queue_name(self.settings.events_queue)
        return Notifier(
            settings=self.settings,
            channels=build_channels(self.settings, lambda: arm_credential(self.settings)),
            events_queue=lambda: self.events_queue,
            poison_queue=lambda: self._once("events_poison_queue", lambda: self._queue(poison)),
            audit=self.audit,
            now=utc_now,
        )

    @property
    def policy_store(self) -> TablePolicyStore:
        return self._once("policy_store", self._build_policy_store)

    def _build_policy_store(self) -> TablePolicyStore:
        from shared.policy_store import TablePolicyStore

        return TablePolicyStore(self.settings)

    @property
    def converge_queue(self) -> QueueClient:
        return self._once("converge_queue", self._build_converge_queue)

    def _build_converge_queue(self) -> QueueClient:
        from shared.storage import queue

        return queue(self.settings.converge_queue, self.settings)

    @property
    def services(self) -> Services:
        return self._once("services", self._build_services)

    def _build_services(self) -> Services:
        from shared.services import ConvergeNotifier, build_services

        return build_services(
            self.settings,
            policies=self.policy_store,
            grants=self.grants,
            audit=self.audit,
            converge=ConvergeNotifier(self.settings, self.converge_queue),
            clock=utc_now,
        )

    @property
    def enforcement(self) -> ConvergeDeps:
        return self._once("enforcement", self._build_enforcement)

    def _build_enforcement(self) -> ConvergeDeps:
        from shared.enforcement.deps import TablePolicies, build_deps, queue_enqueuer

        return build_deps(
            self.settings,
            now=utc_now,
            sleep=time.sleep,
            enqueue_target=queue_enqueuer(self.settings, self.converge_queue),
            store=self.grants,
            audit=self.audit,
            policies=TablePolicies(self.settings, self.policy_store),
        )


_process: dict[str, Root] = {}
_process_lock = threading.Lock()


def root() -> Root:
    """The process's root (settings validated on first call)."""
    with _process_lock:
        if "root" not in _process:
            _process["root"] = Root(get_settings())
        return _process["root"]
