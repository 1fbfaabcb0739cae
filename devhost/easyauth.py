"""A local stand-in for App Service Authentication (Easy Auth) in front of the app, so the web page
signs in locally the way it does in Azure: a browser session cookie, no token in page script.

Only the local stack turns it on (`python -m devhost --easy-auth-authority ...`, set by
`localrig.stack.start_stack`); without that flag devhost behaves as before. What it does, as Easy
Auth does for a browser:

- `GET /.auth/login/aad[?post_login_redirect_uri=/path]`: redirect to the OpenID Connect issuer's
  authorize endpoint (authorization code + PKCE S256, `state`, `nonce`; the local issuer shows its
  dev-user picker). A short-lived login cookie binds the answer to the browser that asked.
- `GET /.auth/login/aad/callback?code=...&state=...`: redeem the code at the token endpoint (TLS,
  the issuer's CA), keep the tokens server-side, set the session cookie `AppServiceAuthSession`
  (HttpOnly, SameSite=Lax, Path=/) and redirect to the page asked for (a path on this host only).
- `GET /.auth/me`: Easy Auth's `[{provider_name, user_id, user_claims, expires_on}]`, 401 without a
  session. Unlike the token store, no token is included: the page never needs one.
- `GET /.auth/logout[?post_logout_redirect_uri=/path]`: forget the session, expire the cookie.
- Any other request carrying a live session (and no `Authorization` of its own): the session's access
  token is sent on as `Authorization: Bearer` (forward mode `bearer`: the app's own JWT validation
  runs) or, in forward mode `headers`, the `X-MS-CLIENT-PRINCIPAL*` headers Easy Auth sets (the
  client's own copies are dropped). The access token is refreshed with the refresh token when it has
  less than a minute left.
- Cross-site guard: a state-changing request (not GET/HEAD/OPTIONS) carrying a session cookie must
  come from this origin (`Origin` equal to the host's, or without Origin `Sec-Fetch-Site:
  same-origin`); otherwise 403 `CrossSiteRequestRefused` and the app is not called. SameSite=Lax
  already keeps the cookie off cross-site POSTs in browsers; this holds for those that do not.

Sessions live in memory: a restart signs everyone out. Local development only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any

SESSION_COOKIE = "AppServiceAuthSession"
LOGIN_COOKIE = "AppServiceAuthLogin"
LOGIN_PREFIX = "/.auth/"
CALLBACK_PATH = "/.auth/login/aad/callback"
# A login must come back from the issuer within this time.
LOGIN_SECONDS = 600
# Session lifetime (Easy Auth's default cookie expiration is 8 hours).
SESSION_SECONDS = 8 * 3600
REFRESH_MARGIN_SECONDS = 60
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORWARD_MODES = ("bearer", "headers")
_OBJECT_ID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"

Answer = tuple[int, list[tuple[str, str]], bytes]


@dataclass(frozen=True)
class EasyAuthOptions:
    authority: str  # e.g. https://127.0.0.1:8444/<tenant>: Entra ID's v2 endpoints below it
    client_id: str
    scope: str  # e.g. "openid profile offline_access api://portcullis-local/.default"
    ca_bundle: str | None = None
    forward: str = "bearer"

    @property
    def authorize_endpoint(self) -> str:
        return f"{self.authority.rstrip('/')}/oauth2/v2.0/authorize"

    @property
    def token_endpoint(self) -> str:
        return f"{self.authority.rstrip('/')}/oauth2/v2.0/token"


@dataclass
class _Login:
    verifier: str
    nonce: str
    binding: str
    redirect: str
    started: float


@dataclass
class _Session:
    access_token: str
    refresh_token: str | None
    expires_at: float
    claims: dict[str, Any]
    created: float = field(default_factory=time.time)


class EasyAuth:
    def __init__(self, options: EasyAuthOptions) -> None:
        if options.forward not in FORWARD_MODES:
            raise ValueError(
                f"easy auth forward mode must be one of {FORWARD_MODES}, got {options.forward!r}"
            )
        self.options = options
        self._logins: dict[str, _Login] = {}
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        self._tls = ssl.create_default_context(cafile=options.ca_bundle) if options.ca_bundle else None

    # ---- /.auth/* ----

    def handle(self, method: str, path: str, query: str, headers: dict[str, str], origin: str) -> Answer:
        """Answer a request under /.auth/ (404 for anything Easy Auth does not serve here)."""
        params = dict(urllib.parse.parse_qsl(query))
        route = path.rstrip("/").lower()
        if method not in SAFE_METHODS:
            return _json(405, {"error": "use GET"})
        if route == "/.auth/login/aad":
            return self._login(params, origin)
        if route == CALLBACK_PATH:
            return self._callback(params, headers)
        if route == "/.auth/me":
            session = self._session(headers)
            if session is None:
                return _json(401, {"error": "not signed in", "login": "/.auth/login/aad"})
            return _json(200, [self._me(session)])
        if route == "/.auth/logout":
            session_id = _cookie(headers, SESSION_COOKIE)
            if session_id:
                with self._lock:
                    self._sessions.pop(session_id, None)
            target = _local_path(params.get("post_logout_redirect_uri"))
            return 302, [("Location", target), ("Set-Cookie", _expire(SESSION_COOKIE))], b""
        return _json(404, {"error": "not found"})

    def _login(self, params: dict[str, str], origin: str) -> Answer:
        state, verifier, nonce, binding = (secrets.token_urlsafe(32) for _ in range(4))
        now = time.time()
        with self._lock:
            self._logins = {k: v for k, v in self._logins.items() if now - v.started < LOGIN_SECONDS}
            self._logins[state] = _Login(
                verifier, nonce, binding, _local_path(params.get("post_login_redirect_uri")), now
            )
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        query = urllib.parse.urlencode(
            {
                "client_id": self.options.client_id,
                "response_type": "code",
                "redirect_uri": origin + CALLBACK_PATH,
                "response_mode": "query",
                "scope": self.options.scope,
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        cookie = _cookie_header(LOGIN_COOKIE, binding, path=CALLBACK_PATH, max_age=LOGIN_SECONDS)
        return 302, [("Location", f"{self.options.authorize_endpoint}?{query}"), ("Set-Cookie", cookie)], b""

    def _callback(self, params: dict[str, str], headers: dict[str, str]) -> Answer:
        if "error" in params:
            return _text(401, f"sign-in failed: {params.get('error')}: {params.get('error_description', '')}")
        with self._lock:
            login = self._logins.pop(params.get("state", ""), None)
        if login is None or time.time() - login.started > LOGIN_SECONDS:
            return _text(400, "sign-in failed: unknown or expired state; start again at /.auth/login/aad")
        if not secrets.compare_digest(_cookie(headers, LOGIN_COOKIE) or "", login.binding):
            return _text(400, "sign-in failed: this browser did not start the sign-in (login cookie missing)")
        origin = _origin_of(headers)
        status, tokens = self._token(
            {
                "grant_type": "authorization_code",
                "client_id": self.options.client_id,
                "code": params.get("code", ""),
                "redirect_uri": origin + CALLBACK_PATH,
                "code_verifier": login.verifier,
                "scope": self.options.scope,
            }
        )
        if status != 200 or "access_token" not in tokens:
            return _text(
                401, f"sign-in failed: the issuer answered {status}: {tokens.get('error_description')}"
            )
        # The id token came straight from the token endpoint over verified TLS (OpenID Connect Core
        # 3.1.3.7 allows trusting it without a signature check); its nonce must be ours.
        claims = _jwt_claims(str(tokens.get("id_token") or tokens["access_token"]))
        if tokens.get("id_token") and claims.get("nonce") != login.nonce:
            return _text(401, "sign-in failed: the id token's nonce is not this sign-in's")
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[session_id] = _Session(
                str(tokens["access_token"]),
                tokens.get("refresh_token"),
                time.time() + float(tokens.get("expires_in", 3600)),
                claims,
            )
        cookie = _cookie_header(SESSION_COOKIE, session_id, path="/", max_age=SESSION_SECONDS)
        return (
            302,
            [
                ("Location", login.redirect),
                ("Set-Cookie", cookie),
                ("Set-Cookie", _expire(LOGIN_COOKIE, CALLBACK_PATH)),
            ],
            b"",
        )

    def _me(self, session: _Session) -> dict[str, Any]:
        claims = [
            {"typ": name, "val": value}
            for name, values in session.claims.items()
            for value in (values if isinstance(values, list) else [values])
            if isinstance(value, str | int)
        ]
        return {
            "provider_name": "aad",
            "user_id": session.claims.get("preferred_username") or session.claims.get("oid"),
            "user_claims": claims,
            "expires_on": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(session.expires_at)),
        }

    # ---- every other request ----

    def forward(self, method: str, headers: dict[str, str]) -> Answer | None:
        """Rewrite `headers` (lower-case names) for the app; an Answer to send instead of calling it."""
        session_id = _cookie(headers, SESSION_COOKIE)
        if not session_id:
            return None
        if method not in SAFE_METHODS and not _same_origin(headers):
            return _json(
                403,
                {
                    "error": {
                        "code": "CrossSiteRequestRefused",
                        "message": "a state-changing request with the session cookie must come from this "
                        "origin (Origin or Sec-Fetch-Site)",
                        "target": "Origin",
                    }
                },
            )
        if "authorization" in headers:
            return None
        session = self._session(headers)
        if session is None:
            return None
        if self.options.forward == "bearer":
            headers["authorization"] = f"Bearer {session.access_token}"
            return None
        for name in [n for n in headers if n.startswith("x-ms-client-principal")]:
            del headers[name]
        headers.update({k.lower(): v for k, v in _principal_headers(session.claims).items()})
        return None

    def _session(self, headers: dict[str, str]) -> _Session | None:
        session_id = _cookie(headers, SESSION_COOKIE)
        with self._lock:
            session = self._sessions.get(session_id or "")
            if session is not None and time.time() - session.created > SESSION_SECONDS:
                del self._sessions[session_id or ""]
                session = None
        if session is None:
            return None
        if session.expires_at - time.time() < REFRESH_MARGIN_SECONDS:
            if not session.refresh_token:
                return None
            status, tokens = self._token(
                {
                    "grant_type": "refresh_token",
                    "client_id": self.options.client_id,
                    "refresh_token": session.refresh_token,
                    "scope": self.options.scope,
                }
            )
            if status != 200 or "access_token" not in tokens:
                return None
            session.access_token = str(tokens["access_token"])
            session.refresh_token = tokens.get("refresh_token") or session.refresh_token
            session.expires_at = time.time() + float(tokens.get("expires_in", 3600))
        return session

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        data = urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(self.options.token_endpoint, data=data, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, context=self._tls, timeout=30) as answer:  # noqa: S310
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as error:
            try:
                return error.code, json.load(error)
            except ValueError:
                return error.code, {"error_description": error.reason}
        except (OSError, ValueError) as error:
            return 502, {"error_description": f"token endpoint unreachable: {error}"}


def _principal_headers(claims: dict[str, Any]) -> dict[str, str]:
    """The headers Easy Auth sets for an Entra ID user: the claims as X-MS-CLIENT-PRINCIPAL."""
    object_id = str(claims.get("oid", ""))
    name = str(claims.get("preferred_username") or claims.get("name") or "")
    listed = [{"typ": _OBJECT_ID_CLAIM, "val": object_id}]
    for key, value in claims.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                listed.append({"typ": key, "val": item})
    document = {"auth_typ": "aad", "claims": listed, "name_typ": "preferred_username", "role_typ": "roles"}
    return {
        "X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(document).encode()).decode(),
        "X-MS-CLIENT-PRINCIPAL-ID": object_id,
        "X-MS-CLIENT-PRINCIPAL-NAME": name,
        "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
    }


def _same_origin(headers: dict[str, str]) -> bool:
    origin = headers.get("origin")
    if origin:
        return origin == _origin_of(headers)
    return headers.get("sec-fetch-site") == "same-origin"


def _origin_of(headers: dict[str, str]) -> str:
    """This host's origin as the browser addresses it (devhost listens on 127.0.0.1 over http)."""
    return f"http://{headers.get('host', '')}"


def _local_path(value: str | None) -> str:
    """A redirect target on this host only (no scheme, no `//host`, no backslash tricks)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/api/ui/"
    return value


def _cookie(headers: dict[str, str], name: str) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _cookie_header(name: str, value: str, *, path: str, max_age: int) -> str:
    return f"{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax"


def _expire(name: str, path: str = "/") -> str:
    return f"{name}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Lax"


def _jwt_claims(token: str) -> dict[str, Any]:
    try:
        payload = token.split(".")[1]
        document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def _json(status: int, body: Any) -> Answer:
    return (
        status,
        [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
        json.dumps(body).encode(),
    )


def _text(status: int, message: str) -> Answer:
    return (
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")],
        message.encode(),
    )
