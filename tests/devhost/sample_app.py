"""A small function app for devhost's own tests. It records what it saw in memory and exposes that
over HTTP, so the tests observe the real host from outside its process."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

_lock = threading.Lock()
_seen: dict[str, list[dict[str, Any]]] = {"messages": [], "ticks": [], "slow_ticks": [], "new_year": []}


def _record(kind: str, entry: dict[str, Any]) -> None:
    with _lock:
        _seen[kind].append(entry)


def _json(document: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(document), status_code=status, mimetype="application/json")


@app.route(route="items/{id:int}", methods=["GET", "POST"])
def item(req: func.HttpRequest) -> func.HttpResponse:
    return _json(
        {
            "method": req.method,
            "url": req.url,
            "route_params": dict(req.route_params),
            "params": dict(req.params),
            "principal": req.headers.get("X-MS-CLIENT-PRINCIPAL-NAME"),
            "body": req.get_body().decode(),
        }
    )


@app.route(route="files/{*path}", methods=["GET"])
def files(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.route_params.get("path", ""), status_code=203, headers={"X-Sample": "yes"})


@app.route(route="greet/{name:alpha}", methods=["GET"])
async def greet(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params["name"]
    logging.getLogger("sample").info("greeting %s", name)
    return func.HttpResponse(f"hello {name}")


@app.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("the sample app failed on purpose")


@app.route(route="slow", methods=["GET"])
def slow(req: func.HttpRequest) -> func.HttpResponse:
    time.sleep(float(req.params.get("seconds", "1")))
    return func.HttpResponse("done")


@app.route(route="seen", methods=["GET"])
def seen(req: func.HttpRequest) -> func.HttpResponse:
    with _lock:
        return _json(_seen)


@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%", connection="AzureWebJobsStorage")
def work(msg: func.QueueMessage, context: func.Context) -> None:
    body = msg.get_body().decode()
    _record(
        "messages",
        {
            "body": body,
            "id": msg.id,
            "dequeue_count": msg.dequeue_count,
            "inserted": msg.insertion_time.isoformat() if msg.insertion_time else None,
            "pop_receipt": bool(msg.pop_receipt),
            "invocation_id": context.invocation_id,
        },
    )
    if body.startswith("fail"):
        raise ValueError(f"marker message {body} fails on purpose")


@app.timer_trigger(arg_name="timer", schedule="* * * * * *", run_on_startup=True)
def tick(timer: func.TimerRequest) -> None:
    _record("ticks", {"at": datetime.now(UTC).isoformat(), "past_due": timer.past_due})


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *")
def new_year(timer: func.TimerRequest) -> None:
    """Due once a year: what runs it during a test is `POST /admin/functions/new_year`."""
    _record("new_year", {"at": datetime.now(UTC).isoformat(), "past_due": timer.past_due})


@app.timer_trigger(arg_name="timer", schedule="*/1 * * * * *")
def slow_tick(timer: func.TimerRequest) -> None:
    started = time.time()
    time.sleep(1.3)
    _record("slow_ticks", {"start": started, "end": time.time()})
