"""The real devhost in a subprocess, serving tests/devhost/sample_app.py against a real Azurite."""

from __future__ import annotations

import base64
import itertools
import json
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from localrig.azurite import Azurite
from localrig.processes import ManagedProcess
from localrig.stack import start_host

HOST_JSON = {
    "version": "2.0",
    "extensions": {
        "http": {"routePrefix": "api"},
        "queues": {
            "batchSize": 4,
            "maxDequeueCount": 3,
            "visibilityTimeout": "00:00:01",
            "maxPollingInterval": "00:00:01",
            "messageEncoding": "base64",
        },
    },
}


@dataclass
class RunningHost:
    process: ManagedProcess
    port: int
    queue: QueueClient
    poison: QueueClient

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log_events(self) -> list[dict[str, Any]]:
        lines = self.process.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


def call(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def launch(azurite: Azurite, tmp: Path) -> RunningHost:
    queue_name = "devhost-" + uuid.uuid4().hex[:10]
    host_json = tmp / "host.json"
    host_json.write_text(json.dumps(HOST_JSON))
    process, port = start_host(
        app="tests.devhost.sample_app",
        env={"AzureWebJobsStorage": azurite.connection_string, "SAMPLE_QUEUE": queue_name},
        host_json=host_json,
        log_path=tmp / "host.log",
        timeout=30,
    )
    queue = QueueClient.from_connection_string(
        azurite.connection_string, queue_name, message_encode_policy=TextBase64EncodePolicy()
    )
    poison = QueueClient.from_connection_string(azurite.connection_string, f"{queue_name}-poison")
    return RunningHost(process, port, queue, poison)


@pytest.fixture(scope="module")
def host(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    running = launch(azurite, tmp_path_factory.mktemp("devhost"))
    try:
        yield running
    finally:
        running.process.stop()


def seen(host: RunningHost) -> dict[str, list[dict[str, Any]]]:
    status, _, body = call(host.url("/api/seen"))
    assert status == 200
    return json.loads(body)


def test_http_route_params_query_headers_and_body(host: RunningHost) -> None:
    status, headers, body = call(
        host.url("/api/items/42?x=1&x=2&y="),
        method="POST",
        body=b'{"hello": 1}',
        headers={"X-MS-CLIENT-PRINCIPAL-NAME": "alice@example.com", "Content-Type": "application/json"},
    )
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    echoed = json.loads(body)
    assert echoed["method"] == "POST"
    assert echoed["route_params"] == {"id": "42"}
    assert echoed["params"] == {"x": "1,2", "y": ""}
    assert echoed["principal"] == "alice@example.com"
    assert echoed["body"] == '{"hello": 1}'
    assert echoed["url"] == host.url("/api/items/42?x=1&x=2&y=")


def test_http_catch_all_status_and_headers_pass_through(host: RunningHost) -> None:
    status, headers, body = call(host.url("/api/files/a/b/c.txt"))
    assert (status, headers["X-Sample"], body) == (203, "yes", b"a/b/c.txt")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"


def test_async_functions_and_app_logs_carry_the_invocation(host: RunningHost) -> None:
    status, _, body = call(host.url("/api/greet/Ada"))
    assert (status, body) == (200, b"hello Ada")
    greetings = [e for e in host.log_events() if e["event"] == "app.log" and e["message"] == "greeting Ada"]
    assert greetings and greetings[0]["function"] == "greet" and greetings[0]["invocation_id"]


def test_http_404_405_and_500(host: RunningHost) -> None:
    assert call(host.url("/api/items/not-a-number"))[0] == 404
    assert call(host.url("/api/nowhere"))[0] == 404
    assert call(host.url("/items/42"))[0] == 404  # outside the route prefix
    status, headers, _ = call(host.url("/api/items/42"), method="DELETE")
    assert (status, headers["Allow"]) == (405, "GET, POST")
    status, _, body = call(host.url("/api/boom"))
    assert status == 500
    assert b"sample app failed" not in body  # the app's error text stays in the log
    failures = [e for e in host.log_events() if e.get("function") == "boom" and e.get("outcome") == "failed"]
    assert failures and "RuntimeError: the sample app failed on purpose" in failures[0]["error"]


def test_http_requests_run_concurrently(host: RunningHost) -> None:
    results: list[int] = []
    started = time.monotonic()
    threads = [
        threading.Thread(target=lambda: results.append(call(host.url("/api/slow?seconds=1"))[0]))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 4
    # One after another they take at least 4 s; the bound sits just under that, as a loaded 2-core
    # machine adds its own seconds to thread starts and the host's dispatch.
    assert time.monotonic() - started < 3.9


def test_host_status_and_function_list(host: RunningHost) -> None:
    status, _, body = call(host.url("/admin/host/status"))
    assert status == 200 and json.loads(body)["state"] == "Running"
    functions = {f["function"]: f for f in json.loads(call(host.url("/admin/functions"))[2])}
    assert functions["work"]["queue"] == host.queue.queue_name
    assert functions["item"]["methods"] == ["GET", "POST"]


def test_queue_messages_run_once_and_failures_end_in_poison(host: RunningHost) -> None:
    good, bad = f"ok-{uuid.uuid4().hex[:8]}", f"fail-{uuid.uuid4().hex[:8]}"
    host.queue.send_message(good)
    host.queue.send_message(bad)

    def poisoned() -> list[str]:
        try:
            return [m.content for m in host.poison.peek_messages(max_messages=32)]
        except ResourceNotFoundError:  # the host creates the poison queue on first use
            return []

    poison_contents = wait_for(poisoned, 20, "the failing message in the poison queue")
    # The poison copy keeps the wire encoding of the original (base64).
    assert [base64.b64decode(c).decode() for c in poison_contents] == [bad]
    attempts = [m for m in seen(host)["messages"] if m["body"] == bad]
    assert [m["dequeue_count"] for m in attempts] == [1, 2, 3]
    assert len({m["invocation_id"] for m in attempts}) == 3
    processed = [m for m in seen(host)["messages"] if m["body"] == good]
    assert len(processed) == 1
    assert processed[0]["dequeue_count"] == 1 and processed[0]["pop_receipt"] and processed[0]["inserted"]
    assert host.queue.peek_messages() == []


def test_timer_fires_on_schedule_and_never_overlaps_itself(host: RunningHost) -> None:
    ticks = wait_for(lambda: len(seen(host)["ticks"]) >= 3 and seen(host)["ticks"], 30, "three ticks")
    moments = [time.mktime(time.strptime(t["at"][:19], "%Y-%m-%dT%H:%M:%S")) for t in ticks]
    assert moments == sorted(moments)
    slow = wait_for(lambda: len(seen(host)["slow_ticks"]) >= 2 and seen(host)["slow_ticks"], 30, "slow ticks")
    for earlier, later in itertools.pairwise(slow):
        assert later["start"] >= earlier["end"]


def test_admin_runs_a_timer_function_now_and_refuses_what_it_cannot_run(host: RunningHost) -> None:
    assert not seen(host).get("new_year")
    status, _, body = call(host.url("/admin/functions/new_year"), "POST", b'{"input": ""}')
    assert (status, body) == (202, b"")
    runs = wait_for(lambda: seen(host).get("new_year"), 30, "the manual run of new_year")
    assert runs[0]["past_due"] is False
    status, _, body = call(host.url("/admin/functions/no_such_function"), "POST", b"{}")
    assert status == 404 and b"no_such_function" in body
    status, _, body = call(host.url("/admin/functions/item"), "POST", b"{}")
    assert status == 400 and b"timer functions on demand only" in body
    # A manual run waits for the scheduled run in progress: slow_tick never overlaps itself.
    assert call(host.url("/admin/functions/slow_tick"), "POST", b"{}")[0] == 202
    time.sleep(3)
    slow = seen(host)["slow_ticks"]
    for earlier, later in itertools.pairwise(slow):
        assert later["start"] >= earlier["end"]


def test_sigterm_lets_in_flight_requests_finish(azurite: Azurite, tmp_path: Path) -> None:
    running = launch(azurite, tmp_path)
    try:
        results: list[int] = []
        client = threading.Thread(
            target=lambda: results.append(call(running.url("/api/slow?seconds=1.5"))[0])
        )
        client.start()
        wait_for(
            lambda: any(
                e["event"] == "function.started" and e.get("function") == "slow" for e in running.log_events()
            ),
            10,
            "the slow request",
        )
        running.process.popen.send_signal(signal.SIGTERM)
        client.join(10)
        assert results == [200]
        assert running.process.popen.wait(timeout=15) == 0
        assert "host.stopped" in [e["event"] for e in running.log_events()]
    finally:
        running.process.stop()
