"""RevokeAccess (early revoke by the requester, a policy admin, or the owner of a firewall the grants
use) and the one way a grant gets revoked here: status Revoked with a reason, written with the
grant's ETag, audited, handed to enforcement."""

from __future__ import annotations

import logging
from dataclasses import replace

from azure.core.exceptions import AzureError

from shared.actions.oversight import Oversight
from shared.actions.refusal import Refusal
from shared.authz import WRITE_POLICY_ACTION
from shared.events import EventId
from shared.grants import StoredRequest
from shared.model import Grant, PortStatus, Principal, StatusReason, retry_on_conflict
from shared.notify.cloudevents import grant_context
from shared.observability import brief, log_event
from shared.services import Services

_ATTEMPTS = 5


def revoke_grant(
    services: Services,
    grant: Grant,
    reason: StatusReason,
    *,
    actor: str,
    audit_first: bool = True,
    **details: object,
) -> Grant | None:
    """Mark `grant` Revoked for `reason` (re-reading on a concurrent update); None if already closed.
    With `audit_first`, the decision is audited before the write (`grant.revoking`), so a caller
    whose answer depends on it can say "nothing was changed" when that audit fails; a caller whose
    own decision is already on record (a superseding request) skips it."""
    intent_recorded = not audit_first

    def attempt(number: int) -> Grant | None:
        nonlocal intent_recorded
        current = grant if number == 0 else services.grants.get(grant.grant_id)
        if current is None or current.status is PortStatus.REVOKED:
            return None
        if not intent_recorded:
            # Audited before the write: if this fails, nothing was changed and the caller may say so.
            services.audit.record(
                EventId.GRANT_REVOKING,
                subject=grant.grant_id,
                actor=actor,
                reason=reason.value,
                **grant_context(grant),
                **details,
            )
            intent_recorded = True
        revoked = services.grants.update(replace(current, status=PortStatus.REVOKED, status_reason=reason))
        # The grant is revoked from here on, so a storage failure below must not be answered as
        # "nothing was changed": it is logged, and enforcement's timers close the rules regardless
        # (they read the grant's status, not the message).
        try:
            services.audit.record(
                EventId.GRANT_REVOKED,
                subject=grant.grant_id,
                actor=actor,
                reason=reason.value,
                **grant_context(grant),
                vm=grant.vm.id,
                port=grant.port,
                **details,
            )
            services.converge.notify(grant.grant_id)
        except AzureError as error:
            log_event(
                EventId.GRANT_REVOKE_FOLLOWUP_FAILED,
                logging.ERROR,
                grant=grant.grant_id,
                reason=reason.value,
                actor=actor,
                error=brief(error),
            )
        return revoked

    return retry_on_conflict(
        attempt, attempts=_ATTEMPTS, gave_up=f"grant {grant.grant_id} kept changing; revoke it again"
    )


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
                EventId.REVOKE_REFUSED,
                subject=request_id,
                actor=principal.object_id,
                reason="not the requester, a policy writer or the owner of a firewall it uses",
            )
            raise Refusal.forbidden(
                f"{principal.display_name} is neither the requester nor allowed '{WRITE_POLICY_ACTION}' on "
                f"{stored.record.policy.id}, nor may write a firewall its grants use"
            )
        try:
            for grant in revocable:
                revoke_grant(services, grant, StatusReason.USER_REQUESTED, actor=principal.object_id)
            return services.grants.get_request(request_id) or stored
        except AzureError as error:
            # Some grants may be revoked already: say so, never "nothing was changed". Revoking again
            # is harmless, so the caller's retry finishes the job.
            log_event(EventId.REVOKE_STORAGE_FAILED, logging.ERROR, request=request_id, error=brief(error))
            raise Refusal(
                503,
                "ServiceUnavailable",
                f"storage is unavailable; request {request_id} may be partly revoked: send the DELETE again",
            ) from None
