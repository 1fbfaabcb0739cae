"""GET /api/compliance: the findings converge reported but must not fix (foreign rules opening a
protected port to the Internet ahead of our Deny; full priority bands). Authenticated callers only."""

from __future__ import annotations

import azure.functions as func

from shared.api.http import ApiCall, endpoint, json_response
from shared.compliance import FindingStore


@endpoint()
def get_compliance(call: ApiCall) -> func.HttpResponse:
    findings = FindingStore.from_settings(call.services.settings).list()
    return json_response(200, {"value": [f.to_json() for f in findings], "count": len(findings)})
