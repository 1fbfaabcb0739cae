"""localrig's OpenID Connect issuer (issue 12) through MSAL, by way of azure-identity's
ClientSecretCredential (the service-principal flow `az login --service-principal` uses): tenant
discovery, the client-credentials token endpoint, RS256 tokens verifiable with the JWKS, Entra ID's
refusals; and the emulator's /metadata/endpoints pointing at it. Issue 14: the dev users'
password grant (raw HTTPS and MSAL), refresh tokens and CORS for pages on this machine."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential
from azure.mgmt.network import NetworkManagementClient

from localrig.devusers import ALICE, APP_AUDIENCE, BOB, DEV_PASSWORD, PUBLIC_CLIENT_ID
from localrig.emulator import Emulator
from localrig.emulator_client import EmulatorClient
from localrig.oidc import DEV_SERVICE_PRINCIPAL, TENANT_ID, OidcIssuer
from localrig.stack import start_arm

ARM_SCOPE = "https://management.core.windows.net//.default"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Emulator, OidcIssuer]]:
    emulator, issuer = start_arm(tmp_path_factory.mktemp("oidc"), emulator_args=["--throttle", "off"])
    try:
        yield emulator, issuer
    finally:
        issuer.stop()
        emulator.stop()


def _credential(issuer: OidcIssuer, secret: str = DEV_SERVICE_PRINCIPAL.secret, client_id: str | None = None):
    return ClientSecretCredential(
        TENANT_ID,
        client_id or DEV_SERVICE_PRINCIPAL.client_id,
        secret,
        authority=issuer.base_url,
        disable_instance_discovery=True,
        connection_verify=str(issuer.ca_file),
    )


def _get(url: str, ca_file) -> tuple[int, dict]:
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with urllib.request.urlopen(url, context=context, timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_msal_gets_a_verifiable_rs256_token(stack):
    _, issuer = stack
    token = _credential(issuer).get_token(ARM_SCOPE)
    header = jwt.get_unverified_header(token.token)
    assert header["alg"] == "RS256"
    status, jwks = _get(f"{issuer.authority}/discovery/v2.0/keys", issuer.ca_file)
    assert status == 200
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == header["kid"]))
    claims = jwt.decode(
        token.token, key.key, algorithms=["RS256"], audience="https://management.core.windows.net/",
        issuer=f"{issuer.authority}/v2.0",
    )  # fmt: skip
    assert claims["appid"] == DEV_SERVICE_PRINCIPAL.client_id
    assert claims["oid"] == DEV_SERVICE_PRINCIPAL.object_id and claims["tid"] == TENANT_ID
    assert claims["idtyp"] == "app" and claims["exp"] > claims["iat"]
    # a token for the other ARM audience too
    other = _credential(issuer).get_token("https://management.azure.com/.default")
    assert (
        jwt.decode(other.token, options={"verify_signature": False})["aud"] == "https://management.azure.com/"
    )


def test_the_emulator_takes_the_token_and_knows_the_caller(stack):
    emulator, issuer = stack
    client = EmulatorClient(emulator.base_url, emulator.ca_file)
    group = client.new_resource_group()
    network = client.client(NetworkManagementClient, credential=_credential(issuer))
    network.network_security_groups.begin_create_or_update(
        group, "nsg-sp", {"location": "westeurope"}
    ).result()
    callers = {e["caller"] for e in client.requests()["log"] if "nsg-sp" in e["path"]}
    assert callers == {DEV_SERVICE_PRINCIPAL.object_id}


def test_metadata_endpoints_name_the_issuer(stack):
    emulator, issuer = stack
    status, cloud = _get(f"{emulator.base_url}/metadata/endpoints?api-version=2022-09-01", emulator.ca_file)
    assert status == 200
    assert cloud["authentication"]["loginEndpoint"] == issuer.base_url + "/"
    status, config = _get(f"{issuer.authority}/v2.0/.well-known/openid-configuration", issuer.ca_file)
    assert status == 200
    assert config["token_endpoint"] == f"{issuer.authority}/oauth2/v2.0/token"
    assert config["issuer"] == f"{issuer.authority}/v2.0"
    assert config["jwks_uri"].startswith(issuer.base_url)


def test_refusals_are_entra_shaped(stack):
    _, issuer = stack
    with pytest.raises(ClientAuthenticationError) as wrong_secret:
        _credential(issuer, secret="nope").get_token(ARM_SCOPE)
    assert "AADSTS7000215" in str(wrong_secret.value)
    with pytest.raises(ClientAuthenticationError) as unknown:
        _credential(issuer, client_id="11111111-1111-1111-1111-111111111111").get_token(ARM_SCOPE)
    assert "AADSTS700016" in str(unknown.value)
    with pytest.raises(ClientAuthenticationError) as scope:
        _credential(issuer).get_token("https://vault.azure.net/.default")
    assert "AADSTS1002012" in str(scope.value)
    status, body = _get(
        f"{issuer.base_url}/some-other-tenant/v2.0/.well-known/openid-configuration", issuer.ca_file
    )
    assert status == 400 and body["error"] == "invalid_tenant" and body["error_codes"] == [90002]


# ---- the dev users of localrig.devusers: password grant, refresh, CORS (issue 14) ----


def _post(url: str, form: dict[str, str], ca_file, headers: dict[str, str] | None = None):
    context = ssl.create_default_context(cafile=str(ca_file))
    data = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            return answer.status, json.load(answer), dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error), dict(error.headers)


def _password_form(username: str = ALICE.name, password: str = DEV_PASSWORD, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "password",
        "client_id": PUBLIC_CLIENT_ID,
        "username": username,
        "password": password,
        "scope": f"{APP_AUDIENCE}/.default",
        **extra,
    }


def _verified(issuer: OidcIssuer, token: str, audience: str) -> dict:
    _, jwks = _get(issuer.jwks_uri, issuer.ca_file)
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == jwt.get_unverified_header(token)["kid"]))
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=audience, issuer=issuer.issuer)


def test_password_grant_issues_an_entra_v2_user_token_for_the_app(stack):
    _, issuer = stack
    status, answer, _ = _post(issuer.token_endpoint, _password_form(), issuer.ca_file)
    assert status == 200, answer
    assert answer["token_type"] == "Bearer"
    assert answer["expires_in"] > 3000 and answer["ext_expires_in"] == answer["expires_in"]
    assert f"{APP_AUDIENCE}/.default" in answer["scope"].split()
    assert "refresh_token" not in answer and "id_token" not in answer  # not asked for
    claims = _verified(issuer, answer["access_token"], APP_AUDIENCE)
    assert claims["aud"] == APP_AUDIENCE and claims["iss"] == f"{issuer.authority}/v2.0"
    assert (claims["oid"], claims["sub"], claims["tid"]) == (ALICE.object_id, ALICE.object_id, TENANT_ID)
    assert (claims["name"], claims["preferred_username"]) == (ALICE.display_name, ALICE.username)
    assert claims["scp"] == "user_impersonation" and claims["azp"] == PUBLIC_CLIENT_ID
    assert claims.get("idtyp", "user") == "user" and "appid" not in claims and "roles" not in claims
    assert claims["ver"] == "2.0" and claims["nbf"] <= claims["iat"] < claims["exp"]


def test_password_grant_takes_the_upn_and_openid_scopes_and_refreshes(stack):
    _, issuer = stack
    form = _password_form(
        BOB.username.upper(), scope=f"{APP_AUDIENCE}/.default openid profile offline_access"
    )
    status, answer, _ = _post(issuer.token_endpoint, form, issuer.ca_file)
    assert status == 200, answer
    id_claims = _verified(issuer, answer["id_token"], PUBLIC_CLIENT_ID)
    assert id_claims["oid"] == BOB.object_id and id_claims["preferred_username"] == BOB.username
    refresh = {
        "grant_type": "refresh_token",
        "client_id": PUBLIC_CLIENT_ID,
        "refresh_token": answer["refresh_token"],
        "scope": f"{APP_AUDIENCE}/.default offline_access",
    }
    status, renewed, _ = _post(issuer.token_endpoint, refresh, issuer.ca_file)
    assert status == 200, renewed
    assert _verified(issuer, renewed["access_token"], APP_AUDIENCE)["oid"] == BOB.object_id
    status, refused, _ = _post(
        issuer.token_endpoint, {**refresh, "refresh_token": answer["access_token"]}, issuer.ca_file
    )
    assert status == 400 and refused["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("form", "status", "error", "code"),
    [
        (_password_form(password="wrong"), 400, "invalid_grant", 50126),
        (_password_form(username="mallory"), 400, "invalid_grant", 50126),
        (_password_form(client_id=DEV_SERVICE_PRINCIPAL.client_id), 400, "unauthorized_client", 700016),
        (_password_form(scope="https://vault.azure.net/.default"), 400, "invalid_scope", 70011),
        (_password_form(password=""), 400, "invalid_request", 900144),
    ],
    ids=["wrong-password", "unknown-user", "confidential-client", "unknown-api", "no-password"],
)
def test_password_grant_refusals_are_entra_shaped(stack, form, status, error, code):
    _, issuer = stack
    answered, body, _ = _post(issuer.token_endpoint, form, issuer.ca_file)
    assert (answered, body["error"], body["error_codes"]) == (status, error, [code])
    assert body["error_description"].startswith(f"AADSTS{code}:")
    assert "access_token" not in body


def test_browser_pages_on_this_machine_may_call_the_token_endpoint(stack):
    _, issuer = stack
    context = ssl.create_default_context(cafile=str(issuer.ca_file))
    origin = "http://127.0.0.1:5173"
    preflight = urllib.request.Request(
        issuer.token_endpoint,
        method="OPTIONS",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    with urllib.request.urlopen(preflight, context=context, timeout=10) as answer:
        assert answer.status == 204
        assert answer.headers["Access-Control-Allow-Origin"] == origin
        assert "POST" in answer.headers["Access-Control-Allow-Methods"]
        assert "content-type" in answer.headers["Access-Control-Allow-Headers"].lower()
    status, _, headers = _post(issuer.token_endpoint, _password_form(), issuer.ca_file, {"Origin": origin})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == origin
    for url in (issuer.jwks_uri, f"{issuer.issuer}/.well-known/openid-configuration"):
        request = urllib.request.Request(url, headers={"Origin": "http://localhost:8080"})
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            assert answer.headers["Access-Control-Allow-Origin"] == "http://localhost:8080"
    # a page elsewhere gets no CORS grant (the browser then withholds the answer)
    _, _, headers = _post(
        issuer.token_endpoint, _password_form(), issuer.ca_file, {"Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in headers


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None  # let the 302 reach the test, as a browser would hand it to the redirect URI


def _browser(issuer: OidcIssuer, url: str, form: dict[str, str] | None = None) -> tuple[int, dict, str]:
    """What a browser does with the authorize endpoint: GET the page or POST the picker's form."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=str(issuer.ca_file))),
        _NoRedirect(),
    )
    data = None if form is None else urllib.parse.urlencode(form).encode()
    try:
        with opener.open(urllib.request.Request(url, data=data), timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def test_msal_authorization_code_flow_with_pkce_and_the_dev_user_picker(stack):
    import html.parser

    import msal
    import requests

    _, issuer = stack
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE in the environment wins over session.verify
    session.verify = str(issuer.ca_file)
    app = msal.PublicClientApplication(
        PUBLIC_CLIENT_ID, authority=issuer.authority, http_client=session, instance_discovery=False
    )
    flow = app.initiate_auth_code_flow([f"{APP_AUDIENCE}/.default"], redirect_uri="http://localhost:53117")
    status, _, page = _browser(issuer, flow["auth_uri"])
    assert status == 200 and "alice@portcullis.local" in page and "eve@portcullis.local" in page

    class Fields(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.hidden: dict[str, str] = {}

        def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
            found = dict(attrs)
            if tag == "input" and found.get("type") == "hidden":
                self.hidden[found["name"] or ""] = found["value"] or ""

    fields = Fields()
    fields.feed(page)
    assert fields.hidden["code_challenge_method"] == "S256"
    status, headers, _ = _browser(issuer, flow["auth_uri"], {**fields.hidden, "username": BOB.name})
    assert status == 302
    location = urllib.parse.urlsplit(headers["Location"])
    assert f"{location.scheme}://{location.netloc}" == "http://localhost:53117"
    reply = dict(urllib.parse.parse_qsl(location.query))
    result = app.acquire_token_by_auth_code_flow(flow, reply)
    assert "access_token" in result, result
    assert result["id_token_claims"]["oid"] == BOB.object_id
    claims = _verified(issuer, result["access_token"], APP_AUDIENCE)
    assert claims["oid"] == BOB.object_id and claims["scp"] == "user_impersonation"
    # the code is good once, and only with the verifier
    replay = {
        "grant_type": "authorization_code",
        "client_id": PUBLIC_CLIENT_ID,
        "code": reply["code"],
        "redirect_uri": "http://localhost:53117",
        "code_verifier": flow["code_verifier"],
    }
    status, body, _ = _post(issuer.token_endpoint, replay, issuer.ca_file)
    assert status == 400 and body["error_codes"] == [70008]


def test_authorization_code_needs_the_right_verifier_and_a_local_redirect(stack):
    _, issuer = stack
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    query = {
        "client_id": PUBLIC_CLIENT_ID,
        "response_type": "code",
        "redirect_uri": "http://127.0.0.1:40000/cb",
        "scope": f"{APP_AUDIENCE}/.default openid",
        "state": "s1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    authorize = f"{issuer.authority}/oauth2/v2.0/authorize"
    status, headers, _ = _browser(issuer, authorize, {**query, "username": ALICE.name})
    reply = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(headers["Location"]).query))
    assert status == 302 and reply["state"] == "s1"
    redeem = {
        "grant_type": "authorization_code",
        "client_id": PUBLIC_CLIENT_ID,
        "code": reply["code"],
        "redirect_uri": query["redirect_uri"],
        "code_verifier": "w" * 50,
    }
    status, body, _ = _post(issuer.token_endpoint, redeem, issuer.ca_file)
    assert status == 400 and body["error_codes"] == [501481]
    # a page elsewhere cannot receive codes; no PKCE is refused back to the (local) client
    status, _, page = _browser(
        issuer, f"{authorize}?{urllib.parse.urlencode({**query, 'redirect_uri': 'https://evil.example/cb'})}"
    )
    assert status == 400 and "AADSTS50011" in page
    plain = {**query, "code_challenge_method": "plain"}
    status, headers, _ = _browser(issuer, f"{authorize}?{urllib.parse.urlencode(plain)}")
    refused = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(headers["Location"]).query))
    assert status == 302 and refused["error"] == "invalid_request" and refused["state"] == "s1"
