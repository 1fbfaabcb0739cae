"""A webhook sink for the local stack: receives Portcullis' notifications and keeps them.

- `POST /hooks/<anything>`: a Standard Webhooks delivery; the signature is verified with the sink's
  secret (written here from the spec, independently of shared/notify) and the delivery is kept with
  `verified` true or false; answers 204, or 401 when the signature does not verify.
  `POST /hooks/fail/<status>` is kept too but answered with that status (a failing endpoint).
- `POST /eventgrid/api/events`: Azure Event Grid's publish call for CloudEvents
  (`application/cloudevents-batch+json`, a JSON array, a bearer token), as `EventGridPublisherClient`
  sends it; each event is kept with channel `eventgrid`; 200.
- `GET /received`: everything kept, oldest first; `DELETE /received` forgets it.

Run in-process by `localrig.stack.start_stack` (`Stack.webhook_sink`). For `make demo`:
`stack.webhook_sink.wait_for(request_id, "com.portcullis.grant.opened")`, then
`stack.webhook_sink.print_received(request_id)` prints one line per event and channel.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Standard Webhooks: refuse deliveries whose timestamp is further than this from now (replays).
TOLERANCE_SECONDS = 5 * 60


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, now: float | None = None) -> bool:
    """The Standard Webhooks check: HMAC-SHA256 over "{id}.{timestamp}.{body}" with the secret's key,
    base64, compared against each `v1,` signature; the timestamp within the tolerance."""
    msg_id, stamp, signatures = (
        headers.get(h, "") for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not (msg_id and stamp.isdigit() and signatures):
        return False
    if abs((now if now is not None else time.time()) - int(stamp)) > TOLERANCE_SECONDS:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    ).decode()
    return any(
        version == "v1" and hmac.compare_digest(signature, expected)
        for version, _, signature in (part.partition(",") for part in signatures.split())
    )


class WebhookSink:
    def __init__(self, secret: str | None = None, port: int = 0) -> None:
        self.secret = secret or new_secret()
        self._lock = threading.Lock()
        self._received: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-sink", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/hooks/portcullis"

    @property
    def eventgrid_endpoint(self) -> str:
        return f"{self.url}/eventgrid/api/events"

    def start(self) -> WebhookSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def keep(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._received.append(record)

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._received)

    def clear(self) -> None:
        with self._lock:
            self._received.clear()

    def received_for(self, request_id: str) -> list[dict[str, Any]]:
        """What was received about one request (its events and its grants' events), oldest first."""
        return [
            record
            for record in self.received()
            if f"/requests/{request_id}" in str((record.get("event") or {}).get("subject"))
        ]

    def wait_for(self, request_id: str, event_type: str, timeout: float = 30.0) -> bool:
        """Wait until an event of `event_type` (e.g. `com.portcullis.grant.opened`) about the request
        has arrived; False after `timeout` seconds. Deliveries run on the host's events queue, so
        they arrive a moment after the state change."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(r["event"].get("type") == event_type for r in self.received_for(request_id)):
                return True
            time.sleep(0.2)
        return False

    def print_received(self, request_id: str | None = None) -> None:
        """One line per event received (only those of `request_id` if given): channel, type, subject,
        requester, approvers. For the demo."""
        records = self.received() if request_id is None else self.received_for(request_id)
        for record in records:
            event = record.get("event") or {}
            data = event.get("data") or {}
            requester = (data.get("requester") or {}).get("displayName")
            # A break-glass request names its listed approvers by object id only (no display name).
            approvers = ", ".join(
                str(a.get("displayName") or a.get("objectId") or a) for a in data.get("approvers") or []
            )
            check = (
                "" if record["channel"] == "eventgrid" else (" signed" if record["verified"] else " UNSIGNED")
            )
            print(
                f"  {record['channel']:<9} {event.get('type', '?'):<34} {event.get('subject', '')}"
                f"  requester={requester}" + (f" approvers={approvers}" if approvers else "") + check
            )


def _handler(sink: WebhookSink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _answer(self, status: int, payload: Any = None) -> None:
            body = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _refuse(self, status: int, code: str, message: str) -> None:
            self._answer(status, {"error": {"code": code, "message": message}})

        def do_GET(self) -> None:
            if self.path == "/received":
                return self._answer(200, sink.received())
            return self._answer(404, {"error": "not found"})

        def do_DELETE(self) -> None:
            if self.path == "/received":
                sink.clear()
                return self._answer(204)
            return self._answer(404, {"error": "not found"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?", 1)[0]
            headers = {name.lower(): value for name, value in self.headers.items()}
            if path.startswith("/hooks/"):
                return self._webhook(path, headers, body)
            if path == "/eventgrid/api/events":
                return self._eventgrid(headers, body)
            return self._answer(404, {"error": "not found"})

        def _webhook(self, path: str, headers: dict[str, str], body: bytes) -> None:
            verified = verify(sink.secret, headers, body)
            try:
                event = json.loads(body)
            except ValueError:
                event = None
            sink.keep(
                {
                    "channel": "webhook",
                    "path": path,
                    "verified": verified,
                    "headers": {
                        k: v for k, v in headers.items() if k.startswith("webhook-") or k == "content-type"
                    },
                    "body": body.decode("utf-8", "replace"),
                    "event": event,
                }
            )
            failing = path.removeprefix("/hooks/fail/")
            if failing != path and failing.isdigit():
                return self._answer(int(failing), {"error": "failing on purpose"})
            return self._answer(204 if verified else 401)

        def _eventgrid(self, headers: dict[str, str], body: bytes) -> None:
            if not headers.get("authorization", "").startswith("Bearer ") and "aeg-sas-key" not in headers:
                return self._refuse(401, "Unauthorized", "no credential")
            if not headers.get("content-type", "").startswith("application/cloudevents-batch+json"):
                return self._answer(
                    400, {"error": {"code": "BadRequest", "message": "not a CloudEvents batch"}}
                )
            try:
                events = json.loads(body)
            except ValueError:
                return self._refuse(400, "BadRequest", "not JSON")
            if not isinstance(events, list):
                return self._refuse(400, "BadRequest", "not an array")
            for event in events:
                sink.keep(
                    {
                        "channel": "eventgrid",
                        "path": "/eventgrid/api/events",
                        "verified": None,
                        "event": event,
                    }
                )
            return self._answer(200)

    return Handler


def start_sink(secret: str | None = None, port: int = 0) -> WebhookSink:
    return WebhookSink(secret, port).start()
