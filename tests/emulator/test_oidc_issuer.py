"""localrig's OpenID Connect issuer (issue 12) through MSAL, by way of azure-identity's
ClientSecretCredential (the service-principal flow `az login --service-principal` uses): tenant
discovery, the client-credentials token endpoint, RS256 tokens verifiable with the JWKS, Entra ID's
refusals; and the emulator's /metadata/endpoints pointing at it."""

from __future__ import annotations

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
