"""HTTPS front: one thread per connection (HTTP/1.1 keep-alive), JSON in and out."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from emulator import admin
from emulator.engine import MAX_BODY_BYTES, Call, Engine, Response

log = logging.getLogger("emulator.server")
_READ_LIMIT = 8 * MAX_BODY_BYTES  # read bodies up to this size so the 413 answer arrives cleanly


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PortcullisArmEmulator/1.0"
    engine: Engine  # set on the subclass made by make_server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s", format % args)

    def _serve(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > _READ_LIMIT:
            self._send(
                Response(
                    413,
                    {"error": {"code": "RequestEntityTooLarge", "message": "The request body is too large."}},
                ),
                close=True,
            )
            return
        raw_body = self.rfile.read(length) if length else b""
        call = Call(
            engine=self.engine,
            method=self.command,
            path=unquote(split.path),
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            raw_body=raw_body,
            base_url=f"https://{self.headers.get('Host') or '127.0.0.1'}",
        )
        if call.path.startswith("/_emulator"):
            response = admin.handle(self.engine, call)
        else:
            response = self.engine.handle(call)
        if response.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(response, request_id=call.headers.get("x-ms-client-request-id"))

    def _send(self, response: Response, *, request_id: str | None = None, close: bool = False) -> None:
        if response.null_body:
            payload = b"null"
        elif response.body is None:
            payload = b""
        else:
            payload = json.dumps(response.body, separators=(",", ":")).encode()  # compact, as ARM sends
        self.send_response(response.status)
        if payload:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        self.send_header("x-ms-correlation-request-id", request_id or str(uuid.uuid4()))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _serve  # noqa: N815


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[_Handler], context: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self._context = context

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        # Headers and body go out in separate writes; without this, Nagle + delayed ACK add 40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The TLS handshake happens in the connection's own thread, on first read.
        return self._context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("server.connection_error client=%s", client_address, exc_info=True)


def make_server(engine: Engine, host: str, port: int, cert: Path, key: Path) -> ThreadingHTTPServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    handler = type("Handler", (_Handler,), {"engine": engine})
    return _Server((host, port), handler, context)
