"""PutPolicy, GetPolicy, ListPolicies, DeletePolicy: Defender's policy resource, stored in Table
storage, guarded by Azure RBAC on the policy (`.../jitNetworkAccessPolicies/write|read|delete`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.actions.confine import check_firewalls
from shared.actions.refusal import Refusal
from shared.authz import (
    DELETE_POLICY_ACTION,
    READ_POLICY_ACTION,
    WRITE_POLICY_ACTION,
)
from shared.defender import (
    JitNetworkAccessPolicy,
    PolicyList,
    parse_policy_body,
    policy_to_wire,
    request_to_wire,
)
from shared.events import EventId
from shared.model import DomainError, JitPolicy, PolicyRef, Principal
from shared.policy_store import StoredPolicy, check_location, check_resource_group, check_subscription
from shared.services import Services
from shared.topology import TopologyResolver


@dataclass(frozen=True)
class PutOutcome:
    body: JitNetworkAccessPolicy
    created: bool


def policy_answer(services: Services, stored: StoredPolicy) -> JitNetworkAccessPolicy:
    """The policy as Defender answers it, with its request history from the grant store."""
    history = [
        request_to_wire(
            request.grants,
            start_time=request.record.start_time,
            requestor=request.record.requester.display_name,
            justification=request.record.justification,
        )
        for request in services.grants.policy_history(stored.ref)
    ]
    return policy_to_wire(stored.ref, stored.body, history)


def admit_policy(
    services: Services,
    ref: PolicyRef,
    body: Any,
    principal: Principal,
    topology: Callable[[], TopologyResolver] | None = None,
) -> tuple[JitPolicy, dict[str, Any]]:
    """Everything a policy must pass before it is stored, for PUT and import alike: its shape, the
    bound on its VMs, and every firewall it names (on the VM's path, writable by `principal`).
    `topology` gives the reader for ARM (default: a fresh one; an import shares one across policies).
    Raises Refusal; a refusal is audited and nothing is stored."""
    try:
        policy, canonical = parse_policy_body(body, ref)
        limit = services.settings.max_vms_per_policy
        if len(policy.virtual_machines) > limit:
            raise DomainError(
                "properties.virtualMachines",
                f"{len(policy.virtual_machines)} virtual machines; a policy lists at most {limit} "
                "(PORTCULLIS_MAX_VMS_PER_POLICY)",
                code="TooManyVirtualMachines",
            )
    except DomainError as error:
        _audit_refusal(services, ref, principal, error.field, error.reason)
        raise Refusal.invalid(error) from None
    try:
        check_firewalls(policy, principal, services.authorizer, topology or services.new_topology)
    except Refusal as refusal:
        _audit_refusal(services, ref, principal, refusal.target or "", refusal.message)
        raise
    return policy, canonical


def _audit_refusal(services: Services, ref: PolicyRef, principal: Principal, field: str, reason: str) -> None:
    services.audit.record(
        EventId.POLICY_REFUSED, subject=ref.id, actor=principal.object_id, field=field, reason=reason
    )


class PutPolicy:
    def __init__(self, services: Services) -> None:
        self._services = services

    def __call__(self, ref: PolicyRef, body: Any, principal: Principal) -> PutOutcome:
        services = self._services
        services.authorizer.require(principal, WRITE_POLICY_ACTION, ref.id)
        policy, canonical = admit_policy(services, ref, body, principal)
        previous = services.policies.get(ref)
        created = services.policies.put(ref, canonical, services.clock())
        services.audit.record(
            EventId.POLICY_WRITTEN,
            subject=ref.id,
            actor=principal.object_id,
            created=created,
            vms=[vm.vm.id for vm in policy.virtual_machines],
        )
        # The Deny baseline follows the policy now (VMs added or dropped, ports changed), not at the
        # next reconcile tick.
        services.converge.policy_changed(ref.id, previous.policy if previous else None, policy)
        stored = services.policies.get(ref)
        assert stored is not None
        return PutOutcome(policy_answer(services, stored), created)


class GetPolicy:
    def __init__(self, services: Services) -> None:
        self._services = services

    def __call__(self, ref: PolicyRef, principal: Principal) -> JitNetworkAccessPolicy:
        self._services.authorizer.require(principal, READ_POLICY_ACTION, ref.id)
        stored = self._services.policies.get(ref)
        if stored is None:
            raise Refusal.not_found(
                "ResourceNotFound",
                f"The Resource '{POLICY_TYPE_NAME}/{ref.location}/jitNetworkAccessPolicies/{ref.name}' under "
                f"resource group '{ref.resource_group}' was not found.",
            )
        return policy_answer(self._services, stored)


POLICY_TYPE_NAME = "Microsoft.Security/locations"


class ListPolicies:
    """Every policy in the scope that the caller may read (Azure filters lists by RBAC too)."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def __call__(
        self,
        principal: Principal,
        subscription_id: str,
        resource_group: str | None = None,
        location: str | None = None,
    ) -> PolicyList:
        try:
            check_subscription(subscription_id)
            if resource_group is not None:
                check_resource_group(resource_group)
            if location is not None:
                check_location(location)
        except DomainError as error:
            raise Refusal.invalid(error) from None
        readable = []
        for stored in self._services.policies.list_in(subscription_id, resource_group, location):
            if self._services.authorizer.check(principal, READ_POLICY_ACTION, stored.ref.id):
                readable.append(policy_answer(self._services, stored))
        return PolicyList(value=readable)


class ListReadablePolicies:
    """Every policy in every subscription that the caller may read: how a command line finds the VMs
    its user may request without being told their subscriptions (`portcullis vm list`). Policies are
    few (one per resource group at most per location), so one scan, filtered by RBAC like the lists."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def __call__(self, principal: Principal) -> PolicyList:
        readable = [
            policy_answer(self._services, stored)
            for stored in sorted(self._services.policies.list_all(), key=lambda stored: stored.ref.id.lower())
            if self._services.authorizer.check(principal, READ_POLICY_ACTION, stored.ref.id)
        ]
        return PolicyList(value=readable)


class DeletePolicy:
    """True if a policy was deleted (200), False if there was none (204). Grants already made keep
    their end times: enforcement closes them as usual."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def __call__(self, ref: PolicyRef, principal: Principal) -> bool:
        self._services.authorizer.require(principal, DELETE_POLICY_ACTION, ref.id)
        previous = self._services.policies.get(ref)
        deleted = self._services.policies.delete(ref)
        if deleted:
            self._services.audit.record(EventId.POLICY_DELETED, subject=ref.id, actor=principal.object_id)
            # Its VMs' Deny baseline goes now (the targets stay in the registry for the timers).
            self._services.converge.policy_changed(ref.id, previous.policy if previous else None)
        return deleted
