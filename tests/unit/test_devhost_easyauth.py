"""The Easy Auth stand-in's decisions without processes (devhost/easyauth.py): what it sends on for
a session in each forward mode, the cross-site rule, and redirect targets kept on this host."""

from __future__ import annotations

import base64
import json
import time

import pytest

from devhost.easyauth import EasyAuth, EasyAuthOptions, _local_path, _Session

OID = "a11ce000-0000-4000-8000-000000000001"


def stand_in(forward: str) -> EasyAuth:
    auth = EasyAuth(EasyAuthOptions("https://127.0.0.1:1/tenant", "client", "openid", None, forward))
    claims = {"oid": OID, "preferred_username": "alice@portcullis.local", "groups": ["g1"]}
    auth._sessions["s1"] = _Session("the-access-token", None, time.time() + 3600, claims)
    return auth


def test_bearer_mode_sends_the_sessions_token_unless_the_client_sent_its_own() -> None:
    headers = {"cookie": "AppServiceAuthSession=s1", "host": "127.0.0.1:7071"}
    assert stand_in("bearer").forward("GET", headers) is None
    assert headers["authorization"] == "Bearer the-access-token"
    own = {"cookie": "AppServiceAuthSession=s1", "authorization": "Bearer mine", "host": "127.0.0.1:7071"}
    stand_in("bearer").forward("GET", own)
    assert own["authorization"] == "Bearer mine"


def test_headers_mode_replaces_the_clients_principal_headers() -> None:
    headers = {
        "cookie": "AppServiceAuthSession=s1",
        "host": "127.0.0.1:7071",
        "x-ms-client-principal-id": "forged",
        "x-ms-client-principal": "forged",
    }
    stand_in("headers").forward("GET", headers)
    assert headers["x-ms-client-principal-id"] == OID
    document = json.loads(base64.b64decode(headers["x-ms-client-principal"]))
    assert document["auth_typ"] == "aad"
    assert {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": OID} in document[
        "claims"
    ]
    assert {"typ": "groups", "val": "g1"} in document["claims"]


def test_an_unknown_session_passes_the_request_on_unchanged() -> None:
    headers = {"cookie": "AppServiceAuthSession=nope", "host": "127.0.0.1:7071"}
    assert stand_in("bearer").forward("GET", headers) is None
    assert "authorization" not in headers


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        ({"origin": "http://127.0.0.1:7071"}, False),
        ({"origin": "http://localhost:7071"}, True),
        ({"origin": "https://evil.example"}, True),
        ({"sec-fetch-site": "same-origin"}, False),
        ({"sec-fetch-site": "same-site"}, True),
        ({}, True),
    ],
)
def test_state_changes_with_the_cookie_must_come_from_this_origin(
    extra: dict[str, str], refused: bool
) -> None:
    headers = {"cookie": "AppServiceAuthSession=s1", "host": "127.0.0.1:7071", **extra}
    answer = stand_in("bearer").forward("POST", headers)
    assert (answer is not None and answer[0] == 403) is refused
    # Without the cookie nothing is refused: the app answers 401 as ever.
    assert stand_in("bearer").forward("POST", {"host": "127.0.0.1:7071", **extra}) is None


@pytest.mark.parametrize(
    ("asked", "kept"),
    [
        ("/api/ui/", "/api/ui/"),
        ("/x?y=1", "/x?y=1"),
        ("//evil.example", "/api/ui/"),
        ("https://e.x/", "/api/ui/"),
        ("/\\evil.example", "/api/ui/"),
        (None, "/api/ui/"),
    ],
)
def test_redirects_stay_on_this_host(asked: str | None, kept: str) -> None:
    assert _local_path(asked) == kept


def test_an_unknown_forward_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="forward mode"):
        EasyAuth(EasyAuthOptions("https://x/t", "c", "openid", None, "cookies"))
