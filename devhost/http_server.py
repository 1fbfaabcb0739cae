"""HTTP triggers: route, build a real func.HttpRequest, turn the function's answer into HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from devhost.easyauth import LOGIN_PREFIX, EasyAuth
from devhost.functions import ALL_METHODS, IN_FLIGHT, HttpFunction, invoke
from devhost.logs import log_event
from devhost.routing import split_path

ADMIN_PREFIX = "admin"


class RouteTable:
    def __init__(self, functions: list[HttpFunction], route_prefix: str) -> None:
        self.prefix = split_path(route_prefix)
        # Most specific template first, as ASP.NET routing orders candidates.
        self.functions = sorted(functions, key=lambda f: f.route.precedence)

    def resolve(self, method: str, path: str) -> tuple[HttpFunction | None, dict[str, str], set[str]]:
        """(function, route params, allowed methods); no function and no methods means 404."""
        segments = split_path(path)
        if [s.lower() for s in segments[: len(self.prefix)]] != [p.lower() for p in self.prefix]:
            return None, {}, set()
        segments = segments[len(self.prefix) :]
        allowed: set[str] = set()
        for function in self.functions:
            values = function.route.match(segments)
            if values is None:
                continue
            if method in function.methods:
                return function, values, set()
            allowed |= function.methods
        return None, {}, allowed


class HttpHost(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        port: int,
        routes: RouteTable,
        admin: Callable[[str, str], tuple[int, Any] | None],
        easy_auth: EasyAuth | None = None,
    ) -> None:
        self.routes = routes
        self.admin = admin
        # The local Easy Auth stand-in (devhost/easyauth.py), only when the local stack asks for it.
        self.easy_auth = easy_auth
        self.stopping = threading.Event()
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HttpHost

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are logged as structured events instead."""

    def _dispatch(self) -> None:
        started = time.monotonic()
        status = 500
        # Counted until the answer is written, so a graceful stop does not cut it off.
        with IN_FLIGHT:
            try:
                status = self._answer()
            finally:
                log_event(
                    "http.request",
                    method=self.command,
                    path=urlsplit(self.path).path,
                    status=status,
                    duration_ms=round((time.monotonic() - started) * 1000, 1),
                )

    def _answer(self) -> int:
        if self.server.stopping.is_set():
            self.close_connection = True
            return self._send(503, {"Content-Type": "text/plain"}, b"host is stopping")
        split = urlsplit(self.path)
        try:
            body = self._read_body()
        except ValueError as error:
            self.close_connection = True
            return self._send(400, {"Content-Type": "text/plain"}, str(error).encode())
        easy_auth = self.server.easy_auth
        headers = self._joined_headers()
        if easy_auth is not None:
            if split.path.lower().startswith(LOGIN_PREFIX):
                origin = f"http://{self.headers.get('Host') or self._local_authority()}"
                return self._send(*easy_auth.handle(self.command, split.path, split.query, headers, origin))
            refusal = easy_auth.forward(self.command, headers)
            if refusal is not None:
                return self._send(*refusal)
        segments = split_path(split.path)
        if segments[:1] and segments[0].lower() == ADMIN_PREFIX:
            admin = self.server.admin(self.command, split.path)
            if admin is not None:
                admin_status, document = admin
                payload = b"" if document is None else json.dumps(document).encode()
                return self._send(admin_status, {"Content-Type": "application/json"}, payload)
        function, route_params, allowed = self.server.routes.resolve(self.command, split.path)
        if function is None:
            if allowed:
                headers = {"Allow": ", ".join(sorted(allowed)), "Content-Type": "text/plain"}
                return self._send(405, headers, b"method not allowed")
            return self._send(404, {"Content-Type": "text/plain"}, b"not found")
        request = func.HttpRequest(
            method=self.command,
            url=f"http://{self.headers.get('Host') or self._local_authority()}{self.path}",
            headers=headers,
            params=_query(split.query),
            route_params=route_params,
            body=body,
        )
        outcome = invoke(function, request, method=self.command, path=split.path)
        if outcome.error is not None:
            return self._send(
                500,
                {"Content-Type": "application/json"},
                json.dumps(
                    {
                        "error": {
                            "code": "InternalServerError",
                            "message": "The function failed; see the host log.",
                            "invocationId": outcome.invocation_id,
                        }
                    }
                ).encode(),
            )
        return self._send_result(function, outcome.value)

    def _send_result(self, function: HttpFunction, value: Any) -> int:
        if isinstance(value, func.HttpResponse):
            headers = list(value.headers.items())
            if not any(name.lower() == "content-type" for name, _ in headers):
                mimetype = value.mimetype
                content_type = (
                    f"{mimetype}; charset={value.charset}" if mimetype.startswith("text/") else mimetype
                )
                headers.append(("Content-Type", content_type))
            return self._send(value.status_code, headers, value.get_body())
        if isinstance(value, str):
            return self._send(200, {"Content-Type": "text/plain; charset=utf-8"}, value.encode())
        if isinstance(value, bytes | bytearray):
            return self._send(200, {"Content-Type": "application/octet-stream"}, bytes(value))
        if value is None:
            return self._send(204, {}, b"")
        log_event(
            "http.bad_return",
            level=40,
            function=function.name,
            returned=type(value).__name__,
        )
        return self._send(500, {"Content-Type": "text/plain"}, b"function returned no HttpResponse")

    def _send(self, status: int, headers: Any, body: bytes) -> int:
        items = headers.items() if isinstance(headers, dict) else headers
        self.send_response(status)
        for name, value in items:
            if name.lower() in {"content-length", "transfer-encoding", "connection"}:
                continue
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)
        return status

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError as error:
                    raise ValueError("malformed chunked body") from error
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError as error:
            raise ValueError("Content-Length is not a number") from error
        return self.rfile.read(length) if length > 0 else b""

    def _joined_headers(self) -> dict[str, str]:
        """Repeated headers joined with commas, as the host hands them to the worker."""
        joined: dict[str, str] = {}
        for name, value in self.headers.items():
            key = str(name).lower()
            joined[key] = f"{joined[key]},{value}" if key in joined else value
        # As App Service's front end does: append the socket peer, which the client cannot forge;
        # the app trusts only this last entry as the caller's address.
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        forwarded = joined.get("x-forwarded-for")
        joined["x-forwarded-for"] = f"{forwarded}, {peer}" if forwarded else peer
        return joined

    def _local_authority(self) -> str:
        return f"127.0.0.1:{self.server.server_port}"


def _query(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        params[name] = f"{params[name]},{value}" if name in params else value
    return params


for _method in ALL_METHODS:
    setattr(_Handler, f"do_{_method}", _Handler._dispatch)
