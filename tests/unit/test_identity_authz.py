"""Identity (Easy Auth only when enabled; JWTs validated against our own keys) and RBAC matching."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.authz import Authorizer, Permission, RoleAssignment, action_matches, permits, scope_covers
from shared.identity import AuthenticationError, Authenticator, caller_address, easy_auth_header
from shared.model import Principal, PrincipalSource
from shared.settings import load_settings

ISSUER = "https://login.microsoftonline.com/tenant/v2.0"
AUDIENCE = "api://portcullis"
INITIATE = "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action"
USER = "3b0e6c1d-2f4a-4e8b-9c7d-6a5b4c3d2e1f"
GROUP = "7c6d5e4f-3a2b-4c1d-8e9f-0a1b2c3d4e5f"


@pytest.fixture(scope="module")
def keys():
    good = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(good.public_key()))
    jwks = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield good, other, f"http://127.0.0.1:{server.server_address[1]}/keys"
    server.shutdown()


def token(key, **overrides) -> str:
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": int(time.time()) + 600,
        "oid": USER,
        "preferred_username": "u@contoso.com",
        "groups": [GROUP],
        **overrides,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


def jwt_authenticator(jwks_uri: str) -> Authenticator:
    return Authenticator(
        load_settings(
            {
                "AzureWebJobsStorage": "UseDevelopmentStorage=true",
                "PORTCULLIS_JWT_ISSUER": ISSUER,
                "PORTCULLIS_JWT_AUDIENCE": AUDIENCE,
                "PORTCULLIS_JWT_JWKS_URI": jwks_uri,
            }
        )
    )


def test_valid_token_gives_the_principal(keys) -> None:
    good, _, uri = keys
    principal = jwt_authenticator(uri).authenticate({"Authorization": f"Bearer {token(good)}"})
    assert (principal.object_id, principal.display_name, principal.group_ids) == (
        USER,
        "u@contoso.com",
        {GROUP},
    )
    assert principal.source is PrincipalSource.JWT


@pytest.mark.parametrize(
    "change", [{"aud": "api://other"}, {"iss": "https://evil"}, {"exp": int(time.time()) - 3600}]
)
def test_wrong_audience_issuer_or_expired_token_is_refused(keys, change) -> None:
    good, _, uri = keys
    with pytest.raises(AuthenticationError):
        jwt_authenticator(uri).authenticate({"Authorization": f"Bearer {token(good, **change)}"})


def test_token_signed_by_another_key_is_refused(keys) -> None:
    _, other, uri = keys
    with pytest.raises(AuthenticationError):
        jwt_authenticator(uri).authenticate({"Authorization": f"Bearer {token(other)}"})


def test_forged_easy_auth_headers_are_ignored_when_easy_auth_is_off(keys) -> None:
    _, _, uri = keys
    with pytest.raises(AuthenticationError, match="bearer"):
        jwt_authenticator(uri).authenticate(easy_auth_header(USER, "admin@contoso.com"))
    nothing = Authenticator(load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}))
    with pytest.raises(AuthenticationError):
        nothing.authenticate(easy_auth_header(USER, "admin@contoso.com"))


def test_easy_auth_principal_when_enabled() -> None:
    authenticator = Authenticator(
        load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "WEBSITE_AUTH_ENABLED": "true"})
    )
    principal = authenticator.authenticate(easy_auth_header(USER, "a@b", (GROUP,)))
    assert (principal.object_id, principal.group_ids) == (USER, {GROUP})
    with pytest.raises(AuthenticationError):
        authenticator.authenticate({})


def test_caller_address_is_the_last_forwarded_entry() -> None:
    assert caller_address({"X-Forwarded-For": "1.2.3.4, 10.0.0.9:5555"}) == "10.0.0.9"
    assert caller_address({"x-forwarded-for": "[2001:db8::1]:443"}) == "2001:db8::1"
    assert caller_address({}) is None


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        ("*", True),
        ("Microsoft.Security/*", True),
        ("microsoft.security/locations/*/initiate/action", True),
        ("Microsoft.Security/locations/jitNetworkAccessPolicies/read", False),
        ("*/read", False),
    ],
)
def test_action_wildcards(pattern: str, matches: bool) -> None:
    assert action_matches(pattern, INITIATE) is matches


def test_not_actions_subtract_within_a_block() -> None:
    assert not permits([Permission(("*",), ("Microsoft.Security/*",))], INITIATE)
    assert permits([Permission(("*",), ("Microsoft.Security/*",)), Permission((INITIATE,))], INITIATE)


def test_scope_cover() -> None:
    vm = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
    assert scope_covers("/subscriptions/s", vm) and scope_covers("/subscriptions/S/resourceGroups/RG", vm)
    assert not scope_covers("/subscriptions/s/resourceGroups/rg2", vm)
    assert not scope_covers(vm + "0", vm)


class BrokenReader:
    def assignments_at_or_above(self, scope: str) -> list[RoleAssignment]:
        raise ConnectionError("ARM unreachable")

    def assignments_in_subscription(self, subscription_id: str) -> list[RoleAssignment]:
        raise ConnectionError("ARM unreachable")

    def role_permissions(self, role_definition_id: str) -> list[Permission]:
        return []


def test_unreadable_rbac_raises_instead_of_allowing() -> None:
    from shared.authz import AuthorizationUnavailableError

    authorizer = Authorizer(lambda sub: BrokenReader(), cache_seconds=60)
    with pytest.raises(AuthorizationUnavailableError):
        authorizer.is_allowed(
            Principal("u", "u", PrincipalSource.JWT), INITIATE, "/subscriptions/s/resourceGroups/rg"
        )


def test_require_answers_503_when_rbac_cannot_be_read_and_403_when_denied() -> None:
    from shared.actions.refusal import Refusal

    who = Principal("u", "User", PrincipalSource.JWT)
    scope = "/subscriptions/s/resourceGroups/rg"
    with pytest.raises(Refusal) as unavailable:
        Authorizer(lambda sub: BrokenReader(), cache_seconds=60).require(who, INITIATE, scope)
    assert (unavailable.value.status, unavailable.value.code) == (503, "AuthorizationUnavailable")

    class NoAssignments(BrokenReader):
        def assignments_at_or_above(self, scope: str) -> list[RoleAssignment]:
            return []

    with pytest.raises(Refusal) as denied:
        Authorizer(lambda sub: NoAssignments(), cache_seconds=0).require(
            who, INITIATE, scope, field="f", why="."
        )
    assert (denied.value.status, denied.value.code, denied.value.target) == (403, "AuthorizationFailed", "f")
    assert denied.value.message == (
        f"f: User (u) does not have authorization to perform action '{INITIATE}' over scope '{scope}'."
    )
