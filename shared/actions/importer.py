"""ImportDefenderPolicies: adopt a subscription's existing Defender JIT policies.

Checks first, reads after: a caller who may write JIT policies nowhere in the subscription is refused
(403) before the app reads anything with its own identity. Then reads them with azure-mgmt-security
(Azure, or the emulator locally), admits each as a PUT would (shape, size, and every firewall it names:
on the VM's path and writable by the caller, see shared.actions.confine), and stores those the caller
may write. ARM's error text is never passed on: it carries the app identity's ids.
Reports every policy the caller may read: adopted, unchanged, or
skipped and why; policies the caller may not even read are left out, as Azure's lists leave them out.
Defender's request history is not copied: it describes rules Defender opened, not ours.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from azure.core.exceptions import AzureError

from shared.actions.policies import admit_policy
from shared.actions.refusal import Refusal
from shared.answers import ImportReport, SkippedPolicy
from shared.authz import READ_POLICY_ACTION, WRITE_POLICY_ACTION
from shared.azure_clients import security_client
from shared.events import EventId
from shared.model import DomainError, Principal
from shared.observability import brief, log_event
from shared.policy_store import check_subscription, policy_ref
from shared.services import Services
from shared.topology import TopologyResolver

_POLICY_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Security"
    r"/locations/(?P<loc>[^/]+)/jitNetworkAccessPolicies/(?P<name>[^/]+)$",
    re.IGNORECASE,
)


class ImportDefenderPolicies:
    def __init__(self, services: Services, client_for: Callable[[str], Any] | None = None) -> None:
        self._services = services
        self._client_for = client_for or (lambda sub: security_client(sub, services.settings))

    def __call__(self, subscription_id: str, principal: Principal) -> ImportReport:
        services = self._services
        try:
            check_subscription(subscription_id)
        except DomainError as error:
            raise Refusal.invalid(error) from None
        may_write = services.authorizer.check_somewhere(principal, WRITE_POLICY_ACTION, subscription_id)
        if not may_write:
            services.audit.record(
                EventId.POLICY_IMPORT_REFUSED,
                subject=f"/subscriptions/{subscription_id}",
                actor=principal.object_id,
                reason=f"caller lacks {WRITE_POLICY_ACTION} in the subscription",
            )
            raise Refusal.forbidden(
                f"{principal.display_name} ({principal.object_id}) does not have authorization to perform "
                f"action '{WRITE_POLICY_ACTION}' at any scope in subscription '{subscription_id}'"
            )
        try:
            found = list(self._client_for(subscription_id).jit_network_access_policies.list())
        except AzureError as error:
            log_event(EventId.IMPORT_DEFENDER_UNREADABLE, logging.ERROR, error=brief(error))
            raise Refusal(
                502,
                "DefenderUnavailable",
                f"Defender's JIT policies in subscription {subscription_id} could not be read "
                f"({type(error).__name__}); nothing was imported",
            ) from None
        report = ImportReport(adopted=[], unchanged=[], skipped=[])
        topology: list[TopologyResolver] = []  # one reader for the whole import, made when first needed

        def shared_topology() -> TopologyResolver:
            if not topology:
                topology.append(services.new_topology())
            return topology[0]

        for item in found:
            policy_id = str(item.id or "")
            match = _POLICY_ID.match(policy_id)
            if not match:
                log_event(EventId.IMPORT_UNRECOGNISED_ID, logging.WARNING, id=policy_id[:300])
                continue
            group_scope = f"/subscriptions/{match['sub']}/resourceGroups/{match['rg']}"
            try:
                ref = policy_ref(match["sub"], match["rg"], match["loc"], match["name"])
            except DomainError as error:
                self._skip_if_visible(
                    report, principal, group_scope, policy_id, f"{error.field}: {error.reason}"
                )
                continue
            if not self._allowed(principal, WRITE_POLICY_ACTION, ref.id):
                self._skip_if_visible(
                    report, principal, ref.id, policy_id, f"caller lacks {WRITE_POLICY_ACTION}"
                )
                continue
            try:
                _, canonical = admit_policy(
                    services, ref, item.serialize(keep_readonly=True), principal, shared_topology
                )
            except Refusal as refusal:
                if refusal.status >= 500:
                    raise
                report.skipped.append(SkippedPolicy(id=policy_id, reason=refusal.message))
                continue
            existing = services.policies.get(ref)
            if existing is not None and existing.body == canonical:
                report.unchanged.append(ref.id)
                continue
            try:
                services.policies.put(ref, canonical, services.clock())
            except DomainError as error:
                report.skipped.append(SkippedPolicy(id=policy_id, reason=f"{error.field}: {error.reason}"))
                continue
            report.adopted.append(ref.id)
            services.audit.record(
                EventId.POLICY_IMPORTED, subject=ref.id, actor=principal.object_id, source="defender"
            )
        services.audit.record(
            EventId.POLICY_IMPORT_FINISHED,
            subject=f"/subscriptions/{subscription_id}",
            actor=principal.object_id,
            **report.wire(),
        )
        return report

    def _allowed(self, principal: Principal, action: str, scope: str) -> bool:
        return self._services.authorizer.check(principal, action, scope)

    def _skip_if_visible(
        self, report: ImportReport, principal: Principal, scope: str, policy_id: str, reason: str
    ) -> None:
        """Name a skipped policy only to a caller who may read it: Azure's lists filter by RBAC too,
        and the app reads Defender with its own identity, which sees more than the caller may."""
        if self._allowed(principal, READ_POLICY_ACTION, scope):
            report.skipped.append(SkippedPolicy(id=policy_id, reason=reason))
