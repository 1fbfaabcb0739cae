"""A minimal OpenID Connect issuer standing in for Microsoft Entra ID: for MSAL (and so for
`az login --service-principal`) against the local stack, and for the dev users of
localrig/devusers.py signing in to the Portcullis API (the CLI's `login --dev-user`, the web page).

`python -m localrig.oidc --port P --data-dir D --ca-dir EMULATOR_DATA_DIR` serves HTTPS with a
certificate signed by the ARM emulator's CA (so one `ca.pem` is trusted for both), an RSA key made at
every start, and Entra ID's endpoints for one tenant, as MSAL uses them:

- `GET /{tenant}/v2.0/.well-known/openid-configuration` (tenant discovery; MSAL's `authority.py`
  reads `authorization_endpoint`, `token_endpoint`, `issuer`), also `/{tenant}/.well-known/...` (v1);
- `GET /{tenant}/discovery/v2.0/keys` (JWKS, `kid` = the key's thumbprint);
- `POST /{tenant}/oauth2/v2.0/token`, Entra ID's v2 token endpoint (form-encoded):
  - `grant_type=client_credentials`, `client_id`, `client_secret`, `scope={resource}/.default` (what
    MSAL's `acquire_token_for_client` sends): an RS256 app token `{aud, iss, iat, nbf, exp, appid,
    azp, appidacr, idtyp: "app", oid, sub, tid, ver}` for a registered audience;
  - `grant_type=password` (resource owner password, public clients only: `client_id` =
    devusers.PUBLIC_CLIENT_ID), `username` (a dev user's name or UPN), `password`
    (devusers.DEV_PASSWORD), `scope=api://portcullis-local/.default` (plus `openid profile
    offline_access` if wanted): an RS256 user token `{aud, iss, iat, nbf, exp, azp, azpacr: "0",
    idtyp: "user", name, oid, preferred_username, scp: "user_impersonation", sub, tid, uti, ver:
    "2.0"}`; with `openid` an `id_token` (aud = the client), with `offline_access` a `refresh_token`;
  - `grant_type=refresh_token`, `client_id`, `refresh_token`, `scope`: fresh tokens for that user
    (refresh tokens are signed by the issuer's key, so they die with the process);
  answered `{token_type, scope?, expires_in, ext_expires_in, access_token, ...}`; refusals are Entra
  ID's `{error, error_description: "AADSTS...", error_codes, timestamp, trace_id, correlation_id}`
  (400 `invalid_grant` AADSTS50126 for a wrong password or an unknown user, 400
  `unauthorized_client` for an unknown client, 401 `invalid_client` for a wrong secret,
  `invalid_scope` for an unknown audience, `unsupported_grant_type`; 400 `invalid_tenant` on
  discovery of another tenant).
- `GET /{tenant}/oauth2/v2.0/authorize` (`client_id` = a public client, `response_type=code`,
  `redirect_uri` on this machine (loopback, any port), `scope`, `state`, `code_challenge` +
  `code_challenge_method=S256` required, `nonce`): a page with one button per dev user (no password:
  local only); the button POSTs back and the browser is redirected to `redirect_uri?code=...&state=...`;
  `grant_type=authorization_code` with `code`, `redirect_uri`, `code_verifier` redeems it once (what
  MSAL's `initiate_auth_code_flow` / `acquire_token_interactive` do);
- CORS: a page on this machine (http or https on 127.0.0.1, localhost or [::1], any port) may call
  every endpoint from the browser, preflight (`OPTIONS`) included, as Entra ID allows single-page
  applications to.

Who may log in and for which audiences are tables: `PRINCIPALS` (service principals), the dev users
of localrig/devusers.py (people), `AUDIENCES` (ARM's two and the app's `api://portcullis-local`). The
ARM emulator accepts any bearer token; it records the caller as the token's `oid`. MSAL's own
username/password flow cannot be used against this issuer: it asks `https://{host}/common/userrealm/`
without the port; send the password grant as a plain form POST (localrig.stack.password_grant).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import logging
import secrets
import signal
import ssl
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from emulator.certs import issue_server_certificate
from localrig.devusers import APP_AUDIENCE, DEV_PASSWORD, DEV_USERS, PUBLIC_CLIENT_ID, DevUser, dev_user
from localrig.processes import ManagedProcess, free_port, port_is_open

log = logging.getLogger("localrig.oidc")

# The emulator answers this tenant for tokens without `tid` (emulator.engine.DEFAULT_TENANT).
TENANT_ID = "00000000-0000-0000-0000-0000000000a1"
TOKEN_LIFETIME_SECONDS = 3599
# Entra ID's refresh tokens last 90 days; a local one outlives any session of the stack (whose key is
# new at every start, so a restart signs everyone out, as a revoked session would).
REFRESH_TOKEN_LIFETIME_SECONDS = 24 * 3600
# An authorization code is good for one redemption within this time (Entra ID: 10 minutes).
CODE_LIFETIME_SECONDS = 600
# The delegated permission a user's token carries for an API (`scp`), as Entra ID names the default one.
USER_SCOPE = "user_impersonation"
# Scopes that ask for OpenID Connect itself, not for an API's token.
OIDC_SCOPES = ("openid", "profile", "offline_access", "email")
# Public clients (no secret) that may sign users in: the CLI's and the web page's (localrig.devusers).
PUBLIC_CLIENTS = frozenset({PUBLIC_CLIENT_ID})
# Browsers on these hosts (any port, http or https) may call discovery, JWKS and the token endpoint.
CORS_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})


@dataclass(frozen=True)
class Principal:
    """Someone who can get a token. `kind` "ServicePrincipal" logs in with client_credentials."""

    client_id: str
    secret: str
    object_id: str
    display_name: str
    kind: str = "ServicePrincipal"
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Audience:
    """A resource tokens can be issued for: the scope `{resource}/.default` names it."""

    resource: str
    aliases: tuple[str, ...] = ()


# A development service principal for `az login --service-principal` against the local stack (local
# only: it protects nothing). Its object id is the emulator's default caller (StaticTokenCredential).
DEV_SERVICE_PRINCIPAL = Principal(
    client_id="00000000-0000-0000-0000-0000000000c1",
    secret="portcullis-local-secret",  # noqa: S106 - a local development credential, printed by `make up`
    object_id="00000000-0000-0000-0000-00000000e001",
    display_name="portcullis-local-cli",
)
PRINCIPALS: dict[str, Principal] = {DEV_SERVICE_PRINCIPAL.client_id: DEV_SERVICE_PRINCIPAL}
# ARM's audiences (`authentication.audiences` of the emulator's /metadata/endpoints) and the
# Portcullis API's own (what the function app in JWT mode accepts, PORTCULLIS_JWT_AUDIENCE).
AUDIENCES: list[Audience] = [
    Audience("https://management.core.windows.net/", aliases=("https://management.core.windows.net",)),
    Audience("https://management.azure.com/", aliases=("https://management.azure.com",)),
    Audience(APP_AUDIENCE, aliases=(APP_AUDIENCE + "/",)),
]


def audience_for(scope: str) -> str | None:
    """The registered resource a v2 scope (`{resource}/.default`, space-separated list) asks for."""
    for item in scope.split():
        resource = item[: -len(".default")] if item.endswith(".default") else item
        if resource.endswith("//"):
            resource = resource[:-1]  # "https://management.core.windows.net//.default" names ".../"
        for audience in AUDIENCES:
            if resource in (audience.resource, *audience.aliases):
                return audience.resource
    return None


def _b64(data: int) -> str:
    raw = data.to_bytes((data.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True)
class Authorization:
    """An authorization code not yet redeemed: who signed in, for which client and redirect, what
    they asked for and the PKCE challenge the redemption must answer."""

    user: DevUser
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    nonce: str | None
    expires_at: float


# What the authorize endpoint answers a browser: (status, headers, HTML body).
Page = tuple[int, dict[str, str], str]


@dataclass
class Issuer:
    """The issuer's state: its key, its tenant, its base URL, the authorization codes not yet used."""

    base_url: str
    tenant: str = TENANT_ID
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    codes: dict[str, Authorization] = field(default_factory=dict)
    codes_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def kid(self) -> str:
        numbers = self.key.public_key().public_numbers()
        return hashlib.sha256(f"{numbers.n}:{numbers.e}".encode()).hexdigest()[:40]

    def issuer(self) -> str:
        return f"{self.base_url}/{self.tenant}/v2.0"

    def openid_configuration(self) -> dict[str, Any]:
        base = f"{self.base_url}/{self.tenant}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{self.base_url}/{self.tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "grant_types_supported": [
                "authorization_code",
                "refresh_token",
                "password",
                "client_credentials",
            ],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": self.issuer(),
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.base_url}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "oid", "tid", "ver"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "portcullis.localhost",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        }

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        return {
            "keys": [
                {"kty": "RSA", "use": "sig", "kid": self.kid, "n": _b64(numbers.n), "e": _b64(numbers.e)}
            ]
        }

    def access_token(self, principal: Principal, audience: str) -> str:
        now = int(time.time())
        claims = {
            "aud": audience,
            "iss": self.issuer(),
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "appid": principal.client_id,
            "azp": principal.client_id,
            "appidacr": "1",
            "idtyp": "app",
            "oid": principal.object_id,
            "sub": principal.object_id,
            "tid": self.tenant,
            "roles": list(principal.roles),
            "uti": uuid.uuid4().hex[:22],
            "ver": "2.0",
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def user_access_token(self, user: DevUser, audience: str, client_id: str) -> str:
        """A delegated (user) token as Entra ID's v2 endpoint issues it for an API."""
        now = int(time.time())
        claims = {
            "aud": audience,
            "iss": self.issuer(),
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "azp": client_id,
            "azpacr": "0",  # a public client: no secret, no certificate
            "idtyp": "user",
            "name": user.display_name,
            "oid": user.object_id,
            "preferred_username": user.username,
            "scp": USER_SCOPE,
            "sub": user.object_id,
            "tid": self.tenant,
            "uti": uuid.uuid4().hex[:22],
            "ver": "2.0",
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def id_token(self, user: DevUser, client_id: str, nonce: str | None = None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": client_id,
            "iss": self.issuer(),
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "name": user.display_name,
            "oid": user.object_id,
            "preferred_username": user.username,
            "sub": user.object_id,
            "tid": self.tenant,
            "ver": "2.0",
        }
        if nonce:
            claims["nonce"] = nonce
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def refresh_token(self, user: DevUser, client_id: str, scope: str) -> str:
        """Self-contained (signed by the issuer's key): the issuer keeps no session state."""
        now = int(time.time())
        claims = {
            "aud": f"{self.issuer()}/refresh",
            "iss": self.issuer(),
            "iat": now,
            "exp": now + REFRESH_TOKEN_LIFETIME_SECONDS,
            "sub": user.object_id,
            "azp": client_id,
            "scope": scope,
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type", "")
        if grant == "client_credentials":
            return self._client_credentials(form)
        if grant == "password":
            return self._password(form)
        if grant == "refresh_token":
            return self._refresh(form)
        if grant == "authorization_code":
            return self._authorization_code(form)
        return _aad_error(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant}'.",
        )

    def _client_credentials(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        principal = PRINCIPALS.get(form.get("client_id", ""))
        if principal is None:
            return self._unknown_client(form.get("client_id", ""))
        if form.get("client_secret") != principal.secret:
            return _aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{principal.client_id}'.",
            )
        audience = audience_for(form.get("scope", ""))
        if audience is None:
            return _aad_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {form.get('scope')} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        log.info("oidc.token client=%s audience=%s", principal.client_id, audience)
        return 200, {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_SECONDS,
            "ext_expires_in": TOKEN_LIFETIME_SECONDS,
            "access_token": self.access_token(principal, audience),
        }

    def _unknown_client(self, client_id: str) -> tuple[int, dict[str, Any]]:
        return _aad_error(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{self.tenant}'.",
        )

    def _password(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Resource owner password credentials, as Entra ID has it for public clients."""
        client_id = form.get("client_id", "")
        if client_id not in PUBLIC_CLIENTS:
            return self._unknown_client(client_id)
        for name in ("username", "password", "scope"):
            if not form.get(name):
                return _aad_error(
                    400,
                    "invalid_request",
                    900144,
                    f"The request body must contain the following parameter: '{name}'.",
                )
        user = dev_user(form["username"])
        if user is None or form["password"] != DEV_PASSWORD:
            log.info("oidc.password_refused username=%s", form["username"][:80])
            return _aad_error(
                400,
                "invalid_grant",
                50126,
                "Error validating credentials due to invalid username or password.",
            )
        return self._user_tokens(user, client_id, form.get("scope", ""), form.get("client_info") == "1")

    def _refresh(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        client_id = form.get("client_id", "")
        if client_id not in PUBLIC_CLIENTS:
            return self._unknown_client(client_id)
        try:
            claims = jwt.decode(
                form.get("refresh_token", ""),
                self.key.public_key(),
                algorithms=["RS256"],
                audience=f"{self.issuer()}/refresh",
                issuer=self.issuer(),
            )
        except jwt.InvalidTokenError:
            return _aad_error(
                400,
                "invalid_grant",
                9002313,
                "Invalid request. Request is malformed or invalid: the refresh token is not one this issuer "
                "signed since it started, or it has expired. Sign in again.",
            )
        user = next((u for u in DEV_USERS if u.object_id == claims.get("sub")), None)
        if user is None or claims.get("azp") != client_id:
            return _aad_error(
                400, "invalid_grant", 70000, "The provided authorization grant or refresh token is invalid."
            )
        scope = form.get("scope") or str(claims.get("scope", ""))
        return self._user_tokens(user, client_id, scope, form.get("client_info") == "1")

    def _user_tokens(
        self, user: DevUser, client_id: str, scope: str, client_info: bool, nonce: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        audience = audience_for(scope)
        if audience is None:
            return _aad_error(
                400,
                "invalid_scope",
                70011,
                f"The provided value for the input parameter 'scope' is not valid. The scope '{scope}' does "
                "not name a registered API (e.g. api://portcullis-local/.default).",
            )
        asked = scope.split()
        answer: dict[str, Any] = {
            "token_type": "Bearer",
            # As Entra ID answers `.default`: the consented permission and `.default` itself (what
            # MSAL's cache matches a later silent request against); ARM's "https://.../" gives "//".
            "scope": f"{audience}/{USER_SCOPE} {audience}/.default",
            "expires_in": TOKEN_LIFETIME_SECONDS,
            "ext_expires_in": TOKEN_LIFETIME_SECONDS,
            "access_token": self.user_access_token(user, audience, client_id),
        }
        if "openid" in asked:
            answer["id_token"] = self.id_token(user, client_id, nonce)
        if "offline_access" in asked:
            answer["refresh_token"] = self.refresh_token(user, client_id, scope)
        if client_info:
            document = json.dumps({"uid": user.object_id, "utid": self.tenant}).encode()
            answer["client_info"] = base64.urlsafe_b64encode(document).decode().rstrip("=")
        log.info("oidc.token user=%s client=%s audience=%s", user.name, client_id, audience)
        return 200, answer

    # ---- authorization code with PKCE: a browser picks a dev user ----

    def authorize(self, params: dict[str, str], picked: str | None) -> Page:
        """GET (`picked` None): the dev-user picker; POST (`picked` = the name chosen): a code,
        redirected to the client. Before the redirect URI is known good, errors are a page (as Entra
        ID shows them); after, they go back to the client as `error` and `error_description`."""
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        if client_id not in PUBLIC_CLIENTS:
            return _error_page(
                400,
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the directory.",
            )
        if not on_this_machine(redirect_uri):
            return _error_page(
                400,
                f"AADSTS50011: The redirect URI '{redirect_uri}' specified in the request does not match the "
                "redirect URIs configured for the application: a loopback URL (http://127.0.0.1 or "
                "http://localhost, any port).",
            )
        state = params.get("state")
        refusal = self._authorize_refusal(params)
        if refusal is not None:
            error, description = refusal
            return _redirect(redirect_uri, {"error": error, "error_description": description, "state": state})
        if picked is None:
            return 200, {}, _picker_page(params)
        user = dev_user(picked)
        if user is None:
            return _redirect(
                redirect_uri,
                {
                    "error": "access_denied",
                    "error_description": f"AADSTS50034: no dev user {picked!r}.",
                    "state": state,
                },
            )
        code = secrets.token_urlsafe(32)
        with self.codes_lock:
            now = time.time()
            for stale in [key for key, held in self.codes.items() if held.expires_at < now]:
                del self.codes[stale]
            self.codes[code] = Authorization(
                user,
                client_id,
                redirect_uri,
                params.get("scope", ""),
                params["code_challenge"],
                params.get("nonce") or None,
                now + CODE_LIFETIME_SECONDS,
            )
        log.info("oidc.authorized user=%s client=%s", user.name, client_id)
        return _redirect(redirect_uri, {"code": code, "state": state})

    def _authorize_refusal(self, params: dict[str, str]) -> tuple[str, str] | None:
        if params.get("response_type") != "code":
            return "unsupported_response_type", (
                f"AADSTS700054: response_type '{params.get('response_type')}' is not enabled for the "
                "application: use 'code'."
            )
        if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
            return "invalid_request", (
                "AADSTS9002325: Proof Key for Code Exchange is required: send code_challenge and "
                "code_challenge_method=S256."
            )
        if audience_for(params.get("scope", "")) is None:
            return "invalid_scope", (
                f"AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope "
                f"'{params.get('scope', '')}' does not name a registered API (e.g. api://portcullis-local/.default)."
            )
        return None

    def _authorization_code(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        client_id = form.get("client_id", "")
        if client_id not in PUBLIC_CLIENTS:
            return self._unknown_client(client_id)
        with self.codes_lock:
            held = self.codes.pop(form.get("code", ""), None)  # one redemption, right or wrong
        if held is None or held.expires_at < time.time():
            return _aad_error(
                400,
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired due to inactivity, or was "
                "already redeemed. Send a new interactive authorization request for this user and resource.",
            )
        if held.client_id != client_id or held.redirect_uri != form.get("redirect_uri"):
            return _aad_error(
                400,
                "invalid_grant",
                50011,
                "The redirect URI or client of this redemption is not the one the code was issued to.",
            )
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        if not verifier or not secrets.compare_digest(challenge, held.code_challenge):
            return _aad_error(
                400,
                "invalid_grant",
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
            )
        scope = form.get("scope") or held.scope
        return self._user_tokens(held.user, client_id, scope, form.get("client_info") == "1", held.nonce)


def _redirect(redirect_uri: str, query: dict[str, str | None]) -> Page:
    separator = "&" if urlsplit(redirect_uri).query else "?"
    kept = {name: value for name, value in query.items() if value is not None}
    return 302, {"Location": f"{redirect_uri}{separator}{urlencode(kept)}"}, ""


def _error_page(status: int, message: str) -> Page:
    body = f"<!doctype html><title>Sign-in error</title><h1>Sign-in error</h1><p>{html.escape(message)}</p>"
    return status, {}, body


def _picker_page(params: dict[str, str]) -> str:
    """The dev-user picker: one button per person of localrig/devusers.py; the request's parameters
    ride along as hidden fields."""
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in params.items()
    )
    buttons = "".join(
        f'<p><button type="submit" name="username" value="{html.escape(user.name)}">'
        f"{html.escape(user.display_name)} ({html.escape(user.username)}, {html.escape(user.role)})"
        "</button></p>"
        for user in DEV_USERS
    )
    return (
        '<!doctype html><meta charset="utf-8"><title>Sign in: Portcullis local stack</title>'
        "<h1>Sign in to the Portcullis local stack</h1>"
        "<p>Local development only: pick a dev user (localrig/devusers.py).</p>"
        f'<form method="post">{hidden}{buttons}</form>'
    )


def _aad_error(status: int, error: str, code: int, description: str) -> tuple[int, dict[str, Any]]:
    trace = str(uuid.uuid4())
    return status, {
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {trace}",
        "error_codes": [code],
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "trace_id": trace,
        "correlation_id": str(uuid.uuid4()),
    }


def on_this_machine(url: str) -> bool:
    """Is `url` on this machine: http or https, 127.0.0.1, localhost or [::1], any port, no user?"""
    parts = urlsplit(url)
    try:
        has_port = parts.port is not None
    except ValueError:  # a port that is not a number, or out of range
        return False
    host = parts.netloc.rpartition(":")[0] if has_port else parts.netloc
    return parts.scheme in ("http", "https") and host.lower() in CORS_HOSTS


def cors_allowed(origin: str) -> bool:
    """Is `origin` a page on this machine (an origin has no path)?"""
    return on_this_machine(origin) and not urlsplit(origin).path


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    issuer: Issuer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s", format % args)

    def _answer(self, status: int, body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store, no-cache")
        self._cors_headers()
        self.end_headers()
        self.wfile.write(payload)

    def _cors_headers(self) -> None:
        """Let a page served from this machine (the web page, on any local port) call us from the
        browser, as Entra ID allows single-page applications to."""
        origin = self.headers.get("Origin")
        if origin and cors_allowed(origin):
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Vary", "Origin")

    def do_OPTIONS(self) -> None:
        """The browser's CORS preflight (a POST of a form with a custom header, a GET with one)."""
        self.send_response(204)
        origin = self.headers.get("Origin")
        if origin and cors_allowed(origin):
            asked = self.headers.get("Access-Control-Request-Headers") or "Content-Type"
            self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", asked)
            self.send_header("Access-Control-Max-Age", "600")
        self._cors_headers()
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _tenant(self, path: str) -> tuple[str, str]:
        parts = path.strip("/").split("/", 1)
        return parts[0], "/" + (parts[1] if len(parts) > 1 else "")

    def _known_tenant(self, tenant: str) -> bool:
        return tenant.lower() in (self.issuer.tenant.lower(), "organizations", "common")

    def _page(self, page: Page) -> None:
        status, headers, body = page
        payload = body.encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store, no-cache")
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        if path == "/health":
            self._answer(200, {"status": "ok"})
            return
        tenant, rest = self._tenant(path)
        if rest in ("/v2.0/.well-known/openid-configuration", "/.well-known/openid-configuration"):
            if not self._known_tenant(tenant):
                status, body = _aad_error(
                    400,
                    "invalid_tenant",
                    90002,
                    f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.",
                )
                self._answer(status, body)
                return
            self._answer(200, self.issuer.openid_configuration())
            return
        if rest in ("/discovery/v2.0/keys", "/discovery/keys"):
            self._answer(200, self.issuer.jwks())
            return
        if rest == "/oauth2/v2.0/authorize" and self._known_tenant(tenant):
            self._page(self.issuer.authorize(dict(parse_qsl(parts.query)), picked=None))
            return
        self._answer(404, {"error": "not_found", "error_description": f"No endpoint at {path}."})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        tenant, rest = self._tenant(path)
        if rest == "/oauth2/v2.0/authorize" and self._known_tenant(tenant):
            form = dict(parse_qsl(raw, keep_blank_values=True))
            picked = form.pop("username", "")
            self._page(self.issuer.authorize(form, picked=picked))
            return
        if rest not in ("/oauth2/v2.0/token", "/oauth2/token"):
            self._answer(404, {"error": "not_found", "error_description": f"No endpoint at {path}."})
            return
        if not self._known_tenant(tenant):
            self._answer(*_aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found."))
            return
        self._answer(*self.issuer.token(dict(parse_qsl(raw, keep_blank_values=True))))


def make_server(issuer: Issuer, host: str, port: int, cert: Path, key: Path) -> ThreadingHTTPServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    handler = type("Handler", (_Handler,), {"issuer": issuer})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localrig.oidc", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True, help="where its TLS certificate goes")
    parser.add_argument("--ca-dir", type=Path, required=True, help="the ARM emulator's data dir (ca.pem)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    cert, key = issue_server_certificate(args.ca_dir, args.data_dir, "oidc")
    issuer = Issuer(f"https://{args.host}:{args.port}")
    server = make_server(issuer, args.host, args.port, cert, key)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    log.info("oidc.serving url=%s tenant=%s", issuer.base_url, issuer.tenant)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


# --- as a child process of the local stack ----------------------------------------------------------


@dataclass
class OidcIssuer:
    process: ManagedProcess
    port: int
    ca_file: Path
    tenant: str = TENANT_ID

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def authority(self) -> str:
        return f"{self.base_url}/{self.tenant}"

    @property
    def issuer(self) -> str:
        """The `iss` of its tokens (Entra ID's v2 form), what PORTCULLIS_JWT_ISSUER names."""
        return f"{self.authority}/v2.0"

    @property
    def jwks_uri(self) -> str:
        return f"{self.authority}/discovery/v2.0/keys"

    @property
    def token_endpoint(self) -> str:
        return f"{self.authority}/oauth2/v2.0/token"

    def stop(self) -> None:
        self.process.stop()


def _healthy(port: int, ca_file: Path) -> bool:
    import urllib.request

    context = ssl.create_default_context(cafile=str(ca_file))
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/health", context=context, timeout=2) as answer:
        return bool(answer.status == 200)


def start_issuer(
    data_dir: Path, ca_dir: Path, *, port: int | None = None, log_path: Path | None = None
) -> OidcIssuer:
    """Start the issuer on 127.0.0.1 with a certificate from the emulator's CA in `ca_dir` (start the
    emulator first); ready once /health answers over verified TLS."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    if port_is_open(port):
        raise OSError(f"port {port} is already in use; choose another for the OpenID Connect issuer")
    process = ManagedProcess(
        "oidc-issuer",
        [
            sys.executable,
            "-m",
            "localrig.oidc",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--ca-dir",
            str(ca_dir),
        ],
        log_path=log_path or data_dir / "oidc.log",
    )
    ca_file = ca_dir / "ca.pem"
    process.wait_ready(lambda: _healthy(port, ca_file), timeout=60)
    return OidcIssuer(process, port, ca_file)


def az_login_lines(arm_url: str, issuer: OidcIssuer, cloud_name: str = "Portcullis") -> list[str]:
    """What to paste into a shell to point the Azure CLI at the local stack."""
    sp = DEV_SERVICE_PRINCIPAL
    return [
        f"export REQUESTS_CA_BUNDLE={issuer.ca_file.resolve()}",
        "export AZURE_CORE_INSTANCE_DISCOVERY=false",
        f"az cloud register --name {cloud_name} --endpoint-resource-manager {arm_url.rstrip('/')}/",
        f"az cloud set --name {cloud_name}",
        f"az login --service-principal --username {sp.client_id} --password {sp.secret} "
        f"--tenant {issuer.tenant}",
    ]


if __name__ == "__main__":
    sys.exit(main())
