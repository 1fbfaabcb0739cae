"""devhost's local Easy Auth stand-in (devhost/easyauth.py) on the real local stack, without a
browser: sign in through the issuer's authorization code + PKCE flow, /.auth/me, the session cookie
reaching the app as the user (the app's own JWT validation), cross-site refusal, sign-out."""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from localrig.devusers import ALICE
from localrig.stack import LocalAuth, Stack, start_stack


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)

    def cookies(self) -> dict[str, str]:
        """Set-Cookie lines by cookie name."""
        return {line.split("=", 1)[0]: line for line in self.headers.get_all("Set-Cookie") or []}


def send(
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    ca: str | None = None,
) -> Reply:
    """One request, redirects not followed, no cookie jar: the test carries cookies by hand; `ca`
    verifies an https server (the issuer)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.netloc, context=ssl.create_default_context(cafile=ca), timeout=30
        )
    else:
        connection = http.client.HTTPConnection(parts.netloc, timeout=30)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    connection.request(method, path, body=body, headers=headers or {})
    answer = connection.getresponse()
    reply = Reply(answer.status, answer.headers, answer.read())
    connection.close()
    return reply


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(tmp_path_factory.mktemp("easyauth-stack")) as running:
        yield running


def cookie_value(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


def sign_in(stack: Stack, redirect: str = "/api/ui/") -> tuple[str, Reply]:
    """The browser's hops, by hand: /.auth/login/aad -> the issuer's picker (POST alice) -> callback.
    Returns the session cookie's value and the callback's answer."""
    login = send(f"{stack.host_url}/.auth/login/aad?post_login_redirect_uri={urllib.parse.quote(redirect)}")
    assert login.status == 302
    authorize = login.headers["Location"]
    assert authorize.startswith(stack.issuer.authority + "/oauth2/v2.0/authorize?")  # type: ignore[union-attr]
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize).query))
    assert query["code_challenge_method"] == "S256" and query["code_challenge"] and query["state"]
    assert query["redirect_uri"] == f"{stack.host_url}/.auth/login/aad/callback"
    binding = login.cookies()["AppServiceAuthLogin"]
    assert "HttpOnly" in binding and "SameSite=Lax" in binding
    picked = send(
        authorize.split("?")[0],
        "POST",
        {"Content-Type": "application/x-www-form-urlencoded"},
        urllib.parse.urlencode({**query, "username": ALICE.name}).encode(),
        ca=str(stack.issuer.ca_file),  # type: ignore[union-attr]
    )
    assert picked.status == 302
    callback = picked.headers["Location"]
    assert callback.startswith(f"{stack.host_url}/.auth/login/aad/callback?")
    done = send(callback, headers={"Cookie": f"AppServiceAuthLogin={cookie_value(binding)}"})
    assert done.status == 302, done.body
    session = done.cookies()["AppServiceAuthSession"]
    assert "HttpOnly" in session and "SameSite=Lax" in session and "Path=/" in session
    # The code is redeemed once: replaying the callback signs nobody in.
    again = send(callback, headers={"Cookie": f"AppServiceAuthLogin={cookie_value(binding)}"})
    assert again.status == 400 and "AppServiceAuthSession" not in again.cookies()
    return cookie_value(session), done


def test_sign_in_me_api_and_sign_out(stack: Stack) -> None:
    assert send(f"{stack.host_url}/.auth/me").status == 401
    session, done = sign_in(stack)
    assert done.headers["Location"] == "/api/ui/"
    cookie = {"Cookie": f"AppServiceAuthSession={session}"}

    me = send(f"{stack.host_url}/.auth/me", headers=cookie)
    assert me.status == 200
    [identity] = me.json()  # type: ignore[misc]
    assert identity["provider_name"] == "aad" and identity["user_id"] == ALICE.username
    assert {"typ": "oid", "val": ALICE.object_id} in identity["user_claims"]
    assert "access_token" not in identity  # page script never sees a token

    # The session reaches the app as a bearer token the app validates itself (JWT mode).
    app_me = send(f"{stack.api_url}/me", headers=cookie)
    assert app_me.status == 200
    assert app_me.json()["objectId"] == ALICE.object_id  # type: ignore[index]
    assert app_me.json()["authentication"] == "jwt"  # type: ignore[index]

    logout = send(f"{stack.host_url}/.auth/logout", headers=cookie)
    assert logout.status == 302 and logout.headers["Location"] == "/api/ui/"
    assert "Max-Age=0" in logout.cookies()["AppServiceAuthSession"]
    assert send(f"{stack.host_url}/.auth/me", headers=cookie).status == 401
    assert send(f"{stack.api_url}/me", headers=cookie).status == 401


def test_cross_site_state_changes_with_the_cookie_are_refused(stack: Stack) -> None:
    session, _ = sign_in(stack)
    cookie = {"Cookie": f"AppServiceAuthSession={session}"}
    revoke = f"{stack.api_url}/requests/00000000-0000-4000-8000-00000000abcd"
    for refused in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {},  # neither Origin nor Sec-Fetch-Site: not provably this page
    ):
        answer = send(revoke, "DELETE", {**cookie, **refused})
        assert answer.status == 403, refused
        assert answer.json()["error"]["code"] == "CrossSiteRequestRefused"  # type: ignore[index]
    # From the page's own origin the call reaches the app (which knows no such request).
    same = send(revoke, "DELETE", {**cookie, "Origin": stack.host_url})
    assert same.status == 404, same.body
    # Reading is not state-changing: no Origin needed.
    assert send(f"{stack.api_url}/me", headers=cookie).status == 200
    # The app refuses too (in Azure there is no stand-in, and Easy Auth's cookie may be SameSite=None):
    # a browser's cross-site DELETE is refused whatever authenticates it; the CLI sends no Origin.
    bearer = stack.headers_for(ALICE)
    app_refusal = send(revoke, "DELETE", {**bearer, "Origin": "http://evil.example"})
    assert app_refusal.status == 403 and b"CrossSiteRequestRefused" in app_refusal.body
    assert send(revoke, "DELETE", bearer).status == 404


def test_the_callback_needs_the_browser_that_started_and_redirects_stay_on_this_host(stack: Stack) -> None:
    login = send(f"{stack.host_url}/.auth/login/aad?post_login_redirect_uri=https://evil.example/")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(login.headers["Location"]).query))
    picked = send(
        login.headers["Location"].split("?")[0],
        "POST",
        {"Content-Type": "application/x-www-form-urlencoded"},
        urllib.parse.urlencode({**query, "username": ALICE.name}).encode(),
        ca=str(stack.issuer.ca_file),  # type: ignore[union-attr]
    )
    # Another browser (no login cookie) cannot finish this sign-in (login CSRF).
    stolen = send(picked.headers["Location"])
    assert stolen.status == 400 and b"did not start" in stolen.body
    # An off-site target is replaced by the page.
    _, done = sign_in(stack, redirect="//evil.example/x")
    assert done.headers["Location"] == "/api/ui/"
    assert send(f"{stack.host_url}/.auth/login/aad/callback?state=nope&code=x").status == 400


def test_in_headers_mode_the_session_reaches_the_app_as_easy_auths_principal_headers(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with start_stack(tmp_path_factory.mktemp("easyauth-headers"), auth=LocalAuth.HEADERS) as headers_stack:
        session, _ = sign_in(headers_stack)
        forged = {"X-MS-CLIENT-PRINCIPAL-ID": "e0e00000-0000-4000-8000-000000000004"}
        me = send(
            f"{headers_stack.api_url}/me", headers={"Cookie": f"AppServiceAuthSession={session}", **forged}
        )
        assert me.status == 200
        assert me.json()["objectId"] == ALICE.object_id  # type: ignore[index]
        assert me.json()["authentication"] == "easyauth"  # type: ignore[index]
