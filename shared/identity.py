"""Who is calling, and from where.

The caller is, in this order:
1. With Easy Auth on (`WEBSITE_AUTH_ENABLED`, set by App Service): the principal in
   `X-MS-CLIENT-PRINCIPAL` (base64 JSON of claims), which the platform sets and strips from clients.
2. Otherwise, when PORTCULLIS_JWT_ISSUER/AUDIENCE/JWKS_URI are set: an Entra ID bearer token that we
   validate ourselves (RS256 signature against the JWKS, issuer, audience, expiry).
3. Otherwise nobody: 401. Principal headers are never trusted with Easy Auth off (a client can send
   them), whatever else the request carries.

The local stack stands in for App Service, so Easy Auth counts as enabled there and local clients
send the principal headers themselves: that is for local development only.

With Easy Auth, only Entra ID sign-ins are accepted (`auth_typ` `aad`): another provider's user id
(a Google or GitHub account) is not an Entra object id and must never be matched against Azure role
assignments. A principal's object id must be a GUID, as Entra ID's are, and its groups are the GUIDs
among its group claims (at most 200: beyond that Entra ID sends an overage claim instead); anything
else is a malformed principal and answered 401, before it reaches RBAC, the audit or storage.

The caller's address is the last entry of `X-Forwarded-For`, the one the platform's front end appended
(App Service appends `client-ip:port` after whatever the client sent; the local host does the same
from the socket peer). Entries to its left are the client's own claims and are ignored, except when
PORTCULLIS_TRUSTED_PROXY_HOPS says that many proxies of yours (Front Door, API Management) stand in
front of the platform: each appended one entry, so the caller is that many entries further left.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.model import Principal, PrincipalSource
from shared.settings import Settings

if TYPE_CHECKING:
    import jwt

EASY_AUTH_PRINCIPAL = "x-ms-client-principal"
EASY_AUTH_PRINCIPAL_ID = "x-ms-client-principal-id"
EASY_AUTH_PRINCIPAL_NAME = "x-ms-client-principal-name"

_OBJECT_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
_TENANT_CLAIMS = ("http://schemas.microsoft.com/identity/claims/tenantid", "tid")
_NAME_CLAIMS = (
    "preferred_username",
    "upn",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "name",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
)
_GROUP_CLAIMS = ("groups", "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups")
_LEEWAY_SECONDS = 60
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Entra ID puts at most 200 groups in a token (then an overage claim instead of the list).
MAX_GROUPS = 200
_MAX_NAME_CHARS = 256
ENTRA_ID_PROVIDER = "aad"


def is_guid(value: object) -> bool:
    return isinstance(value, str) and bool(_GUID.fullmatch(value))


def check_principal(
    object_id: object,
    display_name: object,
    groups: Iterable[object],
    source: PrincipalSource,
    tenant_id: object = None,
) -> Principal:
    """A principal from claims, or AuthenticationError: the object id must be a GUID, the name is
    cut to a sane length, groups are the GUIDs among the group claims (a bounded number)."""
    if not is_guid(object_id):
        shown = repr(object_id)[:60]
        raise AuthenticationError(f"the principal's object id {shown} is not an Entra ID object id (a GUID)")
    assert isinstance(object_id, str)
    group_ids = frozenset(g for g in groups if isinstance(g, str) and is_guid(g))
    if len(group_ids) > MAX_GROUPS:
        raise AuthenticationError(f"the principal carries more than {MAX_GROUPS} group ids")
    name = display_name if isinstance(display_name, str) and display_name else object_id
    return Principal(
        object_id=object_id,
        display_name=name[:_MAX_NAME_CHARS],
        source=source,
        tenant_id=tenant_id if isinstance(tenant_id, str) and is_guid(tenant_id) else None,
        group_ids=group_ids,
    )


class AuthenticationError(Exception):
    """The caller is not authenticated; the message says why (answered as 401)."""


@dataclass(frozen=True)
class JwtSettings:
    issuer: str
    audience: str
    jwks_uri: str


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self._easy_auth = settings.easy_auth_enabled
        self._jwt: JwtSettings | None = None
        self._jwks: jwt.PyJWKClient | None = None
        if settings.jwt_issuer and settings.jwt_audience and settings.jwt_jwks_uri:
            import jwt  # lazy: ~90 ms of a cold start, and Easy Auth deployments never need it

            self._jwt = JwtSettings(settings.jwt_issuer, settings.jwt_audience, settings.jwt_jwks_uri)
            # The local issuer's JWKS is served with the emulator's CA; Entra ID's with a public one.
            context = None
            if settings.jwt_ca_bundle is not None:
                import ssl

                context = ssl.create_default_context(cafile=str(settings.jwt_ca_bundle))
            self._jwks = jwt.PyJWKClient(
                settings.jwt_jwks_uri, cache_keys=True, lifespan=3600, timeout=10, ssl_context=context
            )

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        lowered = {name.lower(): value for name, value in headers.items()}
        if self._easy_auth:
            return _easy_auth_principal(lowered)
        if self._jwt is not None:
            return self._bearer_principal(lowered)
        raise AuthenticationError(
            "no authentication is configured: enable App Service Authentication (Easy Auth) or set "
            "PORTCULLIS_JWT_ISSUER, PORTCULLIS_JWT_AUDIENCE and PORTCULLIS_JWT_JWKS_URI"
        )

    def _bearer_principal(self, headers: Mapping[str, str]) -> Principal:
        import jwt  # already loaded by __init__ when JWT is configured

        assert self._jwt is not None and self._jwks is not None
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("an Entra ID bearer token is required (Authorization: Bearer ...)")
        try:
            signing_key = self._jwks.get_signing_key_from_jwt(token.strip())
            claims: dict[str, Any] = jwt.decode(
                token.strip(),
                signing_key.key,
                algorithms=["RS256"],
                audience=self._jwt.audience,
                issuer=self._jwt.issuer,
                leeway=_LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientError as error:
            raise AuthenticationError(f"the token's signing key cannot be found: {error}") from None
        except jwt.InvalidTokenError as error:
            raise AuthenticationError(f"the bearer token is not valid: {error}") from None
        # `oid` only: `sub` is a per-application pairwise id, not an object id RBAC knows.
        object_id = claims.get("oid")
        if object_id is None:
            raise AuthenticationError("the bearer token carries no 'oid' claim")
        groups = claims.get("groups") or []
        return check_principal(
            object_id,
            _first_text(claims, _NAME_CLAIMS),
            groups if isinstance(groups, list) else [],
            PrincipalSource.JWT,
            tenant_id=claims.get("tid") if isinstance(claims.get("tid"), str) else None,
        )


def _first_text(claims: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _easy_auth_principal(headers: Mapping[str, str]) -> Principal:
    encoded = headers.get(EASY_AUTH_PRINCIPAL)
    if not encoded:
        raise AuthenticationError("sign in first: the request carries no authenticated principal")
    try:
        document = json.loads(base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=False))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise AuthenticationError("X-MS-CLIENT-PRINCIPAL is not base64-encoded JSON") from None
    if not isinstance(document, dict):
        raise AuthenticationError("X-MS-CLIENT-PRINCIPAL is not a JSON object")
    provider = document.get("auth_typ")
    if provider != ENTRA_ID_PROVIDER:
        # Another provider's id is not an Entra object id: never match it against role assignments.
        raise AuthenticationError(
            f"sign in with Microsoft Entra ID: the identity provider {str(provider)[:40]!r} is not accepted"
        )
    claims: dict[str, Any] = {}
    groups: set[str] = set()
    for claim in document.get("claims") or []:
        if not isinstance(claim, dict):
            continue
        kind, value = claim.get("typ"), claim.get("val")
        if not isinstance(kind, str) or not isinstance(value, str):
            continue
        if kind in _GROUP_CLAIMS:
            groups.add(value)
        else:
            claims.setdefault(kind, value)
    # For Entra ID, X-MS-CLIENT-PRINCIPAL-ID is the object id; the claim wins when both are present.
    object_id = _first_text(claims, _OBJECT_ID_CLAIMS) or headers.get(EASY_AUTH_PRINCIPAL_ID)
    if not object_id:
        raise AuthenticationError("the authenticated principal carries no object id")
    name = headers.get(EASY_AUTH_PRINCIPAL_NAME) or _first_text(claims, _NAME_CLAIMS)
    return check_principal(
        object_id, name, groups, PrincipalSource.EASY_AUTH, tenant_id=_first_text(claims, _TENANT_CLAIMS)
    )


def same_principal(first: Principal, second: Principal) -> bool:
    """Are these the same person? Object ids are GUIDs (checked where a principal enters), compared
    without regard to the case of their hex digits."""
    return first.object_id.lower() == second.object_id.lower()


def easy_auth_header(object_id: str, name: str, groups: tuple[str, ...] = ()) -> dict[str, str]:
    """The headers Easy Auth would set for this principal (for local clients and tests)."""
    claims = [
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": object_id},
        {"typ": "preferred_username", "val": name},
        *({"typ": "groups", "val": group} for group in groups),
    ]
    document = {"auth_typ": "aad", "claims": claims, "name_typ": "preferred_username", "role_typ": "roles"}
    return {
        "X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(document).encode()).decode(),
        "X-MS-CLIENT-PRINCIPAL-ID": object_id,
        "X-MS-CLIENT-PRINCIPAL-NAME": name,
    }


def caller_address(headers: Mapping[str, str], trusted_proxy_hops: int = 0) -> str | None:
    """The caller's IP as the platform reports it: the last X-Forwarded-For entry, or with N trusted
    proxies in front of the platform the entry N places left of it; port removed. None when there
    are fewer entries than that (the caller's address is then unknown, never a guess)."""
    forwarded = ",".join(v for k, v in headers.items() if k.lower() == "x-forwarded-for")
    entries = [entry.strip() for entry in forwarded.split(",") if entry.strip()]
    if len(entries) <= trusted_proxy_hops:
        return None
    return _strip_port(entries[-1 - trusted_proxy_hops])


def _strip_port(entry: str) -> str | None:
    candidates = [entry]
    if entry.startswith("[") and "]" in entry:
        candidates = [entry[1 : entry.index("]")]]
    elif entry.count(":") == 1:
        candidates = [entry.split(":", 1)[0]]
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None
