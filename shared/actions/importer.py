"""ImportDefenderPolicies: adopt a subscription's existing Defender JIT policies.

Reads them with azure-mgmt-security (Azure, or the emulator locally), validates each as a PUT would,
and stores those the caller may write. Reports every policy: adopted, unchanged, or skipped and why.
Defender's request history is not copied: it describes rules Defender opened, not ours.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import AzureError

from shared.actions.refusal import Refusal
from shared.authz import WRITE_POLICY_ACTION, AuthorizationUnavailableError
from shared.azure_clients import security_client
from shared.defender import parse_policy_body
from shared.model import DomainError, PolicyRef, Principal
from shared.policy_store import check_subscription, policy_ref
from shared.services import Services

_POLICY_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Security"
    r"/locations/(?P<loc>[^/]+)/jitNetworkAccessPolicies/(?P<name>[^/]+)$",
    re.IGNORECASE,
)


@dataclass
class ImportReport:
    adopted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        return {"adopted": self.adopted, "unchanged": self.unchanged, "skipped": self.skipped}


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
        try:
            found = list(self._client_for(subscription_id).jit_network_access_policies.list())
        except AzureError as error:
            raise Refusal(
                502, "DefenderUnavailable", f"Defender's JIT policies could not be read: {error}"
            ) from None
        report = ImportReport()
        for item in found:
            policy_id = str(item.id or "")
            match = _POLICY_ID.match(policy_id)
            if not match:
                report.skipped.append({"id": policy_id, "reason": "not a JIT policy id"})
                continue
            try:
                ref = policy_ref(match["sub"], match["rg"], match["loc"], match["name"])
                _, canonical = parse_policy_body(item.serialize(keep_readonly=True), ref)
            except DomainError as error:
                report.skipped.append({"id": policy_id, "reason": f"{error.field}: {error.reason}"})
                continue
            if not self._may_write(principal, ref):
                report.skipped.append({"id": policy_id, "reason": f"caller lacks {WRITE_POLICY_ACTION}"})
                continue
            existing = services.policies.get(ref)
            if existing is not None and existing.body == canonical:
                report.unchanged.append(ref.id)
                continue
            services.policies.put(ref, canonical, services.clock())
            report.adopted.append(ref.id)
            services.audit.record(
                "policy.imported", subject=ref.id, actor=principal.object_id, source="defender"
            )
        services.audit.record(
            "policy.import_finished",
            subject=f"/subscriptions/{subscription_id}",
            actor=principal.object_id,
            **report.to_wire(),
        )
        return report

    def _may_write(self, principal: Principal, ref: PolicyRef) -> bool:
        try:
            return self._services.authorizer.is_allowed(principal, WRITE_POLICY_ACTION, ref.id)
        except AuthorizationUnavailableError as error:
            raise Refusal.unavailable(str(error)) from None
