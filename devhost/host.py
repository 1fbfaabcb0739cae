"""The host: settings, indexing, then the HTTP server, queue listeners and timers."""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devhost.config import HostConfig, load_host_config
from devhost.easyauth import EasyAuth, EasyAuthOptions
from devhost.functions import (
    IN_FLIGHT,
    Function,
    HttpFunction,
    IndexingError,
    QueueFunction,
    TimerFunction,
    index_functions,
    load_app,
)
from devhost.http_server import ADMIN_PREFIX, HttpHost, RouteTable
from devhost.logs import log_event
from devhost.queues import QueueListener
from devhost.timers import TimerRunner


@dataclass
class HostOptions:
    app: str
    app_dir: Path
    port: int
    host_json: Path | None
    easy_auth: EasyAuthOptions | None = None


class Host:
    def __init__(self, options: HostOptions) -> None:
        self.options = options
        self.id = uuid.uuid4().hex[:16]
        self.state = "Default"
        self.started_at = time.monotonic()
        self.stopping = threading.Event()
        self.config: HostConfig = load_host_config(options.host_json)
        self.functions: list[Function] = []
        self.http: HttpHost | None = None
        self._http_thread: threading.Thread | None = None
        self._listeners: list[QueueListener] = []
        self._timers: list[TimerRunner] = []

    def start(self) -> None:
        self.state = "Initialized"
        app = load_app(self.options.app, self.options.app_dir)
        self.functions = index_functions(app, self.options.app_dir)
        http_functions = [f for f in self.functions if isinstance(f, HttpFunction)]
        if not self.config.route_prefix:
            for http_function in http_functions:
                if http_function.route.template.strip("/").lower().startswith(ADMIN_PREFIX):
                    raise IndexingError(
                        f"function {http_function.name}: routes starting with 'admin' are reserved"
                    )
        # Build every listener before serving, so a missing setting fails the start-up.
        self._listeners = [
            QueueListener(f, self.config.queues, self.stopping)
            for f in self.functions
            if isinstance(f, QueueFunction)
        ]
        self._timers = [TimerRunner(f, self.stopping) for f in self.functions if isinstance(f, TimerFunction)]
        for function in self.functions:
            log_event("function.indexed", **describe(function))
        self.http = HttpHost(
            self.options.port,
            RouteTable(http_functions, self.config.route_prefix),
            self._admin,
            EasyAuth(self.options.easy_auth) if self.options.easy_auth is not None else None,
        )
        self._http_thread = threading.Thread(
            target=self.http.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True
        )
        self._http_thread.start()
        for listener in self._listeners:
            listener.start()
        for timer in self._timers:
            timer.start()
        self.state = "Running"
        log_event(
            "host.started",
            port=self.options.port,
            route_prefix=self.config.route_prefix,
            functions=len(self.functions),
            pid=os.getpid(),
            easy_auth=self.options.easy_auth.forward if self.options.easy_auth else "off",
        )

    def stop(self, grace: float = 10.0) -> bool:
        """Stop taking work, give running invocations up to `grace` seconds; False if some remain."""
        self.state = "Stopping"
        log_event("host.stopping", in_flight=IN_FLIGHT.count)
        self.stopping.set()
        if self.http is not None:
            self.http.stopping.set()
            self.http.shutdown()
        deadline = time.monotonic() + grace
        for runner in [*self._listeners, *self._timers]:
            runner.join(max(0.0, deadline - time.monotonic()))  # type: ignore[attr-defined]
        finished = IN_FLIGHT.wait_idle(max(0.0, deadline - time.monotonic()))
        if self.http is not None:
            self.http.server_close()
        self.state = "Stopped"
        log_event("host.stopped", abandoned_invocations=0 if finished else IN_FLIGHT.count)
        return finished

    def _admin(self, method: str, path: str) -> tuple[int, Any] | None:
        route = path.strip("/").lower()
        if method == "POST" and route.startswith("admin/functions/"):
            return self._run_now(route.removeprefix("admin/functions/"))
        if method not in {"GET", "HEAD"}:
            return None
        if route == "admin/host/status":
            return 200, {
                "id": self.id,
                "state": self.state,
                "version": "devhost",
                "processUptime": round((time.monotonic() - self.started_at) * 1000),
            }
        if route == "admin/functions":
            return 200, [describe(f) for f in self.functions]
        return None

    def _run_now(self, name: str) -> tuple[int, Any]:
        """`POST /admin/functions/{name}`: the host's way to run a non-HTTP function once, now (202,
        as in Azure). devhost runs timer functions this way; a queue function's input is a message, so
        put one on its queue instead."""
        function = next((f for f in self.functions if f.name.lower() == name), None)
        if function is None:
            return 404, {"error": f"no function named {name!r}"}
        runner = next((t for t in self._timers if t.function is function), None)
        if runner is None:
            return 400, {
                "error": f"{function.name} is a {function.trigger_type} function: "
                "devhost runs timer functions on demand only"
            }
        runner.run_now()
        return 202, None


def describe(function: Function) -> dict[str, Any]:
    info: dict[str, Any] = {"function": function.name, "trigger": function.trigger_type}
    if isinstance(function, HttpFunction):
        info.update(route=function.route.template, methods=sorted(function.methods))
        info["auth_level"] = function.auth_level
    elif isinstance(function, QueueFunction):
        info.update(queue=function.queue_name, connection=function.connection_setting)
    elif isinstance(function, TimerFunction) and function.schedule is not None:
        info.update(schedule=function.schedule.expression, run_on_startup=function.run_on_startup)
    return info
