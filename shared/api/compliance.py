"""GET /api/compliance: the findings converge reported but must not fix (foreign rules opening a
protected port to the Internet ahead of our Deny; full priority bands).

A finding names a VM and a rule in front of it, which is as much as its JIT policy tells: the caller
sees a finding only where they may read JIT policies (`jitNetworkAccessPolicies/read`) on its
subscription, as Defender's own list does. A subscription-wide reader sees them all; nobody else
learns that the subscription exists."""

from __future__ import annotations

import azure.functions as func

from shared.answers import ComplianceList
from shared.api.http import ApiCall, endpoint, json_response
from shared.authz import READ_POLICY_ACTION
from shared.compliance import FindingStore, StoredFinding
from shared.model import ResourceId


def _subscription(finding: StoredFinding) -> str:
    return (
        ResourceId(finding.vm).subscription_id or ResourceId(finding.target.partition("|")[2]).subscription_id
    )


@endpoint()
def get_compliance(call: ApiCall) -> func.HttpResponse:
    findings = FindingStore.from_settings(call.services.settings).list()
    readable: dict[str, bool] = {}
    visible = []
    for finding in findings:
        subscription = _subscription(finding).lower()
        if subscription not in readable:
            readable[subscription] = bool(subscription) and call.services.authorizer.check(
                call.principal, READ_POLICY_ACTION, f"/subscriptions/{subscription}"
            )
        if readable[subscription]:
            visible.append(finding)
    return json_response(200, ComplianceList(value=[f.to_json() for f in visible], count=len(visible)))
