"""The page's files as the app serves them (shared/web): the security headers on every answer, only
the shipped flat files, and no inline script or style in the HTML (the CSP would block them); the
API's refusal of state changes a browser sends from another site (the page's session is a cookie)."""

from __future__ import annotations

import json
import re

import azure.functions as func
import pytest

from shared.api.http import cross_site
from shared.api.records import revoke_request
from shared.web import CONTENT_SECURITY_POLICY, STATIC_DIR, serve


def get(file: str | None) -> func.HttpResponse:
    params = {"file": file} if file is not None else {}
    return serve(func.HttpRequest("GET", "http://h/api/ui", body=b"", route_params=params))


def test_the_index_and_its_files_carry_a_strict_policy() -> None:
    for name, kind in ((None, "text/html"), ("app.js", "text/javascript"), ("app.css", "text/css")):
        answer = get(name)
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith(kind)
        assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert (
        "default-src 'self'" in CONTENT_SECURITY_POLICY
        and "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    )
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY and "unsafe-eval" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize(
    "name", ["../function_app.py", "..%2Fhost.json", "__init__.py", "APP.JS", ".env", "x.html"]
)
def test_anything_but_a_shipped_file_is_a_404(name: str) -> None:
    answer = get(name)
    assert answer.status_code == 404
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_the_page_has_no_inline_code_and_nothing_from_elsewhere() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline <script>"
    assert "<style" not in html and " style=" not in html and not re.search(r"\son[a-z]+=", html)
    for text in (path.read_text() for path in STATIC_DIR.iterdir()):
        assert not re.search(r"https?://(?!127\.0\.0\.1)", text.replace("http://www.w3.org/2000/svg", "")), (
            "every asset ships with the app: no CDN, no external URL"
        )
    assert ".innerHTML" not in (STATIC_DIR / "app.js").read_text(), "API text goes in as textContent"


@pytest.mark.parametrize(
    ("method", "headers", "refused"),
    [
        (
            "POST",
            {"Host": "app.example", "Sec-Fetch-Site": "same-origin", "Origin": "https://front.example"},
            False,
        ),
        ("POST", {"Host": "app.example", "Sec-Fetch-Site": "cross-site"}, True),
        ("DELETE", {"Host": "app.example", "Sec-Fetch-Site": "same-site"}, True),
        ("PUT", {"Host": "app.example", "Origin": "https://app.example"}, False),
        ("PUT", {"Host": "app.example", "Origin": "https://evil.example"}, True),
        ("POST", {"Host": "app.example", "Origin": "null"}, True),
        ("POST", {"Host": "app.example"}, False),  # the CLI, SDKs, scripts: no browser headers
        ("GET", {"Host": "app.example", "Sec-Fetch-Site": "cross-site"}, False),
    ],
)
def test_the_api_refuses_state_changes_a_browser_sends_from_another_site(
    method: str, headers: dict[str, str], refused: bool
) -> None:
    assert cross_site(method, headers) is refused


def test_a_cross_site_post_is_a_403_before_anything_runs() -> None:
    request = func.HttpRequest(
        "POST", "http://app.example/api/requests/x", body=b"{}", headers={"Origin": "https://evil.example"}
    )
    answer = revoke_request(request, services=object())  # type: ignore[arg-type] - never reached
    assert answer.status_code == 403
    assert json.loads(answer.get_body())["error"] == {
        "code": "CrossSiteRequestRefused",
        "message": "a browser sent this request from another site; state changes come only from this "
        "app's own page",
        "target": "Origin",
    }
