"""Azure Functions entry point: triggers only. Each parses its input, calls one thing in shared/,
and answers. Settings are validated on import so a misconfigured app fails at start-up."""

from __future__ import annotations

import json

import azure.functions as func

from shared.api import compliance, defender_routes, openapi, records
from shared.enforcement import get_converge_deps, handle_converge_message, reconcile_all, sweep_expired
from shared.observability import configure_telemetry
from shared.queue_intake import handle_queued_request
from shared.services import get_services
from shared.settings import get_settings

# First, so that events logged while the app starts are exported too (a no-op without App Insights).
configure_telemetry()
get_settings()

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="health", methods=["GET"])
def health(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"status": "ok"}), status_code=200, mimetype="application/json")


# ---- Defender-compatible JIT policy API (api-version 2020-01-01) ----

_SECURITY = "providers/Microsoft.Security"
_POLICY = (
    "subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/"
    + _SECURITY
    + "/locations/{ascLocation}/jitNetworkAccessPolicies/{jitNetworkAccessPolicyName}"
)


@app.route(route=_POLICY, methods=["GET"])
def jit_policy_get(req: func.HttpRequest) -> func.HttpResponse:
    return defender_routes.get_policy(req)


@app.route(route=_POLICY, methods=["PUT"])
def jit_policy_put(req: func.HttpRequest) -> func.HttpResponse:
    return defender_routes.put_policy(req)


@app.route(route=_POLICY, methods=["DELETE"])
def jit_policy_delete(req: func.HttpRequest) -> func.HttpResponse:
    return defender_routes.delete_policy(req)


@app.route(route=_POLICY + "/initiate", methods=["POST"])
def jit_policy_initiate(req: func.HttpRequest) -> func.HttpResponse:
    return defender_routes.initiate(req)


@app.route(route="subscriptions/{subscriptionId}/" + _SECURITY + "/jitNetworkAccessPolicies", methods=["GET"])
def jit_policies_list_subscription(req: func.HttpRequest) -> func.HttpResponse:
    return defender_routes.list_policies(req)


@app.route(
    route="subscriptions/{subscriptionId}/" + _SECURITY + "/locations/{ascLocation}/jitNetworkAccessPolicies",
    methods=["GET"],
)
def jit_policies_list_region(req: func.HttpRequest) -> func.HttpResponse:
    return defender_routes.list_policies(req)


@app.route(
    route="subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/"
    + _SECURITY
    + "/jitNetworkAccessPolicies",
    methods=["GET"],
)
def jit_policies_list_resource_group(req: func.HttpRequest) -> func.HttpResponse:
    return defender_routes.list_policies(req)


@app.route(
    route="subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/"
    + _SECURITY
    + "/locations/{ascLocation}/jitNetworkAccessPolicies",
    methods=["GET"],
)
def jit_policies_list_resource_group_region(req: func.HttpRequest) -> func.HttpResponse:
    return defender_routes.list_policies(req)


# ---- records and extensions ----


@app.route(route="requests/{requestId}", methods=["GET"])
def request_get(req: func.HttpRequest) -> func.HttpResponse:
    return records.get_request(req)


@app.route(route="requests/{requestId}", methods=["DELETE"])
def request_revoke(req: func.HttpRequest) -> func.HttpResponse:
    return records.revoke_request(req)


@app.route(route="grants", methods=["GET"])
def grants_list(req: func.HttpRequest) -> func.HttpResponse:
    return records.list_grants(req)


@app.route(route="subscriptions/{subscriptionId}/importDefenderJitPolicies", methods=["POST"])
def defender_policies_import(req: func.HttpRequest) -> func.HttpResponse:
    return records.import_defender_policies(req)


@app.route(route="openapi.json", methods=["GET"])
def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    return openapi.get_openapi(req)


# ---- access requests from ticketing systems ----


@app.queue_trigger(arg_name="msg", queue_name="%PORTCULLIS_REQUESTS_QUEUE%", connection="AzureWebJobsStorage")
def jit_requests(msg: func.QueueMessage) -> None:
    handle_queued_request(msg.get_body(), get_services())


# ---- enforcement: make the network match the grants, and keep it so ----


@app.queue_trigger(arg_name="msg", queue_name="%PORTCULLIS_CONVERGE_QUEUE%", connection="AzureWebJobsStorage")
def jit_converge(msg: func.QueueMessage) -> None:
    handle_converge_message(msg.get_body(), get_converge_deps())


@app.timer_trigger(arg_name="timer", schedule="0 * * * * *", run_on_startup=False)
def jit_expiry_sweep(timer: func.TimerRequest) -> None:
    sweep_expired(get_converge_deps())


@app.timer_trigger(arg_name="timer", schedule="30 */3 * * * *", run_on_startup=True)
def jit_reconcile(timer: func.TimerRequest) -> None:
    reconcile_all(get_converge_deps())


@app.route(route="compliance", methods=["GET"])
def compliance_get(req: func.HttpRequest) -> func.HttpResponse:
    return compliance.get_compliance(req)
