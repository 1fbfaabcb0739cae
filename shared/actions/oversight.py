"""Who may see and end a grant, besides the person who asked for it.

- The requester: their own grants, always (`GET /api/grants`, `GET|DELETE /api/requests/{id}`).
- Whoever may read the grant's JIT policy (`.../jitNetworkAccessPolicies/read` on it): see every grant
  under it; whoever may write it (`.../write`): also revoke them.
- Whoever may write a firewall a grant has a DNAT rule on: see and revoke that grant. A classic
  firewall needs `Microsoft.Network/azureFirewalls/write` on the firewall, a Firewall Policy
  `Microsoft.Network/firewallPolicies/ruleCollectionGroups/write` on the policy: exactly what it
  takes to remove our rule by hand, so a firewall's owner is never locked out of rules on it that
  someone else's policy caused. The firewall is the grant's own `targets` entry, so this reaches
  grants whose path enforcement has resolved (an `Initiating` grant without targets has none yet).

Everyone else sees nothing of other people's grants: object ids, source addresses and
justifications are not for a colleague with JIT read on one VM.
Decisions are Azure RBAC through the shared Authorizer (fail closed: unreadable RBAC is a 503).
"""

from __future__ import annotations

import re

from shared.authz import (
    FIREWALL_WRITE_ACTION,
    READ_POLICY_ACTION,
    RULE_COLLECTION_GROUP_WRITE_ACTION,
    WRITE_POLICY_ACTION,
)
from shared.identity import same_principal
from shared.model import (
    FIREWALL_NAME_PATTERN,
    RESOURCE_GROUP_PATTERN,
    SUBSCRIPTION_PATTERN,
    DomainError,
    Grant,
    Principal,
    ResourceId,
    TargetKind,
    TargetRef,
)
from shared.services import Services

_FIREWALL_ACTIONS = {
    TargetKind.FIREWALL_CLASSIC: FIREWALL_WRITE_ACTION,
    TargetKind.FIREWALL_POLICY: RULE_COLLECTION_GROUP_WRITE_ACTION,
}


_FIREWALL_ID = re.compile(
    rf"(?i:/subscriptions/){SUBSCRIPTION_PATTERN}(?i:/resourceGroups/){RESOURCE_GROUP_PATTERN}"
    rf"(?i:/providers/Microsoft\.Network/(?P<type>azureFirewalls|firewallPolicies)/){FIREWALL_NAME_PATTERN}"
)


def firewall_target(firewall_id: str, field: str) -> TargetRef:
    """The target our DNAT rules live in for a firewall id: a classic firewall (`azureFirewalls`) or
    a Firewall Policy (`firewallPolicies`; a policy-managed firewall's rules live in its policy)."""
    text = firewall_id.strip()
    match = _FIREWALL_ID.fullmatch(text)
    if not match:
        raise DomainError(
            field,
            f"{firewall_id[:300]!r} is not an Azure Firewall or Firewall Policy id (/subscriptions/"
            "{subscription GUID}/resourceGroups/{rg}/providers/Microsoft.Network/azureFirewalls/{name} "
            "or .../firewallPolicies/{name})",
        )
    classic = match["type"].lower() == "azurefirewalls"
    kind = TargetKind.FIREWALL_CLASSIC if classic else TargetKind.FIREWALL_POLICY
    return TargetRef(kind, ResourceId(text))


def firewall_write_action(target: TargetRef) -> str | None:
    """The action that lets someone change our rules on `target` by hand; None for an NSG."""
    return _FIREWALL_ACTIONS.get(target.kind)


class Oversight:
    """One caller's rights over grants, each RBAC question asked at most once per instance."""

    def __init__(self, services: Services, principal: Principal) -> None:
        self._services = services
        self._principal = principal
        self._answers: dict[tuple[str, str], bool] = {}

    def allowed(self, action: str, scope: str) -> bool:
        key = (action, scope)
        if key not in self._answers:
            self._answers[key] = self._services.authorizer.check(self._principal, action, scope)
        return self._answers[key]

    def is_requester(self, grant: Grant) -> bool:
        return same_principal(grant.requester, self._principal)

    def writes_a_firewall_of(self, grant: Grant) -> bool:
        for key in grant.targets:
            target = TargetRef.from_key(key)
            action = firewall_write_action(target)
            if action is not None and self.allowed(action, str(target.id)):
                return True
        return False

    def may_see(self, grant: Grant) -> bool:
        return (
            self.is_requester(grant)
            or self.allowed(READ_POLICY_ACTION, grant.policy.id)
            or self.writes_a_firewall_of(grant)
        )

    def may_revoke(self, grant: Grant) -> bool:
        return (
            self.is_requester(grant)
            or self.allowed(WRITE_POLICY_ACTION, grant.policy.id)
            or self.writes_a_firewall_of(grant)
        )
