"""GET /api/me through the real host, in both ways the local stack authenticates: JWT mode (the
default of `make up`: the app validates the local issuer's tokens, a forged principal header is
ignored) and headers mode (`PORTCULLIS_LOCAL_AUTH=headers`: the Easy Auth stand-in)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from localrig.devusers import ALICE, BOB, EVE
from localrig.oidc import TENANT_ID
from localrig.stack import LocalAuth, Stack, start_stack
from shared.identity import easy_auth_header


@pytest.fixture(scope="module")
def jwt_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(tmp_path_factory.mktemp("me-jwt")) as running:
        yield running


def get_me(stack: Stack, headers: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(f"{stack.api_url}/me", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.load(answer), dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), dict(error.headers)


def test_jwt_mode_is_the_default_and_configures_the_app_for_the_issuer(jwt_stack: Stack) -> None:
    assert jwt_stack.auth is LocalAuth.JWT
    assert "WEBSITE_AUTH_ENABLED" not in jwt_stack.env
    assert jwt_stack.issuer is not None
    assert jwt_stack.env["PORTCULLIS_JWT_AUDIENCE"] == "api://portcullis-local"
    assert jwt_stack.env["PORTCULLIS_JWT_ISSUER"] == f"{jwt_stack.issuer.authority}/v2.0"
    assert jwt_stack.env["PORTCULLIS_JWT_JWKS_URI"].startswith("https://127.0.0.1:")
    assert jwt_stack.env["PORTCULLIS_JWT_CA_BUNDLE"] == str(jwt_stack.emulator.ca_file)


def test_me_answers_the_token_holder_and_the_address_the_host_sees(jwt_stack: Stack) -> None:
    status, me, _ = get_me(jwt_stack, jwt_stack.headers_for(ALICE))
    assert status == 200, me
    assert me == {
        "objectId": ALICE.object_id,
        "displayName": ALICE.username,
        "tenantId": TENANT_ID,
        "groupIds": [],
        "sourceAddress": "127.0.0.1",
        "authentication": "jwt",
    }


def test_the_source_address_is_the_platforms_entry_not_the_clients_claim(jwt_stack: Stack) -> None:
    # devhost appends the socket peer to X-Forwarded-For as App Service's front end does.
    headers = {**jwt_stack.headers_for(BOB), "X-Forwarded-For": "203.0.113.7"}
    status, me, _ = get_me(jwt_stack, headers)
    assert status == 200 and me["objectId"] == BOB.object_id
    assert me["sourceAddress"] == "127.0.0.1"


def test_without_a_principal_the_answer_is_401(jwt_stack: Stack) -> None:
    status, body, headers = get_me(jwt_stack, {})
    assert status == 401
    assert body["error"]["code"] == "AuthenticationFailed"
    assert "bearer" in body["error"]["message"].lower()
    assert headers.get("WWW-Authenticate", "").startswith("Bearer")


def test_a_forged_principal_header_is_ignored_in_jwt_mode(jwt_stack: Stack) -> None:
    forged = easy_auth_header(ALICE.object_id, ALICE.username)
    status, body, _ = get_me(jwt_stack, forged)
    assert status == 401, body
    # with a real token for eve beside it, the caller is eve, not the forged alice
    status, me, _ = get_me(jwt_stack, {**forged, **jwt_stack.headers_for(EVE)})
    assert status == 200 and me["objectId"] == EVE.object_id


def test_a_token_signed_by_another_key_is_refused(jwt_stack: Stack) -> None:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    good = jwt_stack.headers_for(ALICE)["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(good, options={"verify_signature": False})
    header = jwt.get_unverified_header(good)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": header["kid"]})
    status, body, _ = get_me(jwt_stack, {"Authorization": f"Bearer {forged}"})
    assert status == 401 and "signature" in body["error"]["message"].lower()


def test_tokens_are_cached_per_user(jwt_stack: Stack) -> None:
    assert jwt_stack.headers_for(ALICE) == jwt_stack.headers_for(ALICE)
    assert jwt_stack.headers_for(ALICE) != jwt_stack.headers_for(BOB)


def test_headers_mode_trusts_the_easy_auth_stand_in(tmp_path_factory: pytest.TempPathFactory) -> None:
    with start_stack(tmp_path_factory.mktemp("me-headers"), auth=LocalAuth.HEADERS) as stack:
        assert stack.env["WEBSITE_AUTH_ENABLED"] == "true"
        assert not any(name.startswith("PORTCULLIS_JWT_") for name in stack.env)
        headers = stack.headers_for(ALICE)
        assert "Authorization" not in headers
        status, me, _ = get_me(stack, headers)
        assert status == 200, me
        assert (me["objectId"], me["displayName"], me["authentication"]) == (
            ALICE.object_id,
            ALICE.username,
            "easyauth",
        )
        assert me["sourceAddress"] == "127.0.0.1"
        assert get_me(stack, {})[0] == 401
