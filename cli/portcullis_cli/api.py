"""The app's HTTP API as the CLI calls it: bearer token in, JSON out, ARM's error body turned into
`ApiError` (code, message, target) for the command line to print."""

from __future__ import annotations

from typing import Any

from portcullis_cli import auth
from portcullis_cli import config as cfg

DEFENDER_API_VERSION = "2020-01-01"
TIMEOUT_SECONDS = 60
# `list --mine` reads at most this many pages of 50 (the newest 1000 requests); `list` without
# `--vm` at most this many pages of 100 open grants.
MAX_PAGES = 20


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target

    def __str__(self) -> str:
        where = f" (target: {self.target})" if self.target else ""
        return f"{self.code}: {self.message}{where}"


class Client:
    def __init__(self, config: cfg.Config) -> None:
        import requests

        self.config = config
        self.base = config.api_url
        self._session = requests.Session()

    def call(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
        """The answer's JSON (None for an empty body); ApiError for a 4xx/5xx, NotSignedInError for a 401."""
        import requests

        token = auth.bearer_token(self.config)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        try:
            answer = self._session.request(
                method,
                f"{self.base}/{path.lstrip('/')}",
                json=body,
                params=params,
                headers=headers,
                verify=self.config.verify,
                timeout=TIMEOUT_SECONDS,
            )
        except requests.RequestException as error:
            raise ApiError(0, "Unreachable", f"{self.base} cannot be reached: {error}") from None
        try:
            data = answer.json() if answer.content else None
        except ValueError:
            data = None
        if answer.status_code < 400:
            return data
        found = data.get("error") if isinstance(data, dict) else None
        detail: dict[str, Any] = found if isinstance(found, dict) else {}
        code = str(detail.get("code") or f"HTTP{answer.status_code}")
        message = str(detail.get("message") or answer.text[:300] or answer.reason)
        if answer.status_code == 401:
            raise auth.NotSignedInError(
                f"the app refused the sign-in ({code}: {message}): run `portcullis login`"
            )
        raise ApiError(answer.status_code, code, message, detail.get("target"))

    # ---- the routes the CLI uses ----

    def me(self) -> dict[str, Any]:
        return dict(self.call("GET", "me"))

    def policies(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "policies")["value"])

    def policy(self, policy_id: str) -> dict[str, Any] | None:
        try:
            return dict(self.call("GET", policy_id, params={"api-version": DEFENDER_API_VERSION}))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def put_policy(self, policy_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.call("PUT", policy_id, body, params={"api-version": DEFENDER_API_VERSION}))

    def initiate(self, policy_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.call("POST", f"{policy_id}/initiate", body, params={"api-version": DEFENDER_API_VERSION})
        )

    def request(self, request_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"requests/{request_id}"))

    def revoke(self, request_id: str) -> dict[str, Any]:
        return dict(self.call("DELETE", f"requests/{request_id}"))

    def grants(self, vm_id: str, active: bool = False) -> list[dict[str, Any]]:
        params = {"vm": vm_id, **({"active": "true"} if active else {})}
        return list(self.call("GET", "grants", params=params)["value"])

    def open_grants(self, max_pages: int = MAX_PAGES) -> tuple[list[dict[str, Any]], bool]:
        """Who holds access now on every VM you may see (`GET /api/grants?active=true`): one call per
        page of 100 (`nextLink`), not one per VM; at most `max_pages` pages (the soonest to end).
        Also says whether more were left unread."""
        params: dict[str, str] | None = {"active": "true"}
        found: list[dict[str, Any]] = []
        for _ in range(max_pages):
            answer = self.call("GET", "grants", params=params)
            found += list(answer.get("value", []))
            params = next_params(answer.get("nextLink"))
            if params is None:
                return found, False
        return found, True

    def my_requests(self, active: bool = False, max_pages: int = MAX_PAGES) -> list[dict[str, Any]]:
        """Your own requests on every VM, newest first: one call per page of 50 (`nextLink`), not one
        per VM; at most `max_pages` pages (the newest requests)."""
        params: dict[str, str] | None = {"requester": "me", **({"active": "true"} if active else {})}
        found: list[dict[str, Any]] = []
        for _ in range(max_pages):
            answer = self.call("GET", "requests", params=params)
            found += list(answer.get("value", []))
            params = next_params(answer.get("nextLink"))
            if params is None:
                break
        return found

    def compliance(self) -> dict[str, Any]:
        return dict(self.call("GET", "compliance"))

    # ---- approvals and extension (issue 13's server side) ----

    def pending_approvals(self) -> list[dict[str, Any]]:
        answer = self.call("GET", "requests", params={"status": "Pending", "approver": "me"})
        return list(answer.get("value", []) if isinstance(answer, dict) else answer or [])

    def reviews_awaited(self) -> list[dict[str, Any]]:
        """Break-glass requests waiting for your review (`status=ReviewRequired&approver=me`)."""
        answer = self.call("GET", "requests", params={"status": "ReviewRequired", "approver": "me"})
        return list(answer.get("value", []) if isinstance(answer, dict) else answer or [])

    def decide(self, request_id: str, decision: str, comment: str | None) -> Any:
        return self.call("POST", f"requests/{request_id}/{decision}", {"comment": comment or ""})

    def extend(self, request_id: str, end_time_utc: str) -> Any:
        return self.call("POST", f"requests/{request_id}/extend", {"endTimeUtc": end_time_utc})


def next_params(next_link: str | None) -> dict[str, str] | None:
    """The query of the API's `nextLink` (relative, `/api/requests?...`), to ask for the next page
    with; None when there is none. Pure."""
    if not next_link:
        return None
    from urllib.parse import parse_qsl, urlsplit

    return dict(parse_qsl(urlsplit(next_link).query))
