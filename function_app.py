"""Azure Functions entry point: triggers only. Each parses its input, calls one thing in shared/,
and answers. Settings are validated on import so a misconfigured app fails at start-up."""

from __future__ import annotations

import azure.functions as func

from shared.actions.approvals import lapse_due
from shared.api import routes
from shared.composition import root, utc_now
from shared.enforcement import handle_converge_message, reconcile_all, sweep_expired
from shared.notify.delivery import handle_event_message
from shared.notify.expiring import announce_expiring
from shared.observability import configure_telemetry
from shared.queue_intake import handle_queued_request
from shared.settings import get_settings

# First, so that events logged while the app starts are exported too (a no-op without App Insights).
configure_telemetry()
get_settings()

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


# ---- HTTP: one Function per entry of the route table (Defender's JIT API, records, meta) ----

routes.register(app)


# ---- access requests from ticketing systems ----


@app.queue_trigger(arg_name="msg", queue_name="%PORTCULLIS_REQUESTS_QUEUE%", connection="AzureWebJobsStorage")
def jit_requests(msg: func.QueueMessage) -> None:
    handle_queued_request(msg.get_body(), root().services)


# Every 15 s: one partition query of the waiting requests, so a lapse is seen within 15 s of its time.
@app.timer_trigger(arg_name="timer", schedule="*/15 * * * * *", run_on_startup=False)
def jit_approval_lapse(timer: func.TimerRequest) -> None:
    lapse_due(root().services)


# ---- enforcement: make the network match the grants, and keep it so ----


@app.queue_trigger(arg_name="msg", queue_name="%PORTCULLIS_CONVERGE_QUEUE%", connection="AzureWebJobsStorage")
def jit_converge(msg: func.QueueMessage) -> None:
    handle_converge_message(msg.get_body(), root().enforcement)


@app.timer_trigger(arg_name="timer", schedule="0 * * * * *", run_on_startup=False)
def jit_expiry_sweep(timer: func.TimerRequest) -> None:
    sweep_expired(root().enforcement)


@app.timer_trigger(arg_name="timer", schedule="30 */3 * * * *", run_on_startup=True)
def jit_reconcile(timer: func.TimerRequest) -> None:
    reconcile_all(root().enforcement)


# ---- notifications: CloudEvents to webhooks and Event Grid, off the enforcement path ----


@app.queue_trigger(arg_name="msg", queue_name="%PORTCULLIS_EVENTS_QUEUE%", connection="AzureWebJobsStorage")
def jit_events(msg: func.QueueMessage) -> None:
    handle_event_message(msg.get_body(), root().notifier, msg.dequeue_count or 1)


@app.timer_trigger(arg_name="timer", schedule="20 * * * * *", run_on_startup=False)
def jit_expiry_notices(timer: func.TimerRequest) -> None:
    if root().settings.notifications_enabled:
        announce_expiring(root().grants, root().audit, utc_now)
