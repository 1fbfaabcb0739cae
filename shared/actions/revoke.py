"""RevokeAccess (early revoke by the requester, a policy admin, or the owner of a firewall the grants
use) and the one way a grant gets revoked here: status Revoked with a reason, written with the
grant's ETag, audited, handed to enforcement."""

from __future__ import annotations

from dataclasses import replace

from shared.actions.oversight import Oversight
from shared.actions.refusal import Refusal
from shared.authz import WRITE_POLICY_ACTION
from shared.grants import StoredRequest
from shared.model import ConcurrentUpdateError, Grant, PortStatus, Principal, StatusReason
from shared.services import Services

_ATTEMPTS = 5


def revoke_grant(
    services: Services, grant: Grant, reason: StatusReason, *, actor: str, **details: object
) -> Grant | None:
    """Mark `grant` Revoked for `reason` (re-reading on a concurrent update); None if already closed."""
    current: Grant | None = grant
    for _ in range(_ATTEMPTS):
        if current is None or current.status is PortStatus.REVOKED:
            return None
        try:
            revoked = services.grants.update(
                replace(current, status=PortStatus.REVOKED, status_reason=reason)
            )
        except ConcurrentUpdateError:
            current = services.grants.get(grant.grant_id)
            continue
        services.audit.record(
            "grant.revoked",
            subject=grant.grant_id,
            actor=actor,
            reason=reason.value,
            request=grant.request_id,
            vm=grant.vm.id,
            port=grant.port,
            **details,
        )
        services.converge.notify(grant.grant_id)
        return revoked
    raise ConcurrentUpdateError(f"grant {grant.grant_id} kept changing; revoke it again")


class RevokeAccess:
    """Revoke what the caller may revoke of a request (shared.actions.oversight): all of it for the
    requester or whoever may write its policy; for a firewall's owner, the grants on that firewall."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def __call__(self, request_id: str, principal: Principal) -> StoredRequest:
        services = self._services
        stored = services.grants.get_request(request_id)
        if stored is None:
            raise Refusal.not_found("RequestNotFound", f"request {request_id} does not exist")
        oversight = Oversight(services, principal)
        revocable = [grant for grant in stored.grants if oversight.may_revoke(grant)]
        if not revocable:
            services.audit.record(
                "revoke.refused",
                subject=request_id,
                actor=principal.object_id,
                reason="not the requester, a policy writer or the owner of a firewall it uses",
            )
            raise Refusal.forbidden(
                f"{principal.display_name} is neither the requester nor allowed '{WRITE_POLICY_ACTION}' on "
                f"{stored.record.policy.id}, nor may write a firewall its grants use"
            )
        for grant in revocable:
            revoke_grant(services, grant, StatusReason.USER_REQUESTED, actor=principal.object_id)
        return services.grants.get_request(request_id) or stored
