"""May they? Azure RBAC decides, as it does for Defender.

A principal may perform an action on a scope when a role assignment at that scope or above it (VM,
resource group, subscription, management group, root), made to the principal or to one of the groups
in its claims, has a role whose permissions include the action (wildcards allowed) and whose
`notActions` do not exclude it.
Deny assignments are not evaluated. Decisions are cached briefly (PORTCULLIS_RBAC_CACHE_SECONDS).
If role assignments cannot be read, the answer is AuthorizationUnavailableError, never "allowed".
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core.exceptions import ResourceNotFoundError

from shared.actions.refusal import Refusal
from shared.arm_ids import subscription_of
from shared.model import Principal, arm_key

INITIATE_ACTION = "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action"
WRITE_POLICY_ACTION = "Microsoft.Security/locations/jitNetworkAccessPolicies/write"
READ_POLICY_ACTION = "Microsoft.Security/locations/jitNetworkAccessPolicies/read"
DELETE_POLICY_ACTION = "Microsoft.Security/locations/jitNetworkAccessPolicies/delete"
# What a policy's author must hold on a firewall the policy puts a VM behind (shared.actions.confine).
FIREWALL_WRITE_ACTION = "Microsoft.Network/azureFirewalls/write"
RULE_COLLECTION_GROUP_WRITE_ACTION = "Microsoft.Network/firewallPolicies/ruleCollectionGroups/write"


class AuthorizationUnavailableError(RuntimeError):
    """Role assignments could not be read: refuse (fail closed)."""


@dataclass(frozen=True)
class RoleAssignment:
    principal_id: str
    role_definition_id: str
    scope: str


@dataclass(frozen=True)
class Permission:
    actions: tuple[str, ...]
    not_actions: tuple[str, ...] = ()


class RoleReader(Protocol):
    def assignments_at_or_above(self, scope: str) -> list[RoleAssignment]: ...

    def assignments_in_subscription(self, subscription_id: str) -> list[RoleAssignment]:
        """Every assignment at, above or below the subscription (ARM's unfiltered list at its scope)."""
        ...

    def role_permissions(self, role_definition_id: str) -> list[Permission]: ...


def _pattern(action_pattern: str) -> re.Pattern[str]:
    return re.compile(
        "^" + ".*".join(re.escape(part) for part in action_pattern.split("*")) + "$", re.IGNORECASE
    )


def action_matches(pattern: str, action: str) -> bool:
    return bool(_pattern(pattern).match(action))


def permits(permissions: Iterable[Permission], action: str) -> bool:
    """Does any permission block grant `action` (in `actions`, not in that block's `notActions`)?"""
    return any(
        any(action_matches(p, action) for p in block.actions)
        and not any(action_matches(p, action) for p in block.not_actions)
        for block in permissions
    )


def scope_covers(assignment_scope: str, scope: str) -> bool:
    """Is `assignment_scope` `scope` itself or one of its ancestors?"""
    outer = arm_key(assignment_scope.rstrip("/"))
    inner = arm_key(scope.rstrip("/"))
    return outer in ("", "/") or inner == outer or inner.startswith(outer + "/")


class Authorizer:
    def __init__(
        self,
        reader_for: Callable[[str], RoleReader],
        cache_seconds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`reader_for(subscription_id)` gives a RoleReader for that subscription."""
        self._reader_for = reader_for
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._decisions: dict[tuple[frozenset[str], str, str], tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def is_allowed(self, principal: Principal, action: str, scope: str) -> bool:
        principal_ids = frozenset(i.lower() for i in (principal.object_id, *principal.group_ids))
        # The exact scope: a decision for `.../resourceGroups/rg\u212a/...` must never answer for
        # `.../rgk/...`, nor for any other spelling ARM might treat differently from us.
        key = (principal_ids, action.lower(), scope)
        now = self._clock()
        with self._lock:
            cached = self._decisions.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        allowed = self._decide(principal_ids, action, scope)
        if self._cache_seconds > 0:
            with self._lock:
                self._decisions[key] = (allowed, now + self._cache_seconds)
        return allowed

    def check(self, principal: Principal, action: str, scope: str) -> bool:
        """`is_allowed` for a request: RBAC that cannot be read is the caller's 503
        (AuthorizationUnavailable), never "allowed". The one place that mapping is made."""
        try:
            return self.is_allowed(principal, action, scope)
        except AuthorizationUnavailableError as error:
            raise Refusal.unavailable(str(error)) from None

    def require(
        self,
        principal: Principal,
        action: str,
        scope: str,
        *,
        field: str | None = None,
        target: str | None = None,
        why: str = "",
    ) -> None:
        """Refuse with ARM's 403 (AuthorizationFailed, in ARM's words) unless the principal may; 503
        when RBAC cannot be read. `field` names the input at fault in the message and as the error's
        target; `target` only as its target; `why` ends the message."""
        if not self.check(principal, action, scope):
            raise Refusal.forbidden(
                f"{field + ': ' if field else ''}{principal.display_name} ({principal.object_id}) does not "
                f"have authorization to perform action '{action}' over scope '{scope}'{why}",
                target=field or target,
            )

    def check_somewhere(self, principal: Principal, action: str, subscription_id: str) -> bool:
        """`may_somewhere` for a request, with RBAC that cannot be read as a 503 (as `check`)."""
        try:
            return self.may_somewhere(principal, action, subscription_id)
        except AuthorizationUnavailableError as error:
            raise Refusal.unavailable(str(error)) from None

    def may_somewhere(self, principal: Principal, action: str, subscription_id: str) -> bool:
        """Does the principal hold `action` at some scope in (or above) the subscription? The check an
        operation over a whole subscription makes before it reads anything with the app's identity
        (the import of Defender's policies); each item is then checked at its own scope. Not cached."""
        principal_ids = frozenset(i.lower() for i in (principal.object_id, *principal.group_ids))
        try:
            reader = self._reader_for(subscription_id)
            return any(
                assignment.principal_id.lower() in principal_ids
                and permits(reader.role_permissions(assignment.role_definition_id), action)
                for assignment in reader.assignments_in_subscription(subscription_id)
            )
        except Exception as error:  # any failure to read RBAC refuses
            raise AuthorizationUnavailableError(
                f"role assignments in subscription {subscription_id} cannot be read "
                f"({type(error).__name__}); refusing"
            ) from error

    def _decide(self, principal_ids: frozenset[str], action: str, scope: str) -> bool:
        subscription_id = _subscription_of(scope)
        try:
            reader = self._reader_for(subscription_id)
            for assignment in reader.assignments_at_or_above(scope):
                if assignment.principal_id.lower() not in principal_ids:
                    continue
                if not (scope_covers(assignment.scope, scope) or _is_management_group(assignment.scope)):
                    continue
                if permits(reader.role_permissions(assignment.role_definition_id), action):
                    return True
        except Exception as error:  # any failure to read RBAC refuses
            raise AuthorizationUnavailableError(
                f"role assignments for {scope} cannot be read ({type(error).__name__}); refusing"
            ) from error
        return False


def _is_management_group(scope: str) -> bool:
    """A management group's id does not appear in a resource's id, so it can never be checked as a
    prefix; the reader answers only assignments at or above the scope, so one it reports is an
    ancestor (management groups hold subscriptions)."""
    return scope.lower().startswith("/providers/microsoft.management/managementgroups/")


def _subscription_of(scope: str) -> str:
    try:
        return subscription_of(scope)
    except ValueError:
        raise AuthorizationUnavailableError(f"{scope!r} is not inside a subscription") from None


class ArmRoleReader:
    """RoleReader through azure-mgmt-authorization (Azure, or the emulator locally)."""

    _definitions: dict[str, tuple[list[Permission], float]] = {}  # noqa: RUF012 - shared cache
    _definitions_lock = threading.Lock()
    _definition_ttl_seconds = 300.0

    def __init__(self, client: Any) -> None:
        self._client = client

    def assignments_at_or_above(self, scope: str) -> list[RoleAssignment]:
        try:
            return [
                RoleAssignment(str(item.principal_id), str(item.role_definition_id), str(item.scope))
                for item in self._client.role_assignments.list_for_scope(scope, filter="atScope()")
            ]
        except ResourceNotFoundError:
            # The VM (or its resource group) does not exist: nothing applies to it, so refuse.
            return []

    def assignments_in_subscription(self, subscription_id: str) -> list[RoleAssignment]:
        return [
            RoleAssignment(str(item.principal_id), str(item.role_definition_id), str(item.scope))
            for item in self._client.role_assignments.list_for_scope(f"/subscriptions/{subscription_id}")
        ]

    def role_permissions(self, role_definition_id: str) -> list[Permission]:
        key = role_definition_id.lower()
        now = time.monotonic()
        with self._definitions_lock:
            cached = self._definitions.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        definition = self._client.role_definitions.get_by_id(role_definition_id)
        permissions = [
            Permission(tuple(p.actions or ()), tuple(p.not_actions or ()))
            for p in definition.permissions or ()
        ]
        with self._definitions_lock:
            self._definitions[key] = (permissions, now + self._definition_ttl_seconds)
        return permissions
